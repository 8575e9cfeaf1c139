"""One worker's connection to its supervisor's hub (:mod:`.hub`): the worker side of
"several worker processes are one proxy".

It sends what this worker's pings and calls did to the destinations (their state, the
latency samples) and applies what the other workers' did; it decides which
destinations this worker pings (rendezvous hashing over the live workers, so each
destination is pinged once per interval); it is the call-load table's
:class:`~sipdispatch.dispatcher.callload.LoadShare` (algorithm 10: every call counted
in the hub's ledger, an INVITE to a destination with a ``maxload`` held until the hub
says it fits); and it runs what the admin worker asks of every worker (an RPC method
that changes something, or its figures for the metrics and the console).

With ``[cluster]`` the workers are also cluster nodes: then Redis shares the state, the
probing and the call load, and the link only carries the admin worker's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final

from sipdispatch.cluster import wire
from sipdispatch.cluster.rendezvous import owner
from sipdispatch.dispatcher.callload import LoadEntry
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.health.prober import Prober
from sipdispatch.health.state import ORIGIN_CALL, ORIGIN_PROBE, ORIGIN_WORKER, StateChange
from sipdispatch.health.statelog import StateLog
from sipdispatch.service import DispatcherService

log = logging.getLogger("sipdispatch.workers")

WELCOME_TIMEOUT: Final = 10.0
"""Seconds a starting worker waits for the hub's first answer."""
LOAD_WAIT: Final = 1.0
"""Seconds an INVITE under ``maxload`` waits for the hub at most (it answers in well
under a millisecond; past this the call goes on this worker's count)."""
SHARED_ORIGINS: Final = (ORIGIN_PROBE, ORIGIN_CALL)
"""State changes sent to the other workers: those made by this worker's pings and
calls. An operator's are made on every worker by the RPC itself (a fan-out), a DNS
resolution's by each worker's own lookups."""

Runner = Callable[[str, list[Any], str], Awaitable[object]]
"""``run(method, params, who)``: an RPC method on this worker alone (a fan-out's share)."""
Collector = Callable[[str], Awaitable[object]]
"""``collect(kind)``: this worker's figures of ``kind`` (``metrics``, ``console``)."""


def worker_id(index: int) -> str:
    """The id a worker has in the probing split."""
    return f"w{index}"


class WorkerLink:
    """This worker's part of the hub (see the module)."""

    def __init__(
        self,
        index: int,
        sock: socket.socket,
        service: DispatcherService,
        state_log: StateLog,
        prober: Prober | None,
        clock: Callable[[], float],
        *,
        shares_state: bool = True,
    ) -> None:
        self.index = index
        self.id = worker_id(index)
        self.sock = sock
        self.service = service
        self.state_log = state_log
        self.prober = prober
        self.clock = clock
        self.shares_state = shares_state
        """Destination state, probing and call load go through the hub (False: through
        the cluster's Redis)."""
        self.live: tuple[int, ...] = (index,)
        """The live workers' indexes, as the hub last said."""
        self.stats: Counter[str] = Counter()
        """``states_sent``, ``states_applied``, ``samples_applied``, ``load_reserved``,
        ``load_refused``, ``load_wait_expired``, ``load_overbooked``, ``fanouts_run``,
        ``collects_run``."""
        self.run: Runner | None = None
        self.collect: Collector | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._welcome: asyncio.Future[dict[str, Any]] | None = None
        self._stop: asyncio.Event = asyncio.Event()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        """Answers awaited from the hub, by request id (reservations, fan-outs, gathers)."""
        self._counts: dict[tuple[int, str], int] = {}
        """The whole proxy's call count per destination, as the hub last said."""
        self._in_flight: Counter[tuple[int, str]] = Counter()
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, say hello, take the shared state the hub holds, and join."""
        self._reader, self._writer = await asyncio.open_connection(sock=self.sock)
        loop = asyncio.get_running_loop()
        self._welcome = loop.create_future()
        self._send({"t": "hello", "worker": self.index})
        self._task = loop.create_task(self._read(), name="hub")
        welcome = await asyncio.wait_for(self._welcome, WELCOME_TIMEOUT)
        self._members(welcome["live"])
        if self.shares_state:
            now = self.clock()
            for event in welcome["states"]:
                self._adopt(event, now)
            for setid, key, n in welcome["loads"]:
                self._apply_count(int(setid), str(key), int(n))
            self._unsubscribe = self.state_log.subscribe(self._on_change)
            self.service.router.calls.share = self
            if self.prober is not None:
                self.prober.owns = self.owns
                self.prober.on_sample = self._on_sample

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.service.router.calls.share is self:
            self.service.router.calls.share = None
        if self.prober is not None and self.prober.owns == self.owns:
            self.prober.owns = None
            self.prober.on_sample = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._tasks):
            task.cancel()
        if self._writer is not None:
            self._writer.close()

    def _send(self, message: dict[str, Any]) -> None:
        writer = self._writer
        if writer is not None and not writer.is_closing():
            writer.write(wire.encode(message))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self) -> None:
        reader = self._reader
        assert reader is not None
        while True:
            try:
                message = await wire.read(reader)
            except (wire.WireError, OSError) as exc:
                log.error("hub connection: %s", exc)
                message = None
            if message is None:
                log.error("worker %d: the supervisor's hub went away", self.index)
                self._stop.set()  # no other worker to wait for when draining
                for fut in self._waiting.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError("the hub went away"))
                return
            try:
                self._handle(message)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("hub: malformed %r: %s", message.get("t"), exc)

    def _handle(self, m: dict[str, Any]) -> None:
        kind = m["t"]
        if kind in ("reserved", "done"):
            fut = self._waiting.pop(int(m["id"]), None)
            if fut is not None and not fut.done():
                fut.set_result(m)
        elif kind == "load":
            released = m.get("released")
            if isinstance(released, str):
                self.service.router.calls.forget(released)
            self._apply_count(int(m["set"]), str(m["key"]), int(m["n"]))
        elif kind == "state":
            self._adopt(m, self.clock())
        elif kind == "ping":
            self._replay_sample(int(m["set"]), str(m["uri"]), int(m["code"]), int(m["ms"]))
        elif kind == "members":
            self._members(m["live"])
        elif kind == "call":
            self._spawn(self._run_call(
                int(m["id"]), str(m["method"]), list(m["params"]), str(m.get("who", ""))
            ))  # fmt: skip
        elif kind == "collect":
            self._spawn(self._run_collect(int(m["id"]), str(m["kind"])))
        elif kind == "stop":
            self._stop.set()
        elif kind == "welcome" and self._welcome is not None and not self._welcome.done():
            self._welcome.set_result(m)

    async def drained(self) -> None:
        """This worker drained (nothing left in flight): wait until every live worker
        has, so that each keeps handing the others what arrives on its sockets (the
        answer to a call being set up on another worker may come in here)."""
        self._send({"t": "drained"})
        await self._stop.wait()

    # -- membership and the probing split -------------------------------------------

    def _members(self, live: list[int]) -> None:
        new = tuple(sorted(int(k) for k in live))
        if self.index not in new:
            new = tuple(sorted((*new, self.index)))
        if new != self.live:
            log.info("worker %d: live workers now %s", self.index,
                     ", ".join(str(k) for k in new))  # fmt: skip
        self.live = new

    def owns(self, dest: Destination) -> bool:
        """Whether this worker pings ``dest``: the live worker its URI hashes to."""
        return owner(dest.uri.lower(), [worker_id(k) for k in self.live]) == self.id

    # -- destination state -----------------------------------------------------------

    def _on_change(self, change: StateChange) -> None:
        if change.origin not in SHARED_ORIGINS:
            return
        self.stats["states_sent"] += 1
        self._send({"t": "state", "set": change.setid, "uri": change.uri,
                    "state": change.new_state, "reason": change.reason,
                    "from": self.index})  # fmt: skip

    def _adopt(self, event: dict[str, Any], now: float) -> None:
        why = f"{event.get('reason', '')}, on worker {event.get('from', '?')}"
        change = self.service.router.adopt_state(
            int(event["set"]), str(event["uri"]), int(event["state"]), why, now,
            origin=ORIGIN_WORKER,
        )  # fmt: skip
        if change is not None:
            self.stats["states_applied"] += 1

    def _on_sample(self, dest: Destination, code: int, ms: int) -> None:
        self._send({"t": "ping", "set": dest.setid, "uri": dest.uri, "code": code, "ms": ms})

    def _replay_sample(self, setid: int, uri: str, code: int, ms: int) -> None:
        """The same latency sample through the same estimator as the pinging worker's,
        so latency statistics (and algorithm 13) agree on every worker."""
        prober = self.prober
        if prober is None or not prober.dconf.ping_latency_stats:
            return
        sets = self.service.router.sets
        dest = sets.find(setid, uri)
        if dest is not None:
            sets.record_ping(dest, code, ms, prober.alpha)
            self.stats["samples_applied"] += 1

    # -- call load (LoadShare) -------------------------------------------------------

    def _apply_count(self, setid: int, key: str, n: int, extra: int = 0) -> None:
        dk = (setid, key.lower())
        self._counts[dk] = n
        self.service.router.calls.set_load(setid, key, n + self._in_flight[dk] + extra)

    def reserved(self, entry: LoadEntry, maxload: int, ttl: float) -> asyncio.Future[bool] | None:
        """Count the call in the hub's ledger; with a ``maxload`` the INVITE waits for
        the hub to say it fits (True) or not (False)."""
        dk = (entry.setid, entry.key.lower())
        self._in_flight[dk] += 1
        req = next(self._ids)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._waiting[req] = answer
        self._send({"t": "reserve", "id": req, "call": entry.call_id, "set": entry.setid,
                    "key": entry.key, "maxload": maxload, "ttl": ttl})  # fmt: skip
        hold: asyncio.Future[bool] | None = loop.create_future() if maxload > 0 else None
        self._spawn(self._reserve(entry, dk, maxload, ttl, answer, hold))
        return hold

    async def _reserve(
        self,
        entry: LoadEntry,
        dk: tuple[int, str],
        maxload: int,
        ttl: float,
        answer: asyncio.Future[Any],
        hold: asyncio.Future[bool] | None,
    ) -> None:
        try:
            try:
                reply = await asyncio.wait_for(asyncio.shield(answer), LOAD_WAIT)
            except TimeoutError:
                # The hub is slow: never a failed call for it; the call goes on this
                # worker's count, and on the hub's too once it answers.
                self.stats["load_wait_expired"] += 1
                if hold is not None and not hold.done():
                    hold.set_result(True)
                reply = await answer
                if not reply["fits"]:
                    self.stats["load_overbooked"] += 1
                    self._send({"t": "reserve", "id": 0, "call": entry.call_id,
                                "set": entry.setid, "key": entry.key, "maxload": maxload,
                                "ttl": ttl, "strict": False})  # fmt: skip
                    return
        except ConnectionError:
            if hold is not None and not hold.done():
                hold.set_result(True)
            return
        finally:
            self._in_flight[dk] -= 1
            if self._in_flight[dk] <= 0:
                del self._in_flight[dk]
        self.stats["load_reserved"] += 1
        if not reply["fits"] and hold is not None and not hold.done():
            # Full across the workers: the call goes elsewhere. It is still on this
            # destination in the local table until the plan moves it, hence the one more.
            self.stats["load_refused"] += 1
            self._apply_count(dk[0], dk[1], int(reply["n"]), extra=1)
            hold.set_result(False)
            return
        self._apply_count(dk[0], dk[1], int(reply["n"]))
        if hold is not None and not hold.done():
            hold.set_result(True)

    def confirmed(self, entry: LoadEntry, ttl: float) -> None:
        """The call was answered; it counts ``ttl`` more seconds (0: until released)."""
        self._send({"t": "confirm", "call": entry.call_id, "ttl": ttl})

    def released(self, call_id: str) -> None:
        """The call ended here (the hub knows whether it counted it)."""
        self._send({"t": "release", "call": call_id})

    def rebound(self) -> None:
        """A reload recounted the local calls; put the whole proxy's counts back."""
        for (setid, key), n in self._counts.items():
            self._apply_count(setid, key, n)

    # -- what the admin worker asks of every worker -----------------------------------

    async def ask(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Send a ``fanout`` or ``gather`` and wait for every other worker's answer
        (``[{"worker": k, ...}]``, one per other worker, in order)."""
        req = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[req] = fut
        self._send({**message, "id": req})
        done = await fut
        results: list[dict[str, Any]] = done["results"]
        return results

    async def fan_out(self, method: str, params: list[Any], who: str) -> list[dict[str, Any]]:
        """Run ``method`` on every other worker; each one's ``{"worker", "ok",
        "error"}``."""
        return await self.ask({"t": "fanout", "method": method, "params": params, "who": who})

    async def gather(self, kind: str) -> list[dict[str, Any]]:
        """Every other worker's figures of ``kind`` (``{"worker", "ok", "data"}``)."""
        return await self.ask({"t": "gather", "kind": kind})

    async def _run_call(self, req: int, method: str, params: list[Any], who: str) -> None:
        run = self.run
        self.stats["fanouts_run"] += 1
        try:
            if run is None:
                raise RuntimeError("this worker takes no RPC yet")
            await run(method, params, who)
        except Exception as exc:  # the answer carries it; the asker reports it
            text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self._send({"t": "reply", "id": req, "ok": False, "error": str(text)})
            return
        self._send({"t": "reply", "id": req, "ok": True})

    async def _run_collect(self, req: int, kind: str) -> None:
        collect = self.collect
        self.stats["collects_run"] += 1
        try:
            if collect is None:
                raise RuntimeError("this worker has no figures yet")
            data = await collect(kind)
        except Exception as exc:  # the asker goes on without this worker's figures
            log.exception("collecting %s for the admin worker", kind)
            self._send({"t": "reply", "id": req, "ok": False, "error": str(exc)})
            return
        self._send({"t": "reply", "id": req, "ok": True, "data": data})
