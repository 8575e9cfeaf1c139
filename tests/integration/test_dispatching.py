"""Dispatching through ``sipdispatch run``: the algorithms, failover and call load
seen from outside, with sipp as the caller and scripted gateways.

The story of the seed article: 75/25 weights, round-robin, priority, MG1
rejecting (404, 503, or silent) while the caller only ever sees MG2's 200, call
load with ``maxload``, parallel forking with the loser cancelled, 503 when
nothing is usable, and the destinations read from SQLite, MariaDB and PostgreSQL
instead of a list file.

Nothing waits a fixed time: every wait polls a condition with a generous deadline.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..store.conftest import _server_db, unique_name
from .conftest import GatewayFactory, ProxyFactory
from .gateway import GatewayThread
from .proxyctl import ProxyProcess, basic_config, toml_str, write_list_file
from .sippctl import SippResult, free_port, run_sipp, start_sipp

pytestmark = pytest.mark.timeout(120)

SIPP_TIMEOUT = 60
WAIT = 20.0
"""Seconds any single condition may take on a loaded machine."""


# -- helpers ---------------------------------------------------------------------------


def start(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    lines: list[str],
    **config: object,
) -> ProxyProcess:
    """A proxy over a dispatcher.list of ``lines`` (basic_config, one route to set 1)."""
    port, admin = free_port(), free_port()
    list_file = write_list_file(tmp_path / "dispatcher.list", lines)
    toml = basic_config(port, admin, list_file, **config)  # type: ignore[arg-type]
    return proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def own_config(port: int, admin: int, store: str, routes: str, fr_timer: int = 30000) -> str:
    """A config with ``store`` lines in [dispatcher] and ``routes`` verbatim."""
    return f"""\
[server]
listen = ["udp:127.0.0.1:{port}", "tcp:127.0.0.1:{port}"]

[transaction]
fr_timer = {fr_timer}

[admin]
listen = "127.0.0.1:{admin}"

[dispatcher]
{store}
ping_interval = 0

{routes}
"""


def call(port: int, tmp_path: Path, scenario: str = "uac_call", **kw: object) -> SippResult:
    name = str(kw.pop("name", scenario))
    return run_sipp(
        scenario,
        "127.0.0.1",
        port,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / f"sipp-{name}",
        **kw,  # type: ignore[arg-type]
    )


def call_number(call_id: str) -> int:
    """sipp's Call-ID is ``<call number>-<pid>@<ip>``."""
    return int(call_id.split("-", 1)[0])


def sequence(*gws: GatewayThread) -> list[str]:
    """Which gateway got each call, in sipp's call order."""
    got = [(call_number(cid), gw.name) for gw in gws for cid in gw.call_ids()]
    return [name for _, name in sorted(got)]


_RECEIVED = re.compile(r"message received \[\d+\] bytes :\s*\n\s*\n", re.I)


def received_messages(result: SippResult) -> list[str]:
    """Every message sipp received (needs trace_msg), as text."""
    return [part.strip() for part in _RECEIVED.split(result.messages)[1:]]


def invite_finals(result: SippResult) -> list[tuple[int, str]]:
    """(status, To tag) of every final response to an INVITE sipp received."""
    finals = []
    for text in received_messages(result):
        first = text.split("\n", 1)[0]
        m = re.match(r"SIP/2\.0 (\d{3})", first)
        if not m or int(m[1]) < 200 or not re.search(r"^CSeq:\s*\d+ INVITE", text, re.M | re.I):
            continue
        tag = re.search(r"^To:.*;tag=([^;\s]+)", text, re.M | re.I)
        finals.append((int(m[1]), tag[1] if tag else ""))
    return finals


# -- distribution ----------------------------------------------------------------------


def test_weight_75_25_over_400_calls(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    """The story's 75/25 step: weight=75 on the new gateway, weight=25 on the old (algorithm 9)."""
    new, old = gateways("mg-new"), gateways("mg-old")
    proxy = start(
        tmp_path,
        proxy_factory,
        [f"1 {new.uri} 0 0 weight=75", f"1 {old.uri} 0 0 weight=25"],
        algorithm=9,
    )
    result = call(proxy.port, tmp_path, calls=400, rate=100, trace_msg=False)
    assert result.ok, result.report()
    assert result.successful == 400
    total = new.invites + old.invites
    assert total == 400, (new.describe(), old.describe())
    share = new.invites / total
    # Kamailio's weight table is 100 shuffled slots walked in turn: every 100 calls
    # are exactly 75/25, so 400 calls split 300/100.
    assert abs(share - 0.75) <= 0.03, (new.invites, old.invites)
    for gw in (new, old):
        gw.wait_for(lambda gw=gw: gw.byes == gw.invites, timeout=WAIT)


def test_round_robin_alternates(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, [f"1 {mg1.uri}", f"1 {mg2.uri}"], algorithm=4)
    result = call(proxy.port, tmp_path, calls=6, rate=20)
    assert result.ok, result.report()
    order = sequence(mg1, mg2)
    assert len(order) == 6
    assert all(a != b for a, b in itertools.pairwise(order)), order
    assert (mg1.invites, mg2.invites) == (3, 3)


def test_priority_sends_every_call_to_the_highest_priority_while_it_answers(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, [f"1 {mg2.uri} 0 5", f"1 {mg1.uri} 0 10"], algorithm=8)
    result = call(proxy.port, tmp_path, calls=5, rate=20)
    assert result.ok, result.report()
    assert (mg1.invites, mg2.invites) == (5, 0)


# -- failover: the article's failure_route ---------------------------------------------


@pytest.mark.parametrize(
    "mg1_does",
    [{"reject": 404}, {"reject": 503}, {"silent": True}],
    ids=["404", "503", "silent"],
)
def test_mg1_fails_caller_gets_mg2s_200_and_mg1_is_marked(
    sipp: str,
    tmp_path: Path,
    gateways: GatewayFactory,
    proxy_factory: ProxyFactory,
    mg1_does: dict[str, object],
) -> None:
    """Seed article: MG1 priority 10, MG2 priority 5, algorithm 8 and a failure route
    with ds_next_dst; MG1's failure never reaches the caller, and with
    ``mark_failed = "ip"`` (and no pings to bring it back) MG1 gets no more calls."""
    mg1 = gateways("mg1", **mg1_does)
    mg2 = gateways("mg2")
    proxy = start(
        tmp_path,
        proxy_factory,
        [f"1 {mg1.uri} 0 10", f"1 {mg2.uri} 0 5"],
        algorithm=8,
        fr_timer=1000,
        ping_interval=0,
        extra='mark_failed = "ip"\n',
    )
    first = call(proxy.port, tmp_path, calls=1, name="first")
    assert first.ok, first.report()
    assert (mg1.invites, mg2.invites) == (1, 1)
    finals = invite_finals(first)
    assert [status for status, _ in finals if status != 200] == [], finals
    assert {tag.split("-")[0] for _, tag in finals} == {"mg2"}, finals
    if "reject" in mg1_does:
        mg1.wait_for(lambda: mg1.acks == 1, timeout=WAIT)  # the 404/503 ACKed hop by hop
    # MG1 is now inactive: the next calls go straight to MG2.
    more = call(proxy.port, tmp_path, calls=3, rate=20, name="more")
    assert more.ok, more.report()
    assert (mg1.invites, mg2.invites) == (1, 4)


# -- algorithm 10: call load -----------------------------------------------------------


def test_call_load_spreads_held_calls_refuses_at_maxload_and_releases_on_bye(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy = start(
        tmp_path,
        proxy_factory,
        [f"1 {mg1.uri} 0 0 duid=mg1;maxload=2", f"1 {mg2.uri} 0 0 duid=mg2;maxload=2"],
        algorithm=10,
    )
    # Four calls held up for 5 s: two on each gateway, the least loaded each time.
    held = start_sipp(
        "uac_call_hold", "127.0.0.1", proxy.port, calls=4, rate=20, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp-held", extra_args=["-d", "5000"],
    )  # fmt: skip
    with held:
        for gw in (mg1, mg2):
            gw.wait_for(lambda gw=gw: gw.acks == 2, timeout=WAIT)
        assert sequence(mg1, mg2) in (["mg2", "mg1"] * 2, ["mg1", "mg2"] * 2)
        # Every destination at maxload: the new call gets no_destination (503).
        refused = call(proxy.port, tmp_path, "uac_expect_503", calls=1)
        assert refused.ok, refused.report()
        assert held.poll() is None, "the held calls ended before the check: raise -d"
        assert (mg1.invites, mg2.invites) == (2, 2)
        result = held.wait()
    assert result.ok, result.report()
    assert result.successful == 4
    for gw in (mg1, mg2):
        gw.wait_for(lambda gw=gw: gw.byes == 2, timeout=WAIT)
    # The BYEs brought the load back to zero: four calls up at once fit again.
    again = call(proxy.port, tmp_path, "uac_call_hold", calls=4, rate=50, extra_args=["-d", "1500"])
    assert again.ok, again.report()
    assert again.successful == 4
    assert (mg1.invites, mg2.invites) == (4, 4)


# -- algorithm 12: parallel forking ----------------------------------------------------


def test_parallel_forking_first_200_wins_and_the_loser_is_cancelled(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    fast = gateways("fast")
    slow = gateways("slow", answer_delay_ms=30_000)
    proxy = start(tmp_path, proxy_factory, [f"1 {fast.uri}", f"1 {slow.uri}"], algorithm=12)
    result = call(proxy.port, tmp_path, calls=1)
    assert result.ok, result.report()
    # Both rang (polled: a gateway thread may count a moment after sipp is done) ...
    slow.wait_for(lambda: slow.invites == 1, timeout=WAIT)
    assert (fast.invites, slow.invites) == (1, 1)
    # ... the slow one was cancelled (200 to the CANCEL, 487 to its INVITE, ACKed) ...
    slow.wait_for(
        lambda: (
            [(o.cancelled, o.final_code, o.acked) for o in slow.outcomes()] == [(True, 487, True)]
        ),
        timeout=WAIT,
    )
    # ... and the caller got exactly one final answer: the fast gateway's 200.
    finals = {(status, tag.split("-")[0]) for status, tag in invite_finals(result)}
    assert finals == {(200, "fast")}, invite_finals(result)
    fast.wait_for(lambda: fast.byes == 1, timeout=WAIT)
    assert slow.byes == 0


# -- nothing usable --------------------------------------------------------------------


def test_503_when_every_destination_is_disabled_or_the_set_does_not_exist(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    port, admin = free_port(), free_port()
    list_file = write_list_file(tmp_path / "dispatcher.list", [f"1 {mg1.uri} 4", f"1 {mg2.uri} 4"])
    routes = """\
[[route]]
match = { user_prefix = "9" }
set = 7

[[route]]
set = 1
"""
    toml = own_config(port, admin, f"list_file = {toml_str(str(list_file))}", routes)
    proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)
    disabled = call(port, tmp_path, "uac_expect_503", calls=2, rate=20, name="disabled")
    assert disabled.ok, disabled.report()
    no_set = call(port, tmp_path, "uac_expect_503", service="9000", name="no-set")
    assert no_set.ok, no_set.report()
    assert (mg1.invites, mg2.invites) == (0, 0)


# -- destinations from a database ------------------------------------------------------


@pytest.fixture(params=["sqlite", "mysql", "postgresql"])
def dispatcher_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(db_url, table) of a fresh database: an SQLite file, or a throw-away database
    (MariaDB) / schema (PostgreSQL) on the development servers, dropped afterwards;
    a server that cannot be reached skips the test (fails it on CI)."""
    table = unique_name("dispatcher_t")
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sipdispatch.db'}", table
        return
    gen = _server_db(request.param)
    url, drop = next(gen)
    try:
        yield url, table
    finally:
        drop()
        gen.close()


def test_proxy_reads_its_destinations_from_a_database(
    sipp: str,
    tmp_path: Path,
    gateways: GatewayFactory,
    proxy_factory: ProxyFactory,
    dispatcher_db: tuple[str, str],
) -> None:
    from sipdispatch.store import SqlStore

    url, table = dispatcher_db
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    store = SqlStore(url, table)
    try:
        store.add(1, mg1.uri, 0, 10, "", "Media Gateway 1")
        store.add(1, mg2.uri, 0, 5, "", "Media Gateway 2")
    finally:
        store.close()
    port, admin = free_port(), free_port()
    db = f"db_url = {toml_str(url)}\ntable_name = {toml_str(table)}"
    proxy_factory(
        own_config(port, admin, db, "[[route]]\nset = 1\nalgorithm = 8\n"),
        port=port,
        admin_port=admin,
        expect_clean_exit=True,
    )
    result = call(port, tmp_path, calls=1)
    assert result.ok, result.report()
    assert (mg1.invites, mg2.invites) == (1, 0)
    mg1.wait_for(lambda: mg1.byes == 1, timeout=WAIT)
