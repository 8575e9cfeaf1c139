"""``GET /health`` in-process: 503 until the proxy serves, and for a routed set with
nothing usable; the token is not asked for."""

from __future__ import annotations

import json
from types import SimpleNamespace

import aiohttp

from sipdispatch.admin.health import health
from sipdispatch.admin.protocol import Traffic
from sipdispatch.collector import Collector
from sipdispatch.sip.stats import ProxyStats
from sipdispatch.transport.shell import ShellStats

from .conftest import ServerFactory
from .test_http import with_listener


def serving(server: object) -> None:
    traffic = Traffic(ProxyStats(), ShellStats(), 0, 0, (), Collector())
    server.traffic = lambda: traffic  # type: ignore[attr-defined]
    server.started = 1.0  # type: ignore[attr-defined]


def test_health_is_503_before_the_proxy_serves(make_server: ServerFactory) -> None:
    status, summary = health(make_server())
    assert status == 503 and summary["problems"] == ["not serving yet"]


def test_health_names_a_routed_set_without_a_usable_destination(
    make_server: ServerFactory,
) -> None:
    server = make_server(
        ["1 sip:127.0.0.1:5071 1", "2 sip:127.0.0.1:5072"],  # set 1: its only one inactive
        routes=[{"set": 1}, {"set": 2}, {"set": 3}],
    )
    serving(server)
    status, summary = health(server)
    assert status == 503
    assert summary["problems"] == [
        "set 1 has no usable destination",
        "set 3 has no destination",
    ]
    assert summary["sets"]["2"] == {"destinations": 1, "usable": 1}


def test_health_over_http_is_200_one_json_line_without_the_token(
    make_server: ServerFactory,
) -> None:
    server = make_server(token="s3cret")
    serving(server)

    async def body(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
        async with session.get(f"{url}/health") as resp:
            return resp.status, await resp.text()

    status, text = with_listener(server, body)
    assert status == 200 and text.endswith("}\n") and text.count("\n") == 1
    assert json.loads(text)["status"] == "ok"


def test_health_is_503_while_draining(make_server: ServerFactory) -> None:
    server = make_server()
    serving(server)
    server.core = SimpleNamespace(draining=True)  # type: ignore[assignment]
    status, summary = health(server)
    assert status == 503 and summary["problems"] == ["stopping: new calls get 503"]


def test_health_is_ok_while_a_fallback_set_can_take_the_calls_of_an_unusable_set(
    make_server: ServerFactory,
) -> None:
    server = make_server(
        ["1 sip:127.0.0.1:5071 1", "2 sip:127.0.0.1:5072", "3 sip:127.0.0.1:5073 1"],
        routes=[{"set": 1, "fallback": [2]}, {"set": 3, "fallback": [4]}],
    )
    serving(server)
    status, summary = health(server)
    assert status == 503
    assert summary["problems"] == [
        "set 3 has no usable destination, nor its fallback sets (4)",
    ]  # set 1's calls go to set 2
    assert summary["sets"]["1"] == {"destinations": 1, "usable": 0}
    assert summary["sets"]["2"] == {"destinations": 1, "usable": 1}
    assert summary["sets"]["4"] == {"destinations": 0, "usable": 0}
