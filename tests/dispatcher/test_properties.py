"""Invariants over arbitrary input (hypothesis)."""

from __future__ import annotations

import contextlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sipdispatch.dispatcher import (
    DS_DISABLED_DST,
    DS_INACTIVE_DST,
    DS_PROBING_DST,
    DS_TRYING_DST,
    REGISTRY,
    Attrs,
    AttrsError,
    DispatcherLoadError,
    DispatcherSets,
    make_destination,
    parse_list,
    select,
)

from .helpers import ctx

STATES = st.sampled_from(
    [0, DS_PROBING_DST, DS_TRYING_DST, DS_INACTIVE_DST, DS_DISABLED_DST, DS_INACTIVE_DST | 8]
)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_attrs_string_parses_or_raises_attrs_error(text: str) -> None:
    with contextlib.suppress(AttrsError):
        Attrs.parse(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_list_text_parses_or_raises_load_error(text: str) -> None:
    try:
        parse_list(text, "fuzz.list")
    except DispatcherLoadError as exc:
        assert exc.where.startswith("fuzz.list:")


@settings(max_examples=300, deadline=None)
@given(
    members=st.lists(
        st.tuples(st.integers(0, 3), STATES, st.integers(0, 100), st.integers(0, 3)),
        min_size=1,
        max_size=6,
    ),
    alg=st.sampled_from(sorted(REGISTRY)),
    limit=st.integers(0, 4),
    use_default=st.booleans(),
    rounds=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_selection_targets_are_usable_unique_and_within_limit(
    members: list[tuple[int, int, int, int]],
    alg: int,
    limit: int,
    use_default: bool,
    rounds: int,
    seed: int,
) -> None:
    dests = [
        make_destination(1, f"sip:gw{i}:5060", state, prio, f"weight={w};rweight={w};maxload={m}")
        for i, (prio, state, w, m) in enumerate(members)
    ]
    sets = DispatcherSets(dests, random.Random(seed))
    dset = sets.get(1)
    assert dset is not None
    default = dset.dests[-1] if use_default and len(dset.dests) > 1 else None
    rng = random.Random(seed)
    for n in range(rounds):
        sel = select(
            sets,
            1,
            alg,
            ctx(f"c{n}", auth_username=None, headers={"X-K": str(n)}),
            limit=limit,
            use_default=use_default,
            hash_header="X-K",
            rng=rng,
        )
        targets = sel.targets
        assert len({id(d) for d in targets}) == len(targets)
        if limit and not sel.parallel:
            assert len(targets) <= limit
        for i, d in enumerate(targets):
            if d is default and i == len(targets) - 1 and i > 0:
                continue  # Kamailio appends the default whatever its state
            assert d.is_usable()
        if any(d.is_usable() for d in dset.dests) and alg != 10:
            assert targets, "something usable but nothing selected"
