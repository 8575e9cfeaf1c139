"""The RPC methods, called directly: Kamailio's parameters, result shapes and fault texts.

Shapes are those ``ds_rpc_print_set`` builds in Kamailio's ``dispatcher.c`` and
jsonrpcs serialises (struct members added to an array are wrapped in a
one-member object: ``RECORDS: [{"SET": ...}]``, ``TARGETS: [{"DEST": ...}]``).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sipdispatch.admin import rpc
from sipdispatch.admin.rpc import Rpc, RpcError
from sipdispatch.server import Server
from sipdispatch.service import Iuids

from .conftest import ServerFactory, run, write_list

DEST_KEYS = ["IDX", "URI", "FLAGS", "PRIORITY", "IUID"]
ATTRS_KEYS = [
    "BODY",
    "DUID",
    "PROBING_COUNT",
    "MAXLOAD",
    "WEIGHT",
    "RWEIGHT",
    "SOCKET",
    "SOCKNAME",
    "PING_SOCKET",
    "OBPROXY",
    "OCMIN",
    "OCMAX",
]
FULL_KEYS = [
    "HOST",
    "IPADDR",
    "PORT",
    "PROTOID",
    "DNSTIME_SEC",
    "DNSTIME_USEC",
    "OCRATE",
    "OCIDX",
    "OCSEQ",
    "OCTIME_SEC",
    "OCTIME_USEC",
]
LATENCY_KEYS = ["AVG", "STD", "EST", "MAX", "TIMEOUT"]


def rpc_call(server: Server, method: str, *params: object) -> Any:
    return run(Rpc(server).call(method, list(params)))


def rpc_fault(server: Server, method: str, *params: object) -> RpcError:
    with pytest.raises(RpcError) as info:
        rpc_call(server, method, *params)
    return info.value


def targets(result: dict[str, Any], setid: int) -> list[dict[str, Any]]:
    for record in result["RECORDS"]:
        if record["SET"]["ID"] == setid:
            return [t["DEST"] for t in record["SET"]["TARGETS"]]
    raise AssertionError(f"no set {setid} in {result}")


def flags_of(server: Server, setid: int = 1) -> dict[str, str]:
    return {d["URI"]: d["FLAGS"] for d in targets(rpc_call(server, "dispatcher.list"), setid)}


# -- dispatcher.list -----------------------------------------------------------------------


def test_list_has_kamailios_structure_and_order(make_server: ServerFactory) -> None:
    server = make_server(
        [
            "2 sip:127.0.0.1:5080;transport=tcp 0 10 duid=abc;maxload=20",
            "1 sip:127.0.0.1:7070 8 0",
            "1 sip:127.0.0.1:7072 0 5",
        ]
    )
    result = rpc_call(server, "dispatcher.list")
    assert list(result) == ["NRSETS", "RECORDS"]
    assert result["NRSETS"] == 2
    assert [r["SET"]["ID"] for r in result["RECORDS"]] == [1, 2]
    assert all(
        list(r) == ["SET"] and list(r["SET"]) == ["ID", "TARGETS"] for r in result["RECORDS"]
    )
    set1 = targets(result, 1)
    # Priority descending inside a set, as Kamailio orders it.
    assert [d["URI"] for d in set1] == ["sip:127.0.0.1:7072", "sip:127.0.0.1:7070"]
    assert {k: v for k, v in set1[0].items() if k != "IUID"} == {
        "IDX": 0, "URI": "sip:127.0.0.1:7072", "FLAGS": "AX", "PRIORITY": 5,
    }  # fmt: skip
    assert set1[1]["FLAGS"] == "AP"  # flags 8 = probing
    assert set1[1]["IDX"] == 1  # the index in the set, in dispatching order
    (dest,) = targets(result, 2)
    assert list(dest) == [*DEST_KEYS, "ATTRS"]  # ATTRS only when the destination has attrs
    assert list(dest["ATTRS"]) == ATTRS_KEYS
    assert dest["ATTRS"]["BODY"] == "duid=abc;maxload=20"
    assert dest["ATTRS"]["DUID"] == "abc"
    assert dest["ATTRS"]["MAXLOAD"] == 20
    assert dest["ATTRS"]["SOCKET"] is None  # jsonrpcs prints an unset str as null


def test_list_short_omits_attrs_and_full_shows_everything(make_server: ServerFactory) -> None:
    server = make_server(["1 sip:127.0.0.1:7070 0 0 weight=50"])
    (short,) = targets(rpc_call(server, "dispatcher.list", "short"), 1)
    assert list(short) == DEST_KEYS
    (full,) = targets(rpc_call(server, "dispatcher.list", "FULL"), 1)
    assert list(full) == [*DEST_KEYS, *FULL_KEYS, "ATTRS", "LATENCY", "RUNTIME"]
    assert full["HOST"] == "127.0.0.1" and full["IPADDR"] == "127.0.0.1"
    assert full["PORT"] == 7070 and full["PROTOID"] == 0
    assert list(full["LATENCY"]) == LATENCY_KEYS
    assert full["RUNTIME"] == {"DLGLOAD": 0}
    # Any other mode word is the normal listing, as Kamailio.
    assert rpc_call(server, "dispatcher.list", "verbose") == rpc_call(server, "dispatcher.list")


def test_list_latency_follows_ping_latency_stats(make_server: ServerFactory) -> None:
    server = make_server(
        ["1 sip:127.0.0.1:7070 0 0 latency=40"], dispatcher={"ping_latency_stats": True}
    )
    (dest,) = targets(rpc_call(server, "dispatcher.list"), 1)
    assert dest["LATENCY"] == {"AVG": 40.0, "STD": 0.0, "EST": 40.0, "MAX": 40, "TIMEOUT": 0}
    assert "RUNTIME" not in dest


def test_list_runtime_shown_when_call_load_is_used(make_server: ServerFactory) -> None:
    server = make_server(
        ["1 sip:127.0.0.1:7070 0 0 duid=a;maxload=5"], routes=[{"set": 1, "algorithm": 10}]
    )
    (dest,) = targets(rpc_call(server, "dispatcher.list"), 1)
    assert dest["RUNTIME"] == {"DLGLOAD": 0}
    assert "LATENCY" not in dest


def test_list_noping_destination_shows_letter_n(make_server: ServerFactory) -> None:
    server = make_server(["1 sip:127.0.0.1:7070 32"])
    assert flags_of(server) == {"sip:127.0.0.1:7070": "AN"}


def test_list_with_no_sets_is_kamailios_fault(make_server: ServerFactory) -> None:
    server = make_server([])
    err = rpc_fault(server, "dispatcher.list")
    assert (err.code, err.message) == (500, "No Destination Sets")


def test_list_gives_each_destination_a_kamailio_style_unique_id_kept_until_a_reload(
    make_server: ServerFactory,
) -> None:
    server = make_server(
        ["1 sip:127.0.0.1:5071", "1 sip:127.0.0.1:5072", "2 sip:127.0.0.1:5073 0 0 duid=x"]
    )
    listed = rpc_call(server, "dispatcher.list", "short")
    iuids = {d["URI"]: d["IUID"] for setid in (1, 2) for d in targets(listed, setid)}
    assert len(set(iuids.values())) == 3
    # Kamailio's sruid: dspt-<start time>-<pid>-<counter, lowest hex digit first>-<set id>
    for iuid in iuids.values():
        prefix, start, pid, counter, setid = iuid.split("-")
        assert prefix == "dspt" and int(start, 16) > 0 and int(pid, 16) == os.getpid()
        assert int(counter[::-1], 16) >= 1 and setid in ("1", "2")
    assert iuids["sip:127.0.0.1:5073"].endswith("-2")
    rpc_call(server, "dispatcher.add", 1, "sip:127.0.0.1:5074")
    after_add = rpc_call(server, "dispatcher.list", "short")
    again = {d["URI"]: d["IUID"] for setid in (1, 2) for d in targets(after_add, setid)}
    assert {u: again[u] for u in iuids} == iuids  # an add keeps the others' ids
    assert again["sip:127.0.0.1:5074"] not in iuids.values()
    rpc_call(server, "dispatcher.reload")
    reloaded = rpc_call(server, "dispatcher.list", "short")
    fresh = {d["URI"]: d["IUID"] for setid in (1, 2) for d in targets(reloaded, setid)}
    assert not set(fresh.values()) & set(again.values())  # a reload loads them anew


def test_iuid_counter_is_written_lowest_hex_digit_first_as_kamailios_sruid() -> None:
    iuids = Iuids(now=lambda: 0x6700_0000, pid=0x1F3A)
    names = [iuids.next(1) for _ in range(26)]
    assert names[0] == "dspt-67000000-1f3a-1-1"
    assert names[15] == "dspt-67000000-1f3a-01-1"  # 16 = 0x10
    assert names[25] == "dspt-67000000-1f3a-a1-1"  # 26 = 0x1a
    assert iuids.next(0).endswith("-b1-0")


def test_list_attrs_show_sockets_by_kamailios_names(make_server: ServerFactory) -> None:
    server = make_server(["1 sip:127.0.0.1:7070 0 0 sockname=lan;ping_socket=udp:127.0.0.1:5090"])
    (dest,) = targets(rpc_call(server, "dispatcher.list"), 1)
    assert dest["ATTRS"]["SOCKNAME"] == "lan"
    assert dest["ATTRS"]["PING_SOCKET"] == "udp:127.0.0.1:5090"
    assert dest["ATTRS"]["SOCKET"] is None and dest["ATTRS"]["OBPROXY"] is None


# -- dispatcher.set_state / set_duid_state ---------------------------------------------------


def test_set_state_disables_and_enables_one_destination(make_server: ServerFactory) -> None:
    server = make_server()
    assert rpc_call(server, "dispatcher.set_state", "dx", 1, "sip:127.0.0.1:5071") == (
        "Ok. Dispatcher state updated."
    )
    assert flags_of(server) == {"sip:127.0.0.1:5071": "DX", "sip:127.0.0.1:5072": "AX"}
    # A disabled destination comes back with set_state (Kamailio ds_reinit_state).
    rpc_call(server, "dispatcher.set_state", "ap", 1, "SIP:127.0.0.1:5071")
    assert flags_of(server)["sip:127.0.0.1:5071"] == "AP"


def test_set_state_all_and_numeric_states(make_server: ServerFactory) -> None:
    server = make_server()
    rpc_call(server, "dispatcher.set_state", "ip", 1, "all")
    assert set(flags_of(server).values()) == {"IP"}
    rpc_call(server, "dispatcher.set_state", "3", "1", "all")  # 3 = trying; group as text
    assert set(flags_of(server).values()) == {"TX"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["", 1, "all"], "Invalid State Parameter"),
        (["zz", 1, "all"], "Unknown State Value"),
        (["ap", 9, "all"], "State Update Failed: destination set 9 not found"),
        (["ap", 1, "sip:127.0.0.1:9"], "State Update Failed: set 1 has no destination"),
        (["ap", 1], "Invalid Parameters: missing ADDRESS"),
        (["ap", "one", "all"], "Invalid Parameters: GROUP must be an integer"),
        (["ap", "\u00b9", "all"], "Invalid Parameters: GROUP must be an integer"),
        (["ap", 1, "all", "extra"], "Invalid Parameters: 1 parameter(s) too many"),
        # Kamailio reads the three parameters before it looks at the state.
        (["zz"], "Invalid Parameters: missing GROUP"),
        (["", "one", "all"], "Invalid Parameters: GROUP must be an integer"),
        (["zz", 1], "Invalid Parameters: missing ADDRESS"),
    ],
)
def test_set_state_faults(make_server: ServerFactory, params: list[object], message: str) -> None:
    server = make_server()
    err = rpc_fault(server, "dispatcher.set_state", *params)
    assert err.code == 500
    assert err.message.startswith(message), err.message


def test_set_duid_state(make_server: ServerFactory) -> None:
    server = make_server(["1 sip:127.0.0.1:5071 0 0 duid=gw1", "1 sip:127.0.0.1:5072 0 0 duid=gw2"])
    rpc_call(server, "dispatcher.set_duid_state", "ip", 1, "GW2")
    assert flags_of(server) == {"sip:127.0.0.1:5071": "AX", "sip:127.0.0.1:5072": "IP"}
    err = rpc_fault(server, "dispatcher.set_duid_state", "ip", 1, "gw9")
    assert err.message.startswith("State Update Failed: set 1 has no destination with duid gw9")


# -- dispatcher.add / remove / reload ---------------------------------------------------------


def test_add_and_remove_change_the_running_sets_only(
    make_server: ServerFactory, list_path: Path
) -> None:
    server = make_server()
    before = list_path.read_text()
    ok = rpc_call(server, "dispatcher.add", 3, "127.0.0.1:5090", 8, 7, "weight=10")
    assert ok == "Ok. Dispatcher destination added."
    (dest,) = targets(rpc_call(server, "dispatcher.list"), 3)
    # "sip:" added as Kamailio's pack_dest does; flags 8 -> probing.
    assert dest["URI"] == "sip:127.0.0.1:5090" and dest["FLAGS"] == "AP"
    assert dest["PRIORITY"] == 7 and dest["ATTRS"]["WEIGHT"] == 10
    assert server.router.sets.find(3, "sip:127.0.0.1:5090").addr == ("127.0.0.1", 5090)  # type: ignore[union-attr]
    assert rpc_call(server, "dispatcher.remove", 3, "sip:127.0.0.1:5090") == (
        "Ok. Dispatcher destination removed."
    )
    assert [r["SET"]["ID"] for r in rpc_call(server, "dispatcher.list")["RECORDS"]] == [1]
    assert list_path.read_text() == before  # in memory only, as Kamailio's RPC


def test_add_keeps_the_state_of_existing_destinations(make_server: ServerFactory) -> None:
    server = make_server()
    rpc_call(server, "dispatcher.set_state", "dx", 1, "sip:127.0.0.1:5071")
    rpc_call(server, "dispatcher.add", 1, "sip:127.0.0.1:5073")
    flags = flags_of(server)
    assert flags["sip:127.0.0.1:5071"] == "DX" and flags["sip:127.0.0.1:5073"] == "AX"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([1, "sip:"], "Adding dispatcher dst failed: dispatcher.add: bad URI"),
        ([1, "sip:gw.nosuch.invalid"], "could not resolve gw.nosuch.invalid"),
        ([1, "sip:127.0.0.1", 0, 0, "weight=500"], "bad attrs"),
        ([1], "Invalid Parameters: missing ADDRESS"),
    ],
)
def test_add_faults(make_server: ServerFactory, params: list[object], message: str) -> None:
    server = make_server()
    before = flags_of(server)
    err = rpc_fault(server, "dispatcher.add", *params)
    assert message in err.message, err.message
    assert flags_of(server) == before


def test_remove_faults(make_server: ServerFactory) -> None:
    server = make_server()
    assert rpc_fault(server, "dispatcher.remove", 1, "sip:127.0.0.1:9").message == (
        "Removing dispatcher dst failed: set 1 has no destination sip:127.0.0.1:9"
    )
    assert (
        "destination set 4 not found"
        in rpc_fault(server, "dispatcher.remove", 4, "gw1.example.com").message
    )
    assert "bad URI 'x'" in rpc_fault(server, "dispatcher.remove", 1, "x").message


def test_reload_picks_up_the_list_file(make_server: ServerFactory, list_path: Path) -> None:
    server = make_server()
    rpc_call(server, "dispatcher.set_state", "dx", 1, "sip:127.0.0.1:5071")
    write_list(list_path, ["1 sip:127.0.0.1:5071", "1 sip:127.0.0.1:5072", "1 sip:127.0.0.1:5073"])
    assert rpc_call(server, "dispatcher.reload") == "Ok. Dispatcher successfully reloaded."
    flags = flags_of(server)
    assert set(flags) == {f"sip:127.0.0.1:{p}" for p in (5071, 5072, 5073)}
    assert flags["sip:127.0.0.1:5071"] == "DX"  # keep_state_on_reload (the default)
    assert server.dispatcher.reloads == {"ok": 1}


def test_reload_refused_for_an_unresolvable_host_keeps_the_running_list(
    make_server: ServerFactory, list_path: Path
) -> None:
    server = make_server()
    sets_before = server.router.sets
    write_list(list_path, ["1 sip:127.0.0.1:5071", "1 sip:mg9.nosuch.invalid:5060"])
    err = rpc_fault(server, "dispatcher.reload")
    assert err.code == 500
    assert err.message.startswith(f"Reload Failed: {list_path}:3: could not resolve mg9.nosuch")
    assert err.message.endswith("the running list is unchanged")
    assert server.router.sets is sets_before
    assert set(flags_of(server)) == {"sip:127.0.0.1:5071", "sip:127.0.0.1:5072"}
    assert server.dispatcher.reloads == {"failed": 1}


def test_reload_names_a_bad_line(make_server: ServerFactory, list_path: Path) -> None:
    server = make_server()
    write_list(list_path, ["1 sip:127.0.0.1:5071", "x sip:127.0.0.1:5072"])
    err = rpc_fault(server, "dispatcher.reload")
    assert f"{list_path}:3: bad setid 'x'" in err.message


def test_second_reload_while_one_runs_is_ongoing_reload(make_server: ServerFactory) -> None:
    server = make_server()

    async def scenario() -> tuple[object, RpcError]:
        methods = Rpc(server)
        first = asyncio.create_task(methods.call("dispatcher.reload", []))
        await asyncio.sleep(0)  # the first now holds the lock, loading in a thread
        with pytest.raises(RpcError) as info:
            await methods.call("dispatcher.add", [1, "sip:127.0.0.1:5079"])
        return await first, info.value

    result, err = run(scenario())
    assert result == "Ok. Dispatcher successfully reloaded."
    assert err.message.startswith("Ongoing reload")


def test_reload_delta_refuses_a_reload_add_or_remove_too_soon_after_the_last(
    make_server: ServerFactory,
) -> None:
    server = make_server(dispatcher={"reload_delta": 5})
    clock = [100.0]
    server._clock = lambda: clock[0]
    assert rpc_call(server, "dispatcher.reload") == "Ok. Dispatcher successfully reloaded."
    clock[0] = 104.0
    for method, params in (
        ("dispatcher.reload", []),
        ("dispatcher.add", [1, "sip:127.0.0.1:5079"]),
        ("dispatcher.remove", [1, "sip:127.0.0.1:5071"]),
    ):
        err = rpc_fault(server, method, *params)
        assert err.code == 500
        assert err.message == (
            "Ongoing reload: the last reload, add or remove was 4.0 s ago; "
            "dispatcher.reload_delta is 5 s"
        )
    assert set(flags_of(server)) == {"sip:127.0.0.1:5071", "sip:127.0.0.1:5072"}
    clock[0] = 105.0
    assert rpc_call(server, "dispatcher.add", 1, "sip:127.0.0.1:5079").startswith("Ok.")
    clock[0] = 109.0  # the add started the wait anew, as in Kamailio
    assert rpc_fault(server, "dispatcher.reload").message.startswith("Ongoing reload")
    clock[0] = 110.0
    assert rpc_call(server, "dispatcher.reload").startswith("Ok.")


def test_without_reload_delta_reloads_follow_each_other_at_once(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    for _ in range(3):
        assert rpc_call(server, "dispatcher.reload") == "Ok. Dispatcher successfully reloaded."


# -- dispatcher.ping_active / hash -------------------------------------------------------------


class FakeProber:
    def __init__(self) -> None:
        self.active = True
        self.rounds = 0

    def ping_now(self) -> int:
        self.rounds += 1
        return 0


def test_ping_active_reads_and_switches_the_prober(make_server: ServerFactory) -> None:
    server = make_server(dispatcher={"ping_interval": 5})
    prober = FakeProber()
    server.prober = prober  # type: ignore[assignment]
    assert rpc_call(server, "dispatcher.ping_active") == {"OldPingState": 1}
    assert rpc_call(server, "dispatcher.ping_active", 0) == {"NewPingState": 0, "OldPingState": 1}
    assert prober.active is False and prober.rounds == 0
    assert rpc_call(server, "dispatcher.ping_active", 1) == {"NewPingState": 1, "OldPingState": 0}
    assert prober.active is True and prober.rounds == 1  # states refreshed at once


def test_ping_active_without_a_prober(make_server: ServerFactory) -> None:
    server = make_server()  # ping_interval = 0 and never started
    assert rpc_call(server, "dispatcher.ping_active") == {"OldPingState": 0}
    assert "probing is not running" in rpc_fault(server, "dispatcher.ping_active", 1).message


class FakeProbe:
    """Answers every probe at once, as the core does when the reply comes."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.asked: list[tuple[str, str]] = []

    def current(self, dest: object) -> object:
        return dest

    def probe(self, dest: Any, now: float, who: str, done: Any) -> bool:
        self.asked.append((dest.uri, who))
        done(self.status, None, 7, None)
        return True


def test_ping_one_destination_returns_its_code_and_latency_and_names_the_caller(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    prober = FakeProbe(408)
    server.prober = prober  # type: ignore[assignment]
    result = rpc_call(server, "dispatcher.ping", 1, "sip:127.0.0.1:5071")
    assert result == {
        "SET": 1, "URI": "sip:127.0.0.1:5071", "METHOD": "OPTIONS", "CODE": 408,
        "REASON": "no reply", "ALIVE": False, "LATENCY": 7, "FLAGS": "AX",
    }  # fmt: skip
    assert prober.asked == [("sip:127.0.0.1:5071", "rpc")]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([9, "sip:127.0.0.1:5071"], "Ping Failed: destination set 9 not found"),
        ([1, "sip:127.0.0.9:5071"], "Ping Failed: set 1 has no destination sip:127.0.0.9:5071"),
        ([1], "Invalid Parameters"),
    ],
)
def test_ping_faults(make_server: ServerFactory, params: list[object], message: str) -> None:
    server = make_server()
    server.prober = FakeProbe(200)  # type: ignore[assignment]
    assert rpc_fault(server, "dispatcher.ping", *params).message.startswith(message)


def test_ping_before_the_prober_runs_is_a_fault(make_server: ServerFactory) -> None:
    assert (
        "prober is not running"
        in rpc_fault(make_server(), "dispatcher.ping", 1, "sip:127.0.0.1:5071").message
    )


def test_hash_matches_kamailio(make_server: ServerFactory) -> None:
    server = make_server()
    # Kamailio docs: dispatcher.hash 4 bob server.com.
    assert rpc_call(server, "dispatcher.hash", 4, "bob", "server.com") == {
        "hashid": 3883463682,
        "slot": 2,
    }
    assert rpc_call(server, "dispatcher.hash", 0, "alice", "server.com")["slot"] == 0
    only = rpc_call(server, "dispatcher.hash", 8, "bob")
    assert only["hashid"] != 3883463682
    assert rpc_fault(server, "dispatcher.hash", 4).message.startswith(
        "Invalid Parameters: missing VAL1 (usage: dispatcher.hash NSLOTS VAL1 [VAL2])"
    )


# -- core.* / system.* -------------------------------------------------------------------------


def test_core_version_and_uptime(make_server: ServerFactory) -> None:
    server = make_server()
    assert rpc_call(server, "core.version").startswith("sipdispatch 0.")
    server.started = 1_000_000.0
    up = rpc_call(server, "core.uptime")
    assert list(up) == ["now", "up_since", "uptime"]
    assert up["up_since"] == __import__("time").ctime(1_000_000.0)
    assert up["uptime"] > 0


def test_system_list_methods_and_help(make_server: ServerFactory) -> None:
    server = make_server()
    names = rpc_call(server, "system.listMethods")
    for name in (
        "dispatcher.list",
        "dispatcher.reload",
        "dispatcher.set_state",
        "dispatcher.set_duid_state",
        "dispatcher.ping_active",
        "dispatcher.ping",
        "dispatcher.add",
        "dispatcher.remove",
        "dispatcher.hash",
        "core.version",
        "core.uptime",
        "system.listMethods",
    ):
        assert name in names
    assert "STATE GROUP ADDRESS|all" in rpc_call(
        server, "system.methodHelp", "dispatcher.set_state"
    )


# -- the JSON-RPC envelope -----------------------------------------------------------------------


def test_envelope(make_server: ServerFactory) -> None:
    server = make_server()

    def answer(payload: object) -> dict[str, Any] | None:
        return run(Rpc(server).handle_payload(payload))

    ok = answer(
        {
            "jsonrpc": "2.0",
            "method": "dispatcher.hash",
            "params": [4, "bob", "server.com"],
            "id": "x",
        }
    )
    assert ok == {"jsonrpc": "2.0", "result": {"hashid": 3883463682, "slot": 2}, "id": "x"}
    named = answer(
        {
            "jsonrpc": "2.0",
            "method": "dispatcher.hash",
            "params": {"nslots": 4, "v1": "bob", "v2": "server.com"},
            "id": 2,
        }
    )
    assert named is not None and named["result"]["slot"] == 2
    missing = answer({"jsonrpc": "2.0", "method": "nosuch", "id": 3})
    assert missing is not None and missing["error"]["code"] == -32601
    assert missing["error"]["message"].startswith("Method Not Found")
    for bad in (
        {"method": "core.version", "id": 4},
        {"jsonrpc": "2.0", "id": 4},
        {"jsonrpc": "2.0", "method": "core.version", "params": 3, "id": 4},
        [1],
    ):
        response = answer(bad)
        assert response is not None and response["error"]["code"] == -32600, bad
    # A notification gets no answer, but runs.
    assert (
        answer({"jsonrpc": "2.0", "method": "dispatcher.set_state", "params": ["dx", 1, "all"]})
        is None
    )
    assert set(flags_of(server).values()) == {"DX"}


def test_a_bug_in_a_method_is_an_internal_error(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server()

    async def broken(server: Server, params: rpc.Params) -> object:
        raise KeyError("boom")

    method = rpc.METHODS["core.version"]
    monkeypatch.setitem(
        rpc.METHODS,
        "core.version",  # type: ignore[arg-type]
        rpc.RpcMethod(method.name, broken, "", ""),
    )
    response = run(
        Rpc(server).handle_payload({"jsonrpc": "2.0", "method": "core.version", "id": 1})
    )
    assert response is not None and response["error"]["code"] == -32603


def test_state_changes_of_set_state_go_to_the_state_log(make_server: ServerFactory) -> None:
    server = make_server()
    changes: list[Any] = []
    server.state_log.subscribe(changes.append)
    rpc_call(server, "dispatcher.set_state", "dx", 1, "all")
    rpc_call(server, "dispatcher.set_state", "dx", 1, "all")  # no change, nothing recorded
    assert sorted((c.uri, c.old, c.new) for c in changes) == [
        ("sip:127.0.0.1:5071", "AX", "DX"),
        ("sip:127.0.0.1:5072", "AX", "DX"),
    ]
    assert changes[0].reason == "dispatcher.set_state dx"
    assert {c.origin for c in changes} == {"admin"}


def test_oc_set_puts_a_destination_under_overload_control_and_oclist_shows_it(
    make_server: ServerFactory,
) -> None:
    server = make_server(("1 sip:127.0.0.1:5071 0 0 ocmax=60", "1 sip:127.0.0.1:5072"))
    listed = {r["uri"]: r for r in rpc_call(server, "dispatcher.oclist", 1)}
    assert {u: (r["ocrate"], r["ocmin"], r["ocmax"]) for u, r in listed.items()} == {
        "sip:127.0.0.1:5071": (0, 0, 60),
        "sip:127.0.0.1:5072": (0, 0, 100),
    }
    before = time.time()
    ok = rpc_call(server, "dispatcher.oc_set", 1, "sip:127.0.0.1:5071", 80, 30000, 7)
    assert ok == "Ok. Overload control updated."
    first = {r["uri"]: r for r in rpc_call(server, "dispatcher.oclist", 1)}["sip:127.0.0.1:5071"]
    assert (first["ocrate"], first["ocseq"]) == (60, 7)  # bounded by its ocmax
    assert before + 25 < first["octime_sec"] + first["octime_usec"] / 1e6 < before + 35
    targets = rpc_call(server, "dispatcher.list", "full")["RECORDS"][0]["SET"]["TARGETS"]
    [full] = [t["DEST"] for t in targets if t["DEST"]["URI"] == "sip:127.0.0.1:5071"]
    assert (full["OCRATE"], full["OCSEQ"]) == (60, 7)
    # Kamailio's ds_oc_set_attrs: an older or equal sequence changes nothing.
    assert rpc_fault(server, "dispatcher.oc_set", 1, "sip:127.0.0.1:5071", 10, 0, 7).message == (
        "Overload Control Not Updated: sequence 7 is not newer than 7"
    )
    assert rpc_fault(server, "dispatcher.oclist", 9).message == (
        "Destination Group Not Found: set 9"
    )
    assert rpc_fault(server, "dispatcher.oc_set", 1, "sip:127.0.0.1:5071", 101, 0, 8).message == (
        "Invalid Parameters: RATE must be 0..100, not 101"
    )
