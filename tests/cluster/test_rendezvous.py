"""Rendezvous hashing: each destination has exactly one owner among the live nodes,
the same on every node, and only a leaving node's destinations move."""

from __future__ import annotations

import random

from sipdispatch.cluster.rendezvous import owner, split, weight

URIS = [f"sip:gw{i}.example.net:5060" for i in range(200)]


def test_every_destination_has_exactly_one_owner() -> None:
    nodes = ["lb1:5060", "lb2:5060", "lb3:5060"]
    shares = split(URIS, nodes)
    owned = [uri for share in shares.values() for uri in share]
    assert sorted(owned) == sorted(URIS)
    assert len(set(owned)) == len(URIS)


def test_the_owner_does_not_depend_on_the_order_nodes_are_listed() -> None:
    nodes = ["lb1:5060", "lb2:5060", "lb3:5060", "lb4:5060"]
    rng = random.Random(7)
    for uri in URIS:
        shuffled = nodes[:]
        rng.shuffle(shuffled)
        assert owner(uri, shuffled) == owner(uri, nodes)


def test_shares_are_roughly_even() -> None:
    nodes = ["a", "b", "c", "d"]
    sizes = [len(s) for s in split(URIS, nodes).values()]
    assert min(sizes) >= len(URIS) / len(nodes) * 0.6, sizes


def test_only_the_leaving_nodes_destinations_move() -> None:
    nodes = ["lb1", "lb2", "lb3"]
    before = {uri: owner(uri, nodes) for uri in URIS}
    after = {uri: owner(uri, ["lb1", "lb3"]) for uri in URIS}
    moved = {uri for uri in URIS if before[uri] != after[uri]}
    assert moved == {uri for uri in URIS if before[uri] == "lb2"}
    assert moved  # lb2 owned some


def test_a_joining_node_takes_only_destinations_for_itself() -> None:
    before = {uri: owner(uri, ["lb1", "lb2"]) for uri in URIS}
    after = {uri: owner(uri, ["lb1", "lb2", "lb3"]) for uri in URIS}
    assert all(after[u] in (before[u], "lb3") for u in URIS)


def test_no_nodes_no_owner_and_one_node_owns_all() -> None:
    assert owner(URIS[0], []) is None
    assert split(URIS, ["only"]) == {"only": URIS}


def test_the_weight_is_stable_across_processes() -> None:
    # BLAKE2b, not the per-process salted hash(): fixed values.
    assert weight("lb1:5060", "sip:gw1.example.net:5060") == weight(
        "lb1:5060", "sip:gw1.example.net:5060"
    )
    assert weight("ab", "c") != weight("a", "bc")
    assert weight("lb1", "sip:a") == int.from_bytes(
        __import__("hashlib").blake2b(b"3:lb1sip:a", digest_size=8).digest(), "big"
    )
