"""Redis for the cluster tests: the shared one at 127.0.0.1:6379 with a key prefix of
its own per test, or a private redis-server on a free port for tests that stop it (or
that need a server of their own: a replica, Sentinels, an ACL user, TLS)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

SHARED_URL = "redis://127.0.0.1:6379/0"


def _shared() -> redis.Redis:
    client = redis.Redis.from_url(SHARED_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {SHARED_URL} is not running: {exc}")
    return client


@pytest.fixture
def namespace() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted after."""
    ns = f"sdtest-{uuid.uuid4().hex[:12]}"
    yield ns
    client = _shared()
    keys = list(client.scan_iter(match=f"{ns}:*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


@dataclass
class PrivateRedis:
    """A redis-server of this test's own, which it may stop and start again."""

    port: int
    """Where it takes connections (its TLS port when ``args`` make it a TLS server)."""
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)
    """More redis-server arguments, after the defaults (a later one wins):
    ``--replicaof``, ``--user``, ``--port 0 --tls-port ...``."""
    config: Path | None = None
    """A configuration file given first (redis-sentinel needs one it can rewrite)."""
    binary_name: str = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which(self.binary_name)
        if binary is None:
            pytest.fail(f"{self.binary_name} is not installed (apt-get install {self.binary_name})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        first = [str(self.config)] if self.config is not None else []
        self.proc = subprocess.Popen(
            [binary, *first, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir),
             "--logfile", str(self.workdir / "server.log"), *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    log = self.workdir / "server.log"
                    said = log.read_text()[-2000:] if log.exists() else ""
                    pytest.fail(f"{self.binary_name} exited: {said}")
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def pause(self) -> None:
        """Stop answering (SIGSTOP): connections stay open, commands get no reply."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused one too
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def acl_args(user: str, password: str) -> list[str]:
    """redis-server arguments for one ACL user with every right and ``password``, the
    default user off (a client without the login gets nothing), and replication (of a
    replica) logged in as that user."""
    return ["--user", user, "on", f">{password}", "~*", "&*", "+@all", "--user", "default",
            "off", "--masteruser", user, "--masterauth", password]  # fmt: skip


def tls_args(port: int, cert: Path, key: Path, ca: Path) -> list[str]:
    """redis-server (or redis-sentinel) arguments for TLS only, on ``port``, asking
    clients for a certificate signed by ``ca``; replication over TLS too."""
    return ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "yes", "--tls-replication", "yes"]  # fmt: skip


SENTINEL_MASTER = "mymaster"
SENTINEL_DOWN_AFTER_MS = 1000
"""The test sentinels' ``down-after-milliseconds``: how long a master may be silent."""


def private_sentinel(
    workdir: Path,
    master: PrivateRedis,
    *,
    quorum: int,
    user: str,
    password: str,
    requirepass: str = "",
    args: list[str] | None = None,
) -> PrivateRedis:
    """A redis-sentinel (not started) on a free port watching ``master`` as
    :data:`SENTINEL_MASTER`, logged in on it as ``user``; ``requirepass``: the
    sentinel's own password."""
    from tests.integration.sippctl import free_port

    workdir.mkdir(parents=True)
    config = workdir / "sentinel.conf"  # rewritten by the sentinel as it learns
    config.write_text(
        f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master.port} {quorum}\n"
        f"sentinel down-after-milliseconds {SENTINEL_MASTER} {SENTINEL_DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {SENTINEL_MASTER} 10000\n"
        f"sentinel auth-user {SENTINEL_MASTER} {user}\n"
        f"sentinel auth-pass {SENTINEL_MASTER} {password}\n"
        + (f"requirepass {requirepass}\n" if requirepass else "")
    )
    port = free_port("tcp")
    extra = [a.replace("{port}", str(port)) for a in args or []]
    return PrivateRedis(port, workdir, config=config, binary_name="redis-sentinel", args=extra)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    from tests.integration.sippctl import free_port

    server = PrivateRedis(free_port("tcp"), tmp_path)
    server.start()
    yield server
    server.kill()


# The integration fixtures (scripted gateways, sipp, proxies as processes).
from tests.integration.conftest import browser, gateways, page, proxy_factory, sipp  # noqa: E402, F401
