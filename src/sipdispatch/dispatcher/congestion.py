"""What ping latency does to destinations: congestion control and algorithm 13.

A finished ping's latency goes into the destination's statistics
(:class:`~sipdispatch.dispatcher.latency.LatencyStats`); with ``cc=1`` it also moves
the destination's run-time weight (algorithm 11), and algorithm 13 ranks usable
destinations by it.

Reference: Kamailio ``src/modules/dispatcher/dispatch.c`` functions
``ds_update_latency``, ``ds_update_weighted_congestion_control`` and
``ds_manage_route_algo13``. The formulas are re-written here, not copied.
"""

from __future__ import annotations

from collections.abc import Sequence

from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.latency import TIMEOUT_CODE, LatencyStats
from sipdispatch.dispatcher.states import DS_PROBING_DST


def _c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _weighted_active(weight: int, stats: LatencyStats, acc: list[int]) -> int:
    """``ds_update_weighted_congestion_control``: weight minus congestion ms.

    ``acc`` is ``[congested_count, normal_count, total_congestion_ms]``.
    """
    if weight <= 0:
        return 0
    congestion = max(stats.congestion_ms, 0)
    acc[2] += congestion
    active = max(weight - congestion, 0)
    if active == 0:
        acc[0] += 1
    else:
        acc[1] += 1
    return active


def record_ping(
    dests: Sequence[Destination],
    pinged: Destination,
    code: int,
    latency_ms: int | None,
    alpha: float,
) -> bool:
    """Feed one finished ping of ``pinged`` (a member of ``dests``) into the stats.

    Mirrors Kamailio's ``ds_update_latency``, called before the state update:

    * only a destination with the probing bit set is measured;
    * a 408 (timeout) counts in ``timeout`` and adds no sample;
    * ``latency_ms=None`` means no start time was recorded: no sample;
    * with ``cc=1`` and a ``weight``, the runtime ``rweight`` becomes
      ``weight - congestion_ms`` (not below 0), congestion being ``EST - AVG``;
    * when every destination of the set has ``cc=1`` and more than one is fully
      congested while none is normal, rweights become
      ``(total_congestion_ms << 4) / congestion_ms`` of each.

    Returns True when rweights changed and congestion control is on for the whole
    set: the caller must rebuild the set's rweight table
    (:meth:`DispatcherSets.rebuild_rweights`).
    """
    acc = [0, 0, 0]
    enabled = True
    apply = False
    for dest in dests:
        attrs = dest.attrs
        if dest is pinged:
            if not dest.state & DS_PROBING_DST:  # Kamailio skips the rest of the loop body
                continue
            stats = dest.latency
            if code == TIMEOUT_CODE:
                stats.add_timeout()
            if latency_ms is None:
                continue
            if code != TIMEOUT_CODE:
                stats.add_sample(latency_ms, alpha)
            if attrs.cc and attrs.weight > 0:
                active = _weighted_active(attrs.weight, stats, acc)
                if dest.rweight != active:
                    apply = True
                    dest.rweight = active
        elif attrs.cc and attrs.weight > 0:
            _weighted_active(attrs.weight, dest.latency, acc)
        if not attrs.cc:
            enabled = False
    if enabled and acc[0] > 1 and acc[1] == 0:
        total = acc[2]
        for dest in dests:
            congestion = dest.latency.congestion_ms
            active = _c_div(total << 4, congestion or 1)
            if dest.rweight != active:
                apply = True
                dest.rweight = active
    return enabled and apply


def latency_priority(dest: Destination) -> int:
    """Algorithm 13's run-time priority of a usable destination.

    Kamailio ``ds_manage_route_algo13``: the latency (EST, or EST-AVG with
    ``cc=1``, truncated to int) handicaps the priority by ``latency // priority``
    when it exceeds a positive priority; a positive priority never drops below 1.
    """
    priority = dest.priority
    stats = dest.latency
    latency = stats.congestion_ms if dest.attrs.cc else int(stats.estimate)
    handicap = 0
    if latency > priority > 0:
        handicap = _c_div(latency, priority)
    rpriority = priority - handicap
    if rpriority < 1 and priority > 0:
        rpriority = 1
    return rpriority
