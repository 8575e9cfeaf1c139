"""Rendezvous (highest random weight) hashing: which live node pings a destination.

Every node computes the same answer from the same live node ids, with no
coordination: the owner of a key is the node whose hash of (node, key) is highest.
When a node leaves, only its keys move (each to the next highest node); when one
joins it takes about 1/N of the keys. The hash is BLAKE2b, the same on every host
and Python version (``hash()`` is salted per process).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def weight(node_id: str, key: str) -> int:
    """The (node, key) score: 64 bits of BLAKE2b over both, length-prefixed so no
    two different pairs give the same input."""
    data = f"{len(node_id)}:{node_id}{key}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def owner(key: str, node_ids: Iterable[str]) -> str | None:
    """The node that owns ``key`` among ``node_ids`` (None when there is none);
    ties, which need a 64-bit collision, go to the smaller id."""
    best: str | None = None
    best_weight = -1
    for node_id in node_ids:
        w = weight(node_id, key)
        if w > best_weight or (w == best_weight and best is not None and node_id < best):
            best, best_weight = node_id, w
    return best


def split(keys: Iterable[str], node_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each node's keys: ``{node_id: [keys it owns, in the order given]}``."""
    shares: dict[str, list[str]] = {n: [] for n in node_ids}
    for key in keys:
        chosen = owner(key, node_ids)
        if chosen is not None:
            shares[chosen].append(key)
    return shares
