"""The web console in a real browser: Playwright drives Debian's Chromium against a
running ``sipdispatch run`` with scripted gateways on loopback.

What an operator sees and does: every destination with its state letters, drain and
enable (also by keyboard alone), a gateway going ``IP`` while the page stays open, a
refused reload with its reason, adding and removing a destination; and what keeps
others out: the login with ``[admin] token``, the CSRF token, read-only and off.
The main views are screenshots; with SIPDISPATCH_SCREENSHOTS=1 they are written to
docs/console/, which docs/console.md shows.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import BROWSER_WAIT_MS, GatewayFactory, ProxyFactory
from .gateway import GatewayThread
from .proxyctl import ProxyProcess, basic_config, toml_str
from .sippctl import free_port

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.timeout(180)

WAIT_MS = BROWSER_WAIT_MS
"""Generous deadline (ms) for what takes a few ping intervals on a loaded machine."""
TOKEN = "s3cret-console-token"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


# -- fixtures ----------------------------------------------------------------------------------


def console_config(
    list_file: Path, *, token: str = "", console: str = "read-write", ping_interval: int = 1
) -> tuple[int, int, str]:
    port, admin = free_port(), free_port()
    toml = basic_config(port, admin, list_file, ping_interval=ping_interval, fr_timer=2000)
    toml = toml.replace(
        "ping_interval = ",
        "probing_mode = 1\nprobing_threshold = 2\ninactive_threshold = 2\n"
        "ping_latency_stats = true\nping_interval = ",
        1,
    )
    admin_extra = f"console = {toml_str(console)}\n"
    if token:
        admin_extra += f"token = {toml_str(token)}\n"
    toml = toml.replace(
        f'listen = "127.0.0.1:{admin}"\n', f'listen = "127.0.0.1:{admin}"\n{admin_extra}'
    )
    return port, admin, toml


def start(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gws: list[GatewayThread],
    **options: Any,
) -> ProxyProcess:
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text(
        "".join(
            f"1 {gw.uri} 0 {10 - i} weight=50;duid={gw.name} Media gateway {gw.name}\n"
            for i, gw in enumerate(gws)
        )
    )
    port, admin, toml = console_config(list_file, **options)
    return proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def rpc(proxy: ProxyProcess, method: str, *params: object, token: str = "") -> Any:
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
    request = urllib.request.Request(
        proxy.admin_url + "/RPC", data=body.encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["result"]


def listed_flags(proxy: ProxyProcess, token: str = "") -> dict[str, str]:
    listing = rpc(proxy, "dispatcher.list", token=token)
    return {t["DEST"]["URI"]: t["DEST"]["FLAGS"] for t in listing["RECORDS"][0]["SET"]["TARGETS"]}


def row(page: Any, gw: GatewayThread) -> Any:
    return page.locator(f'tr[data-uri="{gw.uri}"]')


def state_cell(page: Any, gw: GatewayThread) -> Any:
    return row(page, gw).locator("td.state")


def expect_state(page: Any, gw: GatewayThread, letters: str) -> None:
    playwright_api.expect(state_cell(page, gw)).to_have_text(letters, timeout=WAIT_MS)


def confirm(page: Any) -> None:
    dialog = page.locator("dialog#confirm")
    playwright_api.expect(dialog).to_be_visible()
    dialog.locator("#confirm-ok").click()


def screenshot(page: Any, name: str) -> None:
    """Take a screenshot of the page; into docs/console/ when SIPDISPATCH_SCREENSHOTS
    is set (they change with every run's ports and times: refreshed on purpose)."""
    png = page.screenshot(full_page=True)
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    if os.environ.get("SIPDISPATCH_SCREENSHOTS", "") not in ("", "0"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / f"{name}.png").write_bytes(png)


def post_action(page: Any, body: dict[str, Any], headers: dict[str, str]) -> Any:
    """A POST from the browser's context (its cookies), headers as given."""
    return page.request.post(
        page.url.split("/console")[0].rstrip("/") + "/console/action",
        data=json.dumps(body),
        headers={"Content-Type": "application/json", **headers},
        fail_on_status_code=False,
    )


def csrf_of(page: Any) -> str:
    return str(page.locator('meta[name="csrf-token"]').get_attribute("content"))


# -- what the console shows and does -----------------------------------------------------------


def test_console_lists_destinations_and_drain_shows_dx_on_the_page_and_in_dispatcher_list(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, [mg1, mg2])
    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AP")
    expect_state(page, mg2, "AP")
    first = row(page, mg1)
    playwright_api.expect(first.locator("td.priority")).to_have_text("10")
    playwright_api.expect(first.locator("td.weight")).to_have_text("50")
    playwright_api.expect(first.locator("td.attrs")).to_have_text("weight=50;duid=mg1")
    playwright_api.expect(first.locator("td.description")).to_have_text("Media gateway mg1")
    playwright_api.expect(first.locator("td.in_progress")).to_have_text("0")
    # Colour as well as text: the state's class gives the badge its colour.
    playwright_api.expect(first.locator("td.state .badge")).to_have_class(re.compile(r"\bs-A\b"))
    # The latency estimate is measured and charted once pings have been answered.
    playwright_api.expect(first.locator("td.latency svg polyline")).to_have_count(1)
    # The chart grows by the points each snapshot brings (only the new ones are sent).
    points = f"document.querySelector('tr[data-uri=\"{mg1.uri}\"] td.latency polyline')"
    points += '.getAttribute("points").split(" ").length'
    before = page.evaluate(points)
    deadline = time.monotonic() + WAIT_MS / 1000
    while page.evaluate(points) < before + 2:  # (the CSP forbids wait_for_function's eval)
        assert time.monotonic() < deadline, "the latency chart did not grow"
        page.wait_for_timeout(200)

    first.get_by_role("button", name=f"Drain {mg1.uri}").click()
    confirm(page)
    expect_state(page, mg1, "DX")
    playwright_api.expect(first.locator("td.state .badge")).to_have_class(re.compile(r"\bs-D\b"))
    assert listed_flags(proxy) == {mg1.uri: "DX", mg2.uri: "AP"}
    events = page.locator("#events")
    playwright_api.expect(events).to_contain_text("dispatcher.set_state dx by console")
    playwright_api.expect(events).to_contain_text("(admin)")
    playwright_api.expect(page.locator("#message")).to_contain_text("state updated")
    assert f"set 1 {mg1.uri}: AP -> DX (dispatcher.set_state dx by console)" in proxy.log_text()
    screenshot(page, "drained")

    first.get_by_role("button", name=f"Enable {mg1.uri}").click()
    confirm(page)
    expect_state(page, mg1, "AP")
    assert listed_flags(proxy)[mg1.uri] == "AP"


def test_cancelling_the_confirmation_changes_nothing(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1])
    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AP")
    row(page, mg1).get_by_role("button", name=f"Drain {mg1.uri}").click()
    page.locator("dialog#confirm").get_by_role("button", name="Cancel").click()
    playwright_api.expect(page.locator("dialog#confirm")).to_be_hidden()
    page.wait_for_timeout(1500)  # two snapshots later, still active
    expect_state(page, mg1, "AP")
    assert listed_flags(proxy)[mg1.uri] == "AP"


def test_row_turns_ip_without_a_reload_when_a_gateway_stops_answering_and_comes_back(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, [mg1, mg2])
    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AP")
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded

    mg1.set_behaviour(options_code=None)
    expect_state(page, mg1, "IP")
    playwright_api.expect(row(page, mg1).locator("td.state .badge")).to_have_class(
        re.compile(r"\bs-I\b")
    )
    playwright_api.expect(page.locator("#events")).to_contain_text("no reply to OPTIONS (408)")
    assert page.evaluate("window.sameDocument") is True
    screenshot(page, "gateway-down")

    mg1.set_behaviour(options_code=200)
    expect_state(page, mg1, "AP")
    assert page.evaluate("window.sameDocument") is True
    expect_state(page, mg2, "AP")


def test_refused_reload_shows_its_reason_and_the_running_list_stays(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1])
    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AP")
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text(list_file.read_text() + "1 sip:mg9.invalid:5060 0 0\n")

    page.get_by_role("button", name="Reload list").click()
    confirm(page)
    message = page.locator("#message")
    playwright_api.expect(message).to_contain_text("Reload Failed")
    playwright_api.expect(message).to_contain_text("mg9.invalid")
    playwright_api.expect(message).to_contain_text("the running list is unchanged")
    playwright_api.expect(message).to_have_class(re.compile(r"\berror\b"))
    expect_state(page, mg1, "AP")
    assert page.locator("#sets tbody tr").count() == 1
    screenshot(page, "reload-refused")


def test_added_destination_appears_and_removed_one_goes(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1, mg3 = gateways("mg1"), gateways("mg3")
    proxy = start(tmp_path, proxy_factory, [mg1])
    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AP")
    form = page.locator("form#add")
    form.get_by_label("URI").fill(mg3.uri)
    form.get_by_label("Attrs").fill("weight=20;duid=mg3")
    form.get_by_role("button", name="Add").click()
    confirm(page)
    playwright_api.expect(row(page, mg3).locator("td.weight")).to_have_text("20")
    assert mg3.uri in listed_flags(proxy)
    # Pinged as the others (probing mode 1): active once it answers.
    expect_state(page, mg3, "AP")

    row(page, mg3).get_by_role("button", name=f"Remove {mg3.uri}").click()
    confirm(page)
    playwright_api.expect(row(page, mg3)).to_have_count(0)
    assert mg3.uri not in listed_flags(proxy)
    playwright_api.expect(row(page, mg1)).to_have_count(1)


def test_keyboard_alone_drains_a_destination_tab_and_enter(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1])
    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AP")
    wanted = f"Drain {mg1.uri}"
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == wanted:
            break
    else:
        raise AssertionError(f"Tab never reached the {wanted!r} button")
    page.wait_for_timeout(1500)  # live updates must not steal the focus
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == wanted
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#confirm")
    playwright_api.expect(dialog).to_be_visible()
    # The safe choice has the focus; one Tab moves to Confirm.
    assert page.evaluate("document.activeElement.textContent") == "Cancel"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Confirm"
    page.keyboard.press("Enter")
    expect_state(page, mg1, "DX")
    assert listed_flags(proxy)[mg1.uri] == "DX"


# -- security ----------------------------------------------------------------------------------


def test_with_a_token_the_console_asks_for_it_and_keeps_an_httponly_strict_session(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1], token=TOKEN)
    response = page.request.get(proxy.admin_url + "/console/state", fail_on_status_code=False)
    assert response.status == 401
    page.goto(proxy.admin_url + "/")
    assert page.url.endswith("/console/login")
    screenshot(page, "login")
    page.get_by_label("Admin token").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    playwright_api.expect(page.locator(".error")).to_have_text("Wrong token.")
    assert page.context.cookies() == []

    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect_state(page, mg1, "AP")
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # out of the scripts' reach
    # The JSON-RPC endpoint keeps its Bearer token: the session cookie is not enough.
    refused = page.request.post(
        proxy.admin_url + "/RPC",
        data=json.dumps({"jsonrpc": "2.0", "method": "core.version", "id": 1}),
        headers={"Content-Type": "application/json"},
        fail_on_status_code=False,
    )
    assert refused.status == 401
    assert listed_flags(proxy, token=TOKEN) == {mg1.uri: "AP"}

    row(page, mg1).get_by_role("button", name=f"Drain {mg1.uri}").click()
    confirm(page)
    expect_state(page, mg1, "DX")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/console/login$"))
    page.goto(proxy.admin_url + "/")
    assert page.url.endswith("/console/login")


def test_a_post_without_the_csrf_token_is_refused(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1], token=TOKEN)
    page.goto(proxy.admin_url + "/")
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect_state(page, mg1, "AP")
    drain = {"action": "drain", "set": 1, "uri": mg1.uri}
    for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
        refused = post_action(page, drain, headers)
        assert refused.status == 403, refused.text()
        assert "CSRF" in refused.json()["error"]
    assert listed_flags(proxy, token=TOKEN)[mg1.uri] == "AP"
    # The same request with the page's token goes through.
    accepted = post_action(page, drain, {"X-CSRF-Token": csrf_of(page)})
    assert accepted.status == 200, accepted.text()
    assert listed_flags(proxy, token=TOKEN)[mg1.uri] == "DX"


def test_read_only_console_shows_no_actions_and_refuses_them(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1], console="read-only")
    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AP")
    playwright_api.expect(page.locator("#mode-note")).to_be_visible()
    assert page.get_by_role("button", name=f"Drain {mg1.uri}").count() == 0
    assert not page.get_by_role("button", name="Reload list").is_visible()
    refused = post_action(
        page, {"action": "drain", "set": 1, "uri": mg1.uri}, {"X-CSRF-Token": csrf_of(page)}
    )
    assert refused.status == 403
    assert "read-only" in refused.json()["error"]
    assert listed_flags(proxy)[mg1.uri] == "AP"


def test_console_off_serves_no_page_and_rpc_still_works(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1], console="off", ping_interval=0)
    for path in ("/", "/console/events", "/console/login"):
        assert page.request.get(proxy.admin_url + path, fail_on_status_code=False).status == 404
    assert listed_flags(proxy)[mg1.uri] == "AX"


def test_proxy_stops_promptly_while_a_page_follows_it_and_the_page_says_so(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1])
    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AP")
    playwright_api.expect(page.locator("#connection")).to_have_text("live")
    began = time.monotonic()
    assert proxy.stop(timeout=10) == 0  # the open event stream does not hold it up
    assert time.monotonic() - began < 8
    playwright_api.expect(page.locator("#connection")).to_contain_text("disconnected")


def raw_request(
    proxy: ProxyProcess, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, str]:
    """One request with exactly these headers (Host included), outside any browser."""
    import http.client
    import urllib.parse

    where = urllib.parse.urlsplit(proxy.admin_url)
    connection = http.client.HTTPConnection(str(where.hostname), where.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_without_a_token_only_loopback_names_are_answered_and_foreign_origins_refused(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1])
    port = proxy.admin_url.rsplit(":", 1)[1]
    # A name of another site made to resolve to 127.0.0.1 (DNS rebinding) gets nothing.
    status, body = raw_request(proxy, "GET", "/", {"Host": f"attacker.example:{port}"})
    assert status == 421 and "loopback" in body
    assert raw_request(proxy, "GET", "/", {"Host": f"localhost:{port}"})[0] == 200

    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AP")
    drain = json.dumps({"action": "drain", "set": 1, "uri": mg1.uri}).encode()
    headers = {
        "Host": f"127.0.0.1:{port}",
        "Content-Type": "application/json",
        "X-CSRF-Token": csrf_of(page),
        "Origin": "http://attacker.example",
    }
    status, body = raw_request(proxy, "POST", "/console/action", headers, drain)
    assert status == 403 and "Origin" in body
    assert listed_flags(proxy)[mg1.uri] == "AP"
    headers["Origin"] = f"http://127.0.0.1:{port}"
    assert raw_request(proxy, "POST", "/console/action", headers, drain)[0] == 200
    assert listed_flags(proxy)[mg1.uri] == "DX"


# -- probe now, call figures, the store ------------------------------------------------------------


def message(page: Any) -> Any:
    return page.locator("#message")


def test_probe_now_shows_the_reply_and_latency_or_the_failure_and_the_state_log_names_the_console(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    # One ping round an hour: every ping in this test is one the operator asked for.
    proxy = start(tmp_path, proxy_factory, [mg1, mg2], ping_interval=3600)
    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AX")  # never pinged yet
    assert mg1.options == 0
    probe = row(page, mg1).get_by_role("button", name=f"Probe {mg1.uri} now")
    probe.click()  # no confirmation: a ping changes nothing an answer would not
    playwright_api.expect(message(page)).to_contain_text(
        re.compile(rf"OPTIONS {re.escape(mg1.uri)}: 200 OK in \d+ ms; now AP")
    )
    playwright_api.expect(message(page)).to_have_class(re.compile(r"\bok\b"))
    assert mg1.options == 1 and mg2.options == 0
    expect_state(page, mg1, "AP")
    expect_state(page, mg2, "AX")

    mg1.set_behaviour(options_code=None)
    probe.click()
    # No reply within fr_timer (2 s): the first miss of two makes it trying (TP).
    playwright_api.expect(message(page)).to_contain_text("no reply within", timeout=WAIT_MS)
    playwright_api.expect(message(page)).to_contain_text("(408); now TP")
    playwright_api.expect(message(page)).to_have_class(re.compile(r"\berror\b"))
    expect_state(page, mg1, "TP")
    events = page.locator("#events")
    playwright_api.expect(events).to_contain_text(
        "no reply to OPTIONS (408), 1/2 missed; dispatcher.ping by console"
    )
    assert "dispatcher.ping by console" in proxy.log_text()
    screenshot(page, "probe-failed")

    # The same through the RPC: the reply code and the latency, by the caller's name.
    mg1.set_behaviour(options_code=200)
    result = rpc(proxy, "dispatcher.ping", 1, mg1.uri)
    assert (result["CODE"], result["REASON"], result["ALIVE"]) == (200, "OK", True)
    assert result["URI"] == mg1.uri and isinstance(result["LATENCY"], int)
    assert result["FLAGS"] in ("TP", "AP")
    expect_state(page, mg1, "AP")  # answered: active again
    playwright_api.expect(events).to_contain_text("dispatcher.ping by rpc")
    # Its latency (measured once probing, as Kamailio) is on the row at the next snapshot.
    playwright_api.expect(row(page, mg1).locator("td.latency")).to_contain_text(" ms")


def test_probe_now_is_reachable_and_usable_by_keyboard_alone(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1], ping_interval=3600)
    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AX")
    wanted = f"Probe {mg1.uri} now"
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == wanted:
            break
    else:
        raise AssertionError(f"Tab never reached the {wanted!r} button")
    page.keyboard.press("Enter")
    playwright_api.expect(message(page)).to_contain_text("200 OK in")
    # The next Tab reaches Drain; Space opens its confirmation, Escape cancels it.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
        f"Drain {mg1.uri}"
    )
    page.keyboard.press("Space")
    playwright_api.expect(page.locator("dialog#confirm")).to_be_visible()
    page.keyboard.press("Escape")
    playwright_api.expect(page.locator("dialog#confirm")).to_be_hidden()
    assert listed_flags(proxy)[mg1.uri] == "AP"  # probed, not drained


def test_calls_in_progress_per_second_recent_outcomes_and_set_up_time_show_live(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    from .sippctl import start_sipp

    # mg1 answers after 1.5 s of ringing, mg2 rejects with 503, mg3 never answers an
    # INVITE (2 s fr_timer, no provisional): every call ends answered by mg1.
    mg1, mg2, mg3 = gateways("mg1"), gateways("mg2"), gateways("mg3")
    mg1.set_behaviour(answer_delay_ms=1500)
    mg2.set_behaviour(reject=503)
    mg3.set_behaviour(silent=True)
    proxy = start(tmp_path, proxy_factory, [mg1, mg2, mg3])
    page.goto(proxy.admin_url + "/")
    for gw in (mg1, mg2, mg3):
        expect_state(page, gw, "AP")
    calls = 6
    caller = start_sipp(
        "uac_call", "127.0.0.1", proxy.port, calls=calls, rate=2, timeout=90,
        workdir=tmp_path / "sipp",
    )  # fmt: skip
    first = row(page, mg1)
    # While mg1 rings, its INVITE is in flight: in progress, and calls per second.
    playwright_api.expect(first.locator("td.in_progress")).not_to_have_text("0")
    playwright_api.expect(first.locator("td.cps")).not_to_have_text("0.0")
    screenshot(page, "calls")
    result = caller.wait()
    assert result.ok and result.successful == calls, result.report()

    playwright_api.expect(first.locator("td.recent .answered")).to_have_text(str(calls))
    playwright_api.expect(first.locator("td.in_progress")).to_have_text("0")
    playwright_api.expect(row(page, mg2).locator("td.recent .rejected")).not_to_have_text("0")
    playwright_api.expect(row(page, mg3).locator("td.recent .timeout")).not_to_have_text("0")
    assert row(page, mg1).locator("td.recent .rejected").text_content() == "0"
    setup = str(first.locator("td.setup").text_content())
    found = re.fullmatch(r"([\d.]+) / ([\d.]+) ms", setup)
    assert found, setup
    p50, p90 = float(found[1]), float(found[2])
    assert 1500 <= p50 <= p90 < 10_000, setup  # at least the ringing time
    # mg2's rejections are fast; mg3's timeouts have no set-up time.
    fast = str(row(page, mg2).locator("td.setup").text_content())
    assert re.fullmatch(r"[\d.]+ / [\d.]+ ms", fast), fast
    assert row(page, mg3).locator("td.setup").text_content() == "\N{EN DASH}"
    state = page.request.get(proxy.admin_url + "/console/state").json()
    (dests,) = [s["dests"] for s in state["sets"]]
    by_uri = {d["uri"]: d for d in dests}
    assert by_uri[mg1.uri]["recent"]["answered"] == calls
    assert by_uri[mg1.uri]["recent"]["setup"]["n"] == calls


def sqlite_start(
    tmp_path: Path, proxy_factory: ProxyFactory, gws: list[GatewayThread]
) -> tuple[ProxyProcess, Any]:
    """A proxy whose destinations are in an SQLite table (written here first)."""
    from sipdispatch.store import SqlStore

    url, table = f"sqlite:///{tmp_path / 'sipdispatch.db'}", "dispatcher"
    store = SqlStore(url, table)
    try:
        for i, gw in enumerate(gws):
            store.add(1, gw.uri, 0, 10 - i, f"weight=50;duid={gw.name}", f"Media gateway {gw.name}")
    finally:
        store.close()
    port, admin, toml = console_config(tmp_path / "unused.list")
    toml = toml.replace(
        f"list_file = {toml_str(str(tmp_path / 'unused.list'))}\n",
        f"db_url = {toml_str(url)}\ntable_name = {toml_str(table)}\n",
    )
    assert "db_url" in toml
    proxy = proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)
    return proxy, lambda: SqlStore(url, table)


def add_by_form(page: Any, uri: str, attrs: str, description: str = "") -> None:
    form = page.locator("form#add")
    form.get_by_label("URI").fill(uri)
    form.get_by_label("Attrs").fill(attrs)
    form.get_by_label("Description").fill(description)
    form.get_by_role("button", name="Add").click()
    confirm(page)


@pytest.mark.parametrize("kind", ["list-file", "sqlite"])
def test_add_and_remove_write_the_store_then_reload_and_a_refused_reload_takes_the_add_back(
    kind: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1, mg3 = gateways("mg1"), gateways("mg3")
    if kind == "list-file":
        proxy = start(tmp_path, proxy_factory, [mg1])
        list_file = tmp_path / "dispatcher.list"

        def stored() -> list[tuple[int, str, str, str]]:
            lines = [ln.split(None, 5) for ln in list_file.read_text().splitlines() if ln.strip()]
            return [(int(f[0]), f[1], f[4] if len(f) > 4 else "", f[5] if len(f) > 5 else "")
                    for f in lines]  # fmt: skip
    else:
        proxy, open_sql = sqlite_start(tmp_path, proxy_factory, [mg1])

        def stored() -> list[tuple[int, str, str, str]]:
            store = open_sql()
            try:
                return [(r.setid, r.destination, r.attrs, r.description) for r in store.rows()]
            finally:
                store.close()

    page.goto(proxy.admin_url + "/")
    expect_state(page, mg1, "AP")
    add_by_form(page, mg3.uri, "weight=20;duid=mg3", "Media gateway mg3")
    playwright_api.expect(message(page)).to_contain_text(f"Set 1 {mg3.uri} written to")
    playwright_api.expect(message(page)).to_contain_text("and reloaded.")
    playwright_api.expect(row(page, mg3).locator("td.weight")).to_have_text("20")
    playwright_api.expect(row(page, mg3).locator("td.description")).to_have_text(
        "Media gateway mg3"
    )
    assert (1, mg3.uri, "weight=20;duid=mg3", "Media gateway mg3") in stored()
    assert mg3.uri in listed_flags(proxy)
    expect_state(page, mg3, "AP")
    # In the store: a reload keeps it (an in-memory dispatcher.add would be dropped).
    assert rpc(proxy, "dispatcher.reload") == "Ok. Dispatcher successfully reloaded."
    assert mg3.uri in listed_flags(proxy)

    # A host that does not resolve: the reload is refused with its reason, the running
    # list stays, and the record is taken out of the store again.
    before = stored()
    add_by_form(page, "sip:mg9.invalid:5060", "weight=10")
    playwright_api.expect(message(page)).to_contain_text("Reload Failed")
    playwright_api.expect(message(page)).to_contain_text("mg9.invalid")
    playwright_api.expect(message(page)).to_contain_text("the running list is unchanged")
    playwright_api.expect(message(page)).to_contain_text("taken out of")
    playwright_api.expect(message(page)).to_have_class(re.compile(r"\berror\b"))
    assert stored() == before
    assert set(listed_flags(proxy)) == {mg1.uri, mg3.uri}
    if kind == "sqlite":
        screenshot(page, "add-refused")

    # A bad value never reaches the store.
    add_by_form(page, mg3.uri + "x", "weight=oops")
    playwright_api.expect(message(page)).to_contain_text("Adding dispatcher dst failed")
    playwright_api.expect(message(page)).to_contain_text("nothing was written")
    assert stored() == before

    row(page, mg3).get_by_role("button", name=f"Remove {mg3.uri}").click()
    confirm(page)
    playwright_api.expect(message(page)).to_contain_text(f"Set 1 {mg3.uri} deleted from")
    playwright_api.expect(row(page, mg3)).to_have_count(0)
    assert [s for s in stored() if s[1] == mg3.uri] == []
    assert set(listed_flags(proxy)) == {mg1.uri}
    assert rpc(proxy, "dispatcher.reload") == "Ok. Dispatcher successfully reloaded."
    assert set(listed_flags(proxy)) == {mg1.uri}


def test_removing_a_destination_added_only_in_memory_removes_it_from_memory(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1, mg3 = gateways("mg1"), gateways("mg3")
    proxy = start(tmp_path, proxy_factory, [mg1])
    before = (tmp_path / "dispatcher.list").read_text()
    assert rpc(proxy, "dispatcher.add", 1, mg3.uri) == "Ok. Dispatcher destination added."
    page.goto(proxy.admin_url + "/")
    expect_state(page, mg3, "AP")
    row(page, mg3).get_by_role("button", name=f"Remove {mg3.uri}").click()
    confirm(page)
    playwright_api.expect(message(page)).to_contain_text("removed from memory")
    playwright_api.expect(row(page, mg3)).to_have_count(0)
    assert (tmp_path / "dispatcher.list").read_text() == before


# -- login attempts ------------------------------------------------------------------------------


def metric_value(proxy: ProxyProcess, line_start: str, token: str = TOKEN) -> float:
    import urllib.request

    request = urllib.request.Request(proxy.admin_url + "/metrics")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {line_start} in the metrics")


def test_five_wrong_tokens_from_one_address_then_logins_are_refused_with_429_and_counted(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1], token=TOKEN)
    page.goto(proxy.admin_url + "/")
    for _ in range(5):
        page.get_by_label("Admin token").fill("wrong")
        page.get_by_role("button", name="Log in").click()
        playwright_api.expect(page.locator(".error")).to_have_text("Wrong token.")
    # The sixth attempt is refused before the token is even looked at: the right one too.
    page.get_by_label("Admin token").fill(TOKEN)
    with page.expect_response(re.compile(r"/console/login$")) as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 429
    retry = int(answer.value.headers["retry-after"])
    assert 1 <= retry <= 60
    playwright_api.expect(page.locator(".error")).to_contain_text("Too many wrong tokens")
    assert page.context.cookies() == []
    screenshot(page, "login-limited")
    assert metric_value(proxy, 'sipdispatch_console_logins_total{result="wrong"}') == 5
    assert metric_value(proxy, 'sipdispatch_console_logins_total{result="limited"}') == 1
    assert metric_value(proxy, 'sipdispatch_console_logins_total{result="ok"}') == 0
    assert "too many wrong tokens from 127.0.0.1" in proxy.log_text()


# -- the SIP of failed calls and the captures ------------------------------------------------


def test_a_failed_over_call_shows_as_a_ladder_with_the_404_from_one_gateway_and_the_200(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    from .sippctl import run_sipp

    mg1, mg2 = gateways("mg1", reject=404), gateways("mg2")
    proxy = start(tmp_path, proxy_factory, [mg1, mg2])
    for k in range(2):  # whichever round-robin starts with, one call meets mg1's 404
        res = run_sipp(
            "uac_call", "127.0.0.1", proxy.port, calls=1, timeout=60,
            workdir=tmp_path / f"c{k}", extra_args=["-cid_str", f"ladder-{k}@test"],
        )  # fmt: skip
        assert res.ok and res.successful == 1, res.report()
    page.goto(proxy.admin_url + "/")
    rows = page.locator("#calls tbody tr[data-call]")
    playwright_api.expect(rows).to_have_count(1, timeout=WAIT_MS)
    playwright_api.expect(rows.locator("td.outcome")).to_have_text("failed_over")
    rows.locator("button.show-ladder").click()
    ladder = page.locator("#ladder svg.ladder-svg")
    playwright_api.expect(ladder).to_be_visible()
    parties = ladder.locator("text.party").all_text_contents()
    assert f"127.0.0.1:{mg1.port}" in parties and f"127.0.0.1:{mg2.port}" in parties, parties
    labels = ladder.locator("g.msg text").all_text_contents()
    assert any(t.startswith("404 Not Found") for t in labels), labels
    assert any(t.startswith("200 OK") for t in labels), labels
    ladder.locator("g.msg", has_text="404 Not Found").click()
    playwright_api.expect(page.locator("#ladder-message")).to_contain_text("SIP/2.0 404")
    screenshot(page, "ladder")


def test_a_capture_started_on_the_page_stops_there_and_downloads_as_a_pcap(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, page: Any
) -> None:
    from .sippctl import run_sipp

    mg1 = gateways("mg1")
    proxy = start(tmp_path, proxy_factory, [mg1])
    page.goto(proxy.admin_url + "/")
    form = page.locator("form#capture")
    form.locator('input[name="filter"]').fill("all")
    form.locator('input[name="seconds"]').fill("120")
    form.locator('button[type="submit"]').click()
    playwright_api.expect(page.locator("#message")).to_contain_text("started (all)")
    row_ = page.locator("#captures tbody tr[data-capture]")
    playwright_api.expect(row_.locator("td.state")).to_contain_text("running", timeout=WAIT_MS)
    res = run_sipp("uac_call", "127.0.0.1", proxy.port, calls=1, timeout=60,
                   workdir=tmp_path / "call")  # fmt: skip
    assert res.ok and res.successful == 1, res.report()
    row_.locator("td.state button").click()
    playwright_api.expect(page.locator("#message")).to_contain_text("ended:")
    playwright_api.expect(row_.locator("td.state")).to_have_text("stopped", timeout=WAIT_MS)
    with page.expect_download() as info:
        row_.locator("a").click()
    data = Path(info.value.path()).read_bytes()
    assert data[:4] == bytes.fromhex("d4c3b2a1") and b"INVITE sip:" in data
    name = row_.get_attribute("data-capture")
    assert data == (tmp_path / "proxy" / "capture" / f"sipdispatch-{name}.pcap").read_bytes()
