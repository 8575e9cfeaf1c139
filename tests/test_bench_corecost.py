"""bench/corecost.py, the in-memory cost-per-call bench, still drives whole calls.

It is a measuring tool, not a test of its own; this keeps it from rotting: the
calls it plays must go through the real core and router exactly as sipp's would,
and every transaction they make must be gone once wait_timer has passed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench" / "corecost.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corecost", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["corecost"] = module
    spec.loader.exec_module(module)
    return module


def test_corecost_calls_go_through_the_core_and_leave_nothing_behind() -> None:
    corecost = _load()
    d = corecost.Driver()
    d.run(200)
    stats = d.core.stats
    by_method = stats.requests_by_method
    assert by_method == {"INVITE": 200, "ACK": 200, "BYE": 200}
    assert stats.rx_replies == 600  # 180, 200 and the BYE's 200 per call
    assert stats.tx_requests == 600  # INVITE, ACK and BYE relayed once each
    assert stats.failovers == 0 and stats.parse_errors == 0
    # Round-robin over the two gateways: 100 calls each.
    dispatched = sorted(dest.dispatched for dest in d.core.router.sets.get(1).dests)
    assert dispatched == [100, 100]
    assert d.messages == 6 * 200 and d.spent > 0
    # Past wait_timer (5 s) every transaction of those calls has ended.
    d.now += 6.0
    d.tick()
    assert not d.core.server_txs and not d.core.client_txs


def test_corecost_with_a_hook_routes_every_call_through_it() -> None:
    corecost = _load()
    d = corecost.Driver(hook="hookcost:by_prefix")
    d.run(50)
    hook = d.core.router.routes[0].hook
    assert hook.stats.outcomes["route"] == 50
    dispatched = sorted(dest.dispatched for dest in d.core.router.sets.get(1).dests)
    assert dispatched == [25, 25]


def test_corecost_decisions_time_the_routing_decision_alone() -> None:
    corecost = _load()
    d = corecost.Driver(hook="hookcost:route")
    [ns] = corecost.decisions(d.core, 100, 1)
    assert ns > 0
    assert d.core.router.routes[0].hook.stats.outcomes["route"] == 100


def test_corecost_with_gateways_located_by_dns_sends_to_their_first_address() -> None:
    corecost = _load()
    for dns in ("one", "srv"):
        d = corecost.Driver(dns=dns)
        d.run(100)
        assert d.core.stats.requests_by_method == {"INVITE": 100, "ACK": 100, "BYE": 100}
        assert d.core.stats.failovers == 0
        gateways = d.core.router.sets.get(1).dests
        assert all(g.by_dns and g.located is not None for g in gateways)
        assert sorted(g.dispatched for g in gateways) == [50, 50]


def test_corecost_memory_holds_calls_in_progress_and_less_once_their_timers_ran() -> None:
    corecost = _load()
    d = corecost.Driver()
    d.run(50)
    d.now += 40.0
    d.tick()
    per_call, blocks, settled = corecost.memory(d, 200, 50)
    # Each call set up stays counted (call load) while its transactions come and go.
    assert len(d.core.router.calls) == 200
    assert not d.core.server_txs and not d.core.client_txs
    assert 0 < settled < per_call and blocks > 0
