"""What the demo's simulated user agents (the gateways and the caller) share.

RFC 3261's retransmission timers as they use them, a few helpers over
:mod:`sipdispatch.sip` to build and read requests, and a UDP socket on a free
loopback port.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Final

from sipdispatch.demo.config import HOST
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.headers import split_name_addr
from sipdispatch.sip.message import Request
from sipdispatch.sip.uri import parse_uri

T1: Final = 0.5
"""RFC 3261 T1 (s): first retransmission interval of the simulated user agents."""
T2: Final = 4.0
"""RFC 3261 T2 (s): cap of the non-INVITE retransmission interval."""


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def uri_of(value: str) -> str:
    return split_name_addr(value)[0]


def user_of(value: str | None) -> str | None:
    """The user part of the URI in a Contact/To value, or None."""
    if not value:
        return None
    try:
        return parse_uri(uri_of(value)).user
    except ParseError:
        return None


def hop_of(uri_text: str) -> tuple[str, int]:
    """Where a request for this URI (a Route or a target) is sent."""
    uri = parse_uri(uri_text)
    return uri.host, uri.effective_port


def build_request(method: str, uri: str, headers: list[tuple[str, str]]) -> bytes:
    return Request(method, uri, [(n.lower(), n, v) for n, v in headers]).to_bytes()


async def bind_loopback(protocol: asyncio.DatagramProtocol) -> int:
    """Give ``protocol`` a UDP socket on a free loopback port; return the port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: protocol, local_addr=(HOST, 0))
    return int(transport.get_extra_info("sockname")[1])
