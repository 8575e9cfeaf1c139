"""One node of a cluster: its Redis session, heartbeats, shared state and call load.

The session (one task) connects, announces the node, loads the state snapshot,
sends what changed here while it was away, and then waits on the event channel,
beating every ``heartbeat`` seconds. Any Redis error ends the session: the node
logs it once, counts it, routes on what it knows (pinging every destination and
counting call load by itself) and reconnects with a growing delay; the next
session resynchronises. Nothing here is on the call path: the state log and the
call-load table call in synchronously and return at once, the Redis work is done
by tasks. One thing waits for Redis: an INVITE to a destination with a ``maxload``
under algorithm 10 is held until the ledger says it fits (at most ``load_wait``; then
it goes on the local count), so ``maxload`` holds across the nodes.

The Redis is the server of ``redis_url`` or the master that the Sentinels of
``sentinels`` name (:mod:`.redisconn`): every session asks them again, so after a
failover the next session, its commands, scripts and subscription, is on the new
master (while they name none, the node is without Redis as above, asking every
heartbeat). The master in use is shown in ``cluster.nodes``; a change of it is logged
and counted.

Keys under ``{namespace}:`` -- ``node:{id}`` (this node's heartbeat: its address and
time, expiring after 3 heartbeats), ``nodes`` (the ids ever seen, pruned of those
whose heartbeat expired), ``state`` (hash: the latest shared state of each
destination, ``"{set} {uri}"`` -> JSON), ``call:{Call-ID}`` and ``load:{set}:{key}``
(:mod:`.ledger`); the channel ``{namespace}:events`` carries JSON events:
``state``, ``ping`` (a latency sample), ``reload``, ``load``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from sipdispatch.cluster.ledger import Ledger
from sipdispatch.cluster.redisconn import connect
from sipdispatch.cluster.rendezvous import owner
from sipdispatch.config import ClusterConfig
from sipdispatch.dispatcher.callload import LoadEntry
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.health.prober import Prober
from sipdispatch.health.state import ORIGIN_CLUSTER, ORIGIN_PROBE, StateChange
from sipdispatch.health.statelog import StateLog
from sipdispatch.routing import ALGORITHM_CALL_LOAD
from sipdispatch.service import Busy, DispatcherService

log = logging.getLogger("sipdispatch.cluster")

GONE_AFTER: Final = 3
"""Heartbeats a node may miss before it is gone."""
BACKOFF_MAX: Final = 10.0
"""Longest wait between two reconnection attempts (seconds)."""


@dataclass(slots=True)
class Member:
    """A live node, as its heartbeat says."""

    id: str
    address: str
    last_seen: float
    """Wall-clock time of its latest heartbeat."""


class ClusterNode:
    """This process as a member of a cluster (see the module docstring)."""

    def __init__(
        self,
        settings: ClusterConfig,
        node_id: str,
        address: str,
        service: DispatcherService,
        state_log: StateLog,
        prober: Prober | None,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.id = node_id
        self.address = address
        """Where this node takes SIP (``udp:host:port``), as shown in ``cluster.nodes``."""
        self.service = service
        self.state_log = state_log
        self.prober = prober
        self.clock = clock
        ns = settings.namespace
        self.heartbeat = float(settings.heartbeat)
        self.split = settings.probing == "split"
        self.target = connect(settings, max(self.heartbeat, 1.0))
        self.redis: Redis = self.target.client
        self.master = ""
        """``host:port`` of the Redis last used (with Sentinel: the master the
        sentinels named; "" before the first session)."""
        self.backoff_max = self.heartbeat if settings.sentinels else BACKOFF_MAX
        """Longest wait between two attempts: with Sentinel, one heartbeat (an attempt
        asks the sentinels, so the node is back on the new master within a heartbeat
        of its promotion)."""
        self.channel = f"{ns}:events"
        self.ledger = Ledger(self.redis, ns, node_id, self.channel)
        self.state_key = f"{ns}:state"
        self.nodes_key = f"{ns}:nodes"
        self.up = False
        """Connected to Redis, synchronised."""
        self.members: dict[str, Member] = {}
        """Live nodes by id, this one included (only this one while Redis is down)."""
        self.live: tuple[str, ...] = (node_id,)
        self.stats: Counter[str] = Counter()
        """``events_sent``, ``events_received``, ``states_applied``, ``reloads_sent``,
        ``reloads_received``, ``redis_errors``, ``sessions``, ``membership_changes``,
        ``load_reserved``, ``load_refused``, ``load_overbooked``, ``load_wait_expired``,
        ``load_released``, ``load_errors``, ``master_changes`` (a new master named by
        the sentinels, or another address behind ``redis_url``)."""
        self._pending: dict[tuple[int, str], StateChange] = {}
        """State changes made here and not yet in Redis (latest per destination)."""
        self._reload_pending = False
        self._samples: list[tuple[int, str, int, int]] = []
        """Latency samples of this node's pings, to replay on the others."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_flight: Counter[tuple[int, str]] = Counter()
        """Call-load reservations sent and not answered, per destination."""
        self._counts: dict[tuple[int, str], int] = {}
        """The cluster's call count per destination, as Redis last said."""
        self.load_wait = settings.load_wait / 1000.0
        """Longest wait of a held INVITE for its reservation (seconds; 0: never held)."""
        self._reserving: Counter[str] = Counter()
        """Reservations sent and not answered, per Call-ID."""
        self._release_after: set[str] = set()
        """Calls released while their reservation was on its way: released after it."""
        self._unsubscribe: Callable[[], None] | None = None
        self._down_logged = False

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Join: subscribe to the state log, start the session and wait (at most one
        heartbeat) for the first synchronisation, so a restarted node has the shared
        state before it takes calls. Redis being down does not stop the start."""
        self._unsubscribe = self.state_log.subscribe(self._on_change)
        self.service.reload_listeners.append(self._on_reload)
        router = self.service.router
        router.calls.share = self
        if self.prober is not None and self.split:
            self.prober.owns = self.owns
            self.prober.on_sample = self._on_sample
        self._task = asyncio.create_task(self._run(), name="cluster")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), timeout=max(self.heartbeat, 1.0))

    async def stop(self) -> None:
        """Leave: stop the session and remove this node's heartbeat, so the others
        take over its probing at once rather than after 3 heartbeats."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._on_reload in self.service.reload_listeners:
            self.service.reload_listeners.remove(self._on_reload)
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
        if self.up:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(self._node_key(self.id))
                await self.redis.zrem(self.nodes_key, self.id)
        self.up = False
        with contextlib.suppress(RedisError, OSError):
            await self.target.aclose()

    # -- probing share ---------------------------------------------------------------

    def owns(self, dest: Destination) -> bool:
        """Whether this node pings ``dest``: the live node its URI hashes to (every
        destination while Redis is down: each node is on its own then)."""
        if not self.up:
            return True
        return owner(dest.uri.lower(), self.live) == self.id

    def probes_of(self, node_id: str) -> list[str]:
        """The destination URIs ``node_id`` pings (by the probing mode and the split)."""
        prober = self.prober
        if prober is None:
            return []
        policy = prober.policy
        uris = [
            d.uri for d in self.service.router.sets.destinations() if policy.should_ping(d.state)
        ]
        if not self.split:
            return uris
        live = self.live if self.up else (self.id,)
        return [u for u in uris if owner(u.lower(), live) == node_id]

    def redis_info(self) -> dict[str, Any]:
        """The Redis in use, as ``cluster.nodes`` and the console show it (no
        password): its address, whether the node is connected, the Sentinel master's
        name ("" without Sentinel), TLS."""
        return {
            "MASTER": self.master,
            "UP": self.up,
            "SENTINEL_MASTER": self.settings.sentinel_master if self.settings.sentinels else "",
            "TLS": self.settings.tls,
        }

    def nodes(self) -> list[dict[str, Any]]:
        """``cluster.nodes``: every live node, this one first."""
        members = sorted(self.members.values(), key=lambda m: (m.id != self.id, m.id))
        if self.id not in self.members:
            members.insert(0, Member(self.id, self.address, time.time()))
        return [
            {
                "ID": m.id,
                "ADDRESS": m.address,
                "LAST_SEEN": round(m.last_seen, 3),
                "SELF": m.id == self.id,
                "PROBES": self.probes_of(m.id),
            }
            for m in members
        ]

    # -- what the state log, the service and the call-load table tell us -------------

    def _on_change(self, change: StateChange) -> None:
        if change.origin == ORIGIN_CLUSTER:
            return  # applied from another node: never sent back
        if change.origin == ORIGIN_PROBE and not self.split:
            return  # every node pings every destination: each keeps its own view
        self._pending[(change.setid, change.uri.lower())] = change
        self._wake.set()

    def _on_sample(self, dest: Destination, code: int, ms: int) -> None:
        if self.up:
            self._samples.append((dest.setid, dest.uri, code, ms))
            self._wake.set()

    def _on_reload(self) -> None:
        self._reload_pending = True
        self._wake.set()

    def reserved(self, entry: LoadEntry, maxload: int, ttl: float) -> asyncio.Future[bool] | None:
        """LoadShare: count the call in Redis (the local count already has it). With a
        ``maxload``, the INVITE waits for the answer: the hold returned ends True when
        the call fits (or after ``load_wait`` without an answer), False when the other
        nodes' calls fill the destination."""
        if not self.up:
            return None
        dk = (entry.setid, entry.key.lower())
        call_id = entry.call_id
        self._in_flight[dk] += 1
        self._reserving[call_id] += 1
        hold: asyncio.Future[bool] | None = None
        timer: asyncio.TimerHandle | None = None
        if maxload > 0 and self.load_wait > 0:
            loop = asyncio.get_running_loop()
            hold = loop.create_future()
            timer = loop.call_later(self.load_wait, self._waited_enough, hold)
        self._spawn(self._reserve(call_id, dk, maxload, ttl, hold, timer))
        return hold

    def _waited_enough(self, hold: asyncio.Future[bool]) -> None:
        """``load_wait`` is over: the call goes on the local count."""
        if not hold.done():
            self.stats["load_wait_expired"] += 1
            hold.set_result(True)

    def confirmed(self, entry: LoadEntry, ttl: float) -> None:
        """LoadShare: the call was answered; its Redis entry lives on."""
        if self.up:
            self._spawn(self._confirm(entry.call_id, ttl))

    def released(self, call_id: str) -> None:
        """LoadShare: the call ended here (whichever node counted it). While its
        reservation is on its way, the release waits for it (the two could otherwise
        cross on two connections and leave the call counted)."""
        if not self.up:
            return
        if call_id in self._reserving:
            self._release_after.add(call_id)
            return
        self._spawn(self._release(call_id))

    def rebound(self) -> None:
        """LoadShare: a reload recounted the local calls; put the cluster's back."""
        for (setid, key), n in self._counts.items():
            self._apply_count(setid, key, n)

    # -- call load -------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _apply_count(self, setid: int, key: str, n: int, extra: int = 0) -> None:
        self._counts[(setid, key)] = n
        load = n + self._in_flight[(setid, key)] + extra
        self.service.router.calls.set_load(setid, key, load)

    async def _reserve(
        self,
        call_id: str,
        dk: tuple[int, str],
        maxload: int,
        ttl: float,
        hold: asyncio.Future[bool] | None,
        timer: asyncio.TimerHandle | None,
    ) -> None:
        late = False
        try:
            fits, n = await self.ledger.reserve(
                call_id, dk[0], dk[1], maxload, ttl, strict=hold is not None
            )
            if not fits and hold is not None and hold.done():
                # The wait ran out and the call went on the local count: it counts.
                late = True
                fits, n = await self.ledger.reserve(call_id, dk[0], dk[1], maxload, ttl)
        except (RedisError, OSError):
            self.stats["load_errors"] += 1
            if hold is not None and not hold.done():
                hold.set_result(True)  # never a failed call because Redis failed
            return
        finally:
            if timer is not None:
                timer.cancel()
            self._in_flight[dk] -= 1
            if self._in_flight[dk] <= 0:
                del self._in_flight[dk]
            self._reserving[call_id] -= 1
            if self._reserving[call_id] <= 0:
                del self._reserving[call_id]
                if call_id in self._release_after:
                    self._release_after.discard(call_id)
                    self._spawn(self._release(call_id))
        self.stats["load_reserved"] += 1
        if not fits and hold is not None and not late:
            # Full across the cluster, and not added: the call goes elsewhere. It is
            # still on this destination in the local table until the plan moves it
            # (which takes one off), hence the one more.
            self.stats["load_refused"] += 1
            self._apply_count(dk[0], dk[1], n, extra=1)
            hold.set_result(False)
            return
        if not fits:
            self.stats["load_overbooked"] += 1
            log.warning(
                "call %s took set %d %s over its maxload %d: it was sent before the "
                "ledger answered", call_id, dk[0], dk[1], maxload,
            )  # fmt: skip
        self.stats["events_sent"] += 1  # the script published the new count
        self._apply_count(dk[0], dk[1], n)
        if hold is not None and not hold.done():
            hold.set_result(True)

    async def _confirm(self, call_id: str, ttl: float) -> None:
        try:
            await self.ledger.confirm(call_id, ttl)
        except (RedisError, OSError):
            self.stats["load_errors"] += 1

    async def _release(self, call_id: str) -> None:
        try:
            found = await self.ledger.release(call_id)
        except (RedisError, OSError):
            self.stats["load_errors"] += 1
            return
        if found is None:
            return
        setid, key, _counted_by, n = found
        self.stats["load_released"] += 1
        self.stats["events_sent"] += 1  # the script published the new count
        self._apply_count(setid, key, n)

    def _load_sets(self) -> list[tuple[int, str]]:
        router = self.service.router
        wanted = {r.set_id for r in router.routes if r.algorithm == ALGORITHM_CALL_LOAD}
        wanted.update(
            s for r in router.routes for s, alg in r.fallback if alg == ALGORITHM_CALL_LOAD
        )
        return [(d.setid, d.key.lower()) for d in router.sets.destinations() if d.setid in wanted]

    async def _refresh_loads(self) -> None:
        dests = self._load_sets()
        for (setid, key), n in zip(dests, await self.ledger.counts(dests), strict=True):
            self._apply_count(setid, key, n)

    # -- the session -----------------------------------------------------------------

    def _node_key(self, node_id: str) -> str:
        return f"{self.settings.namespace}:node:{node_id}"

    async def _publish(self, event: dict[str, Any]) -> None:
        event["node"] = self.id
        await self.redis.publish(self.channel, json.dumps(event, separators=(",", ":")))
        self.stats["events_sent"] += 1

    async def _run(self) -> None:
        delay = self.heartbeat
        while True:
            try:
                if await self._session():
                    continue  # the same Redis service at a new address: go there now
            except (RedisError, OSError) as exc:
                self.stats["redis_errors"] += 1
                if self.up or not self._down_logged:
                    refused = isinstance(exc, AuthenticationError | NoPermissionError)
                    log.error(
                        "cluster: Redis %s (%s); routing on the state known, pinging every "
                        "destination, counting call load here until it is back",
                        "refused this node's login" if refused else "unreachable",
                        self.target.explain(exc),
                    )
                    self._down_logged = True
                if self.up:
                    delay = self.heartbeat
                self._went_down()
            except Exception:  # a bug here must not end the cluster for good
                log.exception("cluster: session failed; starting again")
                self._went_down()
            self._synced.set()  # do not hold the start up any longer
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)

    def _went_down(self) -> None:
        self.up = False
        self.live = (self.id,)
        self.members = {}
        self._in_flight.clear()

    async def _session(self) -> bool:
        """One session, until an error ends it (raised) or the master moved (True:
        redis-py took the commands to the master the sentinels now name, on its own;
        the subscription, which may still be on the old one, must follow)."""
        redis = self.redis
        await redis.ping()
        self._master_in_use()
        master = self.master
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        writer: asyncio.Task[None] | None = None
        try:
            await pubsub.subscribe(self.channel)
            await self._beat()
            await self._resync()
            self.stats["sessions"] += 1
            if self._down_logged:
                log.warning("cluster: Redis is back (%s); state resynchronised", self.master)
                self._down_logged = False
            elif self.stats["sessions"] > 1:
                log.info("cluster: subscribed again, on %s", self.master)
            else:
                log.info("cluster: node %s joined (%d live) through %s at %s", self.id,
                         len(self.live), self.target.where, self.master)  # fmt: skip
            self._synced.set()
            writer = asyncio.create_task(self._writer())
            loop = asyncio.get_running_loop()
            next_beat = loop.time() + self.heartbeat
            while True:
                if writer.done():
                    writer.result()  # raises what ended it
                    return False
                message = await pubsub.get_message(timeout=max(next_beat - loop.time(), 0.0))
                if message is not None and message.get("type") == "message":
                    self._handle(message["data"])
                if loop.time() >= next_beat:
                    next_beat = loop.time() + self.heartbeat
                    await self._beat()
                    if self.service.router.counts_calls:
                        await self._refresh_loads()
                    await self.target.follow()
                    if self.target.master() not in ("", master):
                        self._master_in_use()
                        return True
        finally:
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                    await writer
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    def _master_in_use(self) -> None:
        """Note the Redis this session talks to; a new one is logged and counted."""
        master = self.target.master()
        if master and self.master and master != self.master:
            self.stats["master_changes"] += 1
            log.warning("cluster: Redis master is now %s (was %s)", master, self.master)
        if master:
            self.master = master

    async def _beat(self) -> None:
        redis = self.redis
        now = time.time()
        info = json.dumps({"address": self.address, "seen": now})
        pipe = redis.pipeline(transaction=False)
        pipe.set(self._node_key(self.id), info, px=int(GONE_AFTER * self.heartbeat * 1000))
        pipe.zadd(self.nodes_key, {self.id: now})
        pipe.zrange(self.nodes_key, 0, -1)
        ids = [_text(i) for i in (await pipe.execute())[2]]
        values = await redis.mget([self._node_key(i) for i in ids]) if ids else []
        members: dict[str, Member] = {}
        gone: list[str] = []
        for node_id, value in zip(ids, values, strict=True):
            if value is None:
                gone.append(node_id)
                continue
            data = json.loads(value)
            members[node_id] = Member(node_id, str(data["address"]), float(data["seen"]))
        if gone:
            await redis.zrem(self.nodes_key, *gone)
        live = tuple(sorted(members))
        if self.up and live != self.live:
            self.stats["membership_changes"] += 1
            log.info("cluster: live nodes now %s", ", ".join(live))
        self.members = members
        self.live = live if self.id in members else (*live, self.id)
        self.up = True

    async def _resync(self) -> None:
        """After (re)connecting: take the shared state of every destination not
        changed here meanwhile, then send ours (the writer), re-count the calls made
        while away, and read the cluster's call counts."""
        snapshot = await self.redis.hgetall(self.state_key)
        now = self.clock()
        router = self.service.router
        for field, value in snapshot.items():
            setid_text, _, uri = _text(field).partition(" ")
            if not setid_text.isdigit() or (int(setid_text), uri.lower()) in self._pending:
                continue
            data = json.loads(value)
            why = f"{data.get('reason', '')}, on {data.get('node', '?')} (shared state)"
            if router.adopt_state(int(setid_text), uri, int(data["state"]), why, now):
                self.stats["states_applied"] += 1
        for entry in router.calls.entries():
            maxload = entry.dest.attrs.maxload if entry.dest is not None else 0
            deadline = router.calls.deadline_of(entry)
            ttl = deadline - now if deadline else 0.0
            if deadline is not None and ttl <= 0:
                continue
            await self.ledger.reserve(entry.call_id, entry.setid, entry.key, maxload, ttl)
        if router.counts_calls:
            await self._refresh_loads()
        self._wake.set()

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                dk, change = next(iter(self._pending.items()))
                record = {
                    "state": change.new_state,
                    "reason": change.reason,
                    "origin": change.origin,
                    "node": self.id,
                    "at": time.time(),
                }
                await self.redis.hset(
                    self.state_key, f"{change.setid} {change.uri}", json.dumps(record)
                )
                await self._publish(
                    {
                        "type": "state",
                        "set": change.setid,
                        "uri": change.uri,
                        "state": change.new_state,
                        "reason": change.reason,
                    }
                )
                if self._pending.get(dk) is change:
                    del self._pending[dk]
            while self._samples:
                setid, uri, code, ms = self._samples.pop(0)
                await self._publish(
                    {"type": "ping", "set": setid, "uri": uri, "code": code, "ms": ms}
                )
            if self._reload_pending:
                await self._publish({"type": "reload"})
                self._reload_pending = False
                self.stats["reloads_sent"] += 1

    # -- events from the other nodes -------------------------------------------------

    def _handle(self, data: bytes | str) -> None:
        try:
            event = json.loads(data)
            sender = str(event["node"])
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: unreadable event %r", data[:200])
            return
        if sender == self.id:
            return
        self.stats["events_received"] += 1
        try:
            self._apply(sender, kind, event)
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: malformed %s event from %s: %r", kind, sender, event)

    def _apply(self, sender: str, kind: object, event: dict[str, Any]) -> None:
        if kind == "state":
            router = self.service.router
            why = f"{event.get('reason', '')}, on {sender}"
            change = router.adopt_state(
                int(event["set"]), str(event["uri"]), int(event["state"]), why, self.clock()
            )
            if change is not None:
                self.stats["states_applied"] += 1
        elif kind == "ping":
            self._replay_sample(
                int(event["set"]), str(event["uri"]), int(event["code"]), int(event["ms"])
            )
        elif kind == "reload":
            self.stats["reloads_received"] += 1
            self._spawn(self._reload_from(sender))
        elif kind == "load":
            released = event.get("released")
            if isinstance(released, str):
                self.service.router.calls.forget(released)
            self._apply_count(int(event["set"]), str(event["key"]), int(event["n"]))

    def _replay_sample(self, setid: int, uri: str, code: int, ms: int) -> None:
        """Another node's ping of a destination this one does not ping: the same
        sample through the same estimator, so latency statistics (algorithm 13) agree."""
        prober = self.prober
        if prober is None or not prober.dconf.ping_latency_stats:
            return
        sets = self.service.router.sets
        dest = sets.find(setid, uri)
        if dest is not None:
            sets.record_ping(dest, code, ms, prober.alpha)
            self.stats["samples_applied"] += 1

    async def _reload_from(self, sender: str) -> None:
        for _ in range(GONE_AFTER):
            try:
                kept = await self.service.reload(announce=False)
            except Busy:
                await asyncio.sleep(self.heartbeat)
                continue
            except Exception as exc:  # the store failed here: say so, keep the list
                log.error("cluster: reload asked by %s failed here: %s", sender, exc)
                return
            log.info("cluster: reloaded as %s asked (%d kept their state)", sender, kept)
            return
        log.error("cluster: reload asked by %s not done: another one kept running", sender)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
