"""The admin HTTP listener in-process: statuses, content types and the bearer token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from sipdispatch.admin.http import AdminServer
from sipdispatch.server import Server

from .conftest import ServerFactory, run

Exchange = Callable[[aiohttp.ClientSession, str], Awaitable[Any]]


def with_listener(server: Server, body: Exchange) -> Any:
    """Start the admin listener on a free port, run ``body(session, url)``, stop it."""

    async def scenario() -> Any:
        admin = AdminServer(server)
        await admin.start()
        try:
            async with aiohttp.ClientSession() as session:
                return await body(session, admin.url)
        finally:
            await admin.stop()

    return run(scenario())


def test_rpc_over_http(make_server: ServerFactory) -> None:
    async def body(session: aiohttp.ClientSession, url: str) -> None:
        request = {
            "jsonrpc": "2.0",
            "method": "dispatcher.hash",
            "params": [4, "bob", "server.com"],
            "id": 7,
        }
        async with session.post(f"{url}/RPC", json=request) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            assert await resp.json() == {
                "jsonrpc": "2.0",
                "result": {"hashid": 3883463682, "slot": 2},
                "id": 7,
            }
        # A method fault: Kamailio's jsonrpcs answers with the fault code as HTTP status.
        fault = {
            "jsonrpc": "2.0",
            "method": "dispatcher.set_state",
            "params": ["dx", 5, "all"],
            "id": 8,
        }
        async with session.post(f"{url}/RPC", json=fault) as resp:
            assert resp.status == 500
            data = await resp.json()
            assert data["error"]["message"].startswith("State Update Failed")
            assert data["id"] == 8
        async with session.post(f"{url}/RPC", data=b"{not json") as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == -32700
        async with session.post(f"{url}/RPC", json={"jsonrpc": "2.0", "method": "x", "id": 1}) as r:
            assert r.status == 500 and (await r.json())["error"]["code"] == -32601
        notification = {"jsonrpc": "2.0", "method": "core.version"}
        async with session.post(f"{url}/RPC", json=notification) as resp:
            assert resp.status == 204
        async with session.get(f"{url}/RPC") as resp:
            assert resp.status == 405
        async with session.get(f"{url}/nothing") as resp:
            assert resp.status == 404

    with_listener(make_server(), body)


def test_metrics_over_http(make_server: ServerFactory) -> None:
    async def body(session: aiohttp.ClientSession, url: str) -> None:
        async with session.get(f"{url}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            text = await resp.text()
        assert 'sipdispatch_set_destinations{set="1"} 2.0' in text

    with_listener(make_server(), body)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "requires 'Authorization: Bearer <token>'"),
        ("Bearer nope", "wrong token"),
        ("Basic c2VjcmV0", "expected a Bearer token"),
    ],
)
def test_token_is_required_when_set(
    make_server: ServerFactory, header: str | None, why: str
) -> None:
    headers = {"Authorization": header} if header else {}

    async def body(session: aiohttp.ClientSession, url: str) -> None:
        request = {
            "jsonrpc": "2.0",
            "method": "dispatcher.set_state",
            "params": ["dx", 1, "all"],
            "id": 1,
        }
        async with session.post(f"{url}/RPC", json=request, headers=headers) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            error = (await resp.json())["error"]
            assert error["code"] == 401 and why in error["message"]
        async with session.get(f"{url}/metrics", headers=headers) as resp:
            assert resp.status == 401
        ok = {"Authorization": "Bearer s3cret"}
        async with session.post(f"{url}/RPC", json=request, headers=ok) as resp:
            assert resp.status == 200
        async with session.get(f"{url}/metrics", headers=ok) as resp:
            assert resp.status == 200

    server = make_server(token="s3cret")
    with_listener(server, body)
    # The refused call changed nothing; the accepted one did.
    assert {d.flags_text() for d in server.router.sets.destinations()} == {"DX"}


def test_bind_failure_names_admin_listen(make_server: ServerFactory) -> None:
    server = make_server()

    async def scenario() -> str:
        first = AdminServer(server)
        await first.start()
        try:
            second = AdminServer(server)
            second.port = first.port
            with pytest.raises(OSError) as info:
                await second.start()
            return str(info.value)
        finally:
            await first.stop()

    assert "cannot listen on admin.listen http://127.0.0.1:" in run(scenario())
