"""The call-load ledger's Lua scripts against a real Redis: the maxload check and the
count are atomic across nodes, a call counts once, any node releases it, the count
never goes below zero and an unanswered call stops counting at its TTL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis

from sipdispatch.cluster.ledger import NO_TIMEOUT_MS, Ledger, ttl_ms

from .conftest import SHARED_URL

T = TypeVar("T")


def run(namespace: str, body: Callable[[Ledger, Ledger, Redis], Awaitable[T]]) -> T:
    """``body(node_a, node_b, client)``: two nodes' ledgers on one Redis."""

    async def main() -> T:
        client = Redis.from_url(SHARED_URL)
        try:
            a = Ledger(client, namespace, "lb-a")
            b = Ledger(client, namespace, "lb-b")
            return await body(a, b, client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_reserve_counts_and_says_when_maxload_is_reached(namespace: str) -> None:
    async def body(a: Ledger, b: Ledger, _: Redis) -> list[tuple[bool, int]]:
        return [
            await a.reserve("c1", 1, "sip:gw1", 2, 60),
            await b.reserve("c2", 1, "sip:gw1", 2, 60),
            await a.reserve("c3", 1, "sip:gw1", 2, 60),
        ]

    assert run(namespace, body) == [(True, 1), (True, 2), (False, 3)]


def test_concurrent_reservations_from_two_nodes_find_the_limit_once(namespace: str) -> None:
    async def body(a: Ledger, b: Ledger, _: Redis) -> list[bool]:
        results = await asyncio.gather(
            *((a if i % 2 else b).reserve(f"call-{i}", 1, "sip:gw1", 5, 60) for i in range(40))
        )
        assert sorted(n for _, n in results) == list(range(1, 41))
        return [fits for fits, _ in results]

    fits = run(namespace, body)
    assert fits.count(True) == 5


def test_a_strict_reservation_that_does_not_fit_adds_nothing(namespace: str) -> None:
    async def body(a: Ledger, b: Ledger, _: Redis) -> list[object]:
        out: list[object] = [await a.reserve("c1", 1, "sip:gw1", 1, 60, strict=True)]
        out.append(await a.reserve("c2", 1, "sip:gw2", 1, 60, strict=True))
        # c2 fails over to gw1, which is full: it is counted nowhere, its key is gone.
        out.append(await b.reserve("c2", 1, "sip:gw1", 1, 60, strict=True))
        out.append(await a.counts([(1, "sip:gw1"), (1, "sip:gw2")]))
        out.append(await b.release("c2"))
        return out

    assert run(namespace, body) == [(True, 1), (True, 1), (False, 1), [1, 0], None]


def test_concurrent_strict_reservations_from_two_nodes_never_pass_maxload(
    namespace: str,
) -> None:
    async def body(a: Ledger, b: Ledger, _: Redis) -> tuple[list[bool], list[int]]:
        results = await asyncio.gather(
            *(
                (a if i % 2 else b).reserve(f"call-{i}", 1, "sip:gw1", 5, 60, strict=True)
                for i in range(40)
            )
        )
        return [fits for fits, _ in results], await a.counts([(1, "sip:gw1")])

    fits, counts = run(namespace, body)
    assert fits.count(True) == 5 and counts == [5]


def test_a_call_counted_twice_on_one_destination_counts_once(namespace: str) -> None:
    async def body(a: Ledger, b: Ledger, _: Redis) -> list[int]:
        first = await a.reserve("c1", 1, "sip:GW1", 1, 60)
        again = await a.reserve("c1", 1, "sip:gw1", 1, 60)
        assert again[0], "a retransmitted reservation is not over the limit"
        return [first[1], again[1], *(await a.counts([(1, "sip:gw1")]))]

    assert run(namespace, body) == [1, 1, 1]


def test_a_call_moved_to_the_next_destination_leaves_the_first(namespace: str) -> None:
    async def body(a: Ledger, b: Ledger, _: Redis) -> list[int]:
        await a.reserve("c1", 1, "sip:gw1", 0, 60)
        await a.reserve("c1", 1, "sip:gw2", 0, 60)
        return await a.counts([(1, "sip:gw1"), (1, "sip:gw2")])

    assert run(namespace, body) == [0, 1]


def test_any_node_releases_and_the_count_never_goes_below_zero(namespace: str) -> None:
    async def body(a: Ledger, b: Ledger, client: Redis) -> list[object]:
        await a.reserve("c1", 1, "sip:gw1", 0, 60)
        released = await b.release("c1")
        again = await b.release("c1")
        never = await a.release("never-counted")
        count = await a.counts([(1, "sip:gw1")])
        left = await client.exists(a.call_key("c1"))
        return [released, again, never, count, left]

    assert run(namespace, body) == [(1, "sip:gw1", "lb-a", 0), None, None, [0], 0]


def test_an_unanswered_call_stops_counting_at_its_ttl(namespace: str) -> None:
    async def body(a: Ledger, b: Ledger, client: Redis) -> list[object]:
        await a.reserve("short", 1, "sip:gw1", 0, 0.2)
        await a.reserve("long", 1, "sip:gw1", 0, 60)
        before = await a.counts([(1, "sip:gw1")])
        deadline = time.monotonic() + 10
        while await client.exists(a.call_key("short")):
            assert time.monotonic() < deadline, "the call key never expired"
            await asyncio.sleep(0.05)
        after = await a.counts([(1, "sip:gw1")])
        fits = await b.reserve("next", 1, "sip:gw1", 2, 60)
        return [before, after, fits]

    assert run(namespace, body) == [[2], [1], (True, 2)]


def test_confirming_gives_the_call_the_answered_ttl(namespace: str) -> None:
    async def body(a: Ledger, b: Ledger, client: Redis) -> list[object]:
        await a.reserve("c1", 1, "sip:gw1", 0, 1)
        confirmed = await b.confirm("c1", 3600)
        ttl = await client.pttl(a.call_key("c1"))
        unknown = await a.confirm("nope", 10)
        return [confirmed, ttl > 3_000_000, unknown]

    assert run(namespace, body) == [True, True, False]


def test_no_timeout_is_a_day_in_redis() -> None:
    assert ttl_ms(0) == NO_TIMEOUT_MS == 86_400_000
    assert ttl_ms(7200) == 7_200_000


def test_each_count_change_is_published_by_the_script_itself(namespace: str) -> None:
    channel = f"{namespace}:events"

    async def body(_a: Ledger, _b: Ledger, client: Redis) -> list[dict[str, object]]:
        a = Ledger(client, namespace, "lb-a", channel)
        b = Ledger(client, namespace, "lb-b", channel)
        listener = Redis.from_url(SHARED_URL)
        pubsub = listener.pubsub()
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=5)  # the subscription's confirmation
        try:
            await a.reserve("c1", 1, "sip:GW1:5060", 2, 60)
            await a.reserve("c2", 1, "sip:gw1:5060", 1, 60, strict=True)  # full: no event
            await b.release("c1")  # counted by lb-a, released by lb-b
            await a.release("c9")  # not counted: no event
            events: list[dict[str, object]] = []
            deadline = time.monotonic() + 20
            while len(events) < 2 and time.monotonic() < deadline:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if msg is not None:
                    events.append(json.loads(msg["data"]))
            extra = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            assert extra is None, extra
            return events
        finally:
            await pubsub.aclose()
            await listener.aclose()

    assert run(namespace, body) == [
        {"type": "load", "node": "lb-a", "set": 1, "key": "sip:gw1:5060", "n": 1},
        {
            "type": "load", "node": "lb-b", "set": 1, "key": "sip:gw1:5060", "n": 0,
            "released": "c1",
        },
    ]  # fmt: skip
