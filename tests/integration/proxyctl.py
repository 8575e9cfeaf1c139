"""Run the sipdispatch proxy as a subprocess for loopback integration tests."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SRC_DIR = REPO_ROOT / "src"

#: The line the proxy writes on stderr once every listener is bound.
READY_LINE = "sipdispatch ready"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class ProxyStartError(RuntimeError):
    """The proxy exited or never said it was ready."""


@dataclass
class ProxyProcess:
    """A running ``python -m sipdispatch run --config FILE``."""

    port: int
    """SIP port (UDP and TCP) the config listens on."""
    admin_port: int | None
    config_path: Path
    stderr_path: Path
    stdout_path: Path
    proc: subprocess.Popen[bytes]
    expect_clean_exit: bool = False
    """When True, :meth:`stop` asserts exit status 0 after SIGTERM."""
    returncode: int | None = field(default=None, init=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def admin_url(self) -> str:
        if self.admin_port is None:
            raise ValueError("this proxy was started without an admin port")
        return f"http://127.0.0.1:{self.admin_port}"

    def log_text(self) -> str:
        """Everything the proxy wrote on stderr so far (its log)."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stdout_text(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll the log until a line contains :data:`READY_LINE`."""
        deadline = time.monotonic() + timeout
        while True:
            if any(READY_LINE in line for line in self.log_text().splitlines()):
                return
            if self.proc.poll() is not None:
                raise ProxyStartError(
                    f"proxy exited with status {self.proc.returncode} before it was ready;"
                    f" log:\n{self.log_text()}"
                )
            if time.monotonic() >= deadline:
                self.kill()
                raise ProxyStartError(
                    f"proxy not ready within {timeout:.0f}s; log:\n{self.log_text()}"
                )
            time.sleep(0.05)

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        self.returncode = self.proc.wait()
        return self.returncode

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit status."""
        if self.returncode is not None:
            return self.returncode
        killed = False
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self.proc.kill()
        self.returncode = self.proc.wait()
        if self.expect_clean_exit:
            assert not killed, f"proxy ignored SIGTERM for {timeout:.0f}s; log:\n{self.log_text()}"
            assert self.returncode == 0, (
                f"proxy exited with status {self.returncode}; log:\n{self.log_text()}"
            )
        return self.returncode


def proxy_env() -> dict[str, str]:
    """Environment for the proxy: the repo's src/ first on PYTHONPATH, unbuffered output."""
    env = dict(os.environ)
    old = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(SRC_DIR) + (os.pathsep + old if old else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_proxy(
    config_toml: str,
    workdir: Path,
    *,
    port: int,
    admin_port: int | None = None,
    name: str = "proxy",
    expect_clean_exit: bool = False,
    ready_timeout: float = READY_TIMEOUT,
    file_limit: int | None = None,
) -> ProxyProcess:
    """Write ``config_toml`` to ``workdir/NAME.toml``, start the proxy there, wait until ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.toml"
    config_path.write_text(config_toml)
    stderr_path = workdir / f"{name}.stderr.log"
    stdout_path = workdir / f"{name}.stdout.log"
    with open(stderr_path, "wb") as err, open(stdout_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sipdispatch", "run", "--config", str(config_path)],
            cwd=workdir,
            env=proxy_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=None if file_limit is None else _limit_files(file_limit),
        )
    proxy = ProxyProcess(
        port=port,
        admin_port=admin_port,
        config_path=config_path,
        stderr_path=stderr_path,
        stdout_path=stdout_path,
        proc=proc,
        expect_clean_exit=expect_clean_exit,
    )
    proxy.wait_ready(ready_timeout)
    return proxy


def _limit_files(limit: int) -> Callable[[], None]:
    """For the child: at most ``limit`` open files (soft and hard, as `ulimit -n`)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def write_list_file(path: Path, entries: Iterable[tuple[int, str] | str]) -> Path:
    """Write a Kamailio dispatcher.list: ``(setid, "uri [flags] [priority] [attrs]")`` or lines."""
    lines = [e if isinstance(e, str) else f"{e[0]} {e[1]}" for e in entries]
    path.write_text("\n".join(lines) + "\n")
    return path


def toml_str(value: str) -> str:
    """A TOML basic string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def basic_config(
    port: int,
    admin_port: int,
    list_file: Path,
    *,
    algorithm: int | str = 4,
    ping_interval: int = 0,
    fr_timer: int = 30000,
    fr_inv_timer: int = 120000,
    failover_on: Iterable[str] = ("5xx", "404", "408"),
    extra: str = "",
) -> str:
    """A config in the reference setup's terms: udp+tcp on ``port``, one route to set 1.

    ``extra`` is appended verbatim (more [[route]] tables, etc.).
    """
    failover = ", ".join(toml_str(f) for f in failover_on)
    algo = toml_str(algorithm) if isinstance(algorithm, str) else str(algorithm)
    return f"""\
[server]
listen = ["udp:127.0.0.1:{port}", "tcp:127.0.0.1:{port}"]
record_route = true

[transaction]
fr_timer = {fr_timer}
fr_inv_timer = {fr_inv_timer}

[admin]
listen = "127.0.0.1:{admin_port}"

[dispatcher]
list_file = {toml_str(str(list_file))}
ping_interval = {ping_interval}

[[route]]
set = 1
algorithm = {algo}
failover_on = [{failover}]
{extra}"""
