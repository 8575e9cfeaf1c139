"""10: call load distribution (``duid``, ``maxload``)."""

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


def least_loaded(dset: DestinationSet) -> int:
    """Kamailio ``ds_get_leastloaded``: index of the usable destination with the
    fewest calls among those below their ``maxload`` (0 = no limit); the first in
    set order wins a tie; -1 when every one is unusable or full."""
    best = -1
    best_load = 0x7FFFFFFF
    for j, d in enumerate(dset.dests):
        if d.state & DS_SKIP_MASK:
            continue
        maxload = d.attrs.maxload
        if maxload and d.dlg_load >= maxload:
            continue
        if d.dlg_load < best_load:
            best = j
            best_load = d.dlg_load
    return best


class CallLoad(Algorithm):
    """10: least loaded destination; nothing when all are at ``maxload``.

    Selecting does not count the call: the SIP layer calls
    :meth:`CallLoadTable.on_invite_sent` for the destination it actually sends
    the INVITE to. Requests other than INVITE get the first usable destination
    without load accounting, as in Kamailio.
    """

    number = 10
    name = "call-load"
    aliases = ("load",)

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        if ctx.method != "INVITE":
            return finish(dset, 0, opts)
        index = least_loaded(dset)
        if index < 0:
            return EMPTY_SELECTION
        return finish(dset, index, opts, maxload_filter=True)


register(CallLoad)
