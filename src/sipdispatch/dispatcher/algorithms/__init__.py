"""Dispatching algorithms 0-15, 64, 114 and 115, registered by number and name.

Numbers 0-15 are Kamailio's, with Kamailio's semantics; 114 and 115 are
sipdispatch's own, at numbers Kamailio does not use (they were 14 and 15 before
Kamailio defined those). One small class per algorithm, grouped by family in the
modules of this package; :func:`select` is the entry point the proxy calls per
request.
"""

from __future__ import annotations

import random

from sipdispatch.dispatcher.algorithms import (  # noqa: F401  (registration side effects)
    hashed,
    latency_opt,
    load,
    randomized,
    roundrobin,
    serial,
    weighted,
)
from sipdispatch.dispatcher.algorithms.base import (
    EMPTY_SELECTION,
    REGISTRY,
    Algorithm,
    SelectContext,
    Selection,
    SelectOptions,
    failover_list,
    finish,
    get_algorithm,
    register,
)
from sipdispatch.dispatcher.errors import UnknownAlgorithmError
from sipdispatch.dispatcher.sets import DispatcherSets

__all__ = [
    "EMPTY_SELECTION",
    "REGISTRY",
    "Algorithm",
    "SelectContext",
    "SelectOptions",
    "Selection",
    "failover_list",
    "finish",
    "get_algorithm",
    "register",
    "select",
    "select_with",
]


def select(
    sets: DispatcherSets,
    setid: int,
    algorithm: int,
    ctx: SelectContext,
    *,
    limit: int = 0,
    use_default: bool = False,
    hash_user_only: bool = False,
    hash_header: str = "",
    rng: random.Random,
) -> Selection:
    """Select destinations of set ``setid`` with Kamailio algorithm ``algorithm``.

    Returns the failover list (``targets[0]`` first; at most ``limit`` entries, 0 =
    all) or, for algorithm 12, every usable destination with ``parallel=True``.
    An unknown set, an empty set, nothing usable, or a key that cannot be
    computed (unparsable URI, empty header) gives an empty selection (Kamailio
    returns -1). Raises :class:`UnknownAlgorithmError` for an algorithm number
    the registry does not know (config validation should have caught it).
    """
    opts = SelectOptions(
        limit=limit,
        use_default=use_default,
        hash_user_only=hash_user_only,
        hash_header=hash_header,
        rng=rng,
    )
    return select_with(sets, setid, algorithm, ctx, opts)


def select_with(
    sets: DispatcherSets, setid: int, algorithm: int, ctx: SelectContext, opts: SelectOptions
) -> Selection:
    """:func:`select` with the options made once (the router keeps one per rule)."""
    alg = REGISTRY.get(algorithm)
    if alg is None:
        raise UnknownAlgorithmError(f"unknown algorithm {algorithm}")
    dset = sets.get(setid)
    if dset is None or not dset.dests:
        return EMPTY_SELECTION
    return alg.select(dset, ctx, opts)
