"""Call load accounting for algorithm 10 (Kamailio's ``ds_ht`` table).

Kamailio counts a call on a destination when ``ds_select_dst`` picks it for an
INVITE, moves the count on ``ds_next_dst`` (``ds_load_replace``), marks it
confirmed on a 2xx (``ds_load_update``), removes it on BYE/CANCEL
(``ds_load_update``) or failure (``ds_load_unset``), and a timer drops entries
that live past ``ds_hash_expire`` seconds from the INVITE, or past
``ds_hash_initexpire`` while still unconfirmed (``ds_ht_timer``). The count
never goes below zero (``DS_LOAD_DEC``).

Here the proxy calls the ``on_*`` methods itself (no script needed), with
``now`` from its monotonic clock; :meth:`CallLoadTable.next_deadline` tells it
when to call :meth:`CallLoadTable.expire`. The table is keyed by Call-ID and
remembers the destination's set and key (``duid``, else its URI), so it
survives a reload: :meth:`CallLoadTable.rebind` points it at the new sets and
recounts their loads.

A cluster shares the count: :attr:`CallLoadTable.share` (a :class:`LoadShare`, set
by the shell) is told of every call counted, confirmed and released here, and may set
a destination's load to the cluster's count (:meth:`CallLoadTable.set_load`). The
table does not wait for it: routing stays synchronous and local. Where the cluster must
answer before the INVITE goes (``maxload`` across nodes), :meth:`LoadShare.reserved`
returns a hold, which :meth:`CallLoadTable.take_hold` passes on to the request's target
(the shell waits for it; see :attr:`sipdispatch.sip.router.Target.hold`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Protocol

from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.sets import DispatcherSets

LOAD_INIT: Final = 0
"""Kamailio ``DS_LOAD_INIT``: INVITE sent, no 2xx yet."""
LOAD_CONFIRMED: Final = 1
"""Kamailio ``DS_LOAD_CONFIRMED``: 2xx seen."""

DEFAULT_HASH_EXPIRE = 7200
"""Kamailio ``ds_hash_expire`` default (seconds)."""
DEFAULT_HASH_INITEXPIRE = 7200
"""Kamailio ``ds_hash_initexpire`` default (seconds)."""
LANE_SLACK: Final = 1024
"""Stale entries an expiry lane may hold beyond twice the table's calls before it is
rebuilt (so that a small table is not rebuilt at every call)."""


NO_LANE: Final = -1
"""A call with no deadline (``hash_expire`` 0 after its answer, or both timeouts 0)."""
INIT_LANE: Final = 0
"""Calls expiring ``hash_initexpire`` (or ``hash_expire``, if sooner) after their INVITE."""
CONFIRMED_LANE: Final = 1
"""Answered calls whose 2xx moved their deadline to ``hash_expire`` after the INVITE."""


@dataclass(slots=True, init=False)
class LoadEntry:
    """One call counted on one destination. Its deadline follows from ``created`` and
    the table's two timeouts (:meth:`CallLoadTable.deadline_of`): nothing per call
    stores it."""

    call_id: str
    setid: int
    key: str
    """Destination key: ``duid``, else URI."""
    dest: Destination | None
    """The counted destination in the current sets (None if a reload removed it)."""
    created: float
    state: int = LOAD_INIT
    lane: int = INIT_LANE
    """The expiry lane holding this entry (``INIT_LANE``, ``CONFIRMED_LANE``) or
    ``NO_LANE``."""
    shared: bool = True
    """Counted in a cluster's ledger too (algorithm 10's calls only: other calls are
    counted here for DLGLOAD and the metrics, and nothing of them goes to Redis)."""

    # Written out (init=False): compiled, it is a native call; the one dataclass
    # generates is interpreted Python, several times dearer, and one is made per call.
    def __init__(
        self,
        call_id: str,
        setid: int,
        key: str,
        dest: Destination | None,
        created: float,
        state: int = LOAD_INIT,
        lane: int = INIT_LANE,
        shared: bool = True,
    ) -> None:
        self.call_id = call_id
        self.setid = setid
        self.key = key
        self.dest = dest
        self.created = created
        self.state = state
        self.lane = lane
        self.shared = shared


class LoadShare(Protocol):
    """Where a table tells the rest of a cluster about its calls (the shell's Redis
    ledger). Each call returns at once; the work is done off the call path."""

    def reserved(self, entry: LoadEntry, maxload: int, ttl: float) -> Any:
        """``entry``'s call now counts on its destination (``maxload`` 0 = no limit),
        for ``ttl`` seconds (0 = no timeout). Returns None, or a hold the INVITE must
        wait for before it is sent (an ``asyncio.Future`` that ends True when the call
        fits under ``maxload`` across the cluster, False when it does not)."""

    def confirmed(self, entry: LoadEntry, ttl: float) -> None:
        """``entry``'s call was answered; it counts ``ttl`` more seconds (0 = no timeout)."""

    def released(self, call_id: str) -> None:
        """The call ended here (BYE, failure); it may have been counted by another node."""

    def rebound(self) -> None:
        """The table was recounted for a new destination list."""


def _release(dest: Destination | None) -> None:
    if dest is not None and dest.dlg_load > 0:
        dest.dlg_load -= 1


class CallLoadTable:
    """Calls in progress per destination, by Call-ID, with expiry on a given clock."""

    def __init__(
        self,
        sets: DispatcherSets,
        *,
        hash_expire: float = DEFAULT_HASH_EXPIRE,
        hash_initexpire: float = DEFAULT_HASH_INITEXPIRE,
    ) -> None:
        """``hash_expire``/``hash_initexpire`` in seconds; 0 turns that timeout off."""
        self.sets = sets
        self.hash_expire = hash_expire
        self.hash_initexpire = hash_initexpire
        timeouts = [t for t in (hash_initexpire, hash_expire) if t > 0]
        self._ttl: tuple[float | None, float | None] = (
            min(timeouts) if timeouts else None,
            hash_expire if hash_expire > 0 else None,
        )
        """Seconds from the INVITE to the deadline of a call in each lane."""
        self._entries: dict[str, LoadEntry] = {}
        # Every call of a lane lives the same time from its INVITE, so a lane in the
        # order calls enter it is in deadline order (nearly, for the answered ones:
        # see expire): no heap, no (deadline, token, id) tuple per call. An entry
        # released or moved stays in its lane until it reaches the front, or until
        # the stale ones outnumber the calls in the table (see _queued): then the lane
        # is rebuilt with its live entries only, so that a call that stays for hours
        # at the front does not keep every call that came and went after it.
        self._lanes: tuple[deque[LoadEntry], deque[LoadEntry]] = (deque(), deque())
        self.share: LoadShare | None = None
        """The cluster's ledger, when the node is in a cluster."""
        self._hold: Any = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._entries

    def entry(self, call_id: str) -> LoadEntry | None:
        """The entry of a call, or None."""
        return self._entries.get(call_id)

    def deadline_of(self, entry: LoadEntry) -> float | None:
        """When ``entry`` expires: ``hash_initexpire`` (or ``hash_expire``, if sooner)
        after its INVITE while unanswered, ``hash_expire`` after it once answered;
        None when that timeout is off."""
        ttl = self._ttl[INIT_LANE if entry.state == LOAD_INIT else CONFIRMED_LANE]
        return entry.created + ttl if ttl is not None else None

    def on_invite_sent(
        self, call_id: str, dest: Destination, now: float, shared: bool = True
    ) -> bool:
        """An INVITE of ``call_id`` was sent to ``dest``: count it (+1).

        If the call is already counted on another destination (failover to the
        next one), the count moves there, with fresh timeouts (Kamailio
        ``ds_load_replace``). Returns False when it was already counted on this
        destination (retransmission): nothing changes. ``shared``: a cluster's
        ledger is told (algorithm 10's calls).
        """
        key = dest.key
        old = self._entries.get(call_id)
        if old is not None:
            if old.setid == dest.setid and old.key.lower() == key.lower():
                return False
            del self._entries[call_id]
            _release(old.dest)
        ttl = self._ttl[INIT_LANE]
        entry = LoadEntry(
            call_id, dest.setid, key, dest, now, LOAD_INIT,
            INIT_LANE if ttl is not None else NO_LANE, shared,
        )  # fmt: skip
        self._entries[call_id] = entry
        dest.dlg_load += 1
        if ttl is not None:
            self._queued(INIT_LANE, entry)
        share = self.share
        if share is not None and shared:
            self._hold = share.reserved(entry, dest.attrs.maxload, ttl or 0.0)
        return True

    def take_hold(self) -> Any:
        """The hold of the latest :meth:`on_invite_sent` (see :meth:`LoadShare.reserved`),
        once; None when there is none."""
        hold = self._hold
        self._hold = None
        return hold

    def on_confirmed(self, call_id: str, now: float) -> bool:
        """A 2xx to the INVITE arrived: the call is confirmed; from now on only
        ``hash_expire`` (counted from the INVITE) limits it. False if unknown."""
        entry = self._entries.get(call_id)
        if entry is None:
            return False
        if entry.state != LOAD_CONFIRMED:
            entry.state = LOAD_CONFIRMED
            ttl = self._ttl[CONFIRMED_LANE]
            if ttl != self._ttl[INIT_LANE]:
                # Only a deadline that moved moves the entry: with hash_initexpire
                # equal to hash_expire (the defaults) it stays where it is.
                if ttl is None:
                    entry.lane = NO_LANE
                else:
                    entry.lane = CONFIRMED_LANE
                    self._queued(CONFIRMED_LANE, entry)
                # Likewise the cluster's ledger is told only when the call's expiry
                # moved (its entry already expires at that same time otherwise).
                share = self.share
                if share is not None and entry.shared:
                    left = max(entry.created + ttl - now, 0.001) if ttl is not None else 0.0
                    share.confirmed(entry, left)
        return True

    def on_released(self, call_id: str, tell_unknown: bool = True) -> bool:
        """BYE, CANCEL or a failed INVITE: stop counting the call (-1, never below
        zero). False if the call was not counted here (a cluster's ledger is told
        anyway: another node may have counted it)."""
        entry = self._entries.pop(call_id, None)
        share = self.share
        if share is not None and (entry.shared if entry is not None else tell_unknown):
            share.released(call_id)
        if entry is None:
            return False
        _release(entry.dest)
        return True

    def forget(self, call_id: str) -> bool:
        """Drop a call another node released (its BYE went there): no count changes
        here, the cluster's count is set by :meth:`set_load`. False if unknown."""
        return self._entries.pop(call_id, None) is not None

    def local_count(self, setid: int, key: str) -> int:
        """Calls counted by this table on the destination of set ``setid`` and key
        ``key`` (the cluster's count is the sum over nodes)."""
        key = key.lower()
        return sum(1 for e in self._entries.values() if e.setid == setid and e.key.lower() == key)

    def entries(self) -> list[LoadEntry]:
        """Every call counted here."""
        return list(self._entries.values())

    def set_load(self, setid: int, key: str, load: int) -> bool:
        """Make the load of the destination of set ``setid`` and key ``key`` what the
        cluster counts (never below zero); False when there is no such destination."""
        dset = self.sets.get(setid)
        dest = dset.find_key(key) if dset is not None else None
        if dest is None:
            return False
        dest.dlg_load = max(load, 0)
        return True

    @property
    def queued(self) -> int:
        """Entries the expiry lanes hold, live or stale (what the table costs beyond
        its calls): at most twice the calls in the table, plus ``LANE_SLACK``, per lane."""
        return len(self._lanes[INIT_LANE]) + len(self._lanes[CONFIRMED_LANE])

    def _queued(self, lane_id: int, entry: LoadEntry) -> None:
        """Put ``entry`` at the back of its lane; rebuild the lane from its live entries
        (in their order) when the stale ones outnumber the table's calls."""
        lane = self._lanes[lane_id]
        lane.append(entry)
        if len(lane) > 2 * len(self._entries) + LANE_SLACK:
            live = [e for e in lane if self._is_live(e, lane_id)]
            lane.clear()
            lane.extend(live)

    def _is_live(self, entry: LoadEntry, lane_id: int) -> bool:
        """Whether ``entry`` in lane ``lane_id`` is still that lane's entry of a call in
        the table (not released, moved to another lane, or counted anew)."""
        return entry.lane == lane_id and self._entries.get(entry.call_id) is entry

    def _front(self, lane_id: int) -> LoadEntry | None:
        """The first live entry of a lane, dropping the stale ones before it."""
        lane = self._lanes[lane_id]
        while lane:
            entry = lane[0]
            if self._is_live(entry, lane_id):
                return entry
            lane.popleft()  # released, moved to another lane, or counted anew
        return None

    def expire(self, now: float) -> list[str]:
        """Release every call whose deadline is at or before ``now``; returns their
        Call-IDs, each lane's in the order the calls entered it.

        The answered calls' lane is in the order of their answers: a call answered
        after a later one expires, at the latest, when that one does (later by at
        most the difference of their set-up times, well within Kamailio's own
        ``ds_hash_check_interval`` of 30 s)."""
        released: list[str] = []
        for lane_id in (INIT_LANE, CONFIRMED_LANE):
            ttl = self._ttl[lane_id]
            if ttl is None:
                continue
            lane = self._lanes[lane_id]
            while True:
                entry = self._front(lane_id)
                if entry is None or entry.created + ttl > now:
                    break
                lane.popleft()
                del self._entries[entry.call_id]
                _release(entry.dest)
                released.append(entry.call_id)
        return released

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`expire` has something to do, or None."""
        first: float | None = None
        for lane_id in (INIT_LANE, CONFIRMED_LANE):
            ttl = self._ttl[lane_id]
            entry = self._front(lane_id) if ttl is not None else None
            if entry is not None and ttl is not None:
                when = entry.created + ttl
                if first is None or when < first:
                    first = when
        return first

    def rebind(self, sets: DispatcherSets) -> None:
        """Point the table at reloaded sets and recount every destination's load.

        Each call is matched to the new destination with the same set and key;
        calls whose destination is gone stay in the table (they still expire or
        get released) but count nowhere.
        """
        self.sets = sets
        for dest in sets.destinations():
            dest.dlg_load = 0
        for entry in self._entries.values():
            dset = sets.get(entry.setid)
            entry.dest = dset.find_key(entry.key) if dset is not None else None
            if entry.dest is not None:
                entry.dest.dlg_load += 1
        share = self.share
        if share is not None:
            share.rebound()
