"""The client side of the admin API, for ``sipdispatch rpc`` (kamcmd's job) and
``sipdispatch dispatcher reload|dump`` (kamctl's).

:func:`call` sends one JSON-RPC request and returns the decoded response;
every way it can fail without a response is an :class:`AdminUnreachable` whose
message is one line a person can act on ("proxy not running at
http://127.0.0.1:5080 (connection refused)"). :func:`format_result` prints a
result the way kamcmd does.
"""

from __future__ import annotations

import asyncio
import errno
import json
import re
from typing import Any, Final

import aiohttp

from sipdispatch.admin import TOKEN_ENV
from sipdispatch.config import AdminConfig

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds to wait for the proxy's answer (a reload may resolve many hosts)."""

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WILDCARDS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1"}


__all__ = [
    "DEFAULT_TIMEOUT",
    "TOKEN_ENV",
    "AdminUnreachable",
    "admin_url",
    "call",
    "convert_param",
    "error_line",
    "format_result",
    "normalise_url",
]


class AdminUnreachable(Exception):
    """No JSON-RPC answer: the proxy is not running, the URL is wrong, it timed out..."""


def admin_url(admin: AdminConfig) -> str:
    """The URL to reach ``[admin] listen`` from this machine (a wildcard address is
    reached on loopback)."""
    host = _WILDCARDS.get(admin.host, admin.host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{admin.port}"


def normalise_url(url: str) -> str:
    """``host:port`` or ``http://host:port[/RPC]`` -> ``http://host:port``."""
    text = url.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    if text.endswith("/RPC"):
        text = text[: -len("/RPC")]
    return text


def convert_param(text: str) -> object:
    """A command-line parameter as kamcmd sends it: a number when it looks like one,
    text otherwise; ``s:`` forces text (``s:123`` is the string ``"123"``)."""
    if text.startswith("s:"):
        return text[2:]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError):
        if os_error.errno == errno.ECONNREFUSED:
            return "connection refused"
        return os_error.strerror or str(os_error)
    return str(exc) or type(exc).__name__


async def _post(
    url: str, payload: dict[str, Any], token: str | None, timeout: float
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.post(f"{url}/RPC", json=payload, headers=headers) as response,
    ):
        return response.status, await response.text()


def call(
    url: str,
    method: str,
    params: list[object],
    *,
    token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Call ``method`` on the proxy at ``url`` (``http://host:port``); return the
    JSON-RPC response object (with ``result`` or ``error``).

    Raises :class:`AdminUnreachable` when there is no JSON-RPC answer.
    """
    base = normalise_url(url)
    payload = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    try:
        status, text = asyncio.run(_post(base, payload, token, timeout))
    except aiohttp.InvalidURL:
        raise AdminUnreachable(f"bad admin URL {url!r}: expected http://HOST:PORT") from None
    except aiohttp.ClientConnectorError as exc:
        raise AdminUnreachable(f"proxy not running at {base} ({_reason(exc)})") from None
    except TimeoutError:
        raise AdminUnreachable(f"the proxy at {base} did not answer within {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise AdminUnreachable(f"cannot talk to the proxy at {base}: {_reason(exc)}") from None
    try:
        response = json.loads(text)
    except json.JSONDecodeError:
        snippet = " ".join(text.split())[:120]
        raise AdminUnreachable(
            f"{base}/RPC answered HTTP {status} without JSON-RPC (is this the admin "
            f"listener of sipdispatch?): {snippet}"
        ) from None
    if not isinstance(response, dict) or ("result" not in response and "error" not in response):
        raise AdminUnreachable(f"{base}/RPC answered HTTP {status} with no result or error")
    return response


def error_line(error: object) -> str:
    """An ``error`` member as kamcmd prints a fault: ``error: 500 - Reload Failed``."""
    if isinstance(error, dict):
        return f"error: {error.get('code')} - {error.get('message')}"
    return f"error: {error}"


# --------------------------------------------------------------------------------------------
# kamcmd-style output
# --------------------------------------------------------------------------------------------


def _scalar(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:f}"  # binrpc doubles, as kamcmd prints them
    return str(value)


def _emit(lines: list[str], name: str | None, value: object, depth: int) -> None:
    indent = "\t" * depth
    prefix = f"{indent}{name}: " if name is not None else indent
    if isinstance(value, dict):
        lines.append(prefix + "{")
        for key, member in value.items():
            _emit(lines, str(key), member, depth + 1)
        lines.append(indent + "}")
    elif isinstance(value, list):
        # binrpc has no arrays inside structures: kamcmd shows them as structures,
        # each element a member (Kamailio wraps array elements as {"SET": {...}}).
        lines.append(prefix + "{")
        for item in value:
            if isinstance(item, dict) and len(item) == 1:
                (key, member), *_ = item.items()
                _emit(lines, str(key), member, depth + 1)
            else:
                _emit(lines, None, item, depth + 1)
        lines.append(indent + "}")
    else:
        lines.append((prefix + _scalar(value)).rstrip())


def format_result(result: object) -> str:
    """A result as kamcmd prints it: one value per line, structures between braces,
    members ``NAME: value`` indented with tabs; a top-level array prints each value."""
    lines: list[str] = []
    if isinstance(result, list):
        for item in result:
            _emit(lines, None, item, 0)
    else:
        _emit(lines, None, result, 0)
    return "\n".join(lines)
