"""The supervisor's hub: what the worker processes of one proxy share, without Redis.

Each worker keeps a stream connection to the hub (:mod:`.wire` frames) and tells it what
changed there; the hub passes it on to the others and keeps what a worker that starts
(or starts again) must know first:

- **membership**: the live workers (``members``), from which each computes the same
  probing split (:func:`~sipdispatch.cluster.rendezvous.owner`);
- **destination state**: the latest state a worker's pings or calls gave each
  destination (``state``), and every latency sample (``ping``);
- **call load** (algorithm 10): the one ledger of the calls counted, by Call-ID, and
  the count per destination; a reservation (``reserve``) is answered at once, fits or
  not under ``maxload``, so the limit holds exactly across the workers; ``confirm`` and
  ``release`` follow the call, entries run out after the TTL they were given, and the
  calls a worker had not yet seen answered when it died are released;
- **one admin endpoint**: the worker serving the admin listener asks the others to run
  an RPC method (``fanout``: every change is applied by every worker before the RPC
  answers) or to hand over their figures (``gather``: metrics, the console's counts).

Nothing here touches SIP: the hand-off of messages between workers goes directly from
worker to worker (:mod:`sipdispatch.transport.handoff`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from sipdispatch.cluster import wire

log = logging.getLogger("sipdispatch.workers")

EXPIRE_INTERVAL: Final = 1.0
"""Seconds between two sweeps of the call-load entries past their TTL."""
ASK_TIMEOUT: Final = 60.0
"""Seconds the hub waits for the workers' answers to a fan-out or a gather (a reload of
a large list, resolving names, takes a while)."""


@dataclass(slots=True)
class CallEntry:
    """One call counted in the ledger."""

    worker: int
    """The worker that counted it."""
    dest: tuple[int, str]
    """``(set, key)`` of its destination (the key lower-cased)."""
    confirmed: bool = False
    """Its INVITE was answered 2xx."""
    deadline: float | None = None
    """When it stops counting (None: never, until released)."""


@dataclass(slots=True)
class _Ask:
    """A fan-out or gather waiting for the workers' answers."""

    asker: int
    asker_id: object
    waiting: set[int]
    results: list[dict[str, Any]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Hub:
    """The shared state of ``workers`` worker processes (see the module)."""

    def __init__(self, workers: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = workers
        self.clock = clock
        self.writers: dict[int, asyncio.StreamWriter] = {}
        """The live workers' connections, by index."""
        self.states: dict[tuple[int, str], dict[str, Any]] = {}
        """The latest ``state`` event of each destination, by ``(set, uri lower)``."""
        self.calls: dict[str, CallEntry] = {}
        self.counts: Counter[tuple[int, str]] = Counter()
        self.stats: Counter[str] = Counter()
        """``frames``, ``states``, ``reserved``, ``refused``, ``released``, ``expired``,
        ``released_dead`` (a dead worker's unanswered calls), ``fanouts``, ``gathers``."""
        self.drained: set[int] = set()
        """Workers draining (SIGTERM) with nothing left in flight: they stop together,
        once every live worker is there (until then each still hands the others what
        arrives on its sockets)."""
        self._asks: dict[int, _Ask] = {}
        self._ids = itertools.count(1)
        self._sweeper: asyncio.Task[None] | None = None

    # -- connections --------------------------------------------------------------------

    def live(self) -> list[int]:
        """The live workers' indexes, in order."""
        return sorted(self.writers)

    async def serve(self, index: int, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:  # fmt: skip
        """Serve worker ``index``'s connection until it ends (the worker died or
        stopped)."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        old = self.writers.get(index)
        if old is not None:
            self._gone(index)
            old.close()
        try:
            while True:
                try:
                    message = await wire.read(reader)
                except (wire.WireError, OSError) as exc:
                    log.error("worker %d: bad frame on its hub connection: %s", index, exc)
                    break
                if message is None:
                    break
                self.stats["frames"] += 1
                try:
                    self._handle(index, writer, message)
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("worker %d: malformed %r: %s", index, message.get("t"), exc)
        finally:
            if self.writers.get(index) is writer:
                self._gone(index)
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()

    def _send(self, index: int, message: dict[str, Any]) -> None:
        writer = self.writers.get(index)
        if writer is not None and not writer.is_closing():
            writer.write(wire.encode(message))

    def _broadcast(self, message: dict[str, Any], but: int | None = None) -> None:
        frame = wire.encode(message)
        for index, writer in self.writers.items():
            if index != but and not writer.is_closing():
                writer.write(frame)

    def _gone(self, index: int) -> None:
        """Worker ``index`` is no longer connected: its unanswered calls are released
        (their INVITE transactions died with it; an answered call is released by its
        BYE, which reaches the worker started in its place), the others are told."""
        self.writers.pop(index, None)
        self.drained.discard(index)
        self._maybe_stop()
        for call_id, entry in list(self.calls.items()):
            if entry.worker == index and not entry.confirmed:
                self._drop(call_id, entry, "released_dead")
        self._broadcast({"t": "members", "live": self.live()})
        for ask_id, ask in list(self._asks.items()):
            if index in ask.waiting:
                ask.waiting.discard(index)
                ask.results.append({"worker": index, "ok": False, "error": "worker went down"})
                self._maybe_done(ask_id)

    # -- messages ---------------------------------------------------------------------

    def _handle(self, index: int, writer: asyncio.StreamWriter, m: dict[str, Any]) -> None:
        kind = m["t"]
        if kind == "hello":
            self.writers[index] = writer
            loads = [[s, k, n] for (s, k), n in self.counts.items() if n]
            self._send(index, {"t": "welcome", "live": self.live(),
                               "states": list(self.states.values()), "loads": loads})  # fmt: skip
            self._broadcast({"t": "members", "live": self.live()}, but=index)
        elif kind == "state":
            self.stats["states"] += 1
            self.states[(int(m["set"]), str(m["uri"]).lower())] = m
            self._broadcast(m, but=index)
        elif kind == "ping":
            self._broadcast(m, but=index)
        elif kind == "reserve":
            self._reserve(index, m)
        elif kind == "confirm":
            entry = self.calls.get(str(m["call"]))
            if entry is not None:
                entry.confirmed = True
                entry.deadline = self._deadline(float(m["ttl"]))
        elif kind == "release":
            call_id = str(m["call"])
            found = self.calls.get(call_id)
            if found is not None:
                self._drop(call_id, found, "released")
        elif kind == "drained":
            self.drained.add(index)
            self._maybe_stop()
        elif kind in ("fanout", "gather"):
            self._ask(index, m)
        elif kind == "reply":
            self._reply(index, m)
        else:
            raise ValueError(f"unknown frame type {kind!r}")

    def _maybe_stop(self) -> None:
        if self.drained and set(self.writers) <= self.drained:
            self._broadcast({"t": "stop"})

    def _deadline(self, ttl: float) -> float | None:
        return self.clock() + ttl if ttl > 0 else None

    def _reserve(self, index: int, m: dict[str, Any]) -> None:
        call_id = str(m["call"])
        dest = (int(m["set"]), str(m["key"]).lower())
        maxload = int(m["maxload"])
        old = self.calls.get(call_id)
        if old is not None and old.dest == dest:
            self._send(index, {"t": "reserved", "id": m["id"], "fits": True,
                               "n": self.counts[dest]})  # fmt: skip
            return
        if old is not None:  # moved to another destination (failover)
            self._drop(call_id, old, "released")
        n = self.counts[dest]
        if maxload > 0 and n >= maxload and m.get("strict", True):
            self.stats["refused"] += 1
            self._send(index, {"t": "reserved", "id": m["id"], "fits": False, "n": n})
            return
        self.calls[call_id] = CallEntry(index, dest, deadline=self._deadline(float(m["ttl"])))
        self.counts[dest] = n + 1
        self.stats["reserved"] += 1
        self._send(index, {"t": "reserved", "id": m["id"], "fits": True, "n": n + 1})
        self._broadcast({"t": "load", "set": dest[0], "key": dest[1], "n": n + 1}, but=index)

    def _drop(self, call_id: str, entry: CallEntry, why: str) -> None:
        self.calls.pop(call_id, None)
        dest = entry.dest
        n = max(self.counts[dest] - 1, 0)
        if n:
            self.counts[dest] = n
        else:
            self.counts.pop(dest, None)
        self.stats[why] += 1
        self._broadcast({"t": "load", "set": dest[0], "key": dest[1], "n": n,
                         "released": call_id})  # fmt: skip

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_INTERVAL)
            now = self.clock()
            for call_id, entry in list(self.calls.items()):
                if entry.deadline is not None and entry.deadline <= now:
                    self._drop(call_id, entry, "expired")

    # -- fan-out and gather -----------------------------------------------------------

    def _ask(self, index: int, m: dict[str, Any]) -> None:
        kind = m["t"]
        self.stats[kind + "s"] += 1
        ask_id = next(self._ids)
        others = {k for k in self.writers if k != index}
        ask = _Ask(index, m["id"], set(others))
        down = [k for k in range(self.workers) if k != index and k not in self.writers]
        for k in down:
            ask.results.append({"worker": k, "ok": False, "error": "worker is down"})
        self._asks[ask_id] = ask
        if kind == "fanout":
            request = {"t": "call", "id": ask_id, "method": m["method"], "params": m["params"],
                       "who": m.get("who", "")}  # fmt: skip
        else:
            request = {"t": "collect", "id": ask_id, "kind": m["kind"]}
        for k in others:
            self._send(k, request)
        ask.timer = asyncio.get_running_loop().call_later(ASK_TIMEOUT, self._timed_out, ask_id)
        self._maybe_done(ask_id)

    def _reply(self, index: int, m: dict[str, Any]) -> None:
        ask = self._asks.get(int(m["id"]))
        if ask is None or index not in ask.waiting:
            return
        ask.waiting.discard(index)
        result = {k: v for k, v in m.items() if k not in ("t", "id")}
        result["worker"] = index
        ask.results.append(result)
        self._maybe_done(int(m["id"]))

    def _timed_out(self, ask_id: int) -> None:
        ask = self._asks.get(ask_id)
        if ask is None:
            return
        for k in sorted(ask.waiting):
            ask.results.append({"worker": k, "ok": False,
                                "error": f"no answer within {ASK_TIMEOUT:g} s"})  # fmt: skip
        ask.waiting.clear()
        self._maybe_done(ask_id)

    def _maybe_done(self, ask_id: int) -> None:
        ask = self._asks.get(ask_id)
        if ask is None or ask.waiting:
            return
        del self._asks[ask_id]
        if ask.timer is not None:
            ask.timer.cancel()
        results = sorted(ask.results, key=lambda r: int(r["worker"]))
        self._send(ask.asker, {"t": "done", "id": ask.asker_id, "results": results})
