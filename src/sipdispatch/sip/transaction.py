"""The four transaction state machines of RFC 3261 §17, with RFC 6026's Accepted state.

Sans-IO: a transaction sends through a ``send(addr, data, tx)`` callable, gets
time as ``now`` and schedules its timers on a :class:`TimerQueue`. Its user (the
proxy core) is told of responses, timeouts and the end through a small interface.

Timer names are the RFC's: A/B/D/M for the INVITE client, E/F/K for the
non-INVITE client, G/H/I/L for the INVITE server, J for the non-INVITE server.
As in Kamailio's tm, ``fr_timer`` stands in for B and F, and ``fr_inv_timer``
bounds an INVITE branch after a provisional response (the proxy's timer C), and
Timers D, J, L and M, which only keep a finished transaction to absorb
retransmissions, last ``Timers.wait_timer`` when it is set (tm's ``wt_timer``).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, Final, Protocol

from sipdispatch.sip.addr import Addr, is_reliable
from sipdispatch.sip.headers import BRANCH_COOKIE, split_first
from sipdispatch.sip.message import DEFAULT_MAX_FORWARDS, RELEASED, Request, Response
from sipdispatch.sip.timers import TimerHandle, TimerQueue, Timers, TimerTarget

SendFn = Callable[[Addr, bytes, Any], None]
"""``send(addr, data, owner)``: hand bytes to the transport; ``owner`` (the client
transaction, or None) is told of a transport failure by the shell."""


class State(Enum):
    """Transaction states (RFC 3261 §17 figures 5-8, RFC 6026 figures 3-4)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class ClientUser(Protocol):
    """What a client transaction tells its user (the proxy core)."""

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        """A response the user must see (retransmissions are absorbed)."""

    def on_timeout(self, tx: ClientTransaction, now: float, replied: bool) -> None:
        """No final response in time; ``replied`` if a provisional had come.

        An INVITE timed out after a provisional (fr_inv_timer) is not over yet: it
        waits up to 64*T1 for the final answering the user's CANCEL, ACKs it and
        passes up only a 2xx; ``on_terminated`` follows.
        """

    def on_terminated(self, tx: ClientTransaction) -> None:
        """The transaction is over and may be forgotten."""


class ServerUser(Protocol):
    """What a server transaction tells its user."""

    def on_server_terminated(self, tx: ServerTransaction, now: float, ack_timeout: bool) -> None:
        """The transaction is over; ``ack_timeout`` when timer H fired (no ACK)."""


class NativeUser:
    """A base for transaction users compiled with the transactions (the proxy core):
    a transaction calls the methods of a user derived from it directly, and those of
    any other :class:`ClientUser` or :class:`ServerUser` (a test's) by name. A
    subclass defines the methods of the protocols it serves."""

    __slots__ = ()

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        raise NotImplementedError

    def on_timeout(self, tx: ClientTransaction, now: float, replied: bool) -> None:
        raise NotImplementedError

    def on_terminated(self, tx: ClientTransaction) -> None:
        raise NotImplementedError

    def on_server_terminated(self, tx: ServerTransaction, now: float, ack_timeout: bool) -> None:
        raise NotImplementedError


# The two branches of each _tell_* read alike, but the first, where ``user`` is narrowed
# to NativeUser, is compiled to a direct call and the second to a call by name.


def _tell_response(user: ClientUser, tx: ClientTransaction, response: Response, now: float) -> None:
    if isinstance(user, NativeUser):
        user.on_response(tx, response, now)
    else:
        user.on_response(tx, response, now)


def _tell_timeout(user: ClientUser, tx: ClientTransaction, now: float, replied: bool) -> None:
    if isinstance(user, NativeUser):
        user.on_timeout(tx, now, replied)
    else:
        user.on_timeout(tx, now, replied)


def _tell_terminated(user: ClientUser, tx: ClientTransaction) -> None:
    if isinstance(user, NativeUser):
        user.on_terminated(tx)
    else:
        user.on_terminated(tx)


def _tell_server_terminated(
    user: ServerUser, tx: ServerTransaction, now: float, ack_timeout: bool
) -> None:
    if isinstance(user, NativeUser):
        user.on_server_terminated(tx, now, ack_timeout)
    else:
        user.on_server_terminated(tx, now, ack_timeout)


# -- client side -------------------------------------------------------------------


_RETRANSMIT: Final = 0
"""Timer kinds, for :meth:`TimerTarget.on_timer`: the retransmission timer (A, E, G)."""
_TIMEOUT: Final = 1
"""fr_timer / fr_inv_timer (B, F, C), in a client transaction."""
_END: Final = 2
"""The end of a finished transaction (D, J, K, L, M, and 64*T1 after giving up)."""
_TIMER_H: Final = 3
"""Timer H: no ACK for an INVITE's final response."""


class _Timed(TimerTarget):
    """The two timers every transaction has: a retransmission timer (A, E or G,
    with its current interval) and one that ends a state (fr_timer, D, H, J, K, L, M).
    They call :meth:`on_timer` with their kind (no bound method made for each)."""

    __slots__ = ("_retrans", "_retrans_interval", "_timeout")

    def __init__(self) -> None:
        self._retrans: TimerHandle | None = None
        self._retrans_interval = 0.0
        self._timeout: TimerHandle | None = None

    def _cancel_timers(self) -> None:
        if self._retrans is not None:
            self._retrans.cancel()
            self._retrans = None
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None


class ClientTransaction(_Timed):
    """Common part of the client transactions."""

    __slots__ = (
        "_gave_up",
        "addr",
        "branch",
        "data",
        "key",
        "owner",
        "replied",
        "request",
        "send",
        "state",
        "timers",
        "tq",
        "user",
    )

    def __init__(
        self,
        request: Request,
        branch: str,
        addr: Addr,
        timers: Timers,
        tq: TimerQueue,
        send: SendFn,
        user: ClientUser,
        owner: Any = None,
    ) -> None:
        self.request = request
        self.branch = branch
        self.key: tuple[str, str] = (branch, request.method)
        """RFC 3261 §17.1.3: branch of the top Via and the CSeq method."""
        self.addr = addr
        self.timers = timers
        self.tq = tq
        self.send = send
        self.user = user
        self.owner = owner
        """Opaque: whatever the user wants to find again from the transaction."""
        self.data = b""
        self.replied = False
        self.state = State.TERMINATED
        _Timed.__init__(self)
        self._gave_up = False

    def _terminate(self) -> None:
        self._cancel_timers()
        if self.state is not State.TERMINATED:
            self.state = State.TERMINATED
            _tell_terminated(self.user, self)

    def _initial_state(self) -> State:
        """Calling for INVITE, Trying for the others."""
        raise NotImplementedError

    def start(self, data: bytes, now: float) -> None:
        """Send the request; start the retransmission timer (A or E, unreliable
        transports only) and the fr_timer (standing in for B or F)."""
        self.data = data
        self.state = self._initial_state()
        self.send(self.addr, data, self)
        if not is_reliable(self.addr):
            self._retrans_interval = self.timers.t1
            self._retrans = self.tq.call_later_on(now, self.timers.t1, self, _RETRANSMIT)
        self._timeout = self.tq.call_later_on(now, self.timers.fr_timer, self, _TIMEOUT)

    def on_timer(self, kind: int, now: float) -> None:
        if kind == _RETRANSMIT:
            self._retransmit(now)
        elif kind == _TIMEOUT:
            self._on_timeout(now)
        else:
            self._on_end(now)

    def _on_timeout(self, now: float) -> None:
        raise NotImplementedError

    def receive(self, response: Response, now: float) -> None:
        """Feed a response matched to this transaction."""
        raise NotImplementedError

    def _retransmit(self, now: float) -> None:
        raise NotImplementedError

    def _on_end(self, now: float) -> None:
        raise NotImplementedError

    def transport_error(self, now: float) -> None:
        """The transport could not deliver the request (§17.1.4): treat as 503."""
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self._cancel_timers()
            if not self._gave_up:  # the user was already told when fr_inv_timer fired
                _tell_timeout(self.user, self, now, self.replied)
            self._terminate()


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 with RFC 6026 §7.2 (Accepted state, timer M)."""

    __slots__ = ()

    def _initial_state(self) -> State:
        return State.CALLING

    def _retransmit(self, now: float) -> None:
        # §17.1.1.2: timer A fires -> retransmit, reset A to twice its value.
        if self.state is State.CALLING:
            self.send(self.addr, self.data, self)
            self._retrans_interval *= 2
            self._retrans = self.tq.call_later_on(now, self._retrans_interval, self, _RETRANSMIT)

    def _on_timeout(self, now: float) -> None:
        self._timeout = None
        if self.state is State.CALLING:
            _tell_timeout(self.user, self, now, self.replied)
            self._terminate()
        elif self.state is State.PROCEEDING and not self._gave_up:
            # §16.8: timer C after a provisional -> the user CANCELs the branch.
            # The transaction stays to ACK the 487 that answers the CANCEL
            # (§17.1.1.2), which must not be forwarded statelessly; §9.1: "If there
            # is no final response for the original request in 64*T1 seconds, the
            # client SHOULD then consider the original transaction cancelled and
            # SHOULD destroy the client transaction".
            self._gave_up = True
            _tell_timeout(self.user, self, now, self.replied)
            if self.state is State.PROCEEDING:
                self._timeout = self.tq.call_later_on(now, self.timers.timer_64t1, self, _END)

    def receive(self, response: Response, now: float) -> None:
        """Feed a response matched to this transaction."""
        status = response.status
        state = self.state
        if state in (State.CALLING, State.PROCEEDING):
            # Timer A retransmits in Calling only: the request's bytes are not needed
            # after the first response (a call in progress holds a kilobyte less).
            self.data = b""
            if status < 200:
                if state is State.CALLING:
                    self.state = State.PROCEEDING
                    if self._retrans is not None:
                        self._retrans.cancel()
                        self._retrans = None
                    # The first provisional switches fr_timer for fr_inv_timer.
                    if self._timeout is not None:
                        self._timeout.cancel()
                    self._timeout = self.tq.call_later_on(
                        now, self.timers.fr_inv_timer, self, _TIMEOUT
                    )
                elif status > 100 and self._timeout is not None and not self._gave_up:
                    # §16.7 step 2: "if the response is a provisional response with
                    # status codes 101 to 199 inclusive (i.e., anything but 100), the
                    # proxy MUST reset timer C for that client transaction."
                    self._timeout.cancel()
                    self._timeout = self.tq.call_later_on(
                        now, self.timers.fr_inv_timer, self, _TIMEOUT
                    )
                self.replied = True
                if not self._gave_up:  # after on_timeout only a 2xx still matters
                    _tell_response(self.user, self, response, now)
            elif status < 300:
                # RFC 6026 §7.2: a 2xx moves to Accepted (timer M), not Terminated,
                # so retransmitted 2xx still reach the user.
                self._cancel_timers()
                self.replied = True
                self.state = State.ACCEPTED
                self._timeout = self.tq.call_later_on(now, self.timers.timer_wait, self, _END)
                _tell_response(self.user, self, response, now)
                self.request = RELEASED  # a 2xx is ACKed end to end, not by us
            else:
                self._cancel_timers()
                self.replied = True
                self.state = State.COMPLETED
                self._send_ack(response)
                # §17.1.1.2: timer D is at least 32 s for unreliable transports, 0 else.
                wait = 0.0 if is_reliable(self.addr) else self.timers.timer_d
                self._timeout = self.tq.call_later_on(now, wait, self, _END)
                if not self._gave_up:  # the 487 to our CANCEL after timer C: absorbed
                    _tell_response(self.user, self, response, now)
        elif state is State.COMPLETED:
            if status >= 300:
                # §17.1.1.2: retransmitted final -> ACK again, not passed up.
                self._send_ack(response)
        elif state is State.ACCEPTED and 200 <= status < 300:
            # RFC 6026 §7.2: 2xx in Accepted are passed to the TU.
            _tell_response(self.user, self, response, now)

    def _send_ack(self, response: Response) -> None:
        self.send(self.addr, build_ack(self.request, response), self)

    def _on_end(self, now: float) -> None:
        self._timeout = None
        self._terminate()


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.2 (timers E, F, K)."""

    __slots__ = ()

    def _initial_state(self) -> State:
        return State.TRYING

    def _retransmit(self, now: float) -> None:
        # §17.1.2.2: E doubles up to T2 in Trying; in Proceeding it fires every T2.
        if self.state is State.TRYING:
            self._retrans_interval = min(2 * self._retrans_interval, self.timers.t2)
        elif self.state is State.PROCEEDING:
            self._retrans_interval = self.timers.t2
        else:
            return
        self.send(self.addr, self.data, self)
        self._retrans = self.tq.call_later_on(now, self._retrans_interval, self, _RETRANSMIT)

    def _on_timeout(self, now: float) -> None:
        self._timeout = None
        if self.state in (State.TRYING, State.PROCEEDING):
            _tell_timeout(self.user, self, now, self.replied)
            self._terminate()

    def receive(self, response: Response, now: float) -> None:
        """Feed a response matched to this transaction."""
        state = self.state
        if state not in (State.TRYING, State.PROCEEDING):
            return  # §17.1.2.2: retransmitted finals are absorbed in Completed
        self.replied = True
        if response.status < 200:
            self.state = State.PROCEEDING
            _tell_response(self.user, self, response, now)
            return
        self._cancel_timers()
        self.state = State.COMPLETED
        self.data = b""  # no retransmission in Completed
        wait = 0.0 if is_reliable(self.addr) else self.timers.t4  # timer K
        self._timeout = self.tq.call_later_on(now, wait, self, _END)
        _tell_response(self.user, self, response, now)
        self.request = RELEASED  # Completed only absorbs retransmitted finals

    def _on_end(self, now: float) -> None:
        self._timeout = None
        self._terminate()


def build_ack(request: Request, response: Response) -> bytes:
    """The ACK a client transaction sends for a non-2xx final (RFC 3261 §17.1.1.3):
    the To of the response (with its tag), the rest from the INVITE."""
    return build_hop_request(request, "ACK", response.get("to") or "")


def build_hop_request(request: Request, method: str, to: str) -> bytes:
    """An ACK or CANCEL for ``request``, hop by hop (RFC 3261 §17.1.1.3, §9.1).

    Same Request-URI, Call-ID, From and CSeq number as the request; the given To;
    the request's Route set; and one Via, the request's top one (§17.1.1.3: "a single
    Via header field ... equal to the top Via header field of the original request";
    §9.1 says the same of CANCEL) -- its first line may carry several values.
    """
    lines = [f"{method} {request.uri_text} SIP/2.0"]
    via = request.get("via")
    if via is not None:
        if "," in via:
            via = split_first(via)[0]
        lines.append(f"Via: {via}")
    for key, name, value in request.headers:
        if key == "route":
            lines.append(f"{name}: {value}")
    lines.append(f"From: {request.get('from')}")
    lines.append(f"To: {to}")
    lines.append(f"Call-ID: {request.call_id}")
    lines.append(f"CSeq: {request.cseq[0]} {method}")
    lines.append(f"Max-Forwards: {DEFAULT_MAX_FORWARDS}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- server side -------------------------------------------------------------------


class ServerTransaction(_Timed):
    """Common part of the server transactions."""

    __slots__ = (
        "addr",
        "key",
        "last_response",
        "owner",
        "request",
        "send",
        "state",
        "timers",
        "tq",
        "user",
    )

    def __init__(
        self,
        request: Request,
        key: tuple[str, ...],
        addr: Addr,
        timers: Timers,
        tq: TimerQueue,
        send: SendFn,
        user: ServerUser,
    ) -> None:
        self.request = request
        self.key = key
        self.addr = addr
        """Where responses go (RFC 3261 §18.2.2), worked out when the request came."""
        self.timers = timers
        self.tq = tq
        self.send = send
        self.user = user
        self.owner: Any = None
        self.last_response: bytes | None = None
        self.state = self._initial_state()
        _Timed.__init__(self)

    def _initial_state(self) -> State:
        """Proceeding for INVITE (the TU answers 100 at once), Trying for the others."""
        return State.PROCEEDING

    def on_timer(self, kind: int, now: float) -> None:
        if kind == _END:
            self._on_end(now)
        elif kind == _RETRANSMIT:
            self._retransmit(now)
        else:
            self._on_timer_h(now)

    def _retransmit(self, now: float) -> None:
        raise NotImplementedError

    def _on_timer_h(self, now: float) -> None:
        raise NotImplementedError

    def _terminate(self, now: float, ack_timeout: bool = False) -> None:
        self._cancel_timers()
        if self.state is not State.TERMINATED:
            self.state = State.TERMINATED
            _tell_server_terminated(self.user, self, now, ack_timeout)

    def _on_end(self, now: float) -> None:
        self._timeout = None
        self._terminate(now)

    def receive_request(self, request: Request, now: float) -> bool:
        """A request matched to this transaction (retransmission or ACK)."""
        raise NotImplementedError

    def respond(self, response: Response, now: float) -> None:
        """Send a response from the user."""
        raise NotImplementedError

    def respond_raw(self, status: int, data: bytes) -> None:
        """Send a provisional response given as bytes (the proxy's 100 Trying)."""
        if status < 200 and (self.state is State.PROCEEDING or self.state is State.TRYING):
            self.send(self.addr, data, None)
            self.last_response = data
            self.state = State.PROCEEDING

    @property
    def final_sent(self) -> bool:
        """True once a final response went out."""
        return self.state is not State.PROCEEDING and self.state is not State.TRYING


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 with RFC 6026 §7.1 (Accepted state, timer L)."""

    __slots__ = ()

    def receive_request(self, request: Request, now: float) -> bool:
        """A retransmitted INVITE or an ACK matched to us; True if absorbed."""
        state = self.state
        if request.method == "ACK":
            if state is State.COMPLETED:
                # §17.2.1: ACK in Completed -> Confirmed, timer I (T4, or 0 reliable).
                if self._retrans is not None:
                    self._retrans.cancel()
                    self._retrans = None
                if self._timeout is not None:
                    self._timeout.cancel()
                self.state = State.CONFIRMED
                wait = 0.0 if is_reliable(self.addr) else self.timers.t4
                self._timeout = self.tq.call_later_on(now, wait, self, _END)
                return True
            # An ACK in Accepted is for a 2xx: the proxy relays it (RFC 6026 §7.1).
            return state is State.CONFIRMED
        # A retransmitted INVITE: §17.2.1 resend the last provisional or the final;
        # RFC 6026 §7.1: absorbed in Accepted.
        if state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            self.send(self.addr, self.last_response, None)
        return True

    def respond(self, response: Response, now: float) -> None:
        """Send a response from the user."""
        data = response.to_bytes()
        status = response.status
        state = self.state
        if state is State.PROCEEDING:
            self.send(self.addr, data, None)
            self.last_response = data
            if status < 200:
                return
            self.request = RELEASED  # retransmissions get last_response
            if status < 300:
                # RFC 6026 §7.1: Accepted absorbs a retransmitted INVITE without an
                # answer (the 2xx is retransmitted end to end): nothing to keep.
                self.last_response = None
                self.state = State.ACCEPTED
                self._timeout = self.tq.call_later_on(now, self.timers.timer_wait, self, _END)
                return
            self.state = State.COMPLETED
            if not is_reliable(self.addr):
                self._retrans_interval = self.timers.t1
                self._retrans = self.tq.call_later_on(now, self.timers.t1, self, _RETRANSMIT)
            self._timeout = self.tq.call_later_on(now, self.timers.timer_64t1, self, _TIMER_H)
        elif state is State.ACCEPTED and 200 <= status < 300:
            # RFC 6026 §7.1: 2xx from the TU in Accepted go to the transport.
            self.send(self.addr, data, None)

    def _retransmit(self, now: float) -> None:
        # §17.2.1: timer G -> retransmit the final, next interval min(2G, T2).
        if self.state is State.COMPLETED and self.last_response is not None:
            self.send(self.addr, self.last_response, None)
            self._retrans_interval = min(2 * self._retrans_interval, self.timers.t2)
            self._retrans = self.tq.call_later_on(now, self._retrans_interval, self, _RETRANSMIT)

    def _on_timer_h(self, now: float) -> None:
        self._timeout = None
        if self.state is State.COMPLETED:
            self._terminate(now, ack_timeout=True)


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.2 (timer J)."""

    __slots__ = ()

    def _initial_state(self) -> State:
        return State.TRYING

    def receive_request(self, request: Request, now: float) -> bool:
        """A retransmission of our request: resend the last response, if any."""
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            self.send(self.addr, self.last_response, None)
        return True

    def respond(self, response: Response, now: float) -> None:
        """Send a response from the user."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        data = response.to_bytes()
        self.send(self.addr, data, None)
        self.last_response = data
        if response.status < 200:
            self.state = State.PROCEEDING
            return
        self.state = State.COMPLETED
        self.request = RELEASED  # retransmissions get last_response
        wait = 0.0 if is_reliable(self.addr) else self.timers.timer_wait  # timer J
        self._timeout = self.tq.call_later_on(now, wait, self, _END)


_PORT_TEXT: Final[dict[int, str]] = {}
"""``str(port)`` of the sent-by ports seen (at most one per port number)."""


def server_key(request: Request) -> tuple[str, ...]:
    """The key that matches a request to a server transaction (RFC 3261 §17.2.3).

    With an RFC 3261 branch (magic cookie ``z9hG4bK``): branch, sent-by and
    method, ACK counting as INVITE. Otherwise the RFC 2543 fallback: Call-ID,
    CSeq number, From tag, top Via as written, and method (ACK as INVITE).
    """
    via = request.top_via
    method = request.method
    if method == "ACK":
        method = "INVITE"
    branch = via.branch
    if branch is not None and branch.startswith(BRANCH_COOKIE):
        port = via.port
        port_text = ""
        if port is not None:
            # The port as text, one str per port (kept by every transaction's key).
            known = _PORT_TEXT.get(port)
            if known is None:
                known = str(port)
                if len(_PORT_TEXT) < 65536:
                    _PORT_TEXT[port] = known
            port_text = known
        return (branch, via.host, port_text, method)
    top = request.get("via") or ""
    return (
        "2543",
        request.call_id,
        str(request.cseq[0]),
        request.from_tag or "",
        top.split(",")[0].strip(),
        method,
    )
