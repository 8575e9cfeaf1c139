"""8: priority order (serial forking) and 12: parallel forking."""

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
from sipdispatch.dispatcher.sets import DestinationSet
from sipdispatch.dispatcher.states import DS_SKIP_MASK


class Serial(Algorithm):
    """8: always the first usable destination in set order (highest priority);
    the failover list walks the rest in order."""

    number = 8
    name = "priority"
    aliases = ("serial",)

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        return finish(dset, 0, opts)


class Parallel(Algorithm):
    """12: fork to every usable destination of the set at once.

    Kamailio sets the first usable destination and adds every destination after
    it as a branch *without* checking their state; we fork to usable ones only
    (see docs/dispatcher.md). ``limit`` does not apply, as in Kamailio.
    """

    number = 12
    name = "parallel"

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        targets = tuple(d for d in dset.dests if not d.state & DS_SKIP_MASK)
        if not targets:
            return EMPTY_SELECTION
        return Selection(targets, parallel=True)


register(Serial)
register(Parallel)
