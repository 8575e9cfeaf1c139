"""The admin API of a running ``sipdispatch run``: every JSON-RPC method over real
HTTP, reloads while calls flow, the bearer token and the metrics.

The RPC client here is plain ``urllib`` (not sipdispatch's own client), and
result shapes are compared with Kamailio's ``dispatcher.list`` as
``ds_rpc_print_set`` builds it and jsonrpcs serialises it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import GatewayFactory, ProxyFactory
from .gateway import GatewayThread
from .proxyctl import ProxyProcess, basic_config, proxy_env, write_list_file
from .sippctl import free_port, run_sipp, start_sipp

pytestmark = pytest.mark.timeout(180)

SIPP_TIMEOUT = 60
HTTP_TIMEOUT = 30


# -- helpers -----------------------------------------------------------------------------------


def http(
    url: str, body: bytes | None = None, token: str | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; (status, headers, body) whatever the status."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def rpc(proxy: ProxyProcess, method: str, *params: object, token: str | None = None) -> Any:
    """Call a method; return the JSON-RPC response object (``result`` or ``error``)."""
    payload = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
    status, headers, body = http(f"{proxy.admin_url}/RPC", json.dumps(payload).encode(), token)
    response = json.loads(body)
    assert headers["Content-Type"].startswith("application/json")
    assert response["jsonrpc"] == "2.0" and response["id"] == 1, response
    assert status == (200 if "result" in response else status), response
    return response


def result(proxy: ProxyProcess, method: str, *params: object, token: str | None = None) -> Any:
    response = rpc(proxy, method, *params, token=token)
    assert "result" in response, response
    return response["result"]


def dests(listing: dict[str, Any], setid: int = 1) -> list[dict[str, Any]]:
    for record in listing["RECORDS"]:
        if record["SET"]["ID"] == setid:
            return [t["DEST"] for t in record["SET"]["TARGETS"]]
    return []


def flags(proxy: ProxyProcess, setid: int = 1) -> dict[str, str]:
    return {d["URI"]: d["FLAGS"] for d in dests(result(proxy, "dispatcher.list"), setid)}


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}")
        time.sleep(0.05)


def start_proxy(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    lines: list[str],
    *,
    dispatcher_extra: str = "",
    admin_listen: str | None = None,
    token: str = "",
    algorithm: int = 4,
) -> tuple[ProxyProcess, Path]:
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(
        tmp_path / "dispatcher.list", ["# setid uri flags prio attrs", *lines]
    )
    toml = basic_config(port, admin, list_file, algorithm=algorithm)
    toml = toml.replace("ping_interval = 0\n", f"ping_interval = 0\n{dispatcher_extra}\n")
    if admin_listen is not None:
        toml = toml.replace(f'listen = "127.0.0.1:{admin}"', f'listen = "{admin_listen}:{admin}"')
    if token:
        toml = toml.replace("[admin]\n", f'[admin]\ntoken = "{token}"\n')
    proxy = proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)
    return proxy, list_file


def calls(proxy: ProxyProcess, tmp_path: Path, n: int, name: str) -> None:
    res = run_sipp(
        "uac_call",
        "127.0.0.1",
        proxy.port,
        calls=n,
        rate=20,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / name,
    )
    assert res.ok and res.successful == n, res.report()


def gw_line(gw: GatewayThread, rest: str = "") -> str:
    return f"1 {gw.uri} {rest}".rstrip()


# -- every method --------------------------------------------------------------------------------


def test_dispatcher_list_has_kamailios_shape(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy, _ = start_proxy(
        tmp_path,
        proxy_factory,
        [gw_line(mg1, "0 0 weight=75;duid=mg1"), gw_line(mg2, "8 5"), f"2 {mg2.uri}"],
        dispatcher_extra="ping_latency_stats = true",
    )
    listing = result(proxy, "dispatcher.list")
    assert list(listing) == ["NRSETS", "RECORDS"] and listing["NRSETS"] == 2
    set1 = dests(listing, 1)
    # Priority 5 first; mg2 has flag 8 (probing).
    assert [(d["URI"], d["FLAGS"], d["PRIORITY"]) for d in set1] == [
        (mg2.uri, "AP", 5),
        (mg1.uri, "AX", 0),
    ]
    dest_keys = ["IDX", "URI", "FLAGS", "PRIORITY", "IUID"]
    assert list(set1[0]) == [*dest_keys, "LATENCY"]
    assert list(set1[1]) == [*dest_keys, "ATTRS", "LATENCY"]
    assert [d["IDX"] for d in set1] == [0, 1] and set1[0]["IUID"].startswith("dspt-")
    assert set1[1]["ATTRS"]["WEIGHT"] == 75 and set1[1]["ATTRS"]["DUID"] == "mg1"
    assert list(set1[1]["LATENCY"]) == ["AVG", "STD", "EST", "MAX", "TIMEOUT"]
    short = dests(result(proxy, "dispatcher.list", "short"), 1)
    # short leaves out ATTRS only (Kamailio prints LATENCY whatever the mode).
    assert [list(d) for d in short] == [[*dest_keys, "LATENCY"]] * 2
    full = dests(result(proxy, "dispatcher.list", "full"), 1)
    assert full[0]["IPADDR"] == "127.0.0.1" and full[0]["RUNTIME"] == {"DLGLOAD": 0}


def test_set_state_drains_and_restores_a_gateway(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, sipp: str
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy, _ = start_proxy(
        tmp_path, proxy_factory, [gw_line(mg1, "0 0 duid=one"), gw_line(mg2, "0 0 duid=two")]
    )
    # The story's operator step: drain mg1 for maintenance.
    assert result(proxy, "dispatcher.set_state", "dx", 1, mg1.uri) == (
        "Ok. Dispatcher state updated."
    )
    assert flags(proxy) == {mg1.uri: "DX", mg2.uri: "AX"}
    calls(proxy, tmp_path, 4, "drained")
    assert mg1.invites == 0 and mg2.invites == 4
    result(proxy, "dispatcher.set_state", "ap", 1, mg1.uri)
    calls(proxy, tmp_path, 4, "restored")
    assert mg1.invites == 2 and mg2.invites == 6
    result(proxy, "dispatcher.set_duid_state", "ip", 1, "two")
    result(proxy, "dispatcher.set_state", "ix", 1, "all")
    assert flags(proxy) == {mg1.uri: "IX", mg2.uri: "IX"}
    error = rpc(proxy, "dispatcher.set_state", "qq", 1, "all")["error"]
    assert error["code"] == 500 and error["message"].startswith("Unknown State Value")


def test_calls_already_on_a_drained_gateway_still_get_their_bye(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    """Disabled and inactive destinations get no new calls, but in-dialog requests of
    calls already there still reach them (they follow the route set, not the dispatcher)."""
    mg1 = gateways("mg1")
    proxy, _ = start_proxy(tmp_path, proxy_factory, [gw_line(mg1)])
    held = start_sipp(
        "uac_call_hold", "127.0.0.1", proxy.port, calls=2, rate=20, timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "held", extra_args=["-d", "4000"],
    )  # fmt: skip
    with held:
        mg1.wait_for(lambda: mg1.acks == 2, timeout=20)
        assert result(proxy, "dispatcher.set_state", "dx", 1, mg1.uri) is not None
        assert flags(proxy)[mg1.uri] == "DX"
        assert held.poll() is None, "the held calls ended before the drain: raise -d"
        done = held.wait()
    assert done.ok and done.successful == 2, done.report()
    mg1.wait_for(lambda: mg1.byes == 2, timeout=20)
    # ... while a new call finds nothing usable.
    refused = run_sipp(
        "uac_expect_503", "127.0.0.1", proxy.port, timeout=SIPP_TIMEOUT, workdir=tmp_path / "new"
    )
    assert refused.ok, refused.report()
    assert mg1.invites == 2


def test_add_and_remove_in_memory_route_calls(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, sipp: str
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy, list_file = start_proxy(tmp_path, proxy_factory, [gw_line(mg1)])
    before = list_file.read_text()
    assert result(proxy, "dispatcher.add", 1, mg2.uri, 0, 0, "weight=10") == (
        "Ok. Dispatcher destination added."
    )
    assert set(flags(proxy)) == {mg1.uri, mg2.uri}
    calls(proxy, tmp_path, 4, "added")
    assert mg1.invites == 2 and mg2.invites == 2
    assert result(proxy, "dispatcher.remove", 1, mg2.uri) == "Ok. Dispatcher destination removed."
    calls(proxy, tmp_path, 2, "removed")
    assert mg1.invites == 4 and mg2.invites == 2
    assert list_file.read_text() == before  # the RPC changes memory only, as Kamailio's
    error = rpc(proxy, "dispatcher.add", 1, "sip:mg9.nosuch.invalid")["error"]
    assert error["message"].startswith("Adding dispatcher dst failed")
    assert "mg9.nosuch.invalid" in error["message"]


def test_other_methods(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1 = gateways("mg1")
    proxy, _ = start_proxy(tmp_path, proxy_factory, [gw_line(mg1)])
    assert result(proxy, "dispatcher.hash", 4, "bob", "server.com") == {
        "hashid": 3883463682,
        "slot": 2,
    }
    assert result(proxy, "dispatcher.ping_active") == {"OldPingState": 1}
    assert result(proxy, "dispatcher.ping_active", 0) == {"NewPingState": 0, "OldPingState": 1}
    assert result(proxy, "dispatcher.ping_active") == {"OldPingState": 0}
    assert result(proxy, "core.version").startswith("sipdispatch ")
    uptime = result(proxy, "core.uptime")
    assert set(uptime) == {"now", "up_since", "uptime"} and uptime["uptime"] >= 0
    methods = result(proxy, "system.listMethods")
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
        assert name in methods
    missing = rpc(proxy, "no.such")
    assert missing["error"]["code"] == -32601
    status, _, body = http(f"{proxy.admin_url}/RPC", b"[not json")
    assert status == 400 and json.loads(body)["error"]["code"] == -32700


# -- reload ------------------------------------------------------------------------------------


def test_reload_adds_a_destination_without_restart_while_calls_flow(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, sipp: str
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy, list_file = start_proxy(tmp_path, proxy_factory, [gw_line(mg1)])
    total = 60
    flow = start_sipp(
        "uac_call",
        "127.0.0.1",
        proxy.port,
        calls=total,
        rate=10,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp",
    )
    with flow:
        wait_for(lambda: mg1.invites >= 5, what="the first calls on mg1")
        list_file.write_text(list_file.read_text() + gw_line(mg2) + "\n")
        assert result(proxy, "dispatcher.reload") == "Ok. Dispatcher successfully reloaded."
        assert set(flags(proxy)) == {mg1.uri, mg2.uri}
        res = flow.wait()
    assert res.ok and res.successful == total, res.report()
    # Every call completed; the new gateway took calls from the reload on.
    assert mg2.invites > 0, (mg1.describe(), mg2.describe())
    wait_for(lambda: mg1.byes + mg2.byes == total, what="every BYE")
    assert mg1.invites + mg2.invites == total
    assert proxy.alive()


def test_reload_refused_for_an_unresolvable_host_keeps_the_running_list(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, sipp: str
) -> None:
    mg1 = gateways("mg1")
    proxy, list_file = start_proxy(tmp_path, proxy_factory, [gw_line(mg1)])
    before = result(proxy, "dispatcher.list")
    list_file.write_text(list_file.read_text() + "1 sip:mg9.nosuch.invalid:5060 0 0\n")
    response = rpc(proxy, "dispatcher.reload")
    error = response["error"]
    assert error["code"] == 500
    # Which line, which host.
    assert error["message"].startswith(
        f"Reload Failed: {list_file}:3: could not resolve mg9.nosuch.invalid"
    )
    assert result(proxy, "dispatcher.list") == before
    calls(proxy, tmp_path, 2, "after")
    assert mg1.invites == 2
    assert "running list unchanged" in proxy.log_text()


# -- token ------------------------------------------------------------------------------------


def test_token_is_enforced(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1 = gateways("mg1")
    # Bound off loopback (all addresses), so a token is required; reached on 127.0.0.1.
    proxy, _ = start_proxy(
        tmp_path, proxy_factory, [gw_line(mg1)], admin_listen="0.0.0.0", token="s3cret"
    )
    payload = json.dumps(
        {"jsonrpc": "2.0", "method": "dispatcher.set_state", "params": ["dx", 1, "all"], "id": 1}
    ).encode()
    for token in (None, "wrong"):
        status, headers, body = http(f"{proxy.admin_url}/RPC", payload, token)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert json.loads(body)["error"]["code"] == 401
        status, _, _ = http(f"{proxy.admin_url}/metrics", None, token, method="GET")
        assert status == 401
    assert {d["FLAGS"] for d in dests(result(proxy, "dispatcher.list", token="s3cret"))} == {"AX"}
    assert result(proxy, "dispatcher.set_state", "dx", 1, "all", token="s3cret")
    status, _, _ = http(f"{proxy.admin_url}/metrics", None, "s3cret", method="GET")
    assert status == 200


def test_admin_off_loopback_without_token_does_not_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    list_file = write_list_file(tmp_path / "d.list", ["1 sip:127.0.0.1:5071"])
    admin = free_port("tcp")
    toml = basic_config(free_port(), admin, list_file).replace(
        f'listen = "127.0.0.1:{admin}"', f'listen = "0.0.0.0:{admin}"'
    )
    config = tmp_path / "sd.toml"
    config.write_text(toml)
    done = subprocess.run(
        [sys.executable, "-m", "sipdispatch", "run", "--config", str(config)],
        env=proxy_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "admin.token" in done.stderr and "loopback" in done.stderr


# -- metrics ------------------------------------------------------------------------------------


def scrape(proxy: ProxyProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, headers, body = http(f"{proxy.admin_url}/metrics", None, method="GET")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_after_calls(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, sipp: str
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2", reject=503)
    proxy, _ = start_proxy(
        tmp_path, proxy_factory, [gw_line(mg1, "0 5"), gw_line(mg2, "0 9")], algorithm=8
    )
    calls(proxy, tmp_path, 3, "calls")  # mg2 (priority 9) rejects; each call fails over to mg1
    wait_for(lambda: mg1.byes == 3, what="the BYEs")
    m = scrape(proxy)

    def get(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    received = sum(v for (n, _), v in m.items() if n == "sipdispatch_sip_requests_received_total")
    assert received >= 9  # INVITE, ACK, BYE per call
    assert get("sipdispatch_sip_replies_sent_total", code="2xx") >= 3
    assert get("sipdispatch_failovers_total") >= 1
    assert get("sipdispatch_sip_replies_received_total") >= 6
    # mark_failed = "ip" (the default): mg2 is now inactive.
    assert get("sipdispatch_destination_state", set="1", uri=mg2.uri, state="inactive") == 1
    assert get("sipdispatch_destination_state", set="1", uri=mg1.uri, state="active") == 1
    assert get("sipdispatch_destination_usable", set="1", uri=mg2.uri) == 0
    assert ("sipdispatch_transactions_in_flight", (("kind", "client"),)) in m
    assert get("sipdispatch_set_destinations_usable", set="1") == 1
    assert get("sipdispatch_sip_parse_errors_total") == 0
    # The collector is off while it runs; nothing piled up enough for a safety collection.
    assert get("sipdispatch_gc_safety_collections_total") == 0
    assert ("sipdispatch_gc_objects_pending", ()) in m
    assert get("sipdispatch_rpc_calls_total", method="dispatcher.list") == 0
    assert any(n == "process_resident_memory_bytes" for n, _ in m)
