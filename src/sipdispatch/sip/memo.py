"""Memos of values computed from what peers send (header names, Via sent-by, URIs).

The proxy sees the same few header names, hosts and URIs in every message, so it
remembers what it made of them. The keys are the peers' choice, so every such memo is
bounded twice: in entries (it is emptied when full, so that a flood of new keys costs
the old ones their place but never grows it) and in key length (a key longer than
``MEMO_KEY_LENGTH`` is not kept: 4 096 entries of 64 KiB keys would be a quarter of a
gigabyte, and such keys are never the common ones).
"""

from __future__ import annotations

from typing import Final, TypeVar

MEMO_ENTRIES: Final = 4096
"""Entries a memo holds before it is emptied."""
MEMO_KEY_LENGTH: Final = 256
"""Longest key kept, in characters."""

V = TypeVar("V")


def remember(memo: dict[str, V], key: str, value: V) -> None:
    """Keep ``value`` for ``key`` in ``memo``, within the bounds above."""
    if len(key) > MEMO_KEY_LENGTH:
        return
    if len(memo) >= MEMO_ENTRIES:
        memo.clear()
    memo[key] = value
