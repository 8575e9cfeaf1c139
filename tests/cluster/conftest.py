"""Redis for the cluster tests: the shared one at 127.0.0.1:6379 with a key prefix of
its own per test, or a private redis-server on a free port for tests that stop it."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
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


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    from tests.integration.sippctl import free_port

    server = PrivateRedis(free_port("tcp"), tmp_path)
    server.start()
    yield server
    server.kill()


# The integration fixtures (scripted gateways, sipp, proxies as processes).
from tests.integration.conftest import browser, gateways, page, proxy_factory, sipp  # noqa: E402, F401
