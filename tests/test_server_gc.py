"""The running proxy's collector: off for allocations, on a timer (server.GC_INTERVAL)."""

from __future__ import annotations

import asyncio
import gc
import weakref

from sipdispatch.server import collect_garbage, tune_gc


class Node:
    def __init__(self) -> None:
        self.me: Node | None = None


def test_started_proxy_collects_cycles_on_a_timer_not_on_allocations() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        tune_gc()
        try:
            assert not gc.isenabled()
            node = Node()
            node.me = node  # a reference cycle: only the collector frees it
            ref = weakref.ref(node)
            del node
            junk = [[i] for i in range(50_000)]  # allocations that would trigger one
            del junk
            assert ref() is not None
            collector = asyncio.create_task(collect_garbage(0.01))
            deadline = loop.time() + 30.0
            while ref() is not None and loop.time() < deadline:
                await asyncio.sleep(0.01)
            collector.cancel()
            assert ref() is None
        finally:
            gc.enable()
            gc.unfreeze()

    asyncio.run(scenario())
