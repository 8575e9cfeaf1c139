"""``[server] workers = N``: a supervisor process running N worker processes as one proxy.

The supervisor binds every SIP listener N times with ``SO_REUSEPORT`` (one socket per
worker, all on the configured address and port), makes the hand-off pairs between
every two workers (:mod:`sipdispatch.transport.handoff`) and runs the hub of their
shared state (:mod:`sipdispatch.cluster.hub`); then it gives each worker its sockets.
It keeps its own copies of them all: a worker that dies is started again on the very
same sockets, and what arrived meanwhile waits there for it (the kernel never moves a
source to another socket).

A worker is started as a *standby* process (``sipdispatch run --standby``): it imports
the proxy and reads the configuration, then waits for the supervisor to hand it an
index and its sockets (``SCM_RIGHTS``). One standby is always kept ready beside the
workers, so a worker that dies is replaced by a process that has already done the
second of imports: the new worker takes calls well within a second.

Each worker is a whole proxy on its share of the listeners. It hands every message it
receives to the worker of its Call-ID, which handles it and sends from its own socket on
the listening address: every datagram leaves from the configured address and port.
Worker 0 also serves the admin listener, the whole proxy's view. The supervisor does no
SIP: it tells systemd it is ready once every worker is, starts a new worker when one
dies (after a delay that doubles while they keep dying), passes SIGTERM, SIGINT and
SIGHUP on, and stops when they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from sipdispatch.checks import bind_reason
from sipdispatch.cluster import link as _link  # noqa: F401  (a standby imports it early)
from sipdispatch.cluster.hub import Hub
from sipdispatch.config import Config, ConfigError
from sipdispatch.logs import announce
from sipdispatch.server import READY_LINE, WorkerSockets
from sipdispatch.systemd import NOTIFY_ENV, notify
from sipdispatch.transport.handoff import ends_of, socket_pairs
from sipdispatch.transport.shell import listening_socket

log = logging.getLogger("sipdispatch.workers")

RESTART_DELAY = 0.1
"""Seconds before a dead worker is started again, the first time (it is up within a
second: what arrives for it meanwhile waits on its sockets)."""
RESTART_DELAY_MAX = 30.0
"""The delay doubles while workers keep dying, up to this."""
STANDBY_ENV = "SIPDISPATCH_STANDBY_FD"
"""The descriptor a standby process waits on for its assignment."""
ASSIGNMENT_MAX = 65536
"""Largest assignment message (its JSON)."""
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


def await_assignment() -> tuple[int, WorkerSockets]:
    """In a standby process: wait for the supervisor's assignment, then return the
    worker index and the sockets it hands over. Exits when the supervisor goes away
    without one."""
    control = socket.socket(fileno=int(os.environ.pop(STANDBY_ENV)))
    try:
        data, fds, _flags, _addr = socket.recv_fds(control, ASSIGNMENT_MAX, 1024)
    finally:
        control.close()
    if not data:
        raise SystemExit(0)  # stopped before it was needed
    message = json.loads(data)
    socks = [socket.socket(fileno=fd) for fd in fds]
    sockets = WorkerSockets(
        tuple(socks[i] for i in message["listen"]),
        {int(k): socks[i] for k, i in message["peers"].items()},
        socks[message["hub"]],
    )
    return int(message["worker"]), sockets


@dataclass
class Spare:
    """A standby process, not yet a worker."""

    proc: asyncio.subprocess.Process
    control: socket.socket
    """Our end of its control socket: its assignment goes there."""


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


def bind_listeners(config: Config, workers: int) -> list[list[socket.socket]]:
    """Every ``server.listen`` entry bound ``workers`` times with ``SO_REUSEPORT``, all
    on its address and port (a port of 0 is the one the first socket got): ``[entry]
    [worker]``. Raises OSError naming the listener."""
    out: list[list[socket.socket]] = []
    try:
        for addr in config.server.listen:
            kind = socket.SOCK_DGRAM if addr.proto == "udp" else socket.SOCK_STREAM
            port = addr.port
            shares: list[socket.socket] = []
            out.append(shares)
            for _ in range(workers):
                try:
                    sock = listening_socket(addr.host, port, kind, True)
                except OSError as e:
                    raise OSError(e.errno, f"cannot listen on {addr}: {bind_reason(e)}") from e
                shares.append(sock)
                port = sock.getsockname()[1]
    except OSError:
        for shares in out:
            for sock in shares:
                sock.close()
        raise
    return out


class Supervisor:
    """Starts, watches and stops ``config.server.workers`` worker processes."""

    def __init__(self, config: Config, config_path: str, workers: int) -> None:
        self.config = config
        self.config_path = config_path
        self.workers = [Worker(i) for i in range(workers)]
        self.listeners = bind_listeners(config, workers)
        """Each worker's share of every listener, kept for a worker started again."""
        self.pairs = socket_pairs(workers)
        """The hand-off pairs between every two workers."""
        self.hub = Hub(workers)
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
        self._tasks: set[asyncio.Task[Any]] = set()
        self.spare: Spare | None = None
        """The standby process the next worker to start will be."""
        self._sparing = False

    def command(self) -> list[str]:
        """The command line of a standby process."""
        return [sys.executable, "-m", "sipdispatch", "run", "--config", self.config_path,
                "--standby"]  # fmt: skip

    async def _start_spare(self) -> Spare | None:
        """A new standby process (None when it cannot be started)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        env[NOTIFY_ENV] = self._notify_name  # the workers' READY=1 come to us
        env[STANDBY_ENV] = str(theirs.fileno())
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent,
                pass_fds=[theirs.fileno()],
            )
        except OSError as e:
            log.error("cannot start a worker process: %s", e)
            ours.close()
            return None
        finally:
            theirs.close()  # the standby's now
        spare = Spare(proc, ours)
        self._spawn(self._watch_spare(spare))
        return spare

    async def _keep_spare(self) -> None:
        """Have a standby process ready for the next worker to start."""
        if self.spare is None and not self.stopping and not self._sparing:
            self._sparing = True
            try:
                self.spare = await self._start_spare()
            finally:
                self._sparing = False
            if self.stopping and self.spare is not None:
                self._end_spare()

    def _end_spare(self) -> None:
        spare, self.spare = self.spare, None
        if spare is not None:
            spare.control.close()  # it ends when it reads nothing
            with contextlib.suppress(ProcessLookupError):
                spare.proc.terminate()

    async def _watch_spare(self, spare: Spare) -> None:
        status = await spare.proc.wait()
        if self.spare is spare:  # died a standby
            self.spare = None
            spare.control.close()
            if not self.stopping:
                log.error("a standby worker process (pid %d) %s before it was needed",
                          spare.proc.pid, _exit_text(status))  # fmt: skip

    async def start_worker(self, worker: Worker) -> None:
        worker.restart = None
        if self.stopping:
            return
        index = worker.index
        spare, self.spare = self.spare, None
        if spare is None or spare.proc.returncode is not None:
            spare = await self._start_spare()
            if spare is None:
                self._schedule_restart(worker)
                return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        listen = [shares[index] for shares in self.listeners]
        peers = ends_of(index, self.pairs)
        fds = [s.fileno() for s in (*listen, *peers.values(), theirs)]
        message = {
            "worker": index,
            "listen": list(range(len(listen))),
            "peers": {str(k): len(listen) + i for i, k in enumerate(peers)},
            "hub": len(fds) - 1,
        }
        try:
            socket.send_fds(spare.control, [json.dumps(message).encode()], fds)
        except OSError as e:
            log.error("cannot hand worker %d its sockets: %s", index, e)
            ours.close()
            theirs.close()
            spare.control.close()
            with contextlib.suppress(ProcessLookupError):
                spare.proc.kill()
            self._schedule_restart(worker)
            return
        theirs.close()  # the worker's now
        spare.control.close()
        proc = spare.proc
        reader, writer = await asyncio.open_connection(sock=ours)
        self._spawn(self.hub.serve(index, reader, writer))
        worker.proc, worker.ready, worker.draining = proc, False, False
        worker.started = time.monotonic()
        worker.starts += 1
        log.info("worker %d started (pid %d)", worker.index, proc.pid)
        self._spawn(self._watch(worker, proc))
        self._spawn(self._keep_spare())

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

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        self._end_spare()
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
        self._end_spare()
        asyncio.get_running_loop().call_later(TERM_PASS_DELAY, self._pass_first_term)

    def _pass_first_term(self) -> None:
        if self._terms == 1:
            self.stop(signal.SIGTERM, draining_too=False)

    def _on_hup(self) -> None:
        # Every worker reloads the destinations itself.
        log.info("SIGHUP: every worker reloads the destinations")
        for worker in self.workers:
            if worker.proc is not None and worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGHUP)

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
            self._end_spare()
            self.hub.close()
            for shares in self.listeners:
                for sock in shares:
                    sock.close()
            for a, b in self.pairs.values():
                a.close()
                b.close()
        log.info("stopped")
        return 1 if self.failed else 0


def supervise(config: Config, config_path: str | None, workers: int) -> int:
    """Run ``workers`` workers until SIGTERM or SIGINT; the exit status."""
    if config_path is None:
        raise ConfigError(
            "server.workers > 1 needs the configuration in a file (the workers read it)",
            key="server.workers",
        )
    path = os.path.abspath(config_path)

    async def main() -> int:
        return await Supervisor(config, path, workers).run()

    return asyncio.run(main())
