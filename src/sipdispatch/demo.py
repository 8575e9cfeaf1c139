"""``sipdispatch demo``: the seed article's story, live on loopback, in one process.

A real :class:`~sipdispatch.server.Server` (the proxy) runs on 127.0.0.1 in front of
two simulated media gateways, MG1 (``weight=75``) and MG2 (``weight=25``), in
dispatcher set 1 with algorithm 9 (weight). A simulated caller sends calls
(INVITE, 200, ACK, BYE) to the proxy and counts which gateway answered each. The
story, narrated on the terminal (docs/demo.md explains how to read it):

1. both gateways up: the calls split 75/25;
2. MG1 dies (answers nothing): pings are missed, it goes ``TP`` then ``IP``, MG2
   takes every call;
3. MG1 comes back: its pings are answered, it is ``AP`` again, the split resumes;
4. MG1 rejects calls with 404 (but answers pings): each rejected call is retried on
   MG2 without the caller seeing the 404, and MG1 is marked ``IP`` (``mark_failed``)
   until its pings bring it back.

Then a table of where the calls went and the destinations as ``dispatcher.list``
shows them. The demo is also a self-check: exit status 0 when every step did what
it should, 1 (with one line saying which step and why) otherwise, 130 after
Ctrl-C (everything stopped and the temporary directory removed).

Entry points: :func:`main` (``argv`` without the program name, e.g.
``main(["--fast"])``), :func:`add_arguments` + :func:`main_from_args` for a parent
argparse parser, and the coroutine :func:`run_demo`.

The gateways and the caller are small asyncio UDP user agents written here on
top of :mod:`sipdispatch.sip.message`; everything shares one event loop (uvloop
when installed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import itertools
import logging
import secrets
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO, cast

from sipdispatch.config import AdminConfig, Config, ConfigError, ListenAddr, parse_config
from sipdispatch.dispatcher.errors import DispatcherError
from sipdispatch.eventloop import install_uvloop
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.headers import split_name_addr
from sipdispatch.sip.message import (
    Header,
    Request,
    Response,
    is_keepalive,
    make_response,
    parse_datagram,
)
from sipdispatch.sip.uri import parse_uri

if TYPE_CHECKING:
    from sipdispatch.dispatcher.destination import Destination
    from sipdispatch.health.state import StateChange
    from sipdispatch.server import Server

# The proxy itself (sipdispatch.server: aiohttp, SQLAlchemy) is imported when the demo
# starts, inside the event loop: importing it takes a good part of a second, and a
# Ctrl-C then must still end in "demo interrupted", not in a traceback.

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "DemoOptions",
    "add_arguments",
    "main",
    "main_from_args",
    "run_demo",
]

EXIT_OK: Final = 0
"""Every step did what it should."""
EXIT_FAILED: Final = 1
"""A step's expectation failed (the line on stderr says which and why)."""
EXIT_INTERRUPTED: Final = 130
"""Stopped by Ctrl-C (128 + SIGINT, the shell convention)."""

HOST: Final = "127.0.0.1"
SET_ID: Final = 1
ALGORITHM_WEIGHT: Final = 9
WEIGHTS: Final = {"MG1": 75, "MG2": 25}
"""The article: 75 % of the calls to the new gateway (MG1), 25 % to the old one."""
DESCRIPTIONS: Final = {"MG1": "Media Gateway 1", "MG2": "Media Gateway 2"}
LABELS: Final = ("MG1", "MG2")

PING_INTERVAL: Final = 1
"""``ds_ping_interval`` (s): the smallest the config allows, so changes show quickly."""
PROBING_THRESHOLD: Final = 2
"""Missed pings in a row before a destination is ``IP``."""
INACTIVE_THRESHOLD: Final = 2
"""Answered pings in a row before an ``IP`` destination is ``AP`` again."""
FR_TIMER_MS: Final = 1000
"""No answer from a gateway within this: the branch (or ping) times out."""
FR_INV_TIMER_MS: Final = 10000
"""An INVITE that got a provisional response but no final one within this times out."""
FAILOVER_ON: Final = ("5xx", "404", "408")
MARK_FAILED: Final = "ip"

T1: Final = 0.5
"""RFC 3261 T1 (s): first retransmission interval of the simulated user agents."""
T2: Final = 4.0
"""RFC 3261 T2 (s): cap of the non-INVITE retransmission interval."""
INVITE_TIMEOUT: Final = 16.0
"""The caller gives up on an INVITE without a final response after this (s) (Timer B,
shortened from 64*T1: the proxy answers within fr_timer per gateway)."""
BYE_TIMEOUT: Final = 8.0
"""The caller gives up on a BYE without a final response after this (s)."""
CONCURRENCY: Final = 16
"""Calls in progress at once."""
CALL_RATE: Final = 100.0
"""New calls per second in steps 1-3 (not in ``--fast``), so the progress is watchable."""
REJECT_STEP_RATE: Final = 10.0
"""New calls per second in step 4 (not in ``--fast``): slow enough that MG1 comes back
between two rejections, so the IP -> AP -> IP cycle shows."""
PAUSE: Final = 0.5
"""Seconds between steps (not in ``--fast``), for the reader."""
POLL: Final = 0.05
"""Seconds between two looks at a destination's state while waiting for it."""
STATE_WAIT_SLACK: Final = 8.0
"""Seconds added to every computed wait for a state (a loaded machine is slow)."""
PROGRESS_WIDTH: Final = 24
PROGRESS_REDRAW: Final = 0.05
"""A TTY progress line is redrawn at most this often (s)."""
HISTORY_LIMIT: Final = 4096
"""Answered INVITE branches a gateway remembers (to answer retransmissions)."""

DEFAULT_CALLS: Final = 200
"""Calls in steps 1 and 3 by default: two turns of the 100-slot weight table."""
FAST_CALLS: Final = 100
MIN_OUTAGE_CALLS: Final = 10
MIN_REJECT_CALLS: Final = 30
"""Step 4 needs a call on an MG1 slot: at most 25 of the 100 weight slots in a row are
MG2's, so 26 calls are enough; 30 for good measure."""

GatewayMode = Literal["up", "down", "reject404"]


class StepFailed(Exception):
    """A step's expectation failed; ``str()`` is the reason."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``sipdispatch demo`` was asked for."""

    calls: int | None = None
    """Calls in steps 1 and 3 (steps 2 and 4 make a quarter as many, at least
    10 and 30); None = 200, or 100 with ``fast``."""
    fast: bool = False
    """No pacing, no pauses, fewer calls (for tests)."""
    verbose: bool = False
    """Show the proxy's log on stderr."""

    @property
    def step_calls(self) -> int:
        """Calls in steps 1 and 3."""
        if self.calls is not None:
            return self.calls
        return FAST_CALLS if self.fast else DEFAULT_CALLS

    @property
    def outage_calls(self) -> int:
        """Calls in step 2."""
        return max(MIN_OUTAGE_CALLS, self.step_calls // 4)

    @property
    def reject_calls(self) -> int:
        """Calls in step 4."""
        return max(MIN_REJECT_CALLS, self.step_calls // 4)


# --------------------------------------------------------------------------------------------
# Small SIP helpers
# --------------------------------------------------------------------------------------------


def _branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def _uri_of(value: str) -> str:
    return split_name_addr(value)[0]


def _user_of(value: str | None) -> str | None:
    """The user part of the URI in a Contact/To value, or None."""
    if not value:
        return None
    try:
        return parse_uri(_uri_of(value)).user
    except ParseError:
        return None


def _hop_of(uri_text: str) -> tuple[str, int]:
    """Where a request for this URI (a Route or a target) is sent."""
    uri = parse_uri(uri_text)
    return uri.host, uri.effective_port


def _request(method: str, uri: str, headers: list[tuple[str, str]]) -> bytes:
    return Request(method, uri, [(n.lower(), n, v) for n, v in headers]).to_bytes()


# --------------------------------------------------------------------------------------------
# The simulated media gateway (UAS)
# --------------------------------------------------------------------------------------------


async def _bind_loopback(protocol: asyncio.DatagramProtocol) -> int:
    """Give ``protocol`` a UDP socket on a free loopback port; return the port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: protocol, local_addr=(HOST, 0))
    return int(transport.get_extra_info("sockname")[1])


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
        self.port = await _bind_loopback(self)

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


# --------------------------------------------------------------------------------------------
# The simulated caller (UAC)
# --------------------------------------------------------------------------------------------


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
        self.port = await _bind_loopback(self)

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
        ack = _request(
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
        via = f"SIP/2.0/UDP {HOST}:{self.port};branch={_branch()};rport"
        call = _Call(call_id=f"demo-{serial}@{HOST}", from_tag=f"c{serial}", invite_via=via)
        self._calls[call.call_id] = call
        try:
            return await self._call(call)
        finally:
            del self._calls[call.call_id]

    async def _call(self, call: _Call) -> CallResult:
        from_value = f"<sip:caller@{HOST}>;tag={call.from_tag}"
        invite = _request(
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
        gateway = self.labels.get(_user_of(contact) or "", "?")
        if contact is None:
            return CallResult(None, "200 without Contact")
        # RFC 3261 §12.1.2: the route set is the Record-Route list reversed.
        routes = list(reversed(answer.values("record-route")))
        target = _uri_of(contact)
        hop = _hop_of(_uri_of(routes[0])) if routes else _hop_of(target)
        to_value = answer.get("to") or ""
        dialog: list[tuple[str, str]] = [("Route", r) for r in routes]
        dialog += [
            ("Max-Forwards", "70"),
            ("From", from_value),
            ("To", to_value),
            ("Call-ID", call.call_id),
        ]
        via = f"SIP/2.0/UDP {HOST}:{self.port};branch={_branch()};rport"
        call.ack = _request("ACK", target, [("Via", via), *dialog, ("CSeq", "1 ACK")])
        call.ack_hop = hop
        self._send(call.ack, hop)
        via = f"SIP/2.0/UDP {HOST}:{self.port};branch={_branch()};rport"
        bye = _request("BYE", target, [("Via", via), *dialog, ("CSeq", "2 BYE")])
        done = await self._transact(call, "BYE", bye, hop, BYE_TIMEOUT)
        if done is None:
            return CallResult(None, "no answer to BYE")
        if done.status != 200:
            return CallResult(None, f"BYE answered {done.status} {done.reason}")
        return CallResult(gateway)


# --------------------------------------------------------------------------------------------
# The terminal
# --------------------------------------------------------------------------------------------


class Display:
    """Narration on a text stream. On a terminal the progress of a step is one line
    redrawn with ``\\r``; otherwise it is printed as a plain line at each quarter.
    Other lines (state changes) clear the progress line, print, and redraw it."""

    def __init__(self, out: TextIO, tty: bool, clock: Callable[[], float]) -> None:
        self.out = out
        self.tty = tty
        self.clock = clock
        self.started = clock()
        self._progress = ""
        self._drawn_at = 0.0
        self._quarter = 0

    def elapsed(self) -> float:
        return self.clock() - self.started

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def line(self, text: str = "") -> None:
        if self.tty and self._progress:
            self._write("\r" + " " * len(self._progress) + "\r" + text + "\n" + self._progress)
        else:
            self._write(text + "\n")

    def event(self, text: str) -> None:
        """A timestamped line."""
        self.line(f"  {self.elapsed():6.1f}s  {text}")

    def begin_progress(self) -> None:
        self._progress = ""
        self._drawn_at = 0.0
        self._quarter = 0

    def progress(self, done: int, total: int, counts: Counter[str]) -> None:
        filled = PROGRESS_WIDTH * done // total if total else PROGRESS_WIDTH
        bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
        text = (
            f"  [{bar}] {done:>{len(str(total))}}/{total}  "
            f"MG1 {counts['MG1']}  MG2 {counts['MG2']}  failed {counts['failed']}"
        )
        if self.tty:
            now = self.clock()
            if done < total and now - self._drawn_at < PROGRESS_REDRAW:
                return
            self._drawn_at = now
            pad = max(0, len(self._progress) - len(text))
            self._write("\r" + text + " " * pad)
            self._progress = text
            return
        quarter = 4 * done // total if total else 4
        if quarter > self._quarter:
            self._quarter = quarter
            self._write(text + "\n")

    def end_progress(self) -> None:
        if self.tty and self._progress:
            self._write("\n")
        self._progress = ""


# --------------------------------------------------------------------------------------------
# The story
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class StepResult:
    """One row of the final table."""

    number: int
    title: str
    short: str
    calls: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    note: str = ""


@dataclass(frozen=True, slots=True)
class SeenChange:
    """A state change as the demo saw it (from the prober's listeners)."""

    at: float
    label: str
    old: str
    new: str
    reason: str


def build_config(list_file: Path) -> Config:
    """The proxy's configuration: validated by :func:`parse_config` as a TOML file would
    be, then given port 0 (any free port) for SIP and admin, which a file cannot say."""
    data: dict[str, Any] = {
        "server": {"listen": [f"udp:{HOST}:5060"], "log_level": "info"},
        "transaction": {"fr_timer": FR_TIMER_MS, "fr_inv_timer": FR_INV_TIMER_MS},
        "admin": {"listen": f"{HOST}:5080"},
        "dispatcher": {
            "list_file": str(list_file),
            "ping_interval": PING_INTERVAL,
            "probing_mode": 1,
            "probing_threshold": PROBING_THRESHOLD,
            "inactive_threshold": INACTIVE_THRESHOLD,
            "ping_latency_stats": True,
        },
        "route": [
            {
                "set": SET_ID,
                "algorithm": ALGORITHM_WEIGHT,
                "failover_on": list(FAILOVER_ON),
                "mark_failed": MARK_FAILED,
            }
        ],
    }
    config = parse_config(data, source="<demo>")
    server = dataclasses.replace(config.server, listen=(ListenAddr("udp", HOST, 0),))
    return dataclasses.replace(config, server=server, admin=AdminConfig(HOST, 0))


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


class Demo:
    """The proxy, two gateways and a caller on one loop, and the story over them."""

    def __init__(self, options: DemoOptions, display: Display, workdir: Path) -> None:
        self.options = options
        self.display = display
        self.workdir = workdir
        self.gateways = {label: Gateway(label) for label in LABELS}
        self.server: Server | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.caller: Caller | None = None
        self.by_uri: dict[str, str] = {}
        self.changes: list[SeenChange] = []
        self.steps: list[StepResult] = []
        self.list_lines: list[str] = []

    # -- setting up and tearing down ------------------------------------------------

    async def start(self) -> None:
        for gateway in self.gateways.values():
            await gateway.start()
        self.by_uri = {gw.uri: label for label, gw in self.gateways.items()}
        self.list_lines = [
            f"{SET_ID} {gw.uri} 0 0 weight={WEIGHTS[label]} {DESCRIPTIONS[label]}"
            for label, gw in self.gateways.items()
        ]
        list_file = self.workdir / "dispatcher.list"
        list_file.write_text(
            "# setid destination flags priority attrs description\n"
            + "\n".join(self.list_lines)
            + "\n",
            encoding="utf-8",
        )
        from sipdispatch.server import Server

        server = Server(build_config(list_file))
        self.server = server
        # The ready line is for scripts waiting on `sipdispatch run`; the demo says it itself.
        with contextlib.redirect_stderr(io.StringIO()):
            await server.start()
        assert server.prober is not None and server.core is not None
        self._unsubscribe = server.state_log.subscribe(self._on_change)
        proxy = server.core.settings.local["udp"]
        caller = Caller(proxy, {gw.user: label for label, gw in self.gateways.items()})
        await caller.start()
        self.caller = caller

    async def stop(self) -> None:
        if self.caller is not None:
            self.caller.close()
        for gateway in self.gateways.values():
            gateway.close()
        if self.server is not None:
            server, self.server = self.server, None
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            await server.stop()

    # -- watching states -----------------------------------------------------------

    def _on_change(self, change: StateChange) -> None:
        label = self.by_uri.get(change.uri, change.uri)
        seen = SeenChange(self.display.elapsed(), label, change.old, change.new, change.reason)
        self.changes.append(seen)
        self.display.event(f"{label}  {change.old} -> {change.new}  ({change.reason})")

    def dest(self, label: str) -> Destination:
        assert self.server is not None
        found = self.server.router.sets.find(SET_ID, self.gateways[label].uri)
        if found is None:
            raise StepFailed(f"{label} is not in set {SET_ID} any more")
        return found

    async def wait_state(self, label: str, wanted: str, limit: float) -> None:
        """Wait until ``label`` shows ``wanted`` (e.g. ``IP``), at most ``limit`` s.
        While it is ``IP``, show its count of answered pings as it grows (the state
        changes themselves are shown by :meth:`_on_change`)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        shown = self.dest(label).probing_count
        while True:
            dest = self.dest(label)
            if dest.flags_text() == wanted:
                return
            count = dest.probing_count
            if count != shown and count > 0 and dest.flags_text() == "IP":
                self.display.event(f"{label}  IP  (OPTIONS answered, {count}/{INACTIVE_THRESHOLD})")
            shown = count
            if loop.time() >= end:
                raise StepFailed(
                    f"{label} did not reach {wanted} within {limit:.0f} s "
                    f"(it is {dest.flags_text()})"
                )
            await asyncio.sleep(POLL)

    def down_wait(self) -> float:
        """Longest a gateway that stopped answering should take to be ``IP``."""
        return PING_INTERVAL * (PROBING_THRESHOLD + 1) + FR_TIMER_MS / 1000 + STATE_WAIT_SLACK

    def up_wait(self) -> float:
        """Longest a gateway that answers again should take to be ``AP``."""
        return PING_INTERVAL * (INACTIVE_THRESHOLD + 1) + FR_TIMER_MS / 1000 + STATE_WAIT_SLACK

    # -- calls ---------------------------------------------------------------------

    async def run_calls(self, step: StepResult, n: int, rate: float | None) -> None:
        """Make ``n`` calls (at ``rate`` per second, None = as fast as allowed),
        ``CONCURRENCY`` at most at once, counting who answered."""
        caller = self.caller
        assert caller is not None
        display = self.display
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(CONCURRENCY)
        started = loop.time()
        failures: Counter[str] = Counter()
        step.calls = n
        display.begin_progress()
        display.progress(0, n, step.counts)

        async def one(index: int) -> None:
            if rate is not None:
                await asyncio.sleep(max(0.0, started + index / rate - loop.time()))
            async with gate:
                result = await caller.call()
            if result.ok and result.gateway is not None:
                step.counts[result.gateway] += 1
            else:
                step.counts["failed"] += 1
                failures[result.failure] += 1
            done = step.counts["MG1"] + step.counts["MG2"] + step.counts["failed"]
            display.progress(done, n, step.counts)

        # Every call is bounded by INVITE_TIMEOUT + BYE_TIMEOUT; this bounds the step.
        limit = (n / rate if rate else 0) + (n / CONCURRENCY + 1) * (INVITE_TIMEOUT + BYE_TIMEOUT)
        try:
            async with asyncio.timeout(limit), asyncio.TaskGroup() as group:
                for index in range(n):
                    group.create_task(one(index))
        except TimeoutError:
            raise StepFailed(f"the calls did not finish within {limit:.0f} s") from None
        finally:
            display.end_progress()
        if failures:
            why = ", ".join(f"{count} x {what}" for what, count in failures.most_common())
            raise StepFailed(f"{step.counts['failed']} of {n} calls failed ({why})")

    def predicted_mg1(self, n: int) -> int:
        """MG1's calls the weight table predicts for the next ``n`` selections when both
        gateways are usable: algorithm 9 walks a shuffled 100-slot table, 75 slots MG1's."""
        assert self.server is not None
        dset = self.server.router.sets.get(SET_ID)
        assert dset is not None
        mg1 = next(i for i, d in enumerate(dset.dests) if self.by_uri.get(d.uri) == "MG1")
        return sum(1 for k in range(n) if dset.wlist[(dset.wlast + k) % len(dset.wlist)] == mg1)

    def check_split(self, step: StepResult, predicted: int) -> str:
        n = step.calls
        mg1, mg2 = step.counts["MG1"], step.counts["MG2"]
        # Exact unless a call was failed over (a branch that timed out on a starved
        # machine); a little slack keeps the self-check from being flaky there.
        slack = max(2, n // 25)
        if abs(mg1 - predicted) > slack:
            raise StepFailed(
                f"MG1 got {mg1} and MG2 {mg2} of {n} calls; the weights predict "
                f"{predicted}/{n - predicted}"
            )
        return (
            f"MG1 {mg1} ({_percent(mg1, n)}), MG2 {mg2} ({_percent(mg2, n)}): "
            f"the 75/25 weights ({predicted}/{n - predicted} predicted by the weight table)"
        )

    def title(self, number: int, short: str, text: str) -> StepResult:
        step = StepResult(number, text, short)
        self.steps.append(step)
        self.display.line()
        self.display.line(f"Step {number}/4  {text}")
        return step

    async def pause(self) -> None:
        if not self.options.fast:
            await asyncio.sleep(PAUSE)

    @property
    def rate(self) -> float | None:
        return None if self.options.fast else CALL_RATE

    # -- the story -----------------------------------------------------------------

    def introduce(self) -> None:
        assert self.server is not None and self.caller is not None
        line = self.display.line
        proxy = self.caller.proxy
        admin = self.server.admin.url if self.server.admin is not None else "-"
        line(f"sipdispatch demo: a proxy in front of two media gateways (75/25), live on {HOST}")
        line()
        line(f"  proxy    udp:{proxy[0]}:{proxy[1]}  (admin {admin}/RPC)")
        for label, gw in self.gateways.items():
            line(f"  {label}      {gw.uri}  weight={WEIGHTS[label]}  {DESCRIPTIONS[label]}")
        line(f"  caller   udp:{HOST}:{self.caller.port}  INVITE sip:1111111@{proxy[0]}:{proxy[1]}")
        line()
        line("  dispatcher.list:")
        for text in self.list_lines:
            line(f"    {text}")
        line(
            f"  [[route]] set {SET_ID}, algorithm {ALGORITHM_WEIGHT} (weight); failover on "
            f"{', '.join(FAILOVER_ON)} or no answer within fr_timer {FR_TIMER_MS} ms; "
            f'mark_failed "{MARK_FAILED}"'
        )
        line(
            f"  OPTIONS ping every {PING_INTERVAL} s (probing_mode 1): IP after "
            f"{PROBING_THRESHOLD} missed in a row, back to AP after {INACTIVE_THRESHOLD} answered"
        )

    async def first_pings(self) -> None:
        self.display.line()
        self.display.line("Start  the proxy pings both gateways (loaded with flags 0: AX)")
        for label in LABELS:
            await self.wait_state(label, "AP", self.up_wait())

    async def step_both_up(self) -> None:
        n = self.options.step_calls
        step = self.title(1, "both up", f"both gateways up: {n} calls, weights 75/25")
        predicted = self.predicted_mg1(n)
        await self.run_calls(step, n, self.rate)
        self.display.line(f"  -> {self.check_split(step, predicted)}.  OK")
        step.note = f"weights 75/25 ({predicted}/{n - predicted} predicted)"

    async def step_outage(self) -> None:
        step = self.title(2, "MG1 down", "MG1 dies: it answers nothing (pings, calls) from now on")
        mg1 = self.gateways["MG1"]
        before = self.dest("MG1").flags_text()
        mg1.mode = "down"
        self.display.line(
            f"  the proxy keeps pinging it; after {PROBING_THRESHOLD} missed pings it is IP"
        )
        since = len(self.changes)
        timeouts = self.dest("MG1").latency.timeout
        await self.wait_state("MG1", "IP", self.down_wait())
        missed = self.dest("MG1").latency.timeout - timeouts
        ignored_before = mg1.stats["invites_ignored"]
        n = self.options.outage_calls
        self.display.line(f"  MG1 is IP: it gets no calls; MG2 takes 100 %. {n} calls:")
        await self.run_calls(step, n, self.rate)
        seen = " -> ".join([before, *(c.new for c in self.changes[since:] if c.label == "MG1")])
        reached = mg1.stats["invites_ignored"] - ignored_before
        if step.counts["MG1"] or step.counts["MG2"] != n or reached:
            raise StepFailed(
                f"while MG1 was IP it still got calls: MG1 {step.counts['MG1']}, "
                f"MG2 {step.counts['MG2']}, INVITEs that reached MG1 {reached}"
            )
        self.display.line(
            f"  -> MG1 went {seen} after {missed} pings timed out; all {n} calls answered "
            f"by MG2, none failed, no INVITE sent to MG1.  OK"
        )
        step.note = f"MG1 {seen}; MG2 took 100 %"

    async def step_back(self) -> None:
        n = self.options.step_calls
        step = self.title(3, "MG1 back", "MG1 comes back: it answers again")
        self.gateways["MG1"].mode = "up"
        self.display.line(f"  after {INACTIVE_THRESHOLD} answered pings in a row it is AP again")
        await self.wait_state("MG1", "AP", self.up_wait())
        self.display.line(f"  MG1 is AP: the split resumes. {n} calls:")
        predicted = self.predicted_mg1(n)
        await self.run_calls(step, n, self.rate)
        self.display.line(f"  -> {self.check_split(step, predicted)}.  OK")
        step.note = f"IP -> AP; 75/25 again ({predicted}/{n - predicted} predicted)"

    async def step_reject(self) -> None:
        n = self.options.reject_calls
        step = self.title(
            4, "MG1 rejects (404)", "MG1 answers every INVITE with 404 (its pings still get 200)"
        )
        mg1 = self.gateways["MG1"]
        mg1.mode = "reject404"
        self.display.line(
            "  a 404 is in failover_on: the proxy retries the call on MG2 and marks MG1 "
            f"{MARK_FAILED.upper()}; its pings bring it back. {n} calls:"
        )
        rejected_before = mg1.stats["invites_rejected"]
        since = len(self.changes)
        caller = self.caller
        assert caller is not None
        seen_404_before = caller.statuses[404]
        await self.run_calls(step, n, None if self.options.fast else REJECT_STEP_RATE)
        rejected = mg1.stats["invites_rejected"] - rejected_before
        marked = [
            c
            for c in self.changes[since:]
            if c.label == "MG1" and c.new == MARK_FAILED.upper() and "404" in c.reason
        ]
        if rejected == 0:
            raise StepFailed("no call reached MG1, so no 404 was tried")
        if caller.statuses[404] != seen_404_before:
            raise StepFailed("the caller received a 404")
        if step.counts["MG1"] or step.counts["MG2"] != n:
            raise StepFailed(
                f"MG1 answered {step.counts['MG1']} calls and MG2 {step.counts['MG2']} of {n}"
            )
        if not marked:
            raise StepFailed(f"MG1 rejected {rejected} calls but was not marked {MARK_FAILED}")
        self.display.line(
            f"  -> MG1 answered {rejected} INVITE(s) with 404 and went IP {len(marked)} "
            f"time(s); each of those calls was retried on MG2 and the caller saw no 404: "
            f"all {n} calls answered by MG2.  OK"
        )
        step.note = f"{rejected} x 404 from MG1, retried on MG2"
        self.display.line()
        self.display.line("End  MG1 answers calls again; waiting for it to be AP")
        mg1.mode = "up"
        await self.wait_state("MG1", "AP", self.up_wait())

    async def tell(self) -> None:
        self.introduce()
        await self.first_pings()
        await self.pause()
        await self.step_both_up()
        await self.pause()
        await self.step_outage()
        await self.pause()
        await self.step_back()
        await self.pause()
        await self.step_reject()

    # -- the tables ----------------------------------------------------------------

    def summary(self) -> None:
        line = self.display.line
        line()
        line("Where the calls went")
        head = f"  {'step':<22} {'calls':>6} {'MG1':>6} {'MG2':>6} {'failed':>7}  notes"
        line(head)
        total: Counter[str] = Counter()
        calls = 0
        for s in self.steps:
            c = s.counts
            name = f"{s.number} {s.short}"
            line(
                f"  {name:<22} {s.calls:>6} {c['MG1']:>6} {c['MG2']:>6} {c['failed']:>7}  {s.note}"
            )
            total.update(c)
            calls += s.calls
        line(f"  {'total':<22} {calls:>6} {total['MG1']:>6} {total['MG2']:>6} {total['failed']:>7}")

    async def destinations(self) -> None:
        """The destinations as ``sipdispatch rpc dispatcher.list`` shows them."""
        if self.server is None:
            return
        from sipdispatch.admin import rpc

        result = await rpc.Rpc(self.server).call("dispatcher.list")
        line = self.display.line
        slowest: list[str] = []
        line()
        line("Destinations at the end (what `sipdispatch rpc dispatcher.list` shows)")
        line(
            f"  {'':4}{'URI':<24} {'FLAGS':<6} {'PRIORITY':>8}  {'ATTRS':<10}"
            f" {'AVG':>6} {'STD':>6} {'EST':>6} {'MAX':>4} {'TIMEOUT':>8}"
        )
        for record in cast(dict[str, Any], result)["RECORDS"]:
            for target in record["SET"]["TARGETS"]:
                dest = target["DEST"]
                label = self.by_uri.get(dest["URI"], "")
                attrs = (dest.get("ATTRS") or {}).get("BODY") or ""
                lat = dest.get("LATENCY") or {}
                if lat.get("MAX", 0) >= T1 * 1000 * 0.8:
                    slowest.append(label or dest["URI"])
                line(
                    f"  {label:<4}{dest['URI']:<24} {dest['FLAGS']:<6} {dest['PRIORITY']:>8}"
                    f"  {attrs:<10} {lat.get('AVG', 0):>6.2f} {lat.get('STD', 0):>6.2f}"
                    f" {lat.get('EST', 0):>6.2f} {lat.get('MAX', 0):>4} {lat.get('TIMEOUT', 0):>8}"
                )
        line(
            "  LATENCY (ms) of the OPTIONS pings (ping_latency_stats); TIMEOUT counts pings "
            "left unanswered within fr_timer"
        )
        for label in slowest:
            line(
                f"  {label}'s MAX: a ping sent while it was down, answered on its retransmission "
                f"({T1 * 1000:.0f} ms later) once it was back"
            )


@contextlib.contextmanager
def _quiet_logs(verbose: bool) -> Iterator[None]:
    """Keep the proxy's log off the narration unless asked for (``--verbose``)."""
    logger = logging.getLogger("sipdispatch")
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler = logging.NullHandler()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.CRITICAL)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


async def run_demo(
    options: DemoOptions | None = None,
    out: TextIO | None = None,
    *,
    tty: bool | None = None,
    err: TextIO | None = None,
) -> int:
    """Tell the story on ``out`` (default stdout); return :data:`EXIT_OK` or
    :data:`EXIT_FAILED` (after one ``demo failed: ...`` line on ``err``, default
    stderr). ``tty`` forces the progress style (default: ``out.isatty()``).

    Cancelling the task stops everything (proxy, sockets, temporary directory) and
    re-raises the cancellation.
    """
    options = options or DemoOptions()
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if tty is None:
        tty = out.isatty()
    loop = asyncio.get_running_loop()
    display = Display(out, tty, loop.time)
    with (
        _quiet_logs(options.verbose),
        tempfile.TemporaryDirectory(prefix="sipdispatch-demo-") as tmp,
    ):
        demo = Demo(options, display, Path(tmp))
        failure: str | None = None
        try:
            from sipdispatch.store import StoreError

            try:
                await demo.start()
            except (OSError, ConfigError, DispatcherError, StoreError) as exc:
                failure = f"demo failed: cannot start the proxy or the simulated peers: {exc}"
            if failure is None:
                try:
                    await demo.tell()
                except StepFailed as exc:
                    step = demo.steps[-1] if demo.steps else None
                    where = f"step {step.number} ({step.short})" if step else "start"
                    failure = f"demo failed: {where}: {exc}"
                demo.summary()
                await demo.destinations()
        finally:
            display.end_progress()
            await demo.stop()
    if failure is not None:
        err.write(failure + "\n")
        err.flush()
        return EXIT_FAILED
    display.line()
    display.line(f"demo completed in {display.elapsed():.1f} s: every step as expected")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 4 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{value} is out of range 4..100000")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options (``--calls N``, ``--fast``, ``--verbose``) to a parser,
    e.g. the ``demo`` subparser of the ``sipdispatch`` command line."""
    parser.add_argument(
        "--calls",
        type=_positive,
        metavar="N",
        help=f"calls in steps 1 and 3 (default {DEFAULT_CALLS}, {FAST_CALLS} with --fast); "
        "steps 2 and 4 make a quarter as many (at least "
        f"{MIN_OUTAGE_CALLS} and {MIN_REJECT_CALLS})",
    )
    parser.add_argument(
        "--fast", action="store_true", help="fewer calls, no pacing and no pauses (for tests)"
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show the proxy's log on stderr"
    )


def main_from_args(args: argparse.Namespace) -> int:
    """Run the demo with options parsed by a parser that :func:`add_arguments` set up."""
    options = DemoOptions(calls=args.calls, fast=args.fast, verbose=args.verbose)
    try:
        with asyncio.Runner(loop_factory=install_uvloop()) as runner:
            return runner.run(run_demo(options))
    except KeyboardInterrupt:
        # asyncio.Runner turned the first Ctrl-C into a cancellation of run_demo, which
        # stopped the proxy, closed the sockets and removed the temporary directory.
        sys.stdout.flush()
        print("demo interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """``sipdispatch demo [--calls N] [--fast] [--verbose]``: ``argv`` holds the
    arguments after ``demo`` (None = ``sys.argv[1:]``). Returns the exit status:
    0 completed, 1 a step failed, 130 interrupted (2 for bad arguments, from argparse)."""
    parser = argparse.ArgumentParser(
        prog="sipdispatch demo",
        description="The dispatcher story on loopback: a proxy, two simulated media "
        "gateways (75/25) and a caller; MG1 dies, comes back, rejects with 404.",
    )
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover - python -m sipdispatch.demo
    raise SystemExit(main())
