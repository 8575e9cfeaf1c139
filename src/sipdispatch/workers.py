"""``[server] workers = N``: a supervisor process running N worker processes.

Each worker is a whole proxy (``sipdispatch run --worker K``): it binds the SIP
listeners with ``SO_REUSEPORT``, so the kernel spreads the sources over the workers by
a hash of each packet's or connection's addresses and keeps one source on one worker;
it sends its requests from a UDP port of its own, so their responses come back to it;
and it is a node of the Redis cluster (node id ``<node_id>/wK``), so destination state,
reloads and algorithm 10's call load are shared. Worker 0 also serves the admin
listener. The supervisor does no SIP: it starts the workers, tells systemd it is ready
once every worker is, starts a new worker when one dies (after a delay that doubles
while they keep dying), passes SIGTERM, SIGINT and SIGHUP on, and stops when they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

from sipdispatch.config import Config, ConfigError
from sipdispatch.logs import announce
from sipdispatch.server import READY_LINE
from sipdispatch.systemd import NOTIFY_ENV, notify

log = logging.getLogger("sipdispatch.workers")

RESTART_DELAY = 0.5
"""Seconds before a dead worker is started again, the first time."""
RESTART_DELAY_MAX = 30.0
"""The delay doubles while workers keep dying, up to this."""
STEADY = 30.0
"""Seconds a worker must run for the next death to be restarted after RESTART_DELAY."""
TERM_PASS_DELAY = 0.5
"""Seconds the supervisor waits before passing its first SIGTERM on: a worker that
says STOPPING=1 meanwhile got one itself (systemd's default ``KillMode=control-group``
and ``kill`` of the process group send it to every process) and is not sent a second,
which would stop it at once instead of draining."""
PR_SET_PDEATHSIG = 1
"""prctl(2): the signal a process gets when its parent dies."""


def _die_with_parent() -> None:
    """In the worker, before exec: SIGTERM (a drain) when the supervisor dies, so that a
    killed supervisor leaves no workers behind holding the port."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _exit_text(status: int) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = str(-status)
        return f"was killed by {name}"
    return f"exited with status {status}"


@dataclass
class Worker:
    """One worker process slot."""

    index: int
    proc: asyncio.subprocess.Process | None = None
    ready: bool = False
    draining: bool = False
    """It said STOPPING=1: it got a SIGTERM and drains."""
    started: float = 0.0
    delay: float = RESTART_DELAY
    starts: int = 0
    restart: asyncio.TimerHandle | None = field(default=None, repr=False)


class Supervisor:
    """Starts, watches and stops ``config.server.workers`` worker processes."""

    def __init__(self, config: Config, config_path: str) -> None:
        self.config = config
        self.config_path = config_path
        self.workers = [Worker(i) for i in range(config.server.workers)]
        self.stopping = False
        self.all_up = asyncio.Event()
        self.done = asyncio.Event()
        self.failed = False
        """A worker died before every worker was first up: the start failed."""
        self._terms = 0
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._notify.setblocking(False)
        self._notify_name = f"@sipdispatch-{os.getpid()}-{os.urandom(4).hex()}"
        self._notify.bind("\0" + self._notify_name[1:])
        self._tasks: set[asyncio.Task[None]] = set()

    def command(self, index: int) -> list[str]:
        """The command line of worker ``index``."""
        return [sys.executable, "-m", "sipdispatch", "run", "--config", self.config_path,
                "--worker", str(index)]  # fmt: skip

    async def start_worker(self, worker: Worker) -> None:
        worker.restart = None
        if self.stopping:
            return
        env = dict(os.environ)
        env[NOTIFY_ENV] = self._notify_name  # the workers' READY=1 come to us
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command(worker.index),
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent,
            )
        except OSError as e:
            log.error("cannot start worker %d: %s", worker.index, e)
            self._schedule_restart(worker)
            return
        worker.proc, worker.ready, worker.draining = proc, False, False
        worker.started = time.monotonic()
        worker.starts += 1
        log.info("worker %d started (pid %d)", worker.index, proc.pid)
        task = asyncio.get_running_loop().create_task(self._watch(worker, proc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, worker: Worker, proc: asyncio.subprocess.Process) -> None:
        status = await proc.wait()
        worker.proc, worker.ready = None, False
        if self.stopping:
            log.info("worker %d (pid %d) %s", worker.index, proc.pid, _exit_text(status))
            if all(w.proc is None for w in self.workers):
                self.done.set()
            return
        if not self.all_up.is_set():
            log.error("worker %d (pid %d) %s before every worker was up; stopping",
                      worker.index, proc.pid, _exit_text(status))  # fmt: skip
            self.failed = True
            self.stop(signal.SIGTERM)
            if all(w.proc is None for w in self.workers):
                self.done.set()
            return
        if time.monotonic() - worker.started >= STEADY:
            worker.delay = RESTART_DELAY
        log.warning("worker %d (pid %d) %s; starting a new one in %g s",
                    worker.index, proc.pid, _exit_text(status), worker.delay)  # fmt: skip
        self._schedule_restart(worker)

    def _schedule_restart(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        delay = worker.delay
        worker.delay = min(worker.delay * 2, RESTART_DELAY_MAX)

        def again() -> None:
            task = loop.create_task(self.start_worker(worker))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        worker.restart = loop.call_later(delay, again)

    def _on_notify(self) -> None:
        while True:
            try:
                data, ancillary, _flags, _addr = self._notify.recvmsg(
                    4096, socket.CMSG_SPACE(struct.calcsize("iII"))
                )
            except (BlockingIOError, InterruptedError):
                return
            pid = 0
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", value[: struct.calcsize("iII")])[0]
            lines = data.split(b"\n")
            if b"READY=1" in lines:
                self._ready(pid)
            if b"STOPPING=1" in lines:
                for worker in self.workers:
                    if worker.proc is not None and worker.proc.pid == pid:
                        worker.draining = True

    def _ready(self, pid: int) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.pid == pid and not worker.ready:
                worker.ready = True
                if self.all_up.is_set():
                    log.info("worker %d (pid %d) is up again", worker.index, pid)
                elif all(w.ready for w in self.workers):
                    self.all_up.set()
                return

    def stop(self, sig: int, *, draining_too: bool = True) -> None:
        """Pass ``sig`` on to every worker (but those already draining unless
        ``draining_too``); no worker is started any more."""
        self.stopping = True
        for worker in self.workers:
            if worker.restart is not None:
                worker.restart.cancel()
                worker.restart = None
            if worker.draining and not draining_too:
                continue
            if worker.proc is not None and worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(sig)
        if all(w.proc is None for w in self.workers):
            self.done.set()

    def _on_term(self) -> None:
        self._terms += 1
        if self._terms > 1:
            log.info("SIGTERM again: the workers stop at once")
            self.stop(signal.SIGTERM)
            return
        log.info("SIGTERM: the %d workers drain", len(self.workers))
        notify("STOPPING=1")
        self.stopping = True
        asyncio.get_running_loop().call_later(TERM_PASS_DELAY, self._pass_first_term)

    def _pass_first_term(self) -> None:
        if self._terms == 1:
            self.stop(signal.SIGTERM, draining_too=False)

    def _on_hup(self) -> None:
        # Worker 0 reloads and, being a cluster node, has every other worker reload.
        first = self.workers[0].proc
        if first is not None and first.returncode is None:
            log.info("SIGHUP: worker 0 reloads the destinations, the others follow")
            first.send_signal(signal.SIGHUP)
        else:
            log.warning("SIGHUP: worker 0 is not running; nothing reloaded")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_reader(self._notify.fileno(), self._on_notify)
        loop.add_signal_handler(signal.SIGTERM, self._on_term)
        loop.add_signal_handler(signal.SIGINT, self.stop, signal.SIGINT)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        try:
            for worker in self.workers:
                await self.start_worker(worker)
            up = loop.create_task(self.all_up.wait())
            finished = loop.create_task(self.done.wait())
            await asyncio.wait({up, finished}, return_when=asyncio.FIRST_COMPLETED)
            up.cancel()
            if self.all_up.is_set() and not self.stopping:
                shown = ", ".join(str(a) for a in self.config.server.listen)
                count = len(self.workers)
                announce(log, f"{READY_LINE}: SIP on {shown} ({count} workers)")
                notify(f"READY=1\nSTATUS={count} workers\nMAINPID={os.getpid()}")
            await finished
        finally:
            loop.remove_reader(self._notify.fileno())
            self._notify.close()
            for worker in self.workers:
                if worker.proc is not None and worker.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.kill()
        log.info("stopped")
        return 1 if self.failed else 0


def supervise(config: Config, config_path: str | None) -> int:
    """Run ``config.server.workers`` workers until SIGTERM or SIGINT; the exit status."""
    if config_path is None:
        raise ConfigError(
            "server.workers > 1 needs the configuration in a file (the workers read it)",
            key="server.workers",
        )
    return asyncio.run(Supervisor(config, os.path.abspath(config_path)).run())
