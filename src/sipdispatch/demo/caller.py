"""The simulated caller (UAC) of the demo: a softphone calling through the proxy."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, cast

from sipdispatch.demo.config import HOST
from sipdispatch.demo.useragent import (
    T1,
    T2,
    bind_loopback,
    build_request,
    hop_of,
    new_branch,
    uri_of,
    user_of,
)
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.message import Response, is_keepalive, parse_datagram

INVITE_TIMEOUT: Final = 16.0
"""The caller gives up on an INVITE without a final response after this (s) (Timer B,
shortened from 64*T1: the proxy answers within fr_timer per gateway)."""
BYE_TIMEOUT: Final = 8.0
"""The caller gives up on a BYE without a final response after this (s)."""


@dataclass(frozen=True, slots=True)
class CallResult:
    """How one call ended."""

    gateway: str | None
    """Label of the gateway that answered (``MG1``/``MG2``), None when the call failed."""
    failure: str = ""
    """Why it failed ("" when it succeeded): ``404 Not Found``, ``no final response``..."""

    @property
    def ok(self) -> bool:
        return not self.failure


@dataclass(slots=True)
class _Call:
    call_id: str
    from_tag: str
    invite_via: str
    futures: dict[str, asyncio.Future[Response]] = field(default_factory=dict)
    proceeding: set[str] = field(default_factory=set)
    invite_to: str = ""
    ack: bytes | None = None
    ack_hop: tuple[str, int] | None = None


class Caller(asyncio.DatagramProtocol):
    """A softphone that makes calls through the proxy, one UDP socket for all of them.

    A call is INVITE (repeated at T1, 2*T1, ... until a response, RFC 3261 Timer A),
    then on 200 an ACK and a BYE sent along the route set the 200 brought (the
    proxy's Record-Route, so both go to the proxy with a Route header). A final
    failure response is ACKed hop by hop (same branch) as RFC 3261 §17.1.1.3 says.
    Who answered is read from the user part of the 200's Contact.
    """

    def __init__(self, proxy: tuple[str, int], labels: dict[str, str]) -> None:
        self.proxy = proxy
        self.labels = labels
        """Contact user part -> gateway label."""
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.statuses: Counter[int] = Counter()
        """Final INVITE response codes the caller received (the 404 must never show)."""
        self._calls: dict[str, _Call] = {}
        self._serial = itertools.count(1)
        self._prefix = secrets.token_hex(4)

    async def start(self) -> None:
        """Bind a UDP socket on a free loopback port."""
        self.port = await bind_loopback(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    # -- responses ---------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if is_keepalive(data):
            return
        try:
            msg = parse_datagram(data)
        except ParseError:
            return
        if not isinstance(msg, Response):
            return  # nobody calls the caller
        call = self._calls.get(msg.call_id)
        if call is None:
            return
        try:
            _, method = msg.cseq
        except ParseError:
            return
        if msg.status < 200:
            call.proceeding.add(method)
            return
        if method == "INVITE":
            if msg.status >= 300:
                self._ack_failure(call, msg)
            elif call.ack is not None and call.ack_hop is not None:
                self._send(call.ack, call.ack_hop)  # the 200 again: our ACK was lost
        future = call.futures.get(method)
        if future is not None and not future.done():
            future.set_result(msg)

    def _ack_failure(self, call: _Call, response: Response) -> None:
        """ACK for a non-2xx final response: hop by hop, the INVITE's branch."""
        ack = build_request(
            "ACK",
            self._ruri,
            [
                ("Via", call.invite_via),
                ("Max-Forwards", "70"),
                ("From", f"<sip:caller@{HOST}>;tag={call.from_tag}"),
                ("To", response.get("to") or ""),
                ("Call-ID", call.call_id),
                ("CSeq", "1 ACK"),
            ],
        )
        self._send(ack, self.proxy)

    # -- one call ----------------------------------------------------------------

    @property
    def _ruri(self) -> str:
        return f"sip:1111111@{self.proxy[0]}:{self.proxy[1]}"

    async def _transact(
        self, call: _Call, method: str, data: bytes, hop: tuple[str, int], limit: float
    ) -> Response | None:
        """Send a request and wait for its final response, repeating it over UDP
        (INVITE: until a provisional response; others: T1 doubling up to T2)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Response] = loop.create_future()
        call.futures[method] = future
        end = loop.time() + limit
        interval = T1
        self._send(data, hop)
        while True:
            remaining = end - loop.time()
            if remaining <= 0:
                return None
            done, _ = await asyncio.wait({future}, timeout=min(interval, remaining))
            if done:
                return future.result()
            if method not in call.proceeding:
                self._send(data, hop)
            interval = interval * 2 if method == "INVITE" else min(interval * 2, T2)

    async def call(self) -> CallResult:
        """Make one call: INVITE, ACK, BYE. Never raises for a SIP failure."""
        serial = f"{self._prefix}{next(self._serial):x}"
        via = f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"
        call = _Call(call_id=f"demo-{serial}@{HOST}", from_tag=f"c{serial}", invite_via=via)
        self._calls[call.call_id] = call
        try:
            return await self._call(call)
        finally:
            del self._calls[call.call_id]

    async def _call(self, call: _Call) -> CallResult:
        from_value = f"<sip:caller@{HOST}>;tag={call.from_tag}"
        invite = build_request(
            "INVITE",
            self._ruri,
            [
                ("Via", call.invite_via),
                ("Max-Forwards", "70"),
                ("From", from_value),
                ("To", f"<sip:1111111@{HOST}>"),
                ("Call-ID", call.call_id),
                ("CSeq", "1 INVITE"),
                ("Contact", f"<sip:caller@{HOST}:{self.port}>"),
            ],
        )
        answer = await self._transact(call, "INVITE", invite, self.proxy, INVITE_TIMEOUT)
        if answer is None:
            return CallResult(None, "no final response to INVITE")
        self.statuses[answer.status] += 1
        if answer.status >= 300:
            return CallResult(None, f"{answer.status} {answer.reason}")
        contact = answer.get("contact")
        gateway = self.labels.get(user_of(contact) or "", "?")
        if contact is None:
            return CallResult(None, "200 without Contact")
        # RFC 3261 §12.1.2: the route set is the Record-Route list reversed.
        routes = list(reversed(answer.values("record-route")))
        target = uri_of(contact)
        hop = hop_of(uri_of(routes[0])) if routes else hop_of(target)
        to_value = answer.get("to") or ""
        dialog: list[tuple[str, str]] = [("Route", r) for r in routes]
        dialog += [
            ("Max-Forwards", "70"),
            ("From", from_value),
            ("To", to_value),
            ("Call-ID", call.call_id),
        ]
        via = f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"
        call.ack = build_request("ACK", target, [("Via", via), *dialog, ("CSeq", "1 ACK")])
        call.ack_hop = hop
        self._send(call.ack, hop)
        via = f"SIP/2.0/UDP {HOST}:{self.port};branch={new_branch()};rport"
        bye = build_request("BYE", target, [("Via", via), *dialog, ("CSeq", "2 BYE")])
        done = await self._transact(call, "BYE", bye, hop, BYE_TIMEOUT)
        if done is None:
            return CallResult(None, "no answer to BYE")
        if done.status != 200:
            return CallResult(None, f"BYE answered {done.status} {done.reason}")
        return CallResult(gateway)
