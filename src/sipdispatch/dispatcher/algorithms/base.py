"""Selection input/output, the algorithm registry and Kamailio's common selection path.

Kamailio's ``ds_manage_routes`` (``dispatch.c``) works in two halves: each
algorithm computes a number (a hash, a round-robin position, a weight-table
entry...); then a common part turns it into a destination and the failover
list. :func:`finish` is that common part:

1. ``index = number % N`` where N is the set size, or N-1 with ``use_default``
   (the last destination is then the *default*, kept out of the rotation);
2. while the destination at ``index`` is inactive or disabled, step to
   ``index+1`` (wrapping at N, or N-1); back at the start means none is usable:
   with ``use_default`` the default is used if it is usable, else nothing;
3. the failover list (what ``ds_next_dst`` walks) is the selected one, then the
   usable ones after it in set order, then the usable ones before it, never the
   default; at most ``limit`` entries (0 = all);
4. with ``use_default`` the default is appended last, whatever its state (as
   Kamailio), if it was not the one selected and ``limit`` allows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.errors import UnknownAlgorithmError
from sipdispatch.dispatcher.sets import DestinationSet
from sipdispatch.dispatcher.states import DS_SKIP_MASK

UNLIMITED: Final = 0xFFFFFFFF
"""Kamailio: a ``limit`` of 0 means unlimited (it uses 0xffffffff)."""


@dataclass(slots=True, init=False)
class SelectContext:
    """What a selection needs from the request; the SIP layer builds it.

    Read-only by convention, not frozen: one is made for every routed request and
    a frozen dataclass pays for each field on construction."""

    call_id: str
    """Call-ID header value."""
    from_uri: str
    """URI of the From header (no display name, no tag)."""
    to_uri: str
    """URI of the To header."""
    ruri: str
    """Request-URI."""
    auth_username: str | None
    """Digest username from Proxy-Authorization, else Authorization (Kamailio looks
    at Proxy-Authorization first), the whole value unquoted; None when absent."""
    header_value: Callable[[str], str | None] | None
    """Returns a header's value by name (algorithm 7), or None when absent."""
    now: float
    """Monotonic seconds."""
    method: str = "INVITE"
    """Request method: algorithm 10 balances only INVITEs (others get the first
    usable destination, as in Kamailio)."""

    # Written out (init=False): compiled, it is a native call; the one dataclass
    # generates is interpreted Python, several times dearer, and one is made per routed request.
    def __init__(
        self,
        call_id: str,
        from_uri: str,
        to_uri: str,
        ruri: str,
        auth_username: str | None,
        header_value: Callable[[str], str | None] | None,
        now: float,
        method: str = "INVITE",
    ) -> None:
        self.call_id = call_id
        self.from_uri = from_uri
        self.to_uri = to_uri
        self.ruri = ruri
        self.auth_username = auth_username
        self.header_value = header_value
        self.now = now
        self.method = method


@dataclass(slots=True, init=False)
class Selection:
    """Result of a selection (read-only by convention, made once per routed request).

    ``targets`` is the failover list: ``targets[0]`` is the destination to use,
    the rest what ``ds_next_dst`` would give, in order. With ``parallel`` (algorithm
    12) all targets are to be forked to at once. Empty when nothing is usable
    (Kamailio's ``ds_select_dst`` returns -1).
    """

    targets: tuple[Destination, ...] = ()
    parallel: bool = False

    # Written out (init=False): compiled, it is a native call; the one dataclass
    # generates is interpreted Python, several times dearer, and one is made per routed request.
    def __init__(self, targets: tuple[Destination, ...] = (), parallel: bool = False) -> None:
        self.targets = targets
        self.parallel = parallel

    @property
    def selected(self) -> Destination | None:
        """The destination to use first, or None."""
        return self.targets[0] if self.targets else None

    def __bool__(self) -> bool:
        return bool(self.targets)


EMPTY_SELECTION: Final = Selection()
"""Nothing usable / no such set / the key could not be computed."""


class SelectOptions:
    """Per-call options (Kamailio module parameters and the ``limit`` argument)."""

    __slots__ = ("hash_header", "hash_user_only", "limit", "rng", "use_default")

    def __init__(
        self,
        *,
        limit: int = 0,
        use_default: bool = False,
        hash_user_only: bool = False,
        hash_header: str = "",
        rng: random.Random,
    ) -> None:
        self.limit = limit if limit > 0 else UNLIMITED
        """Failover list length; 0 given = unlimited."""
        self.use_default = use_default
        """Kamailio ``use_default``: last destination of a set is the last resort."""
        self.hash_user_only = hash_user_only
        """Kamailio ``flags`` bit 1: URI hashes use the user part only."""
        self.hash_header = hash_header
        """Header whose value algorithm 7 hashes (Kamailio ``hash_pvar``)."""
        self.rng = rng
        """Randomness for algorithms 6 and 115."""


class Algorithm:
    """One dispatching algorithm. Instances are stateless (state lives in the set)."""

    number: ClassVar[int]
    """Kamailio algorithm number."""
    name: ClassVar[str]
    """Name usable in the config (``algorithm = "round-robin"``)."""
    aliases: ClassVar[tuple[str, ...]] = ()
    """Other accepted names."""
    kamailio: ClassVar[bool] = True
    """False for sipdispatch's own algorithms (114, 115: numbers Kamailio does not use)."""

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        """Select from a non-empty set."""
        raise NotImplementedError


REGISTRY: Final[dict[int, Algorithm]] = {}
"""Algorithms by number."""
_BY_NAME: Final[dict[str, Algorithm]] = {}


def register(cls: type[Algorithm]) -> None:
    """Add one instance of ``cls`` to the registry.

    Called after each class rather than used as a decorator: a compiled build
    (setup.py) makes a decorated class an ordinary Python class, which may not
    derive from the compiled :class:`Algorithm`.
    """
    inst = cls()
    if cls.number in REGISTRY:
        raise ValueError(f"algorithm {cls.number} registered twice")
    REGISTRY[cls.number] = inst
    for name in (cls.name, *cls.aliases):
        _BY_NAME[name] = inst


def get_algorithm(ident: int | str) -> Algorithm:
    """The algorithm with this number (or numeric string) or name.

    Raises :class:`UnknownAlgorithmError` listing what is allowed.
    """
    if isinstance(ident, str):
        text = ident.strip().lower()
        if text.isascii() and text.isdigit():  # isdigit alone takes '¹'
            ident = int(text)
        elif text in _BY_NAME:
            return _BY_NAME[text]
    if isinstance(ident, int) and not isinstance(ident, bool) and ident in REGISTRY:
        return REGISTRY[ident]
    allowed = ", ".join(f"{n} ({a.name})" for n, a in sorted(REGISTRY.items()))
    raise UnknownAlgorithmError(f"unknown algorithm {ident!r}; allowed: {allowed}")


def failover_list(
    dset: DestinationSet, selected: int, opts: SelectOptions, *, maxload_filter: bool = False
) -> tuple[Destination, ...]:
    """Kamailio ``ds_manage_routes_fill_xavp`` + the default entry (steps 3-4).

    ``maxload_filter`` (algorithm 10) also leaves out destinations at their
    ``maxload``.
    """
    dests = dset.dests
    n = len(dests)
    limit = opts.limit
    default = n - 1 if opts.use_default else -1
    out = [dests[selected]]
    for rng_ in (range(selected + 1, n), range(selected)):
        for j in rng_:
            if len(out) >= limit:
                break
            d = dests[j]
            if d.state & DS_SKIP_MASK or j == default:
                continue
            if maxload_filter and d.attrs.maxload and d.dlg_load >= d.attrs.maxload:
                continue
            out.append(d)
    if default >= 0 and selected != default and len(out) < limit:
        out.append(dests[default])
    return tuple(out)


def finish(
    dset: DestinationSet,
    number: int,
    opts: SelectOptions,
    *,
    update_last: bool = False,
    maxload_filter: bool = False,
) -> Selection:
    """Kamailio's common path from an algorithm's number to a Selection (steps 1-4).

    ``update_last`` (round-robin and its fallbacks): afterwards the round-robin
    position points after the destination actually used.
    """
    dests = dset.dests
    n = len(dests)
    mod = n - 1 if opts.use_default and n != 1 else n
    i = number % mod
    start = i
    while dests[i].state & DS_SKIP_MASK:
        i = (i + 1) % mod
        if i == start:
            if not opts.use_default:
                return EMPTY_SELECTION
            i = n - 1
            if dests[i].state & DS_SKIP_MASK:
                return EMPTY_SELECTION
            break
    if update_last:
        dset.last = (i + 1) % n
    return Selection(failover_list(dset, i, opts, maxload_filter=maxload_filter))


def next_round_robin(dset: DestinationSet) -> int:
    """Kamailio round-robin step: take ``last`` and advance it."""
    number = dset.last
    dset.last = (number + 1) % len(dset.dests)
    return number
