"""Destination sets, ordered and indexed as Kamailio's dispatcher does.

Order inside a set (Kamailio ``add_dest2list`` + ``reindex_dests``): priority
descending; destinations of equal priority end up in *reverse* load order (the
last line of the file first). Kamailio keeps a linked list ascending by
priority, inserting each new destination after those of lower or equal
priority, then copies it backwards into an array.

Per set we also build Kamailio's 100-slot tables: ``wlist`` for algorithm 9
(``dp_init_weights``), ``rwlist`` for algorithm 11 (``dp_init_relative_weights``)
and ``pwlist`` for algorithm 15 (``dp_init_priority_weights``), each filled then
shuffled. Kamailio shuffles with its own ``rand()``; we use the injected
:class:`random.Random`, so a seeded one gives reproducible tables.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from sipdispatch.dispatcher.congestion import record_ping
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.states import DS_SKIP_MASK, DS_STATES_ALL

TABLE_SIZE: Final = 100
"""Slots of Kamailio's ``wlist``/``rwlist``/``pwlist`` (weights are percentages)."""


def shuffle_table(table: list[int], rng: random.Random) -> None:
    """Kamailio's ``shuffle_uint100array`` (Fisher-Yates from the front)."""
    n = len(table)
    for j in range(n):
        k = j + rng.randrange(n - j)
        table[j], table[k] = table[k], table[j]


def weight_table(dests: Sequence[Destination], rng: random.Random) -> list[int]:
    """Algorithm 9's 100 slots of destination indexes (``dp_init_weights``).

    Only built when the first destination has a weight; otherwise all zeros (as
    Kamailio's zeroed array: every call hashes to index 0). Each destination gets
    ``weight`` slots in order until 100 are filled; if the weights sum to less
    than 100 the last destination of the set fills the rest.
    """
    table = [0] * TABLE_SIZE
    if not dests or dests[0].attrs.weight == 0:
        return table
    t = 0
    for index, dest in enumerate(dests):
        for _ in range(dest.attrs.weight):
            if t >= TABLE_SIZE:
                break
            table[t] = index
            t += 1
    while t < TABLE_SIZE:
        table[t] = len(dests) - 1
        t += 1
    shuffle_table(table, rng)
    return table


def rweight_table(
    dests: Sequence[Destination], rng: random.Random, previous: list[int] | None = None
) -> list[int]:
    """Algorithm 11's 100 slots (``dp_init_relative_weights``).

    Uses the run-time ``rweight`` of usable destinations only: each gets
    ``rweight * 100 // sum`` slots; the rest go to the last index written (or the
    last destination when none was). Kamailio leaves the table as it was when the
    set has fewer than two destinations or the usable rweights sum to 0: we
    return ``previous`` (or zeros) then.
    """
    keep = list(previous) if previous is not None else [0] * TABLE_SIZE
    if len(dests) < 2:
        return keep
    total = sum(d.rweight for d in dests if not d.state & DS_SKIP_MASK)
    if total == 0:
        return keep
    table = [0] * TABLE_SIZE
    t = 0
    for index, dest in enumerate(dests):
        if dest.state & DS_SKIP_MASK:
            continue
        for _ in range(dest.rweight * 100 // total):
            if t >= TABLE_SIZE:  # negative/odd rweights from congestion control
                break
            table[t] = index
            t += 1
    fill = table[t - 1] if t > 0 else len(dests) - 1
    while t < TABLE_SIZE:
        table[t] = fill
        t += 1
    shuffle_table(table, rng)
    return table


def priority_weight_table(dests: Sequence[Destination], rng: random.Random) -> list[int]:
    """Algorithm 15's 100 slots (Kamailio's ``dp_init_priority_weights``).

    Only usable destinations count. The best priority is the *lowest* value among
    them (the SRV convention, the opposite of the set order); the destinations at
    that priority share the slots by ``weight``: each gets ``weight * 100 // sum``
    slots in set order and the slots left over go to the index written last (index 0
    when none was). When their weights sum to 0 they share equally: ``100 // count``
    each, the last one what is left. Nothing usable: every slot is index 0.
    """
    table = [0] * TABLE_SIZE
    usable = [index for index, dest in enumerate(dests) if not dest.state & DS_SKIP_MASK]
    if not usable:
        return table
    best = min(dests[index].priority for index in usable)
    members = [index for index in usable if dests[index].priority == best]
    total = sum(dests[index].attrs.weight for index in members)
    count = len(members)
    t = 0
    for k, index in enumerate(members):
        if total == 0:
            slots = TABLE_SIZE - t if k == count - 1 else TABLE_SIZE // count
        else:
            slots = dests[index].attrs.weight * TABLE_SIZE // total
        for _ in range(min(slots, TABLE_SIZE - t)):
            table[t] = index
            t += 1
    fill = table[t - 1] if t > 0 else 0
    while t < TABLE_SIZE:
        table[t] = fill
        t += 1
    if count > 1:  # one destination's table is the same shuffled: keep the rng's draws
        shuffle_table(table, rng)
    return table


def same_positive_priority(dests: Sequence[Destination]) -> int:
    """Algorithm 14's choice, made at load (Kamailio's ``rrserial``): the priority every
    destination of the set has when they all have the same one and it is above 0,
    else 0 (then 14 is serial, algorithm 8)."""
    if not dests:
        return 0
    first = dests[0].priority
    if first <= 0 or any(d.priority != first for d in dests):
        return 0
    return first


def kamailio_order(dests: Iterable[Destination]) -> list[Destination]:
    """Order destinations of one set as Kamailio does: priority descending, ties
    in reverse load order."""
    loaded = list(dests)
    loaded.reverse()
    loaded.sort(key=lambda d: d.priority, reverse=True)  # stable: keeps the reversal for ties
    return loaded


class DestinationSet:
    """One set (group): destinations in Kamailio order plus selection state."""

    __slots__ = (
        "by_key",
        "by_uri",
        "dests",
        "last",
        "pwlast",
        "pwlist",
        "rr_tiers",
        "rrserial",
        "rwlast",
        "rwlist",
        "setid",
        "srv_tiers",
        "tiers",
        "wlast",
        "wlist",
    )

    def __init__(self, setid: int, dests: Sequence[Destination], rng: random.Random) -> None:
        self.setid = setid
        self.dests: tuple[Destination, ...] = tuple(dests)
        """Destinations in Kamailio order (index = Kamailio's ``dlist`` index)."""
        self.last = 0
        """Round-robin position (Kamailio ``last``)."""
        self.wlast = 0
        """Next slot of ``wlist`` (Kamailio ``wlast``)."""
        self.rwlast = 0
        """Next slot of ``rwlist`` (Kamailio ``rwlast``)."""
        self.pwlast = 0
        """Next slot of ``pwlist`` (Kamailio ``pwlast``)."""
        self.wlist = weight_table(self.dests, rng)
        self.rwlist = rweight_table(self.dests, rng)
        self.pwlist = priority_weight_table(self.dests, rng)
        """Algorithm 15's table, rebuilt with ``rwlist`` and when a destination's
        usability changes."""
        self.rrserial = same_positive_priority(self.dests)
        """Algorithm 14: the set's common priority (> 0: round-robin), or 0 (serial)."""
        self.by_uri: dict[str, Destination] = {}
        self.by_key: dict[str, Destination] = {}
        for dest in self.dests:
            # First in order wins, as Kamailio's linear searches.
            self.by_uri.setdefault(dest.uri.lower(), dest)
            self.by_key.setdefault(dest.key.lower(), dest)
        tiers: list[tuple[int, int]] = []
        start = 0
        for i in range(1, len(self.dests) + 1):
            if i == len(self.dests) or self.dests[i].priority != self.dests[start].priority:
                tiers.append((start, i))
                start = i
        self.tiers: tuple[tuple[int, int], ...] = tuple(tiers)
        """``(start, end)`` index ranges of equal priority, highest first."""
        self.srv_tiers: tuple[tuple[int, ...], ...] = tuple(
            tuple(sorted(range(a, b), key=lambda j: self.dests[j].attrs.weight != 0))
            for a, b in tiers
        )
        """Per tier, indexes with weight-0 ones first (RFC 2782 order, algorithm 115)."""
        self.rr_tiers: dict[int, int] = {}
        """Per-tier round-robin position for algorithm 114 (keyed by tier start)."""

    def __len__(self) -> int:
        return len(self.dests)

    def __iter__(self) -> Iterator[Destination]:
        return iter(self.dests)

    def find(self, uri: str) -> Destination | None:
        """The first destination whose URI equals ``uri`` (case-insensitive, as Kamailio)."""
        return self.by_uri.get(uri.lower())

    def find_key(self, key: str) -> Destination | None:
        """The first destination whose call-load key (duid, else URI) is ``key``."""
        return self.by_key.get(key.lower())

    def find_duid(self, duid: str) -> list[Destination]:
        """Destinations with this ``duid`` (case-insensitive)."""
        low = duid.lower()
        return [d for d in self.dests if d.attrs.duid is not None and d.attrs.duid.lower() == low]

    def rebuild_rweights(self, rng: random.Random) -> None:
        """Rebuild ``rwlist`` and ``pwlist`` after a usability or rweight change
        (Kamailio rebuilds both on state changes of destinations with an rweight and
        after congestion control changes)."""
        self.rwlist = rweight_table(self.dests, rng, self.rwlist)
        self.pwlist = priority_weight_table(self.dests, rng)

    def rebuild_priority_weights(self, rng: random.Random) -> None:
        """Rebuild ``pwlist`` alone (a destination without rweight changed usability)."""
        self.pwlist = priority_weight_table(self.dests, rng)


class DispatcherSets:
    """All sets, keyed by set id. Built once per (re)load; selection mutates only
    the per-set counters and the destinations' run-time fields."""

    __slots__ = ("_sets", "rng")

    def __init__(self, dests: Iterable[Destination], rng: random.Random) -> None:
        """Group ``dests`` (in load order: file lines / table rows) into sets."""
        self.rng = rng
        grouped: dict[int, list[Destination]] = {}
        for dest in dests:
            grouped.setdefault(dest.setid, []).append(dest)
        self._sets: dict[int, DestinationSet] = {
            setid: DestinationSet(setid, kamailio_order(members), rng)
            for setid, members in sorted(grouped.items())
        }

    def get(self, setid: int) -> DestinationSet | None:
        """The set, or None when there is no such set."""
        return self._sets.get(setid)

    def __contains__(self, setid: object) -> bool:
        return setid in self._sets

    def __len__(self) -> int:
        return len(self._sets)

    def __iter__(self) -> Iterator[DestinationSet]:
        """Sets in ascending id (Kamailio walks its AVL tree in order)."""
        return iter(self._sets.values())

    @property
    def setids(self) -> tuple[int, ...]:
        """Set ids, ascending."""
        return tuple(self._sets)

    def destinations(self) -> list[Destination]:
        """Every destination: sets ascending, each in Kamailio order."""
        return [d for s in self._sets.values() for d in s.dests]

    def find(self, setid: int, uri: str) -> Destination | None:
        """Destination of ``setid`` with this URI (case-insensitive), or None."""
        dset = self._sets.get(setid)
        return dset.find(uri) if dset is not None else None

    def set_state(self, dest: Destination, state: int) -> int:
        """Replace ``dest``'s state bits (Kamailio ``ds_reinit_state``); returns the old.

        When the destination's usability changed: rebuilds the set's rweight table
        if it has an rweight, as Kamailio does, and the priority-weight table
        (algorithm 15) in any case (Kamailio only with an rweight). Every state
        change should come through here (or call :meth:`state_changed`).
        """
        old = dest.state
        dest.state = (old & ~DS_STATES_ALL) | (state & DS_STATES_ALL)
        self.state_changed(dest, old)
        return old

    def state_changed(self, dest: Destination, old_state: int) -> None:
        """Tell the sets that ``dest.state`` was changed from ``old_state``."""
        if bool(old_state & DS_SKIP_MASK) == bool(dest.state & DS_SKIP_MASK):
            return
        dset = self._sets.get(dest.setid)
        if dset is None:
            return
        if dest.rweight > 0:
            dset.rebuild_rweights(self.rng)
        else:
            dset.rebuild_priority_weights(self.rng)

    def rebuild_rweights(self, setid: int) -> None:
        """Rebuild one set's rweight and priority-weight tables."""
        dset = self._sets.get(setid)
        if dset is not None:
            dset.rebuild_rweights(self.rng)

    def record_ping(
        self, dest: Destination, code: int, latency_ms: int | None, alpha: float
    ) -> None:
        """Feed a finished ping into the latency stats and congestion control
        (:func:`sipdispatch.dispatcher.congestion.record_ping`), rebuilding the rweight
        table when congestion control changed the rweights."""
        dset = self._sets.get(dest.setid)
        if dset is None:
            return
        if record_ping(dset.dests, dest, code, latency_ms, alpha):
            dset.rebuild_rweights(self.rng)

    def added(self, dest: Destination) -> DispatcherSets:
        """New sets with ``dest`` added, as Kamailio's ``dispatcher.add`` rebuilds them.

        Kamailio re-adds the current destinations in their current order, then the
        new one, and re-sorts: ties of equal priority therefore flip order on every
        add, and the new destination comes first among its ties. Run-time state of
        the existing destinations is kept (same objects).
        """
        return DispatcherSets([*self.destinations(), dest], self.rng)

    def removed(self, setid: int, uri: str) -> DispatcherSets:
        """New sets without the destinations of ``setid`` whose URI is ``uri``
        (exact match, as Kamailio's ``dispatcher.remove``)."""
        keep = [d for d in self.destinations() if not (d.setid == setid and d.uri == uri)]
        return DispatcherSets(keep, self.rng)


def _same_config(a: Destination, b: Destination) -> bool:
    return (
        a.setid == b.setid
        and a.uri == b.uri
        and a.flags == b.flags
        and a.priority == b.priority
        and a.attrs.body == b.attrs.body
    )


def carry_runtime_state(old: DispatcherSets, new: DispatcherSets) -> int:
    """Copy run-time state from ``old`` to unchanged destinations of ``new``.

    sipdispatch's ``keep_state_on_reload`` (Kamailio resets state on reload and
    only optionally keeps latency stats): a destination with the same set, URI,
    flags, priority and attrs keeps its state bits, probing count, latency stats,
    call load and run-time rweight. Rebuilds the rweight and priority-weight tables.
    Returns how many destinations were carried over.
    """
    carried = 0
    for dset in new:
        for dest in dset.dests:
            prev = old.find(dset.setid, dest.uri)
            if prev is None or not _same_config(prev, dest):
                continue
            dest.state = prev.state
            dest.probing_count = prev.probing_count
            dest.latency = prev.latency
            dest.dlg_load = prev.dlg_load
            dest.dispatched = prev.dispatched
            dest.calls_answered = prev.calls_answered
            dest.calls_timeout = prev.calls_timeout
            dest.calls_cancelled = prev.calls_cancelled
            dest.calls_rejected = prev.calls_rejected
            dest.rweight = prev.rweight
            if dest.located is not None and prev.located is not None:
                dest.located.carry_down(prev.located)
            carried += 1
        dset.rebuild_rweights(new.rng)
    return carried
