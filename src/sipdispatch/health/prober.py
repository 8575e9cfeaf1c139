"""The OPTIONS prober: Kamailio's ``ds_check_timer`` / ``ds_ping_set`` /
``ds_options_callback`` on top of the proxy core.

Every ``ping_interval`` seconds a round starts: the destinations the probing
mode selects (:meth:`ProbingPolicy.should_ping`) are pinged with
``ping_method`` from ``ping_from`` (or the destination's ``ping_from`` attr),
each as a non-INVITE client transaction of the core (timeout ``fr_timer``).
Kamailio sends a round all at once; we spread it evenly over the interval so a
large set does not burst (docs/health.md).

When a ping finishes, its latency feeds the statistics (``ping_latency_stats``)
and its outcome goes through the pure state machine (:mod:`.state`); the new
state is applied with :meth:`DispatcherSets.set_state`, so rweight tables follow.
Every change is logged on one line, counted in :attr:`Prober.stats` and kept as
a :class:`StateChange` in :attr:`Prober.events`.

Time is virtual: rounds and pings run on the core's timer queue (``core.call_at``)
and take ``now`` from it. The prober never touches a socket; after anything it
does from outside a receive or timer callback (``start``, ``ping_now``) it calls
``flush`` so the shell writes the outbox and re-arms its timer.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.latency import alpha_from_permille
from sipdispatch.dispatcher.states import DS_INACTIVE_DST, DS_TRYING_DST
from sipdispatch.health.state import (
    ProbingPolicy,
    StateChange,
    Transition,
    is_ping_reply_alive,
)
from sipdispatch.sip.addr import Addr
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.message import DEFAULT_MAX_FORWARDS, Request, Response
from sipdispatch.sip.timers import TimerHandle, Timers
from sipdispatch.sip.uri import parse_uri

if TYPE_CHECKING:
    from sipdispatch.config import DispatcherConfig
    from sipdispatch.dispatcher.sets import DispatcherSets
    from sipdispatch.health.statelog import StateLog
    from sipdispatch.routing import DispatchRouter
    from sipdispatch.sip.proxy import ProxyCore

log = logging.getLogger("sipdispatch.health")

ProbeDone = Callable[[int, Response | None, int, StateChange | None], None]
"""Told when an operator's probe finishes: status, response, milliseconds, change."""

PING_CSEQ = 1
"""Each ping is a new dialog-less request with its own Call-ID, so CSeq 1."""
TIMEOUT_STATUS = 408
"""Status the core reports when a ping got no final response within fr_timer."""


def estimator_alpha(permille: int) -> float:
    """``LatencyStats.add_sample``'s alpha (weight of the *previous* estimate) from
    ``latency_estimator_alpha``.

    Kamailio (master since 2025) reads ``ds_latency_estimator_alpha``
    as the weight of the *new* sample, default 100 (0.1); ours is the same
    default. ``latency.py`` implements the older formula ``est*alpha + x*(1-alpha)``,
    so the complement is passed: 100 gives 0.9, the same smoothing as Kamailio.
    Values outside 1..999 fall back to Kamailio's default.
    """
    return alpha_from_permille(1000 - permille)


def latency_ms(sent_at: float, now: float) -> int:
    """Milliseconds from send to result, truncated like Kamailio's timeval maths
    (microsecond resolution, then integer milliseconds)."""
    micros = round((now - sent_at) * 1_000_000)
    return max(micros, 0) // 1000


class Prober:
    """Sends the pings and applies their results to the dispatcher's destinations.

    ``router`` supplies the live sets (``router.sets``, swapped by a reload);
    ``dconf`` is the ``[dispatcher]`` section; ``core`` sends (``core.originate``)
    and keeps time (``core.call_at``, ``core.timers.fr_timer``); every state change
    goes to ``state_log``. ``flush`` is the shell's ``flush``; ``clock`` gives ``now``
    for calls made without one (:meth:`ping_now` from the admin API).
    """

    def __init__(
        self,
        router: DispatchRouter,
        core: ProxyCore,
        dconf: DispatcherConfig,
        state_log: StateLog,
        *,
        flush: Callable[[], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.router = router
        self.core = core
        self.dconf = dconf
        """The ``[dispatcher]`` settings."""
        self.state_log = state_log
        self.policy = ProbingPolicy(
            dconf.probing_mode, dconf.probing_threshold, dconf.inactive_threshold
        )
        """Probing mode and thresholds (fixed for the process, as Kamailio's modparams)."""
        self.alpha = estimator_alpha(dconf.latency_estimator_alpha)
        self.active = True
        """Kamailio's ``dispatcher.ping_active``: when False, rounds send nothing
        (pings in flight still count when they finish)."""
        self.stats: Counter[str] = Counter()
        """``pings_sent``, ``pings_skipped``, ``ping_answers``, ``ping_timeouts``,
        ``ping_alive``, ``ping_failed``, ``ping_results_orphaned``, ``rounds``,
        ``rounds_inactive`` (state changes are counted by the state log)."""
        self._flush = flush
        self._clock = clock
        self._running = False
        self._stopped = False
        self._round_timer: TimerHandle | None = None
        self._slot_timer: TimerHandle | None = None
        self._prefix = secrets.token_hex(4)
        self._counter = 0
        self.owns: Callable[[Destination], bool] | None = None
        """In a cluster that splits probing: whether this node pings a destination
        (asked at the start of every round); None = every destination."""
        self.keeps_call_id: Callable[[str], bool] | None = None
        """One worker of several: whether a Call-ID is this worker's (the answer to a
        ping comes back to the worker its Call-ID names); a ping takes the next serial
        until it is. None: any Call-ID."""
        self.on_sample: Callable[[Destination, int, int], None] | None = None
        """Told of every latency sample recorded (destination, code, ms): a cluster
        that splits probing replays them on the nodes that do not ping it."""
        self._members_of: DispatcherSets | None = None
        self._member_ids: frozenset[int] = frozenset()
        self._ping_timers: tuple[Timers, int, Timers] | None = None
        self._outbound: dict[str, Addr] = {}
        self._outbound_bad: set[str] = set()

    # -- settings ------------------------------------------------------------------

    @property
    def interval(self) -> float:
        """Seconds between rounds (``ping_interval``); 0 = no periodic pings."""
        return float(self.dconf.ping_interval)

    @property
    def running(self) -> bool:
        """Between :meth:`start` and :meth:`stop`."""
        return self._running

    # -- life cycle ----------------------------------------------------------------

    def start(self, now: float) -> None:
        """Schedule the first round one ``ping_interval`` from ``now`` (Kamailio's
        timer first fires after one interval). Nothing is scheduled when the
        interval is 0."""
        self._running = True
        self._stopped = False
        self._schedule_round(now)
        self._flush_out()

    def stop(self) -> None:
        """Cancel the rounds. Pings in flight are left to the core; their results
        are ignored from now on."""
        self._running = False
        self._stopped = True
        for handle in (self._round_timer, self._slot_timer):
            if handle is not None:
                handle.cancel()
        self._round_timer = self._slot_timer = None

    def ping_now(self, now: float | None = None) -> int:
        """Start a round at once (spread over the interval like the periodic ones)
        and restart the periodic schedule from here. Sends even when
        :attr:`active` is False: it is an explicit request. Returns how many
        destinations the round will ping."""
        if now is None:
            if self._clock is None:
                raise RuntimeError("ping_now() needs now= when the prober has no clock")
            now = self._clock()
        if self._running:
            self._schedule_round(now)
        planned = self._begin_round(now, force=True)
        self._flush_out()
        return planned

    # -- rounds --------------------------------------------------------------------

    def _flush_out(self) -> None:
        if self._flush is not None:
            self._flush()

    def _schedule_round(self, now: float) -> None:
        if self._round_timer is not None:
            self._round_timer.cancel()
            self._round_timer = None
        if self.interval > 0:
            self._round_timer = self.core.call_at(now + self.interval, self._on_round_timer)

    def _on_round_timer(self, now: float) -> None:
        self._round_timer = None
        if not self._running:
            return
        self._schedule_round(now)
        self._begin_round(now, force=False)

    def _begin_round(self, now: float, *, force: bool) -> int:
        if self._slot_timer is not None:
            # A round still spreading when the next starts (only after ping_now):
            # the new plan covers every destination again.
            self._slot_timer.cancel()
            self._slot_timer = None
        if not (self.active or force):
            self.stats["rounds_inactive"] += 1
            return 0
        self.stats["rounds"] += 1
        policy = self.policy
        plan = [d for d in self.router.sets.destinations() if policy.should_ping(d.state)]
        owns = self.owns
        if owns is not None:
            plan = [d for d in plan if owns(d)]
        if not plan:
            return 0
        spacing = self.interval / len(plan) if self.interval > 0 else 0.0
        self._run_slots(plan, 0, now, spacing, force, now)
        return len(plan)

    def _run_slots(
        self,
        plan: list[Destination],
        index: int,
        start: float,
        spacing: float,
        force: bool,
        now: float,
    ) -> None:
        self._slot_timer = None
        if self._stopped or not (self.active or force):
            return
        self.ping(plan[index], now)
        index += 1
        while spacing == 0 and index < len(plan):
            self.ping(plan[index], now)
            index += 1
        if index < len(plan):
            self._slot_timer = self.core.call_at(
                start + index * spacing, self._run_slots, plan, index, start, spacing, force
            )

    # -- one ping ------------------------------------------------------------------

    def current(self, dest: Destination) -> Destination | None:
        """``dest`` itself while it is in the live sets; after a reload, the live
        destination with the same set and URI (Kamailio finds it by URI), or None."""
        sets = self.router.sets
        if sets is not self._members_of:
            self._members_of = sets
            self._member_ids = frozenset(id(d) for d in sets.destinations())
        if id(dest) in self._member_ids:
            return dest
        return sets.find(dest.setid, dest.uri)

    def build_request(self, dest: Destination) -> Request:
        """The ping for ``dest``: ``ping_method`` to its URI, From ``ping_from`` (the
        destination's ``ping_from`` attr first) with a tag, To the URI, a unique
        Call-ID, CSeq, Max-Forwards 70, Content-Length 0 (the core adds the Via)."""
        dconf = self.dconf
        method = dconf.ping_method
        ping_from = dest.attrs.ping_from or dconf.ping_from
        keeps = self.keeps_call_id
        while True:
            self._counter += 1
            serial = f"{self._prefix}{self._counter:x}"
            call_id = f"ds-{serial}@sipdispatch"
            if keeps is None or keeps(call_id):
                break
        return Request(
            method,
            dest.uri,
            [
                ("from", "From", f"<{ping_from}>;tag=ds{serial}"),
                ("to", "To", f"<{dest.uri}>"),
                ("call-id", "Call-ID", call_id),
                ("cseq", "CSeq", f"{PING_CSEQ} {method}"),
                ("max-forwards", "Max-Forwards", str(DEFAULT_MAX_FORWARDS)),
                ("content-length", "Content-Length", "0"),
            ],
        )

    def ping(self, dest: Destination, now: float) -> bool:
        """Send one ping to ``dest`` (if it is still live and the mode pings it).

        Returns True when a ping was sent. The result comes back through the
        core (``fr_timer`` bounds it) and is applied by :meth:`on_result`.
        """
        live = self.current(dest)
        if live is None or not self.policy.should_ping(live.state) or live.unresolved:
            # An unresolved host is retried by the dispatcher service, not pinged.
            self.stats["pings_skipped"] += 1
            return False
        located = live.located
        if located is not None and not located.single and self.outbound(live) is None:
            return self._ping_addresses(live, now)
        self._send(live, now, "", None)
        return True

    def outbound(self, dest: Destination) -> Addr | None:
        """Where ``dest``'s pings go when not to ``dest`` itself: its ``obproxy`` attr,
        else ``outbound_proxy`` (Kamailio's ``ds_outbound_proxy``: for pings only);
        None = to the destination."""
        text = dest.attrs.get("obproxy") or self.dconf.outbound_proxy
        if not text:
            return None
        addr = self._outbound.get(text)
        if addr is None:
            try:
                uri = parse_uri(text)
            except ParseError:
                if text not in self._outbound_bad:
                    self._outbound_bad.add(text)
                    log.warning("set %d %s: obproxy %r is not a SIP URI; pinging the "
                                "destination itself", dest.setid, dest.uri, text)  # fmt: skip
                return None
            addr = Addr(uri.transport, uri.host, uri.effective_port)
            self._outbound[text] = addr
        return addr

    def probe(self, dest: Destination, now: float, who: str, done: ProbeDone) -> bool:
        """Ping ``dest`` at once, whatever the probing mode and ``ping_active`` say (an
        operator asked: ``dispatcher.ping``, the console's *Probe* button), and call
        ``done(status, response, milliseconds, change)`` when it finishes (within
        ``fr_timer``). The result counts as any ping's: latency statistics, then the
        state machine; a change of state names ``who`` in its reason. A disabled
        destination is pinged too but keeps its state. False (nothing sent) when
        ``dest`` is no longer in the running list or its host has not resolved."""
        live = self.current(dest)
        if live is None or live.unresolved:
            return False
        self._send(live, now, who, done)
        self._flush_out()
        return True

    def timers(self) -> Timers | None:
        """The pings' timers: the core's with ``ping_fr_timer`` as their ``fr_timer``;
        None (the core's own) when it is 0."""
        ms = self.dconf.ping_fr_timer
        if ms <= 0:
            return None
        base = self.core.timers
        kept = self._ping_timers
        if kept is None or kept[0] is not base or kept[1] != ms:
            kept = (base, ms, replace(base, fr_timer=ms / 1000))
            self._ping_timers = kept
        return kept[2]

    def _send(self, live: Destination, now: float, who: str, notify: ProbeDone | None) -> None:
        to = self.outbound(live)
        if to is None:
            if live.addr is not None and live.transport != "tls":
                host, port = live.addr
            else:  # the shell resolves; for TLS it checks the certificate against the name
                host, port = live.host, live.port
            to = Addr(live.transport, host, port)
        request = self.build_request(live)

        def done(status: int, response: Response | None, at: float) -> None:
            change = self.on_result(live, now, status, response, at, who=who)
            if notify is not None:
                notify(status, response, latency_ms(now, at), change)

        self.core.originate(request, to, done, now, self.timers())
        self.stats["pings_sent"] += 1

    def _ping_addresses(self, dest: Destination, now: float) -> bool:
        """Ping every address of a destination located by DNS. Each result marks its
        address up or down (a request tries the addresses found down last); once all
        are in, the destination's own result is the best of them: it is alive while
        one address answers."""
        located = dest.located
        assert located is not None
        addresses = located.addresses
        left = len(addresses)
        best: tuple[int, Response | None, float, bool] | None = None
        alive_codes = (self.dconf.ping_reply_codes, self.dconf.ping_reply_classes)

        def done_one(
            addr: tuple[str, int], status: int, response: Response | None, at: float
        ) -> None:
            nonlocal left, best
            alive = is_ping_reply_alive(status, *alive_codes)
            if located.set_down(addr, not alive):
                log.info("set %d %s: address %s:%d %s", dest.setid, dest.uri, addr[0],
                         addr[1], "answers" if alive else f"is down ({status})")  # fmt: skip
            if best is None or (alive and not best[3]):
                best = (status, response, at, alive)
            left -= 1
            if left == 0:
                self.on_result(dest, now, best[0], best[1], best[2])

        for address in addresses:
            addr = address.addr
            self.core.originate(
                self.build_request(dest),
                Addr(address.transport, addr[0], addr[1]),
                functools.partial(done_one, addr),
                now,
                self.timers(),
            )
            self.stats["pings_sent"] += 1
        return True

    def on_result(
        self,
        dest: Destination,
        sent_at: float,
        status: int,
        response: Response | None,
        now: float,
        *,
        who: str = "",
    ) -> StateChange | None:
        """A ping to ``dest`` sent at ``sent_at`` finished with ``status`` (408 and no
        response when nothing answered in time). Kamailio's ``ds_options_callback``:
        latency statistics first, then the state machine. Returns the change, if any;
        ``who`` (an operator's probe) is named in its reason."""
        if self._stopped:
            return None
        if response is None:
            self.stats["ping_timeouts"] += 1
        else:
            self.stats["ping_answers"] += 1
        live = self.current(dest)
        if live is None:
            self.stats["ping_results_orphaned"] += 1
            return None
        dconf = self.dconf
        if dconf.ping_latency_stats:
            sample = latency_ms(sent_at, now)
            self.router.sets.record_ping(live, status, sample, self.alpha)
            if self.on_sample is not None:
                self.on_sample(live, status, sample)
        alive = is_ping_reply_alive(status, dconf.ping_reply_codes, dconf.ping_reply_classes)
        self.stats["ping_alive" if alive else "ping_failed"] += 1
        transition = self.policy.after_ping(live.state, live.probing_count, alive)
        if transition is None:
            return None
        reason = self._reason(live, transition, status, response, alive)
        if who:
            reason += f"; dispatcher.ping by {who}"
        return self.apply(live, transition, reason, now, code=status)

    def _reason(
        self,
        dest: Destination,
        transition: Transition,
        status: int,
        response: Response | None,
        alive: bool,
    ) -> str:
        method = self.dconf.ping_method
        if response is None:
            why = f"no reply to {method} ({status})"
        else:
            why = f"{method} answered {status}"
            if alive and not 200 <= status <= 299:
                why += ", alive by ping_reply_codes"
        policy = self.policy
        new = transition.state
        if not alive and new & DS_TRYING_DST:
            why += f", {transition.probing_count}/{policy.probing_threshold} missed"
        elif not alive and new & DS_INACTIVE_DST and not dest.state & DS_INACTIVE_DST:
            why += f", {policy.probing_threshold} missed in a row"
        elif alive and new & DS_INACTIVE_DST:
            why += f", {transition.probing_count}/{policy.inactive_threshold} answered"
        elif alive and dest.state & DS_INACTIVE_DST:
            why += f", {policy.inactive_threshold} answered in a row"
        return why

    # -- applying and recording ------------------------------------------------------

    def apply(
        self,
        dest: Destination,
        transition: Transition,
        reason: str,
        now: float,
        *,
        code: int | None = None,
    ) -> StateChange | None:
        """Give ``dest`` (a live destination) the transition's state and counter.

        The state goes through :meth:`DispatcherSets.set_state` (rweight tables
        follow). A change of state is recorded in the state log and returned.
        """
        old = dest.state
        self.router.sets.set_state(dest, transition.state)
        dest.probing_count = transition.probing_count
        if dest.state == old:
            return None
        change = StateChange(dest.setid, dest.uri, old, dest.state, reason, now, code)
        self.state_log.record(change)
        return change
