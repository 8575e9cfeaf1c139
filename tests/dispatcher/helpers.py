"""Shared builders for the dispatcher tests."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from sipdispatch.dispatcher import (
    DispatcherSets,
    SelectContext,
    Selection,
    parse_list,
    select,
)


def build(text: str, seed: int = 1) -> DispatcherSets:
    """Sets from dispatcher.list text, with a seeded rng."""
    return DispatcherSets(parse_list(text, "test.list"), random.Random(seed))


def ctx(
    call_id: str = "call-1@host",
    *,
    from_uri: str = "sip:alice@example.com",
    to_uri: str = "sip:bob@example.com",
    ruri: str = "sip:1111111@proxy.example.com",
    auth_username: str | None = None,
    headers: dict[str, str] | None = None,
    now: float = 0.0,
    method: str = "INVITE",
) -> SelectContext:
    """A SelectContext with harmless defaults."""
    lookup: Callable[[str], str | None] | None = None
    if headers is not None:
        table = {k.lower(): v for k, v in headers.items()}

        def lookup(name: str) -> str | None:
            return table.get(name.lower())

    return SelectContext(
        call_id=call_id,
        from_uri=from_uri,
        to_uri=to_uri,
        ruri=ruri,
        auth_username=auth_username,
        header_value=lookup,
        now=now,
        method=method,
    )


def uris(selection: Selection) -> list[str]:
    """URIs of a selection's targets, in order."""
    return [d.uri for d in selection.targets]


def pick(sets: DispatcherSets, setid: int, alg: int, seed: int = 7, **kw: object) -> Selection:
    """One selection with a fresh seeded rng."""
    c = kw.pop("context", None) or ctx()
    assert isinstance(c, SelectContext)
    return select(sets, setid, alg, c, rng=random.Random(seed), **kw)  # type: ignore[arg-type]


def spread(
    sets: DispatcherSets, setid: int, alg: int, calls: int, seed: int = 7, **kw: object
) -> Counter[str]:
    """How many of ``calls`` selections went to each URI (first target)."""
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    for n in range(calls):
        sel = select(sets, setid, alg, ctx(f"call-{n}@host"), rng=rng, **kw)  # type: ignore[arg-type]
        assert sel.selected is not None
        counts[sel.selected.uri] += 1
    return counts
