"""Round-robin: 4, 64 (with overload control), 14 (Kamailio: round-robin or serial,
decided per set at load) and 114 (sipdispatch: round-robin within the best priority,
serial across priorities)."""

from __future__ import annotations

from typing import Final

from sipdispatch.dispatcher.algorithms.base import (
    EMPTY_SELECTION,
    Algorithm,
    SelectContext,
    Selection,
    SelectOptions,
    failover_list,
    finish,
    next_round_robin,
    register,
)
from sipdispatch.dispatcher.algorithms.serial import Serial
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.sets import DestinationSet
from sipdispatch.dispatcher.states import DS_SKIP_MASK


class RoundRobin(Algorithm):
    """4: next destination after the last one used (Kamailio ``last``)."""

    number = 4
    name = "round-robin"
    aliases = ("rr",)

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        return finish(dset, next_round_robin(dset), opts, update_last=True)


class RoundRobinOverload(Algorithm):
    """64: round-robin (4) that leaves a destination under overload control out of the
    share of choices its control says (RFC 7339; Kamailio's "round-robin with overload
    control"). The rest of the failover list is as 4's."""

    number = 64
    name = "round-robin-overload"
    aliases = ("rr-oc",)

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        dests = dset.dests
        n = len(dests)
        now = ctx.now
        mod = n - 1 if opts.use_default and n != 1 else n
        i = next_round_robin(dset) % mod
        start = i
        while _left_out(dests[i], now):
            i = (i + 1) % mod
            if i == start:
                if not opts.use_default:
                    return EMPTY_SELECTION
                i = n - 1
                if _left_out(dests[i], now):
                    return EMPTY_SELECTION
                break
        dset.last = (i + 1) % n
        return Selection(failover_list(dset, i, opts))


def _left_out(dest: Destination, now: float) -> bool:
    if dest.state & DS_SKIP_MASK:
        return True
    oc = dest.oc
    return oc is not None and oc.skip(now)


class RoundRobinOrSerial(Algorithm):
    """14: round-robin (4) when every destination of the set has the same priority
    and it is above 0, otherwise serial (8). Decided when the set is loaded
    (``DestinationSet.rrserial``); each call is then exactly 4's or 8's."""

    number = 14
    name = "round-robin-or-serial"
    aliases = ("rr-or-serial",)

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        if dset.rrserial:
            return _ROUND_ROBIN.select(dset, ctx, opts)
        return _SERIAL.select(dset, ctx, opts)


class RoundRobinTiers(Algorithm):
    """114 (sipdispatch's own): round-robin among the usable destinations of the
    highest priority that has any; lower priorities are the failover, in set order.
    All equal priorities: plain round-robin. All different: serial (8). It was
    number 14 before Kamailio gave 14 a meaning.
    """

    number = 114
    name = "round-robin-tiers"
    aliases = ("round-robin-serial", "rr-serial")
    kamailio = False

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        dests = dset.dests
        n = len(dests)
        default = n - 1 if opts.use_default and n > 1 else -1
        limit = opts.limit
        out: list[Destination] = []
        chosen_tier = False
        for start, end in dset.tiers:
            if end - 1 == default:
                end -= 1
            size = end - start
            if size <= 0:
                continue
            if not chosen_tier:
                pos = dset.rr_tiers.get(start, 0) % size
                picked = -1
                for step in range(size):
                    j = start + (pos + step) % size
                    if not dests[j].state & DS_SKIP_MASK:
                        picked = j - start
                        break
                if picked < 0:
                    continue
                chosen_tier = True
                dset.rr_tiers[start] = (picked + 1) % size
                order = [start + (picked + step) % size for step in range(size)]
            else:
                order = list(range(start, end))
            for j in order:
                if len(out) >= limit:
                    break
                if not dests[j].state & DS_SKIP_MASK:
                    out.append(dests[j])
        if default >= 0:
            if not out:
                if dests[default].state & DS_SKIP_MASK:
                    return EMPTY_SELECTION
                return Selection((dests[default],))
            if len(out) < limit:
                out.append(dests[default])
        if not out:
            return EMPTY_SELECTION
        return Selection(tuple(out))


_ROUND_ROBIN: Final = RoundRobin()
_SERIAL: Final = Serial()

register(RoundRobin)
register(RoundRobinOverload)
register(RoundRobinOrSerial)
register(RoundRobinTiers)
