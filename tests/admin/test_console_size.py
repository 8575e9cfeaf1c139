"""How much the console costs on the wire: the page (HTML, CSS, JS, icon) and one
Server-Sent Events snapshot for 2 sets of 10 destinations after two minutes of pings
and calls. ``pytest -s`` prints the figures docs/console.md gives; the test fails when
they grow past a budget, so that the page stays small."""

from __future__ import annotations

import asyncio
import json
import random

from sipdispatch.admin.console import STATIC, Console, _asset
from sipdispatch.admin.figures import HISTORY
from sipdispatch.admin.rpc import Rpc

from .conftest import ServerFactory

PAGE_BUDGET = 40_000
"""Bytes of HTML + CSS + JS + icon, uncompressed."""
SNAPSHOT_BUDGET = 30_000
"""Bytes of a page's first snapshot event for 2 sets x 10 destinations (whole charts)."""
STEADY_BUDGET = 20_000
"""Bytes of the snapshot event sent each second after (the newest chart point)."""


def test_page_and_one_snapshot_for_2_sets_of_10_destinations_stay_small(
    make_server: ServerFactory,
) -> None:
    lines = [
        f"{s} sip:10.0.{s}.{i}:5060 0 {10 - i} weight={5 * i + 5};duid=mg{s}-{i} "
        f"Media gateway {s}-{i}"
        for s in (1, 2)
        for i in range(1, 11)
    ]
    server = make_server(lines, dispatcher={"ping_latency_stats": True})
    console = Console(server, Rpc(server))
    rng = random.Random(7)
    clock = [1000.0]
    server._clock = lambda: clock[0]

    def event(snapshot: dict[str, object]) -> bytes:
        data = json.dumps(snapshot, ensure_ascii=False, separators=(",", ":"))
        return f"event: snapshot\ndata: {data}\n\n".encode()

    async def two_minutes() -> tuple[bytes, bytes]:
        seq = 0
        for _ in range(HISTORY + 1):  # one snapshot a second, with pings and calls meanwhile
            for dest in server.dispatcher.router.sets.destinations():
                dest.latency.add_sample(rng.randint(2, 40), 0.9)
                dest.dispatched += rng.randint(0, 30)
                dest.calls_answered += rng.randint(0, 20)
                dest.count_rejected(rng.choice((404, 486, 503)))
                dest.observe_setup(rng.uniform(0.05, 4.0))
            clock[0] += 1.0
            seq = (await console.snapshot(seq))["seq"]
        # What a page gets first (every chart whole), then every second (a point each).
        first = await console.snapshot()
        clock[0] += 1.0
        return event(first), event(await console.snapshot(seq))

    first, steady = asyncio.run(two_minutes())
    assert all(len(sample.history) == HISTORY for sample in console.figures._samples.values())
    page = {
        "index.html": len(_asset("index.html").encode()),
        **{name: len(_asset(name).encode()) for name in STATIC},
    }
    total = sum(page.values())
    print(f"\npage: {total} bytes ({', '.join(f'{k} {v}' for k, v in page.items())})")
    print(
        f"snapshot event, 2 sets x 10 destinations: {len(first)} bytes the first, "
        f"{len(steady)} bytes each second after"
    )
    assert b'"history":[' in first and b'"history"' not in steady
    assert steady.count(b'"tail":[') == 20
    assert total <= PAGE_BUDGET, page
    assert len(first) <= SNAPSHOT_BUDGET
    assert len(steady) <= STEADY_BUDGET
