"""13: latency optimised dispatching (Kamailio ``ds_manage_route_algo13``)."""

from __future__ import annotations

from sipdispatch.dispatcher.algorithms.base import (
    EMPTY_SELECTION,
    Algorithm,
    SelectContext,
    Selection,
    SelectOptions,
    register,
)
from sipdispatch.dispatcher.congestion import latency_priority
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.sets import DestinationSet
from sipdispatch.dispatcher.states import DS_SKIP_MASK


class LatencyOptimized(Algorithm):
    """13: priority lowered by latency, round-robin among equals.

    Each usable destination gets a run-time priority: its priority minus
    ``latency // priority`` when its latency (EST, or EST-AVG with ``cc=1``)
    exceeds a positive priority, never below 1. Destinations are visited starting
    at the round-robin position and stably ordered by that priority, highest
    first: the first is used, the rest are the failover list; the round-robin
    position moves after the one used. Nothing usable: nothing (Kamailio -1).

    This is the one algorithm that orders per call (the order depends on live
    latency and the rotation); sets are small and ``sorted`` is stable, which is
    exactly Kamailio's bubble sort result.
    """

    number = 13
    name = "latency"
    aliases = ("latency-optimized",)

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        dests = dset.dests
        n = len(dests)
        use_default = opts.use_default and n != 1
        mod = n - 1 if use_default else n
        default = n - 1 if use_default else -1
        z = dset.last
        ranked: list[tuple[int, int]] = []  # (rpriority, index); unusable get (-1, -1)
        seen: set[int] = set()
        for _ in range(n):
            dest = dests[z]
            if dest.state & DS_SKIP_MASK or z == default or z in seen:
                # Kamailio's rotation can visit the default and, with use_default,
                # one index twice; we rank neither (see docs/dispatcher.md).
                ranked.append((-1, -1))
            else:
                seen.add(z)
                dest.rpriority = latency_priority(dest)
                ranked.append((dest.rpriority, z))
            z = (z + 1) % mod
        ranked.sort(key=lambda item: item[0], reverse=True)
        selected = ranked[0][1]
        dset.last = (selected + 1) % n
        if selected < 0:
            if default >= 0 and not dests[default].state & DS_SKIP_MASK:
                return Selection((dests[default],))  # the common use_default rule
            return EMPTY_SELECTION
        limit = opts.limit
        out: list[Destination] = []
        for _, index in ranked:
            if len(out) >= limit:
                break
            if index < 0 or index == default:
                continue
            out.append(dests[index])
        if default >= 0 and selected != default and len(out) < limit:
            out.append(dests[default])
        return Selection(tuple(out))


register(LatencyOptimized)
