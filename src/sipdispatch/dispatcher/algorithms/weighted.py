"""Weights: 9 weight, 11 relative weight, 15 priority then weight (Kamailio), and 115
SRV-like priority then weighted order (sipdispatch)."""

from __future__ import annotations

from sipdispatch.dispatcher.algorithms.base import (
    EMPTY_SELECTION,
    Algorithm,
    SelectContext,
    Selection,
    SelectOptions,
    finish,
    register,
)
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.sets import TABLE_SIZE, DestinationSet
from sipdispatch.dispatcher.states import DS_SKIP_MASK


class Weight(Algorithm):
    """9: the next slot of the set's shuffled 100-slot weight table.

    The table is built once per load from ``weight`` (percent); it is not rebuilt
    when a destination goes down: its slots fall through to the next usable
    destination in set order.
    """

    number = 9
    name = "weight"

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        number = dset.wlist[dset.wlast]
        dset.wlast = (dset.wlast + 1) % TABLE_SIZE
        return finish(dset, number, opts)


class RelativeWeight(Algorithm):
    """11: the next slot of the set's relative-weight table.

    The table shares 100 slots among the *usable* destinations by ``rweight``
    (probability rweight / sum of usable rweights) and is rebuilt when one changes
    usability or when congestion control (``cc=1``) changes an rweight.
    """

    number = 11
    name = "relative-weight"
    aliases = ("rweight",)

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        number = dset.rwlist[dset.rwlast]
        dset.rwlast = (dset.rwlast + 1) % TABLE_SIZE
        return finish(dset, number, opts)


class PriorityWeight(Algorithm):
    """15: the next slot of the set's priority-weight table.

    The table shares 100 slots among the usable destinations of the best priority,
    the *lowest* value (SRV convention), by ``weight`` (equally when none has one);
    it is rebuilt when a destination changes usability and with ``rwlist``. A slot
    whose destination is down falls through to the next usable one in set order.
    """

    number = 15
    name = "priority-weight"

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        number = dset.pwlist[dset.pwlast]
        dset.pwlast = (dset.pwlast + 1) % TABLE_SIZE
        return finish(dset, number, opts)


class SrvOrder(Algorithm):
    """115 (sipdispatch's own): SRV-like (RFC 2782 §"Usage rules"); it was number 15
    before Kamailio gave 15 a meaning.

    Destinations are tried by priority, highest first (Kamailio's order); within
    one priority they are ordered by a weighted random draw on ``weight``: those
    of weight 0 first, a number drawn uniformly in 0..sum, the first whose running
    sum reaches it taken, repeated on the rest. The failover list is that order
    across all priorities.
    """

    number = 115
    name = "srv"
    aliases = ("srv-random",)
    kamailio = False

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        dests = dset.dests
        n = len(dests)
        default = n - 1 if opts.use_default and n > 1 else -1
        limit = opts.limit
        rng = opts.rng
        out: list[Destination] = []
        for order in dset.srv_tiers:
            if len(out) >= limit:
                break
            # Weight-0 entries first (RFC 2782), precomputed per tier at load.
            members = [
                dests[j] for j in order if j != default and not dests[j].state & DS_SKIP_MASK
            ]
            while members and len(out) < limit:
                total = sum(d.attrs.weight for d in members)
                draw = rng.randint(0, total)
                running = 0
                for k, d in enumerate(members):
                    running += d.attrs.weight
                    if running >= draw:
                        out.append(members.pop(k))
                        break
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


register(Weight)
register(RelativeWeight)
register(PriorityWeight)
register(SrvOrder)
