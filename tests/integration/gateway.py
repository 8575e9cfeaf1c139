"""A scripted SIP gateway (UAS) for loopback integration tests.

The gateway is deliberately independent of ``sipdispatch``: it has its own
minimal SIP text handling so that a bug in the proxy's parser cannot hide
itself by being shared with the test peer.

Two layers:

- :class:`ScriptedGateway` is the asyncio UAS. It must be started and stopped
  on the loop that runs it (``await gw.start()`` / ``await gw.stop()``).
- :class:`GatewayThread` runs a :class:`ScriptedGateway` on its own event loop
  in a daemon thread, so that synchronous pytest tests can start sipp or the
  proxy as subprocesses and then inspect what the gateway received. Every
  inspection method is thread-safe and available on both classes.

What the gateway does with each request is set by a :class:`Behaviour`, which
can be swapped at run time from any thread with ``set_behaviour(...)``. An
INVITE uses the behaviour in force when it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

Transport = Literal["udp", "tcp", "tls"]
Address = tuple[str, int]
T = TypeVar("T")

#: RFC 3261 §17.1.1.1 default timer values, in seconds.
DEFAULT_T1 = 0.5
DEFAULT_T2 = 4.0

#: RFC 3261 §7.3.3 compact header forms (the ones a proxy may plausibly emit).
COMPACT_FORMS = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "u": "allow-events",
}

REASONS = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    500: "Server Internal Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    600: "Busy Everywhere",
    603: "Decline",
}

#: Cap on one message's header block over TCP; beyond it the peer is broken.
MAX_HEADER_BYTES = 65536


def canonical_name(name: str) -> str:
    """Lower-case full header name, expanding RFC 3261 compact forms."""
    lowered = name.strip().lower()
    return COMPACT_FORMS.get(lowered, lowered)


def split_header_values(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas in quotes or <>."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
            continue
        if quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def header_param(value: str, name: str) -> str | None:
    """Value of ``;name=value`` in a header value (outside any <...> URI)."""
    tail = value.rsplit(">", 1)[-1] if ">" in value else value
    for item in tail.split(";")[1:]:
        key, _, val = item.partition("=")
        if key.strip().lower() == name:
            return val.strip()
    return None


class SipParseError(ValueError):
    """The bytes are not a SIP message this gateway understands."""


@dataclass(frozen=True)
class SipRecord:
    """One SIP message as the gateway received (or sent) it."""

    method: str | None
    """Request method, or None for a response."""
    status: int | None
    """Response status code, or None for a request."""
    reason: str
    """Response reason phrase ('' for requests)."""
    uri: str | None
    """Request-URI, or None for a response."""
    header_lines: tuple[tuple[str, str], ...]
    """Every header line in order, as (name as received, value as received)."""
    headers: dict[str, list[str]]
    """Canonical lower-case name -> values, one entry per header line (not split on commas)."""
    body: bytes
    raw: bytes
    """The whole message exactly as it came off the wire."""
    source: Address
    """Peer address (for TCP, the connection's peer)."""
    transport: Transport
    time: float
    """``time.monotonic()`` at arrival."""
    retransmission: bool = False
    """True when an identical request (method, Call-ID, CSeq, top branch) came before."""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive, compact forms accepted)."""
        values = self.headers.get(canonical_name(name))
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """All header lines of ``name``, in order, not split on commas."""
        return list(self.headers.get(canonical_name(name), []))

    def values(self, name: str) -> list[str]:
        """All values of ``name`` in order, comma-separated lines split."""
        out: list[str] = []
        for line in self.get_all(name):
            out.extend(split_header_values(line))
        return out

    @property
    def vias(self) -> list[str]:
        """Every Via value, top first (multi-value lines split)."""
        return self.values("via")

    @property
    def branch(self) -> str | None:
        """Branch parameter of the top Via."""
        vias = self.vias
        return header_param(vias[0], "branch") if vias else None

    @property
    def call_id(self) -> str:
        return (self.get("call-id") or "").strip()

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method) from CSeq; (-1, '') when absent or broken."""
        raw = (self.get("cseq") or "").split()
        if len(raw) != 2 or not raw[0].isdigit():
            return (-1, "")
        return (int(raw[0]), raw[1].upper())

    @property
    def to_tag(self) -> str | None:
        to = self.get("to")
        return header_param(to, "tag") if to else None

    @property
    def from_tag(self) -> str | None:
        frm = self.get("from")
        return header_param(frm, "tag") if frm else None

    def summary(self) -> str:
        """One line for failure messages."""
        what = self.method if self.is_request else f"{self.status} {self.reason}"
        extra = " (retrans)" if self.retransmission else ""
        return f"{what} cid={self.call_id} cseq={self.cseq} from={self.source}{extra}"


def parse_message(
    raw: bytes,
    source: Address = ("", 0),
    transport: Transport = "udp",
    now: float | None = None,
) -> SipRecord:
    """Parse one complete SIP message. Raises :class:`SipParseError`."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header block is not UTF-8: {exc}") from exc
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    header_lines: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and header_lines:
            # RFC 3261 §7.3.1: a line starting with whitespace continues the previous one.
            name, value = header_lines[-1]
            header_lines[-1] = (name, value + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SipParseError(f"bad header line {line!r}")
        header_lines.append((name.strip(), value.strip()))
    headers: dict[str, list[str]] = {}
    for name, value in header_lines:
        headers.setdefault(canonical_name(name), []).append(value)

    length_values = headers.get("content-length")
    if length_values:
        try:
            length = int(length_values[0])
        except ValueError as exc:
            raise SipParseError(f"bad Content-Length {length_values[0]!r}") from exc
        body = body[:length]

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason = ""
    parts = start.split(" ", 2)
    if start.startswith("SIP/2.0 "):
        if len(parts) < 2 or not parts[1].isdigit():
            raise SipParseError(f"bad status line {start!r}")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
    elif len(parts) == 3 and parts[2] == "SIP/2.0":
        method, uri = parts[0].upper(), parts[1]
    else:
        raise SipParseError(f"bad start line {start!r}")
    return SipRecord(
        method=method,
        status=status,
        reason=reason,
        uri=uri,
        header_lines=tuple(header_lines),
        headers=headers,
        body=body,
        raw=raw,
        source=source,
        transport=transport,
        time=time.monotonic() if now is None else now,
    )


@dataclass(frozen=True)
class Behaviour:
    """How the gateway answers. Build with keywords; swap with ``set_behaviour``.

    Precedence when several are set: ``silent_all`` > ``silent`` > ``reject`` > answer.
    """

    reject: int | None = None
    """Answer INVITE with 100 then this final response (e.g. 404, 503) instead of 200."""
    answer_delay_ms: int = 0
    """Wait this long after the 180 before the final response (CANCEL can land meanwhile)."""
    silent: bool = False
    """Never answer INVITE (it is still recorded); other requests are answered."""
    silent_all: bool = False
    """Answer nothing at all."""
    back_to_back: bool = False
    """Send 180 and 200 in the same instant (one write on TCP, two sendto on UDP)."""
    options_code: int | None = 200
    """Status for OPTIONS; None ignores OPTIONS (a dead gateway for the prober)."""
    send_trying: bool = True
    """Send 100 Trying first."""
    send_ringing: bool = True
    """Send 180 Ringing before the 200 (answer mode only)."""
    bye_code: int = 200
    """Status for BYE."""
    other_code: int = 200
    """Status for requests other than INVITE/ACK/BYE/CANCEL/OPTIONS."""
    answer_others_after_ms: int = 0
    """Wait this long before answering a request other than INVITE/ACK/CANCEL/OPTIONS
    (a caller sending several in-dialog requests back to back has sent them all when
    the first answer comes)."""
    reply_to_via: bool = False
    """UDP: send responses to the top Via (received/rport honoured) instead of the source."""

    @property
    def mode(self) -> Literal["answer", "reject", "silent", "silent_all"]:
        if self.silent_all:
            return "silent_all"
        if self.silent:
            return "silent"
        if self.reject is not None:
            return "reject"
        return "answer"


@dataclass(frozen=True)
class InviteOutcome:
    """What happened to one INVITE server transaction, as seen by the gateway."""

    call_id: str
    cseq: int
    branch: str | None
    final_code: int | None = None
    """Final response sent (200, the reject code, 487 after CANCEL), None if none yet."""
    cancelled: bool = False
    """A matching CANCEL arrived."""
    acked: bool = False
    """The ACK for the final response arrived (for 2xx: a dialog-matched ACK)."""


@dataclass
class _InviteTxn:
    """Server INVITE transaction plus the dialog it creates (one per INVITE)."""

    request: SipRecord
    to_tag: str
    reply: Callable[[bytes], None]
    behaviour: Behaviour
    last_response: bytes | None = None
    final_code: int | None = None
    acked: bool = False
    ack_record: SipRecord | None = None
    pending: list[asyncio.TimerHandle] = field(default_factory=list)

    def cancel_timers(self) -> None:
        for handle in self.pending:
            handle.cancel()
        self.pending.clear()


class _Recorder:
    """Thread-safe store of received/sent messages and counters."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._received: list[SipRecord] = []
        self._sent: list[tuple[float, Address, bytes]] = []
        self._counts: dict[str, int] = {}
        self._seen: set[tuple[str, str, int, str | None, Address]] = set()
        self._outcomes: dict[tuple[str, int, str | None], InviteOutcome] = {}

    def add(self, record: SipRecord) -> SipRecord:
        with self._cond:
            method = record.method
            if method is not None:
                key = (
                    method,
                    record.call_id,
                    record.cseq[0],
                    record.branch,
                    record.source,
                )
                if key in self._seen:
                    record = dataclasses.replace(record, retransmission=True)
                else:
                    self._seen.add(key)
                    self._counts[method] = self._counts.get(method, 0) + 1
            self._received.append(record)
            self._cond.notify_all()
        return record

    def add_sent(self, dest: Address, data: bytes) -> None:
        with self._cond:
            self._sent.append((time.monotonic(), dest, data))
            self._cond.notify_all()

    def outcome(self, call_id: str, cseq: int, branch: str | None, **changes: Any) -> None:
        with self._cond:
            key = (call_id, cseq, branch)
            old = self._outcomes.get(key) or InviteOutcome(call_id, cseq, branch)
            self._outcomes[key] = dataclasses.replace(old, **changes)
            self._cond.notify_all()

    def outcomes(self) -> list[InviteOutcome]:
        with self._cond:
            return list(self._outcomes.values())

    def received(self) -> list[SipRecord]:
        with self._cond:
            return list(self._received)

    def sent(self) -> list[tuple[float, Address, bytes]]:
        with self._cond:
            return list(self._sent)

    def count(self, method: str) -> int:
        with self._cond:
            return self._counts.get(method.upper(), 0)

    def clear(self) -> None:
        with self._cond:
            self._received.clear()
            self._sent.clear()
            self._counts.clear()
            self._seen.clear()
            self._outcomes.clear()

    def wait_for(
        self, predicate: Callable[[], T], timeout: float, describe: Callable[[], str]
    ) -> T:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Woken by every message; the short cap also re-checks predicates that
                # depend on something other than this gateway (e.g. another gateway).
                self._cond.wait(min(remaining, 0.05))
        raise TimeoutError(f"condition not met within {timeout:.1f}s; {describe()}")


class _Inspect:
    """Read-side API shared by :class:`ScriptedGateway` and :class:`GatewayThread`."""

    name: str
    _recorder: _Recorder

    @property
    def received(self) -> list[SipRecord]:
        """Snapshot of every message received, in arrival order (retransmissions included)."""
        return self._recorder.received()

    @property
    def sent(self) -> list[tuple[float, Address, bytes]]:
        """Snapshot of every message sent: (monotonic time, destination, bytes)."""
        return self._recorder.sent()

    def requests(
        self, method: str | None = None, *, retransmissions: bool = False
    ) -> list[SipRecord]:
        """Received requests (of ``method`` if given), first copies only by default."""
        return [
            r
            for r in self._recorder.received()
            if r.method is not None
            and (method is None or r.method == method.upper())
            and (retransmissions or not r.retransmission)
        ]

    def responses(self) -> list[SipRecord]:
        """Received responses (a gateway normally gets none)."""
        return [r for r in self._recorder.received() if r.status is not None]

    def count(self, method: str) -> int:
        """Distinct requests of ``method`` received (retransmissions not counted)."""
        return self._recorder.count(method)

    @property
    def invites(self) -> int:
        return self.count("INVITE")

    @property
    def acks(self) -> int:
        return self.count("ACK")

    @property
    def byes(self) -> int:
        return self.count("BYE")

    @property
    def cancels(self) -> int:
        return self.count("CANCEL")

    @property
    def options(self) -> int:
        return self.count("OPTIONS")

    def outcomes(self) -> list[InviteOutcome]:
        """One entry per distinct INVITE received: final sent, CANCEL seen, ACK seen."""
        return self._recorder.outcomes()

    def call_ids(self, method: str = "INVITE") -> list[str]:
        """Call-IDs of distinct ``method`` requests, in arrival order."""
        return [r.call_id for r in self.requests(method)]

    def clear(self) -> None:
        """Forget everything received and sent (transactions in flight are kept)."""
        self._recorder.clear()

    def describe(self) -> str:
        """Human summary of what was received, for assertion messages."""
        recs = self._recorder.received()
        lines = [f"gateway {self.name} received {len(recs)} message(s)"]
        lines.extend("  " + r.summary() for r in recs[-30:])
        return "\n".join(lines)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Poll ``predicate()`` until truthy and return its value; TimeoutError after ``timeout``.

        Re-evaluated on every message this gateway receives and at least every 50 ms.
        """
        return self._recorder.wait_for(predicate, timeout, self.describe)

    def wait_count(self, method: str, n: int, timeout: float = 10.0) -> None:
        """Wait until at least ``n`` distinct ``method`` requests arrived."""
        self.wait_for(lambda: self.count(method) >= n, timeout)


class ScriptedGateway(_Inspect):
    """Scripted UAS on 127.0.0.1 over UDP, TCP or TLS (``ssl_context`` then, and
    ``uri_host``, the name its URI gives, e.g. the certificate's). Run on an asyncio loop."""

    def __init__(
        self,
        name: str,
        transport: Transport = "udp",
        port: int = 0,
        behaviour: Behaviour | None = None,
        *,
        host: str = "127.0.0.1",
        t1: float = DEFAULT_T1,
        t2: float = DEFAULT_T2,
        ssl_context: ssl.SSLContext | None = None,
        uri_host: str | None = None,
    ) -> None:
        if transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"transport must be 'udp', 'tcp' or 'tls', not {transport!r}")
        if (transport == "tls") != (ssl_context is not None):
            raise ValueError("a tls gateway needs ssl_context, and only it")
        self.ssl_context = ssl_context
        self.uri_host = uri_host or host
        self.name = name
        self.transport: Transport = transport
        self.host = host
        self.port = port
        self.t1 = t1
        self.t2 = t2
        self._behaviour = behaviour or Behaviour()
        self._behaviour_lock = threading.Lock()
        self._recorder = _Recorder()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._tcp_conns: set[asyncio.Transport] = set()
        # INVITE server transactions by (Call-ID, CSeq number, top branch), and by Call-ID
        # for ACKs to 2xx, which carry a new branch and match the dialog instead.
        self._invites: dict[tuple[str, int, str | None], _InviteTxn] = {}
        self._by_call: dict[str, list[_InviteTxn]] = {}
        self._responses: dict[tuple[str, str, int, str | None], bytes] = {}
        self._tags = itertools.count(1)

    # -- configuration -------------------------------------------------------

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    def set_behaviour(self, behaviour: Behaviour | None = None, **changes: Any) -> Behaviour:
        """Replace the behaviour (or change some fields of it). Safe from any thread."""
        with self._behaviour_lock:
            base = behaviour if behaviour is not None else self._behaviour
            self._behaviour = dataclasses.replace(base, **changes) if changes else base
            return self._behaviour

    @property
    def uri(self) -> str:
        """SIP URI of this gateway, for a dispatcher list."""
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{self.uri_host}:{self.port}{suffix}"

    @property
    def contact(self) -> str:
        return f"<sip:{self.name}@{self.host}:{self.port};transport={self.transport}>"

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self.transport == "udp":
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
            )
            self._udp = udp
            self.port = udp.get_extra_info("sockname")[1]
        else:
            self._server = await loop.create_server(
                lambda: _TcpProtocol(self), host=self.host, port=self.port, ssl=self.ssl_context
            )
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for txn in self._invites.values():
            txn.cancel_timers()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            self._server.close()
            for conn in list(self._tcp_conns):
                conn.close()
            await self._server.wait_closed()
            self._server = None
        self._tcp_conns.clear()

    # -- receiving -----------------------------------------------------------

    def _on_message(self, raw: bytes, source: Address, reply: Callable[[bytes], None]) -> None:
        try:
            record = parse_message(raw, source, self.transport)
        except SipParseError:
            return
        record = self._recorder.add(record)
        if record.method is None:
            return
        behaviour = self._behaviour
        if behaviour.silent_all:
            return
        if behaviour.reply_to_via and self.transport == "udp":
            reply = self._via_reply(record, reply)
        method = record.method
        if method == "ACK":
            self._on_ack(record)
            return
        if method == "INVITE":
            self._on_invite(record, reply, behaviour)
            return
        if method == "CANCEL":
            self._on_cancel(record, reply)
            return

        key = (method, record.call_id, record.cseq[0], record.branch)
        if record.retransmission and key in self._responses:
            reply(self._responses[key])
            return
        if method == "OPTIONS":
            if behaviour.options_code is None:
                return
            code = behaviour.options_code
        elif method == "BYE":
            code = behaviour.bye_code
        else:
            code = behaviour.other_code
        data = self._response(record, code, to_tag=f"{self.name}-o{next(self._tags)}")
        self._responses[key] = data
        if method != "OPTIONS" and behaviour.answer_others_after_ms > 0 and self._loop:
            self._loop.call_later(behaviour.answer_others_after_ms / 1000, reply, data)
            return
        reply(data)

    def _via_reply(
        self, record: SipRecord, fallback: Callable[[bytes], None]
    ) -> Callable[[bytes], None]:
        """RFC 3261 §18.2.2 / RFC 3581: reply to received/rport, else to sent-by."""
        vias = record.vias
        if not vias or self._udp is None:
            return fallback
        top = vias[0]
        sent_by = top.split(None, 1)[1].split(";", 1)[0] if " " in top else ""
        host, _, port_text = sent_by.partition(":")
        host = header_param(top, "received") or host
        rport = header_param(top, "rport")
        port = int(rport) if rport else int(port_text or 5060)
        udp = self._udp

        def send(data: bytes) -> None:
            udp.sendto(data, (host, port))
            self._recorder.add_sent((host, port), data)

        return send

    def _on_invite(
        self, record: SipRecord, reply: Callable[[bytes], None], behaviour: Behaviour
    ) -> None:
        key = (record.call_id, record.cseq[0], record.branch)
        txn = self._invites.get(key)
        if txn is not None:
            # A retransmitted INVITE (RFC 3261 §17.2.1): repeat the latest response.
            if txn.last_response is not None:
                txn.reply(txn.last_response)
            return
        to_tag = record.to_tag or f"{self.name}-{next(self._tags)}"
        txn = _InviteTxn(request=record, to_tag=to_tag, reply=reply, behaviour=behaviour)
        self._invites[key] = txn
        self._by_call.setdefault(record.call_id, []).append(txn)
        self._recorder.outcome(*key)
        mode = behaviour.mode
        if mode == "silent":
            return
        if behaviour.send_trying:
            self._send_invite_response(txn, 100, with_tag=False)
        delay = behaviour.answer_delay_ms / 1000.0
        if mode == "reject":
            code = behaviour.reject or 500
            self._later(txn, delay, lambda: self._send_final(txn, code))
            return
        if behaviour.back_to_back:
            self._later(txn, delay, lambda: self._ring_and_answer(txn))
            return
        if behaviour.send_ringing:
            self._send_invite_response(txn, 180)
        self._later(txn, delay, lambda: self._send_final(txn, 200))

    def _later(self, txn: _InviteTxn, delay: float, fn: Callable[[], None]) -> None:
        if delay <= 0:
            fn()
            return
        assert self._loop is not None
        txn.pending.append(self._loop.call_later(delay, fn))

    def _ring_and_answer(self, txn: _InviteTxn) -> None:
        if txn.final_code is not None:
            return
        ringing = self._response(txn.request, 180, to_tag=txn.to_tag)
        ok = self._response(txn.request, 200, to_tag=txn.to_tag, body=self._sdp())
        txn.final_code = 200
        txn.last_response = ok
        self._note(txn, final_code=200)
        if self.transport != "udp":
            # One write: both messages in one segment, to exercise the peer's framing.
            txn.reply(ringing + ok)
        else:
            txn.reply(ringing)
            txn.reply(ok)
        self._retransmit_final(txn)

    def _send_invite_response(self, txn: _InviteTxn, code: int, *, with_tag: bool = True) -> None:
        data = self._response(txn.request, code, to_tag=txn.to_tag if with_tag else None)
        txn.last_response = data
        txn.reply(data)

    def _send_final(self, txn: _InviteTxn, code: int) -> None:
        if txn.final_code is not None:
            return
        body = self._sdp() if 200 <= code < 300 else b""
        data = self._response(txn.request, code, to_tag=txn.to_tag, body=body)
        txn.final_code = code
        txn.last_response = data
        self._note(txn, final_code=code)
        txn.reply(data)
        self._retransmit_final(txn)

    def _retransmit_final(self, txn: _InviteTxn) -> None:
        """Over UDP, repeat the final response until the ACK (RFC 3261 §13.3.1.4, §17.2.1).

        Interval starts at T1 and doubles up to T2; give up after 64*T1.
        """
        if self.transport != "udp" or self._loop is None:
            return
        loop = self._loop
        give_up = loop.time() + 64 * self.t1
        data = txn.last_response
        assert data is not None

        def fire(interval: float) -> None:
            if txn.acked or loop.time() >= give_up or self._udp is None:
                return
            txn.reply(data)
            nxt = min(interval * 2, self.t2)
            txn.pending.append(loop.call_later(nxt, fire, nxt))

        txn.pending.append(loop.call_later(self.t1, fire, self.t1))

    def _on_ack(self, record: SipRecord) -> None:
        txn = self._invites.get((record.call_id, record.cseq[0], record.branch))
        if txn is None:
            # RFC 3261 §17.1.1.3: the ACK for a 2xx is its own transaction; match the dialog.
            txn = next(
                (
                    t
                    for t in self._by_call.get(record.call_id, [])
                    if t.request.cseq[0] == record.cseq[0] and t.to_tag == record.to_tag
                ),
                None,
            )
        if txn is None:
            return
        if not txn.acked:
            txn.acked = True
            txn.ack_record = record
            self._note(txn, acked=True)
        txn.cancel_timers()

    def _note(self, txn: _InviteTxn, **changes: Any) -> None:
        req = txn.request
        self._recorder.outcome(req.call_id, req.cseq[0], req.branch, **changes)

    def _on_cancel(self, record: SipRecord, reply: Callable[[bytes], None]) -> None:
        # RFC 3261 §9.2: the CANCEL matches the INVITE transaction by its top Via branch.
        txn = self._invites.get((record.call_id, record.cseq[0], record.branch))
        if txn is None:
            reply(self._response(record, 481))
            return
        reply(self._response(record, 200, to_tag=txn.to_tag))
        self._note(txn, cancelled=True)
        if txn.final_code is None:
            for handle in txn.pending:
                handle.cancel()
            txn.pending.clear()
            # RFC 3261 §9.2: a UAS that had not answered responds 487 to the INVITE.
            self._send_final(txn, 487)

    # -- building responses --------------------------------------------------

    def _response(
        self, request: SipRecord, code: int, *, to_tag: str | None = None, body: bytes = b""
    ) -> bytes:
        lines = [f"SIP/2.0 {code} {REASONS.get(code, 'Unknown')}"]
        # RFC 3261 §8.2.6.2: Via, From, Call-ID and CSeq copied; every Via line kept,
        # in order and verbatim (a proxy's multi-value Via line included).
        for name, value in request.header_lines:
            cname = canonical_name(name)
            if cname == "via":
                lines.append(f"Via: {value}")
        lines.append(f"From: {request.get('from') or ''}")
        to = request.get("to") or ""
        if to_tag is not None and header_param(to, "tag") is None:
            to = f"{to};tag={to_tag}"
        lines.append(f"To: {to}")
        lines.append(f"Call-ID: {request.call_id}")
        lines.append(f"CSeq: {request.get('cseq') or ''}")
        if request.method == "INVITE" and code > 100:
            # RFC 3261 §12.1.1: Record-Route copied into responses that create a dialog.
            for name, value in request.header_lines:
                if canonical_name(name) == "record-route":
                    lines.append(f"Record-Route: {value}")
            lines.append(f"Contact: {self.contact}")
        lines.append(f"Server: scripted-gateway {self.name}")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _sdp(self) -> bytes:
        return (
            "v=0\r\n"
            f"o={self.name} 1 1 IN IP4 {self.host}\r\n"
            "s=-\r\n"
            f"c=IN IP4 {self.host}\r\n"
            "t=0 0\r\n"
            "m=audio 6000 RTP/AVP 0\r\n"
            "a=rtpmap:0 PCMU/8000\r\n"
        ).encode()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, gateway: ScriptedGateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: CPython 3.11's selector datagram transport does not
        # inherit from asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if not data.strip():
            return  # keep-alive
        source: Address = (str(addr[0]), int(addr[1]))
        transport = self.transport
        recorder = self.gateway._recorder

        def reply(payload: bytes) -> None:
            if transport is not None and not transport.is_closing():
                transport.sendto(payload, source)
                recorder.add_sent(source, payload)

        self.gateway._on_message(data, source, reply)


class _TcpProtocol(asyncio.Protocol):
    """Frames SIP messages on a stream by Content-Length (RFC 3261 §18.3)."""

    def __init__(self, gateway: ScriptedGateway) -> None:
        self.gateway = gateway
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1]))
        self.gateway._tcp_conns.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.gateway._tcp_conns.discard(self.transport)

    def _reply(self, payload: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(payload)
            self.gateway._recorder.add_sent(self.peer, payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for message in self._frames():
            self.gateway._on_message(message, self.peer, self._reply)

    def _frames(self) -> Iterator[bytes]:
        while True:
            # RFC 5626 §3.5.1 keep-alives (CRLF) between messages are skipped.
            self.buffer = self.buffer.lstrip(b"\r\n")
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES and self.transport is not None:
                    self.transport.close()
                return
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if canonical_name(name.decode("latin-1")) == "content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        length = 0
                    break
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            message, self.buffer = self.buffer[:total], self.buffer[total:]
            yield message


class GatewayThread(_Inspect):
    """A :class:`ScriptedGateway` on its own event loop in a daemon thread.

    Usable from synchronous tests::

        with GatewayThread("gw1", "udp", reject=404) as gw:
            run_sipp(...)
            gw.wait_for(lambda: gw.acks == 1)
    """

    def __init__(
        self,
        name: str,
        transport: Transport = "udp",
        port: int = 0,
        behaviour: Behaviour | None = None,
        *,
        t1: float = DEFAULT_T1,
        t2: float = DEFAULT_T2,
        ssl_context: ssl.SSLContext | None = None,
        uri_host: str | None = None,
        **behaviour_fields: Any,
    ) -> None:
        base = behaviour or Behaviour()
        if behaviour_fields:
            base = dataclasses.replace(base, **behaviour_fields)
        self.gateway = ScriptedGateway(
            name, transport, port, base, t1=t1, t2=t2, ssl_context=ssl_context, uri_host=uri_host
        )
        self.name = name
        self._recorder = self.gateway._recorder
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def transport(self) -> Transport:
        return self.gateway.transport

    @property
    def port(self) -> int:
        return self.gateway.port

    @property
    def host(self) -> str:
        return self.gateway.host

    @property
    def uri(self) -> str:
        return self.gateway.uri

    @property
    def behaviour(self) -> Behaviour:
        return self.gateway.behaviour

    def set_behaviour(self, behaviour: Behaviour | None = None, **changes: Any) -> Behaviour:
        """Thread-safe; applies to requests arriving after the call returns."""
        return self.gateway.set_behaviour(behaviour, **changes)

    def start(self, timeout: float = 10.0) -> GatewayThread:
        if self._thread is not None:
            raise RuntimeError("gateway thread already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(loop,), name=f"gateway-{self.name}", daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.gateway.start(), loop).result(timeout)
        except BaseException:
            # e.g. the port is taken: do not leave a loop thread behind.
            self.stop(timeout)
            raise
        return self

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.gateway.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``predicate()`` every 20 ms until truthy; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout:.1f}s")
        time.sleep(0.02)
