"""Warnings at load: a destination list that loads but will not do what it looks like.

Run at start and after every reload; each finding is one ``warning`` line naming the
set and the destination. Nothing here refuses a list (the load already refused what is
wrong); these are the mistakes that load fine and surprise later.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Iterable
from typing import Final

from sipdispatch.dispatcher.algorithms.base import Algorithm
from sipdispatch.dispatcher.algorithms.roundrobin import RoundRobinOrSerial, RoundRobinTiers
from sipdispatch.dispatcher.algorithms.weighted import PriorityWeight, SrvOrder, Weight
from sipdispatch.dispatcher.sets import DispatcherSets
from sipdispatch.dispatcher.states import (
    DS_INACTIVE_DST,
    DS_PROBING_DST,
    DS_TRYING_DST,
    parse_mark_letters,
)
from sipdispatch.routing import DEFAULT_ROUTE, RouteRule

log = logging.getLogger("sipdispatch.dispatcher")

STREAM_TRANSPORTS = ("tcp", "tls")

BIND_REASONS = {
    errno.EADDRINUSE: "address in use: another process listens there (ss -lntup shows which)",
    errno.EADDRNOTAVAIL: "no such address on this host (not one of its interfaces)",
    errno.EACCES: "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
}
"""What a bind error means, for the errors people meet when they choose an address."""


def bind_reason(exc: OSError) -> str:
    """Why a socket could not be bound, in words an operator acts on (uvloop hides the
    errno in the exception's cause)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in BIND_REASONS:
            return BIND_REASONS[seen.errno]
        seen = seen.__cause__
    return exc.strerror or str(exc)


def load_warnings(
    sets: DispatcherSets, rules: Iterable[RouteRule], listeners: Iterable[str]
) -> list[str]:
    """What is suspicious in ``sets`` for these ``[[route]]`` rules and listener
    transports (``udp``, ``tcp``...), one sentence each."""
    found: list[str] = []
    rules = tuple(rules)
    protos = set(listeners)
    found.extend(missing_set_warnings(sets, rules))
    weighted = {r.set_id for r in rules if r.algorithm == Weight.number}
    for dset in sets:
        dests = dset.dests
        seen: set[str] = set()
        for dest in dests:
            where = f"set {dset.setid} {dest.uri}"
            bare = [name for name, value in dest.attrs.pairs if value is None]
            if bare:
                found.append(
                    f"{where}: attrs {dest.attrs.body!r}: {', '.join(map(repr, bare))} is not "
                    "key=value (write weight=75, pairs separated by ;)"
                )
            if dest.uri in seen:
                found.append(f"{where}: listed twice in the set (the second is never shown)")
            seen.add(dest.uri)
            transport = dest.transport
            if transport in STREAM_TRANSPORTS and transport not in protos:
                found.append(
                    f"{where}: transport={transport} but no {transport} listener in "
                    "server.listen: requests to it cannot be sent"
                )
        if dset.setid in weighted and dests:
            unweighted = [d for d in dests if not d.attrs.weight]
            if dests[0] in unweighted:
                found.append(
                    f"set {dset.setid}: algorithm 9 (weight) but its first destination "
                    f"{dests[0].uri} has no weight: the weights are ignored and every call "
                    "goes to it"
                )
            else:
                for d in unweighted:
                    share = (
                        "it gets what the others leave of 100"
                        if d is dests[-1]
                        else "it gets no calls"
                    )
                    found.append(
                        f"set {dset.setid} {d.uri}: algorithm 9 (weight) but no weight: {share}"
                    )
    return found


def missing_set_warnings(sets: DispatcherSets, rules: Iterable[RouteRule]) -> list[str]:
    """A ``[[route]]`` rule's set, or one of its fallback sets, with no destination in the
    list: a typo in a set id, or a set not loaded yet. Its calls then go to the fallback
    sets, or get ``no_destination``; a fallback set without destinations is passed over."""
    found: list[str] = []
    for i, rule in enumerate(rules):
        where = "with no [[route]], set 1" if rule is DEFAULT_ROUTE else f"route[{i}]"
        dset = sets.get(rule.set_id)
        if dset is None or not dset.dests:
            then = (
                "its calls go to its fallback sets"
                if rule.fallback
                else f"its calls get {rule.no_destination}"
            )
            name = where if rule is DEFAULT_ROUTE else f"{where}: set {rule.set_id}"
            found.append(f"{name} has no destination in the list: {then}")
        for j, (set_id, _alg) in enumerate(rule.fallback):
            dset = sets.get(set_id)
            if dset is None or not dset.dests:
                found.append(
                    f"{where}: fallback[{j}] set {set_id} has no destination in the list: "
                    "it is passed over"
                )
    return found


def probing_warnings(
    probing_mode: int, ping_interval: int, mark_failed: Iterable[str]
) -> list[str]:
    """What the probing settings will not do that they look like doing: with
    ``probing_mode = 0`` a destination marked ``IP`` after a failed call is pinged,
    but its first missed ping leaves it ``IX`` (inactive, no longer pinged), as in
    Kamailio's mode 0; it gets no calls again until a reload or ``set_state``."""
    marks = sorted({m.lower() for m in mark_failed if _marks_probing(m)})
    if probing_mode != 0 or ping_interval <= 0 or not marks:
        return []
    return [
        f"dispatcher.probing_mode = 0 with route mark_failed = {' / '.join(map(repr, marks))}: "
        "a destination marked after a failed call is pinged only until its first missed "
        "ping, then stays IX (never pinged, no calls) until a reload or "
        "dispatcher.set_state; set dispatcher.probing_mode = 1 to keep pinging it until "
        "it answers"
    ]


def _marks_probing(letters: str) -> bool:
    """Whether ``mark_failed`` leaves a failed destination inactive or trying, probing."""
    try:
        bits = parse_mark_letters(letters) if letters else 0
    except ValueError:
        return False
    return bool(bits & DS_PROBING_DST) and bool(bits & (DS_INACTIVE_DST | DS_TRYING_DST))


CHANGED_ALGORITHMS: Final[dict[int, tuple[type[Algorithm], str, type[Algorithm]]]] = {
    RoundRobinOrSerial.number: (
        RoundRobinOrSerial,
        "round-robin when every destination of the set has the same priority above 0, else serial",
        RoundRobinTiers,
    ),
    PriorityWeight.number: (
        PriorityWeight,
        "the active destinations of the lowest priority value share the calls by weight",
        SrvOrder,
    ),
}
"""The numbers that were sipdispatch's own and are now Kamailio's: (Kamailio's algorithm,
what it does, where sipdispatch's former one is now)."""

CHANGED_NAMES: Final[dict[str, int]] = {"priority-weight": PriorityWeight.number}
"""Names that reached sipdispatch's former algorithm and now reach Kamailio's."""


def algorithm_warnings(routes: Iterable[tuple[int, str]]) -> list[str]:
    """What ``[[route]]`` rules, each ``(set, algorithm as the file wrote it)`` in file
    order, may not mean any more: algorithm 14 or 15 by number, or a name that changed
    meaning, reached sipdispatch's own algorithm before this release and reaches
    Kamailio's now. A name given today chooses its meaning: no warning for it."""
    found: list[str] = []
    for i, (set_id, written) in enumerate(routes):
        if written.isascii() and written.isdigit():
            number = int(written)
            former = f"former {number}"
        elif written.startswith('"'):
            name = str(json.loads(written)).lower()
            if name not in CHANGED_NAMES:
                continue
            number = CHANGED_NAMES[name]
            former = f"former {json.dumps(name)}"
        else:
            continue
        if number not in CHANGED_ALGORITHMS:
            continue
        kamailio, what, own = CHANGED_ALGORITHMS[number]
        found.append(
            f"route[{i}] (set {set_id}): algorithm = {written} changed meaning in this "
            f"release: it is now Kamailio's algorithm {number} ({kamailio.name}: {what}); "
            f"sipdispatch's {former} is algorithm = {own.number} or {json.dumps(own.name)}"
        )
    return found


def warn_at_load(
    sets: DispatcherSets, rules: Iterable[RouteRule], listeners: Iterable[str]
) -> list[str]:
    """Log :func:`load_warnings`, one line each; returns them."""
    found = load_warnings(sets, rules, listeners)
    for line in found:
        log.warning("%s", line)
    return found
