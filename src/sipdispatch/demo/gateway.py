"""The simulated media gateway (UAS) of the demo: MG1 and MG2 are two of these."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any, Final, Literal, cast

from sipdispatch.demo.config import HOST
from sipdispatch.demo.useragent import T1, T2, bind_loopback
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.message import (
    Header,
    Request,
    Response,
    is_keepalive,
    make_response,
    parse_datagram,
)

HISTORY_LIMIT: Final = 4096
"""Answered INVITE branches a gateway remembers (to answer retransmissions)."""

GatewayMode = Literal["up", "down", "reject404"]


class Gateway(asyncio.DatagramProtocol):
    """A media gateway on a UDP socket of its own.

    ``mode`` says what it does, switchable at any time:

    * ``up``: OPTIONS 200; INVITE 100, 180, 200 (To tag, Record-Route echoed,
      Contact ``sip:mg1@...``); ACK absorbed; BYE 200;
    * ``down``: answers nothing at all (pings, calls, anything);
    * ``reject404``: OPTIONS 200 but INVITE 404.

    Final responses to INVITE are repeated (T1 doubling, up to T2) until the ACK,
    and a retransmitted INVITE gets the last response again (RFC 3261 §17.2.1), so
    a lost datagram does not lose a call. Replies go to the address the request
    came from (the proxy's listening socket, as its Via says). ``stats`` counts
    what it did (``pings_answered``, ``pings_ignored``, ``invites_answered``,
    ``invites_rejected``, ``invites_ignored``, ``acks``, ``byes``...).
    """

    def __init__(self, label: str) -> None:
        self.label = label
        """``MG1`` / ``MG2``."""
        self.user = label.lower()
        """User part of its Contact: how the caller tells who answered."""
        self.mode: GatewayMode = "up"
        self.stats: Counter[str] = Counter()
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self._tags = itertools.count(1)
        self._answered: dict[str, bytes] = {}
        self._repeating: dict[str, asyncio.TimerHandle] = {}

    @property
    def uri(self) -> str:
        """Its address as a dispatcher destination."""
        return f"sip:{HOST}:{self.port}"

    async def start(self) -> None:
        """Bind a UDP socket on a free loopback port."""
        self.port = await bind_loopback(self)

    def close(self) -> None:
        """Stop repeating responses and close the socket."""
        for handle in self._repeating.values():
            handle.cancel()
        self._repeating.clear()
        if self.transport is not None:
            self.transport.close()

    # -- asyncio -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if is_keepalive(data):
            return
        try:
            msg = parse_datagram(data)
        except ParseError:
            self.stats["unparsable"] += 1
            return
        if not isinstance(msg, Request):
            return  # it sends no requests, so no response is for it
        source = (str(addr[0]), int(addr[1]))
        method = msg.method
        if self.mode == "down":
            what = {"OPTIONS": "pings", "INVITE": "invites"}.get(method, "requests")
            self.stats[f"{what}_ignored"] += 1
            return
        if method == "OPTIONS":
            self.stats["pings_answered"] += 1
            allow = ("allow", "Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS")
            self._reply(make_response(msg, 200, to_tag=self._tag(), extra=[allow]), source)
        elif method == "INVITE":
            self._on_invite(msg, source)
        elif method == "ACK":
            self.stats["acks"] += 1
            handle = self._repeating.pop(msg.call_id, None)
            if handle is not None:
                handle.cancel()
        elif method in ("BYE", "CANCEL"):
            self.stats["byes" if method == "BYE" else "cancels"] += 1
            self._reply(make_response(msg, 200), source)
        else:
            self._reply(make_response(msg, 405), source)

    # -- INVITE ------------------------------------------------------------------

    def _tag(self) -> str:
        return f"{self.user}-{next(self._tags)}"

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def _reply(self, response: Response, addr: tuple[str, int]) -> bytes:
        response.headers.append(("server", "Server", f"sipdispatch-demo {self.label}"))
        data = response.to_bytes()
        self._send(data, addr)
        return data

    def _on_invite(self, request: Request, source: tuple[str, int]) -> None:
        branch = request.top_via.branch or ""
        previous = self._answered.get(branch)
        if previous is not None:  # a retransmission: the last response again
            self.stats["invite_retransmissions"] += 1
            self._send(previous, source)
            return
        tag = self._tag()
        if self.mode == "reject404":
            self.stats["invites_rejected"] += 1
            final = self._reply(make_response(request, 404, to_tag=tag), source)
        else:
            self.stats["invites_answered"] += 1
            # RFC 3261 §12.1.1: the Record-Route set goes back in dialog-creating responses.
            dialog: list[Header] = [
                ("record-route", "Record-Route", value) for value in request.get_all("record-route")
            ]
            dialog.append(("contact", "Contact", f"<sip:{self.user}@{HOST}:{self.port}>"))
            self._reply(make_response(request, 100), source)
            self._reply(make_response(request, 180, to_tag=tag, extra=list(dialog)), source)
            final = self._reply(make_response(request, 200, to_tag=tag, extra=dialog), source)
        self._answered[branch] = final
        if len(self._answered) > HISTORY_LIMIT:
            del self._answered[next(iter(self._answered))]
        self._repeat(request.call_id, final, source)

    def _repeat(self, call_id: str, data: bytes, addr: tuple[str, int]) -> None:
        """Send the final response again at T1, 2*T1, ... (at most T2 apart) until the
        ACK, for at most 64*T1 (RFC 3261 §13.3.1.4, §17.2.1)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 64 * T1

        def fire(interval: float) -> None:
            if self.mode == "down" or loop.time() >= give_up:
                self._repeating.pop(call_id, None)
                return
            self._send(data, addr)
            nxt = min(interval * 2, T2)
            self._repeating[call_id] = loop.call_later(nxt, fire, nxt)

        old = self._repeating.pop(call_id, None)
        if old is not None:
            old.cancel()
        self._repeating[call_id] = loop.call_later(T1, fire, T1)
