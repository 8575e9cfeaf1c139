"""Fixtures for the admin tests: a :class:`Server` over a list file, not listening
for SIP (the RPC handlers and the metrics only need its router and config)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sipdispatch.config import AdminConfig, parse_config
from sipdispatch.server import Server

T = TypeVar("T")

ServerFactory = Callable[..., Server]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


def write_list(path: Path, lines: Iterable[str]) -> Path:
    path.write_text("# setid destination flags priority attrs\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture
def make_server(tmp_path: Path) -> ServerFactory:
    """``make_server(lines, dispatcher={...}, routes=[...], token="")``: a Server whose
    store is a list file with ``lines``; the admin listener is 127.0.0.1, port 0."""

    def make(
        lines: Iterable[str] = ("1 sip:127.0.0.1:5071", "1 sip:127.0.0.1:5072"),
        *,
        dispatcher: dict[str, Any] | None = None,
        routes: list[dict[str, Any]] | None = None,
        token: str = "",
    ) -> Server:
        list_file = write_list(tmp_path / "dispatcher.list", lines)
        data: dict[str, Any] = {
            "dispatcher": {"list_file": str(list_file), "ping_interval": 0, **(dispatcher or {})}
        }
        if routes is not None:
            data["route"] = routes
        config = parse_config(data)
        config = dataclasses.replace(config, admin=AdminConfig("127.0.0.1", 0, token))
        return Server(config)

    return make


@pytest.fixture
def list_path(tmp_path: Path) -> Path:
    """The list file ``make_server`` writes."""
    return tmp_path / "dispatcher.list"
