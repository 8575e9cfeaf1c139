"""The stateful proxy core (RFC 3261 §16), sans-IO.

The shell pumps it, as aioquic's connection is pumped: ``receive(data, src, now)``
takes what a transport received, ``handle_timer(now)`` runs due timers,
``datagrams_to_send()`` hands over what must be sent and ``get_timer()`` says when
to call back. Everything happens synchronously in arrival order, so the messages of
one dialog leave in the order they came. The shell touches nothing else.

Which destination an out-of-dialog request goes to is not decided here: a router
(:mod:`sipdispatch.sip.router`) answers with a plan or a rejection. That is the seam
the dispatcher plugs into.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from sipdispatch.sip.addr import Addr, is_forbidden_ip, is_reliable
from sipdispatch.sip.calls import (
    OUTCOME_NOT_HERE,
    OUTCOME_REJECTED,
    CallRecord,
    CallSink,
)
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.headers import BRANCH_COOKIE, Via, parse_via, split_commas, split_name_addr
from sipdispatch.sip.memo import remember
from sipdispatch.sip.message import (
    DEFAULT_MAX_FORWARDS,
    DEFAULT_MAX_MESSAGE_SIZE,
    RELEASED,
    Header,
    Request,
    Response,
    is_keepalive,
    make_response,
    number,
    number_text,
    parse_datagram,
    trying_bytes,
)
from sipdispatch.sip.router import (
    NativePlan,
    NativeRouter,
    Plan,
    Reject,
    Router,
    StaticPlan,
    Target,
)
from sipdispatch.sip.stats import ProxyStats
from sipdispatch.sip.timers import TimerHandle, TimerQueue, Timers
from sipdispatch.sip.transaction import (
    ClientTransaction,
    InviteClientTransaction,
    InviteServerTransaction,
    NativeUser,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    SendFn,
    ServerTransaction,
    State,
    build_hop_request,
    server_key,
)
from sipdispatch.sip.uri import DEFAULT_SIP_PORT, SipUri, parse_uri

log: Final = logging.getLogger("sipdispatch.proxy")
_crc32: Final = zlib.crc32
"""Read once: compiled, a Final is a C static, where ``zlib.crc32`` is two lookups
by name at every call."""

OUR_BRANCH: Final = BRANCH_COOKIE + "sd"
"""Our branches start with this; what follows up to the dot is the loop hash."""
DIALOG_CREATING: Final = frozenset(("INVITE", "SUBSCRIBE", "REFER", "NOTIFY"))
"""Methods whose out-of-dialog requests get our Record-Route."""
SUPPORTED_URI_SCHEMES: Final = frozenset(("sip", "sips", "tel"))
DRAIN_RETRY_AFTER: Final = 10
"""Seconds a caller refused while the proxy stops is told to wait (Retry-After)."""


# -- settings ---------------------------------------------------------------------


@dataclass(slots=True)
class ProxySettings:
    """What the core needs to know about itself."""

    local: dict[str, tuple[str, int]]
    """Per transport (``udp``/``tcp``): host and port we write in Via/Record-Route."""
    aliases: set[tuple[str, int]] = field(default_factory=set)
    """Every (host, port) that means us in a Route or Request-URI."""
    record_route: bool = True
    """Add Record-Route to dialog-creating requests."""
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    """Larger messages get 513."""
    instance: str = "0"
    """Distinguishes this process's branches and tags from other instances'."""
    via: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Per transport, the host and port written in our Via when they are not ``local``'s:
    a worker process sends its requests from a port of its own, and its Via names that
    port so the responses come back to it (Record-Route keeps ``local``)."""

    def __post_init__(self) -> None:
        for host, port in self.local.values():
            self.aliases.add((host.lower(), port))
        for host, port in self.via.values():
            self.aliases.add((host.lower(), port))


# -- per-request state --------------------------------------------------------------


class Branch:
    """One client transaction of a forwarded request."""

    __slots__ = ("cancel_wanted", "cancelled", "ctx", "final", "target", "tx")

    def __init__(self, ctx: Context, target: Target, tx: ClientTransaction) -> None:
        self.ctx: Context | None = ctx
        """The request this branch belongs to; None once all of it is over."""
        self.target = target
        self.tx = tx
        self.final: int = 0
        """Final status of this branch (local 408 on timeout), 0 while pending."""
        self.cancel_wanted = False
        self.cancelled = False


class Context:
    """A request being proxied: its server transaction and its branches (§16.7)."""

    __slots__ = (
        "best",
        "best_local",
        "branch_prefix",
        "branches",
        "canceled",
        "challenges",
        "final_sent",
        "held",
        "initial",
        "live",
        "plan",
        "request",
        "server_tx",
        "src",
    )

    def __init__(
        self, server_tx: ServerTransaction, request: Request, src: Addr, branch_prefix: str
    ) -> None:
        self.branch_prefix = branch_prefix
        """What every branch we make for it starts with: our magic cookie and mark, and
        the loop-detection hash (§16.6 step 8), up to the branch's own number."""
        self.live = 1
        """Transactions of this request not yet terminated (server + branches)."""
        self.server_tx = server_tx
        self.request = request
        """The request as it will be forwarded (routes popped, Max-Forwards done)."""
        self.src = src
        self.plan: Plan | None = None
        self.branches: list[Branch] = []
        self.best: Response | None = None
        self.best_local = 0
        self.canceled = False
        self.challenges: list[Response] | None = None
        """The 401 and 407 answers of its branches (§16.7 step 7), when any."""
        self.final_sent = False
        self.held: Target | None = None
        """The target its next branch waits for (a hold the shell settles), or None."""
        self.initial = False
        """An out-of-dialog request (no To tag): its branches get our Record-Route."""

    @property
    def best_status(self) -> int:
        """Status of the best final response so far, 0 when none."""
        return self.best.status if self.best is not None else self.best_local


class Origin:
    """Owner of a request the proxy itself sends (an OPTIONS ping, ...)."""

    __slots__ = ("callback", "done")

    def __init__(self, callback: Callable[[int, Response | None, float], None]) -> None:
        self.callback = callback
        self.done = False


def response_addr(via: Via, src: Addr | None) -> Addr:
    """Where a response to a request with this top Via goes (RFC 3261 §18.2.2, RFC 3581)."""
    transport = via.transport.lower()
    if src is not None and is_reliable(src) and src.transport == transport:
        return src  # §18.2.2: reliable transport -> the connection it came on
    host = via.params.get("received") or via.host
    rport = via.params.get("rport")
    port = via.port or DEFAULT_SIP_PORT
    if rport and rport.isascii() and rport.isdigit() and 0 < int(rport) < 65536:
        port = int(rport)
    if (
        src is not None
        and port == src.port
        and host == src.host
        and transport == src.transport
        and src.conn is None
    ):
        return src  # the same address (as it mostly is): no new one is made
    return Addr(transport, host, port)


def uri_addr(uri: SipUri) -> Addr:
    """The next-hop address of a URI (no DNS here: the shell resolves names)."""
    host = uri.params.get("maddr") or uri.host
    return Addr(uri.transport, host, uri.effective_port)


# NativePlan is not a Plan by structure (it has no ``parallel``), so isinstance narrows
# ``plan`` to their intersection, which mypyc calls by name like any Plan: each helper
# names the NativePlan first, for a direct call through its methods.


def _plan_first(plan: Plan) -> list[Target]:
    if isinstance(plan, NativePlan):
        native: NativePlan = plan
        return native.first()
    return plan.first()


def _plan_answered(plan: Plan, target: Target, now: float) -> None:
    if isinstance(plan, NativePlan):
        native: NativePlan = plan
        native.answered(target, now)
    else:
        plan.answered(target, now)


def _plan_finished(plan: Plan, status: int, now: float) -> None:
    if isinstance(plan, NativePlan):
        native: NativePlan = plan
        native.finished(status, now)
    else:
        plan.finished(status, now)


class ProxyCore(NativeUser):
    """The stateful proxy: transactions, forwarding, response selection, CANCEL."""

    def __init__(self, settings: ProxySettings, router: Router, timers: Timers) -> None:
        self._our_routes: frozenset[str] = frozenset()
        self._rr: dict[str, str] = {}
        self._via_prefix: dict[str, str] = {}
        self._via_prefixes: tuple[str, ...] = ()
        self._hops: dict[str, Addr] = {}
        """Next hop of a Request-URI, by its text (in-dialog requests reuse a few)."""
        self.settings = settings
        self.router = router
        self._native_router = router if isinstance(router, NativeRouter) else None
        """The router when it is compiled with the core (called directly), else None."""
        self.timers = timers
        self._tq = TimerQueue()
        self._outbox: list[tuple[Addr, bytes, Any]] = []
        self._held: list[tuple[Any, Any]] = []
        self.server_txs: dict[tuple[str, ...], ServerTransaction] = {}
        self.client_txs: dict[tuple[str, str], ClientTransaction] = {}
        self.stats = ProxyStats()
        self.draining = False
        """Set when the proxy is stopping: a new out-of-dialog INVITE gets 503, everything
        else (transactions in flight, in-dialog requests) goes on."""
        self.call_log: CallSink | None = None
        """Told of every INVITE the core rejects itself (the router's plans report
        the calls they route); None: no record is made."""
        self._counter = 0
        self._send: SendFn = self._emit
        """``_emit``, made a bound method once: each transaction is given it."""
        self._overload: Callable[[Any, dict[str, str | None], float], None] | None = None
        self._via_oc = ""

    @property
    def settings(self) -> ProxySettings:
        """Who we are (local addresses, aliases); may be replaced once bound."""
        return self._settings

    @settings.setter
    def settings(self, settings: ProxySettings) -> None:
        self._settings = settings
        # Our Record-Route values exactly as we write them: a Route equal to one of
        # these is ours without parsing it.
        self._rr = {
            transport: _rr_value(host, port, transport)
            for transport, (host, port) in settings.local.items()
        }
        self._our_routes = frozenset(self._rr.values())
        # What starts each Via we write, per transport, up to the branch value.
        self._via_prefix = {
            transport: _via_prefix(host, port, transport)
            for transport, (host, port) in (settings.local | settings.via).items()
        }
        self._via_prefixes = tuple(self._via_prefix.values())

    def overload_control(
        self, apply: Callable[[Any, dict[str, str | None], float], None] | None
    ) -> None:
        """RFC 7339 overload control on (``apply``) or off (None): each branch's Via
        announces it (``;oc``), and a response whose top Via carries a control (``oc=``)
        is given to ``apply(target handle, top Via parameters, now)``."""
        self._overload = apply
        self._via_oc = ";oc" if apply is not None else ""

    # -- shell interface ---------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[Addr, bytes, Any]]:
        """What to send, in order, since the last call: ``(addr, data, owner)``, where
        ``owner`` (a client transaction, or None) is told through :meth:`send_failed`
        when the shell cannot send. The list is handed over, not copied."""
        out = self._outbox
        if out:
            self._outbox = []
        return out

    def take_held(self) -> list[tuple[Any, Any]]:
        """The branches waiting for a hold since the last call: ``(ticket, hold)``,
        where ``hold`` is the target's :attr:`~sipdispatch.sip.router.Target.hold`;
        the shell settles each with :meth:`admitted`. Handed over, not copied."""
        held = self._held
        if held:
            self._held = []
        return held

    def admitted(self, ticket: Any, ok: bool, now: float) -> None:
        """A hold from :meth:`take_held` is settled: ``ok`` sends the branch; otherwise
        the plan picks the next target (:meth:`~sipdispatch.sip.router.Plan.refused`),
        or the request is answered 503. A request that ended meanwhile (CANCEL) is left
        as it is."""
        ctx = ticket
        if not isinstance(ctx, Context):
            return
        target = ctx.held
        if target is None:
            return
        ctx.held = None
        if ctx.final_sent or ctx.canceled or ctx.plan is None:
            return
        try:
            if ok:
                self._start_branch(ctx, target, now)
                return
            nxt = ctx.plan.refused(target, now)
            if nxt is not None:
                self._start_branch(ctx, nxt, now)
                return
            if _better(503, ctx.best_status):
                ctx.best, ctx.best_local = None, 503
            if not any(not x.final for x in ctx.branches):
                self._send_best(ctx, now)
        except Exception:
            self.stats.internal_errors += 1
            log.exception("internal error resuming a held request")

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        return self._tq.next_deadline()

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> TimerHandle:
        """Run ``callback(*args, now)`` at ``when`` on the core's clock, from
        :meth:`handle_timer` (the prober schedules its rounds here)."""
        return self._tq.call_at(when, callback, *args)

    def awaiting_final(self) -> int:
        """Requests relayed that have not had their final response yet (a drain waits
        for these)."""
        count = 0
        for stx in self.server_txs.values():
            ctx = stx.owner
            if isinstance(ctx, Context) and not ctx.final_sent and (ctx.branches or ctx.held):
                count += 1
        return count

    def transactions_in_flight(self) -> tuple[int, int]:
        """(server, client) transactions in the tables."""
        return len(self.server_txs), len(self.client_txs)

    def branch_handles(self) -> Iterator[Any]:
        """The router's handle (``Target.handle``) of every branch in flight."""
        for tx in self.client_txs.values():
            owner = tx.owner
            if isinstance(owner, Branch):
                yield owner.target.handle

    def pending_branch_handles(self) -> Iterator[Any]:
        """The router's handle of every branch still waiting for its final response
        (a branch answered or failed is left out, although its transaction stays in
        the table a while to absorb retransmissions)."""
        for tx in self.client_txs.values():
            owner = tx.owner
            if isinstance(owner, Branch) and owner.final == 0:
                yield owner.target.handle

    def handle_timer(self, now: float) -> None:
        """Run the timers due at ``now``."""
        try:
            self._tq.run_due(now)
        except Exception:  # never let a bug stop the timer pump
            self.stats.internal_errors += 1
            log.exception("internal error in a timer")

    def send_failed(self, owner: Any, now: float) -> None:
        """The shell could not send for ``owner`` (a client transaction)."""
        if isinstance(owner, ClientTransaction):
            owner.transport_error(now)

    def unreachable(self, dst: Addr, head: bytes, now: float) -> bool:
        """A datagram sent to ``dst`` came back undeliverable (ICMP port, host or
        network unreachable); ``head`` is its start as the kernel returned it. The
        client transaction that sent it fails at once, as a transport error (RFC 3261
        §8.1.3.1, §17.1.4), if it is still waiting for its first answer: the branch
        fails over without waiting for ``fr_timer``. The transaction is found by the
        branch and method in ``head`` (an ICMP error that does not name one of ours is
        ignored) and must have been sent to ``dst``. True when one failed."""
        key = sent_request_key(head)
        if key is None:
            return False
        tx = self.client_txs.get(key)
        if tx is None or tx.replied or tx.addr.transport != "udp" or tx.addr.port != dst.port:
            return False
        host = tx.addr.host
        if host != dst.host and host.strip("[]") != dst.host and _is_ip(host):
            return False  # sent elsewhere (a name resolved at send time is taken as is)
        self.stats.branch_unreachable += 1
        tx.transport_error(now)
        return True

    def receive(self, data: bytes, src: Addr, now: float) -> None:
        """A datagram (or a framed stream message's bytes) arrived from ``src``."""
        if is_keepalive(data):
            return
        try:
            msg = parse_datagram(data, self.settings.max_message_size)
        except ParseError as e:
            self.bad_message(e, src, now)
            return
        self.receive_message(msg, src, now)

    def receive_message(self, msg: Request | Response, src: Addr, now: float) -> None:
        """A parsed message arrived from ``src``."""
        try:
            if isinstance(msg, Request):
                self.stats.count_request(msg.method)
                self._on_request(msg, src, now)
            else:
                self.stats.rx_replies += 1
                self._on_response(msg, src, now)
        except ParseError as e:
            if isinstance(msg, Request):
                e.start_line, e.headers = msg.start_line(), msg.headers
            self.bad_message(e, src, now)
        except Exception:
            self.stats.internal_errors += 1
            log.exception("internal error handling a message from %s:%s", src.host, src.port)

    def bad_message(self, err: ParseError, src: Addr, now: float) -> None:
        """Answer a malformed request with a usable Via; drop and count the rest."""
        self.stats.parse_errors += 1
        start = err.start_line or ""
        method = start.split(" ", 1)[0] if start else ""
        if err.headers is None or not method or method.startswith("SIP/") or method == "ACK":
            self.stats.dropped += 1
            return
        request = Request(method, "sip:invalid", list(err.headers))
        try:
            via = request.top_via
        except ParseError:
            self.stats.dropped += 1
            return
        reason = err.reason[:1].upper() + err.reason[1:]
        response = make_response(request, err.status, reason, to_tag=self._new_tag())
        self.stats.count_reply(err.status)
        self._emit(response_addr(self._with_received(via, src), src), response.to_bytes())

    def refuse(self, data: bytes | Request, src: Addr, now: float) -> None:
        """Answer a request from a source the proxy does not serve with ``403 Forbidden``,
        statelessly (no transaction, nothing routed); anything else from it is dropped."""
        try:
            msg = (
                parse_datagram(data, self.settings.max_message_size)
                if isinstance(data, bytes)
                else data
            )
            if not isinstance(msg, Request) or msg.method == "ACK":
                raise ParseError("not a request to answer")
            via = self._with_received(msg.top_via, src)
        except ParseError:
            self.stats.dropped += 1
            return
        self.stats.count_reply(403)
        response = make_response(msg, 403, None, to_tag=self._new_tag())
        self._emit(response_addr(via, src), response.to_bytes())

    def originate(
        self,
        request: Request,
        addr: Addr,
        callback: Callable[[int, Response | None, float], None],
        now: float,
        timers: Timers | None = None,
    ) -> str:
        """Send a request of our own as a non-INVITE client transaction.

        ``request`` carries everything but the Via, which is added here.
        ``callback(status, response, now)`` runs once, on the final response, or
        with 408 and no response when ``fr_timer`` expires or the transport fails.
        ``timers``, when given, replace the core's for this transaction (the pings'
        own ``fr_timer``). Returns the branch.
        """
        branch = f"{BRANCH_COOKIE}sdo.{self._new_id()}"
        request.prepend("via", "Via", self._via_value(addr.transport, branch))
        tx = NonInviteClientTransaction(
            request, branch, addr, timers or self.timers, self._tq, self._send, self
        )
        tx.owner = Origin(callback)
        self.client_txs[tx.key] = tx
        self.stats.tx_requests_local += 1
        tx.start(request.to_bytes(), now)
        return branch

    # -- internals -----------------------------------------------------------------

    def _read_overload(self, b: Branch, response: Response, now: float) -> None:
        apply = self._overload
        value = response.get("via")
        if apply is None or value is None or ";oc=" not in value:
            return
        handle = b.target.handle
        if handle is None:
            return
        try:
            params = response.top_via.params
        except ParseError:
            return
        if params.get("oc"):
            apply(handle, params, now)

    def _emit(self, addr: Addr, data: bytes, owner: Any = None) -> None:
        self._outbox.append((addr, data, owner))

    def _new_id(self) -> str:
        self._counter += 1
        # Decimal: str() of an int is compiled to a native call, hex() is not.
        return self._settings.instance + str(self._counter)

    def _new_tag(self) -> str:
        return "sd" + self._new_id()

    def _with_received(self, via: Via, src: Addr) -> Via:
        """§18.2.1: add ``received`` when sent-by is not the source; fill ``rport``."""
        params = via.params
        changed = False
        if via.host != src.host:
            params = dict(params)
            params["received"] = src.host
            changed = True
        if "rport" in params and params["rport"] is None:
            if not changed:
                params = dict(params)
                changed = True
            params["rport"] = str(src.port)
        return Via(via.transport, via.host, via.port, params) if changed else via

    def _is_us(self, uri: SipUri) -> bool:
        return (uri.host.lower(), uri.effective_port) in self.settings.aliases

    # -- requests --------------------------------------------------------------------

    def _on_request(self, req: Request, src: Addr, now: float) -> None:
        via = req.top_via
        fixed = self._with_received(via, src)
        if fixed is not via:
            req.pop_first_value("via")
            req.prepend("via", "Via", str(fixed))
        method = req.method
        key = server_key(req)
        if method == "ACK":
            tx = self.server_txs.get(key)
            if isinstance(tx, InviteServerTransaction) and tx.receive_request(req, now):
                return  # ACK for our non-2xx: hop by hop, absorbed
            self._relay_stateless(req, src, now)
            return
        tx = self.server_txs.get(key)
        if tx is not None:
            self.stats.rx_retransmissions += 1
            tx.receive_request(req, now)
            return
        if method == "CANCEL":
            self._on_cancel(req, src, now)
            return
        addr = response_addr(fixed, src)
        if method == "INVITE":
            stx: ServerTransaction = InviteServerTransaction(
                req, key, addr, self.timers, self._tq, self._send, self
            )
        else:
            stx = NonInviteServerTransaction(
                req, key, addr, self.timers, self._tq, self._send, self
            )
        self.server_txs[key] = stx
        if method == "INVITE":
            # §16.2 / §17.2.1: a 100 right away stops the caller's retransmissions.
            stx.respond_raw(100, trying_bytes(req))
        try:
            self._process_new(req, stx, src, now)
        except ParseError as err:
            # A header read only now is malformed (To, Route...): answer through the
            # transaction, whose timers then free it (a stateless 400 would leave it
            # waiting for ever), and which absorbs the caller's retransmissions.
            if stx.final_sent:
                raise
            self.stats.parse_errors += 1
            reason = err.reason[:1].upper() + err.reason[1:]
            try:
                self._reply(stx, err.status, reason, now)
            except ParseError:
                self.server_txs.pop(key, None)
                raise

    def _reply(
        self,
        stx: ServerTransaction,
        status: int,
        reason: str | None,
        now: float,
        extra: list[Header] | None = None,
    ) -> None:
        self.stats.count_reply(status)
        response = make_response(stx.request, status, reason, to_tag=self._new_tag(), extra=extra)
        stx.respond(response, now)

    def _refuse(
        self,
        stx: ServerTransaction,
        req: Request,
        src: Addr,
        status: int,
        reason: str | None,
        now: float,
        outcome: str = OUTCOME_REJECTED,
        extra: list[Header] | None = None,
    ) -> None:
        """Reject a new request locally; an INVITE's rejection goes to the call log."""
        self._reply(stx, status, reason, now, extra)
        sink = self.call_log
        if sink is not None and req.method == "INVITE":
            sink(CallRecord(req.call_id, src, req.uri_text, status, outcome, reason=reason))

    def _process_new(self, req: Request, stx: ServerTransaction, src: Addr, now: float) -> None:
        # §16.3 step 1: what the proxy cannot relay as written.
        unusable = _unusable(req)
        if unusable is not None:
            self._refuse(stx, req, src, 400, unusable, now)
            return
        fwd = req.copy()
        # §16.3 step 3: Max-Forwards of zero -> 483.
        mf = fwd.get("max-forwards")
        if mf is not None:
            hops = number(mf)  # checked digits, at most 255 (when parsed)
            if hops == 0:
                self._refuse(stx, req, src, 483, None, now)
                return
            fwd.set("max-forwards", "Max-Forwards", number_text(hops - 1))
        else:
            fwd.prepend("max-forwards", "Max-Forwards", str(DEFAULT_MAX_FORWARDS))
        mark = f"{OUR_BRANCH}{self._loop_hash(req):x}."
        # §16.3 step 4: a request carrying our Via with the same loop hash is looping.
        if self._looped(req, mark):
            self._refuse(stx, req, src, 482, None, now)
            return
        # §16.3 step 5: an extension the proxy must support, and none is supported.
        if fwd.has("proxy-require") and req.method != "CANCEL":
            unsupported = ", ".join(fwd.values("proxy-require"))
            extra = [("unsupported", "Unsupported", unsupported)]
            self._refuse(stx, req, src, 420, None, now, OUTCOME_REJECTED, extra)
            return
        popped = self._pop_our_routes(fwd)
        ctx = Context(stx, fwd, src, mark)
        stx.owner = ctx
        if req.to_tag is not None:
            # In-dialog: follow the route set (§16.4, §16.12); never dispatch. A route set
            # that does not start with us is followed all the same (Kamailio's
            # loose_route() is true whenever there is a Route); none at all, and the
            # request was not meant for us.
            if not popped and not fwd.has("route"):
                self._refuse(stx, req, src, 404, "Not here", now, OUTCOME_NOT_HERE)
                return
            self._in_dialog(fwd, now)
            target = self._next_hop(fwd)
            if target is None:
                self._reply(stx, 400, "Bad Route", now)
                return
            ctx.plan = StaticPlan([target])
            self._start_branch(ctx, target, now)
            return
        ctx.initial = True
        if self.draining and req.method == "INVITE":
            # Stopping: a new call goes elsewhere (RFC 3261 21.5.4: 503 with Retry-After
            # tells the caller, or a failover proxy, to try another server).
            retry = [("retry-after", "Retry-After", str(DRAIN_RETRY_AFTER))]
            self._refuse(stx, req, src, 503, "Stopping", now, OUTCOME_REJECTED, retry)
            return
        scheme = fwd.uri_text.split(":", 1)[0].lower()
        if scheme not in SUPPORTED_URI_SCHEMES:
            self._refuse(stx, req, src, 416, None, now)
            return
        native = self._native_router
        if native is not None:
            decision = native.route(fwd, src, now)
        else:
            decision = self.router.route(fwd, src, now)
        if isinstance(decision, Reject):
            self._refuse(stx, req, src, decision.status, decision.reason, now, decision.outcome)
            return
        ctx.plan = decision
        targets = _plan_first(decision)
        if not targets:
            self._refuse(stx, req, src, 503, None, now)
            return
        for target in targets:
            self._start_branch(ctx, target, now)

    def _loop_hash(self, req: Request) -> int:
        # §16.6 step 8: what a loop leaves unchanged. The From and To values as
        # written stand in for their tags (no proxy rewrites them) and spare
        # parsing them on every request.
        text = (
            f"{req.uri_text}|{req.get('call-id')}|{req.get('from')}|{req.get('to')}"
            f"|{req.get('cseq')}"
        )
        return _crc32(text.encode("latin-1"))

    def _looped(self, req: Request, mark: str) -> bool:
        for key, _name, value in req.headers:
            if key == "via" and mark in value:
                for v in req.values("via"):
                    if mark in v:
                        via = parse_via(v)
                        sent_by = (via.host.lower(), via.port or DEFAULT_SIP_PORT)
                        if sent_by in self.settings.aliases and (via.branch or "").startswith(mark):
                            return True
                return False
        return False

    def _pop_our_routes(self, req: Request) -> bool:
        """§16.4: remove the Route values at the top of the route set that name us.

        True when there was at least one. The values are split once and removed in
        one pass, so that a route set of thousands of our own URIs -- the peer's
        choice -- costs time linear in its length, not in its square.
        """
        routes = req.values("route")
        ours = self._our_routes
        count = 0
        for value in routes:
            if value not in ours:  # not our Record-Route as we write it: parse it
                uri_text, _ = split_name_addr(value)
                try:
                    uri = parse_uri(uri_text)
                except ParseError:
                    break
                if not self._is_us(uri):
                    break
            count += 1
        if count:
            req.drop_values("route", count)
        return count > 0

    def _in_dialog(self, fwd: Request, now: float) -> None:
        native = self._native_router
        if native is not None:
            native.in_dialog(fwd, now)
        else:
            self.router.in_dialog(fwd, now)

    def _next_hop(self, req: Request) -> Target | None:
        """Next hop of a request along its route set, else its Request-URI (§16.6 6-7)."""
        routes = req.values("route") if req.has("route") else []
        if routes:
            uri_text, _ = split_name_addr(routes[0])
            uri = parse_uri(uri_text)
            if "lr" not in uri.params:
                # §16.6 step 6 / §12.2.1.1: a strict router next: its URI becomes the
                # Request-URI and the old Request-URI goes to the end of the route set.
                req.pop_first_value("route")
                req.append("route", "Route", f"<{req.uri_text}>")
                req.set_uri(uri_text)
            return Target(uri_addr(uri))
        text = req.uri_text
        addr = self._hops.get(text)
        if addr is None:
            try:
                addr = uri_addr(req.uri)
            except ParseError:
                return None
            remember(self._hops, text, addr)
        return Target(addr)

    def _record_route(self, fwd: Request, in_transport: str, out_transport: str) -> None:
        rr = self._rr
        # When the two sides use different transports, record both (Kamailio's
        # double Record-Route): the top entry faces the callee, the next the caller.
        if in_transport != out_transport and in_transport in rr:
            fwd.prepend("record-route", "Record-Route", rr[in_transport])
        out = rr.get(out_transport)
        if out is None:
            out_host, out_port = self._local(out_transport)
            out = _rr_value(out_host, out_port, out_transport)
        fwd.prepend("record-route", "Record-Route", out)

    def _local(self, transport: str) -> tuple[str, int]:
        local = self.settings.local
        if transport in local:
            return local[transport]
        return next(iter(local.values()))

    def _via_value(self, transport: str, branch: str) -> str:
        prefix = self._via_prefix.get(transport)
        if prefix is None:
            prefix = _via_prefix(*self._local(transport), transport)
        return prefix + branch + self._via_oc

    def _start_branch(self, ctx: Context, target: Target, now: float) -> None:
        hold = target.hold
        if hold is not None:
            # The shell settles the hold first (admitted): nothing is sent meanwhile.
            target.hold = None
            ctx.held = target
            self._held.append((ctx, hold))
            return
        fwd = ctx.request.copy()
        if target.ruri is not None:
            fwd.set_uri(target.ruri)
        if target.headers:
            for key, name, value in target.headers:
                fwd.append(key, name, value)
        transport = target.addr.transport
        if ctx.initial and self.settings.record_route and fwd.method in DIALOG_CREATING:
            self._record_route(fwd, ctx.src.transport, transport)
        branch = ctx.branch_prefix + self._new_id()
        fwd.prepend("via", "Via", self._via_value(transport, branch))
        if fwd.method == "INVITE":
            tx: ClientTransaction = InviteClientTransaction(
                fwd, branch, target.addr, self.timers, self._tq, self._send, self
            )
        else:
            tx = NonInviteClientTransaction(
                fwd, branch, target.addr, self.timers, self._tq, self._send, self
            )
        b = Branch(ctx, target, tx)
        tx.owner = b
        ctx.branches.append(b)
        ctx.live += 1
        self.client_txs[tx.key] = tx
        self.stats.tx_requests += 1
        tx.start(fwd.to_bytes(), now)

    def _relay_stateless(self, req: Request, src: Addr, now: float) -> None:
        """ACK for a 2xx (and other ACKs no transaction wants): along the route set."""
        if req.to_tag is None:
            self.stats.dropped += 1
            return
        if _unusable(req) is not None:
            self.stats.dropped += 1
            return
        fwd = req.copy()
        if not self._pop_our_routes(fwd) and not fwd.has("route"):
            self.stats.dropped += 1
            return
        mf = fwd.get("max-forwards")
        if mf is not None:
            hops = number(mf)
            if hops == 0:
                return
            fwd.set("max-forwards", "Max-Forwards", number_text(hops - 1))
        target = self._next_hop(fwd)
        if target is None:
            self.stats.dropped += 1
            return
        self._in_dialog(fwd, now)
        # §16.11: a stateless branch must be the same for retransmissions: derive it.
        top = req.top_via.branch or ""
        branch = f"{BRANCH_COOKIE}sl{_crc32(top.encode('latin-1')):x}"
        fwd.prepend("via", "Via", self._via_value(target.addr.transport, branch))
        self.stats.tx_requests += 1
        self._emit(target.addr, fwd.to_bytes())

    def _on_cancel(self, req: Request, src: Addr, now: float) -> None:
        # §9.2 / §16.10: CANCEL matches the INVITE server transaction by branch.
        key = server_key(req)
        invite_key = (*key[:-1], "INVITE")
        stx = NonInviteServerTransaction(
            req, key, response_addr(req.top_via, src), self.timers, self._tq, self._send, self
        )
        self.server_txs[key] = stx
        inv = self.server_txs.get(invite_key)
        ctx = inv.owner if inv is not None else None
        if not isinstance(ctx, Context):
            # No matching response context: nothing to cancel here.
            self._reply(stx, 481, None, now)
            return
        # §16.10: "the element MUST immediately return a 200 (OK) response to the CANCEL".
        self._reply(stx, 200, None, now)
        if ctx.final_sent or ctx.canceled:
            return
        ctx.canceled = True
        if ctx.plan is not None:
            ctx.plan.cancelled(now)
        for b in ctx.branches:
            self._cancel_branch(b, now)
        if ctx.held is not None and not any(not x.final for x in ctx.branches):
            # Cancelled while its next branch waits for a hold: no branch will answer
            # the INVITE, so it is answered 487 here (§16.10 leaves it to the branches).
            ctx.held = None
            ctx.best, ctx.best_local = None, 487
            self._send_best(ctx, now)

    def _cancel_branch(self, b: Branch, now: float) -> None:
        """§9.1 / §16.10: CANCEL a pending branch, once it has had a provisional."""
        if b.final or b.cancelled:
            return
        tx = b.tx
        if not tx.replied:
            b.cancel_wanted = True  # §9.1: wait for a provisional before cancelling
            return
        b.cancelled = True
        invite = tx.request
        data = build_hop_request(invite, "CANCEL", invite.get("to") or "")
        cancel = Request("CANCEL", invite.uri_text, [])
        ctx = NonInviteClientTransaction(
            cancel, tx.branch, tx.addr, self.timers, self._tq, self._send, self
        )
        self.client_txs[ctx.key] = ctx
        self.stats.tx_requests += 1
        ctx.start(data, now)

    # -- responses -------------------------------------------------------------------

    def _on_response(self, resp: Response, src: Addr, now: float) -> None:
        method = resp.cseq[1]
        value = resp.get("via")
        if value is not None:
            # Fast path: the top Via is one we wrote, so its branch is found without
            # parsing it (a response to a request we sent carries it verbatim).
            for prefix in self._via_prefixes:
                if value.startswith(prefix):
                    # The branch value: up to the next ';' or ',' (found, not split).
                    begin = len(prefix)
                    end = value.find(";", begin)
                    if end < 0:
                        end = len(value)
                    comma = value.find(",", begin, end)
                    if comma >= 0:
                        end = comma
                    branch = value[begin:end].strip()
                    tx = self.client_txs.get((branch, method))
                    if tx is not None:
                        tx.receive(resp, now)
                        return
                    break
        via = resp.top_via
        tx = self.client_txs.get((via.branch or "", method))
        if tx is None:
            self._forward_response_stateless(resp, via, now)
            return
        tx.receive(resp, now)

    def _forward_response_stateless(self, resp: Response, via: Via, now: float) -> None:
        """§16.7: a response with no transaction is forwarded statelessly if it is ours."""
        if (via.host.lower(), via.port or DEFAULT_SIP_PORT) not in self.settings.aliases:
            self.stats.dropped += 1
            return
        resp.pop_first_value("via")
        try:
            nxt = resp.top_via
        except ParseError:
            self.stats.dropped += 1
            return
        self.stats.tx_replies_stateless += 1
        self._emit(response_addr(nxt, None), resp.to_bytes())

    # ClientUser interface

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        b = tx.owner
        if not isinstance(b, Branch):
            if isinstance(b, Origin) and response.status >= 200 and not b.done:
                b.done = True
                b.callback(response.status, response, now)
            return  # our CANCEL's 200 and the like
        ctx = b.ctx
        if ctx is None:
            return
        if self._overload is not None:
            self._read_overload(b, response, now)
        response.pop_first_value("via")
        status = response.status
        if status < 200:
            if b.cancel_wanted and not b.cancelled:
                self._cancel_branch(b, now)
            if status == 100 or ctx.final_sent:
                return
            # §16.7 step 5: provisionals other than 100 are forwarded at once.
            ctx.server_tx.respond(response, now)
            return
        if status < 300:
            if not b.final:
                b.final = status
                if ctx.plan is not None:
                    _plan_answered(ctx.plan, b.target, now)
            # §16.7 step 5: every 2xx to INVITE is forwarded at once -- even after
            # we gave up on the branch and answered 408 (the server transaction then
            # cannot send it, so it goes out directly).
            stx = ctx.server_tx
            if stx.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED):
                self._emit(stx.addr, response.to_bytes())
            else:
                stx.respond(response, now)
            if not ctx.final_sent:
                ctx.final_sent = True
                ctx.request = RELEASED  # no branch is started after the final
                self.stats.relayed_2xx += 1
                if ctx.plan is not None:
                    _plan_finished(ctx.plan, status, now)
                # §16.7 step 10: cancel the branches still pending.
                for other in ctx.branches:
                    if other is not b:
                        self._cancel_branch(other, now)
            return
        if b.final:
            return
        b.final = status
        self._branch_failed(ctx, b, status, response, False, now)

    def on_timeout(self, tx: ClientTransaction, now: float, replied: bool) -> None:
        b = tx.owner
        if isinstance(b, Origin):
            if not b.done:
                b.done = True
                b.callback(408, None, now)
            return
        if not isinstance(b, Branch) or b.final or b.ctx is None:
            return
        if replied and isinstance(tx, InviteClientTransaction):
            # §16.8: timer C after a provisional -> CANCEL the branch.
            self._cancel_branch(b, now)
        b.final = 408
        self.stats.branch_timeouts += 1
        self._branch_failed(b.ctx, b, 408, None, not replied, now)

    def on_terminated(self, tx: ClientTransaction) -> None:
        if self.client_txs.get(tx.key) is tx:
            del self.client_txs[tx.key]
        b = tx.owner
        tx.owner = None
        if isinstance(b, Branch) and b.ctx is not None:
            self._release(b.ctx)

    def on_server_terminated(self, tx: ServerTransaction, now: float, ack_timeout: bool) -> None:
        if self.server_txs.get(tx.key) is tx:
            del self.server_txs[tx.key]
        ctx = tx.owner
        if isinstance(ctx, Context):
            tx.owner = None
            for b in ctx.branches:
                if not b.final:
                    self._cancel_branch(b, now)
            self._release(ctx)

    @staticmethod
    def _release(ctx: Context) -> None:
        """One of the request's transactions ended; after the last, break the cycles.

        A context and its branches point at each other (and at their transactions),
        so without this only the cyclic garbage collector would free a finished
        call -- in long pauses that walk every call in progress. Breaking the
        links lets reference counting free it at once.
        """
        ctx.live -= 1
        if ctx.live > 0:
            return
        for b in ctx.branches:
            b.ctx = None
        ctx.branches = []
        ctx.plan = None
        ctx.challenges = None

    def _branch_failed(
        self,
        ctx: Context,
        b: Branch,
        status: int,
        response: Response | None,
        timeout: bool,
        now: float,
    ) -> None:
        if (status == 401 or status == 407) and response is not None:
            challenges = ctx.challenges
            if challenges is None:
                ctx.challenges = [response]
            else:
                challenges.append(response)
        if status >= 600:
            # §16.7 step 9 (a 6xx): cancel the other branches.
            for other in ctx.branches:
                self._cancel_branch(other, now)
        elif not ctx.final_sent and not ctx.canceled and ctx.plan is not None:
            nxt = ctx.plan.next_target(b.target, status, timeout, now)
            if nxt is not None:
                self.stats.failovers += 1
                self._start_branch(ctx, nxt, now)
                return
        # Keep the best answer so far (§16.7 step 6).
        if _better(status, ctx.best_status):
            ctx.best = response
            ctx.best_local = status if response is None else 0
        if any(not x.final for x in ctx.branches) or ctx.final_sent:
            return
        self._send_best(ctx, now)

    def _send_best(self, ctx: Context, now: float) -> None:
        ctx.final_sent = True
        ctx.request = RELEASED  # no branch is started after the final
        stx = ctx.server_tx
        best = ctx.best
        if ctx.plan is not None:
            _plan_finished(ctx.plan, ctx.best_status or 408, now)
        if best is None:
            status = ctx.best_local or 408
            self._reply(stx, status, None, now)
            return
        if best.status == 503:
            # §16.7 step 6: a 503 is not forwarded upstream as is; it becomes 500.
            best = best.copy()
            best.status, best.reason = 500, "Server Internal Error"
        elif (best.status == 401 or best.status == 407) and ctx.challenges is not None:
            best = _with_challenges(best, ctx.challenges)
        self.stats.count_reply(best.status)
        stx.respond(best, now)


_CHALLENGES: Final = ("www-authenticate", "proxy-authenticate")


def _with_challenges(best: Response, challenges: list[Response]) -> Response:
    """§16.7 step 7: a 401 or 407 sent upstream carries the WWW-Authenticate and
    Proxy-Authenticate values of every other 401 and 407 of its branches, unchanged."""
    if len(challenges) < 2:
        return best
    out = best.copy()
    for other in challenges:
        if other is best:
            continue
        for key, name, value in other.headers:
            if key in _CHALLENGES:
                out.append(key, name, value)
    return out


def _better(status: int, than: int) -> bool:
    """§16.7 step 6: 6xx first, then the lowest class; the earlier wins a tie."""
    if than == 0:
        return True
    if status >= 600:
        return than < 600
    if than >= 600:
        return False
    return status // 100 < than // 100


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _via_prefix(host: str, port: int, transport: str) -> str:
    """A Via of ours up to its branch value."""
    return f"SIP/2.0/{transport.upper()} {_hostport(host, port)};branch="


def _rr_value(host: str, port: int, transport: str) -> str:
    t = "" if transport == "udp" else f";transport={transport}"
    return f"<sip:{_hostport(host, port)}{t};lr>"


def _unusable(req: Request) -> str | None:
    """Why a request cannot be relayed as written, or None (the reason of its 400).

    RFC 3261 §19.1.1: a Request-URI carries no headers (RFC 4475's ``escruri``: the
    ``?Route=...`` of a URI copied from a header or a web page). RFC 4475's ``bcast``:
    a Via or a Request-URI naming a broadcast, multicast or unspecified address asks
    the proxy to send there -- the request, or its responses further down.
    """
    uri_text = req.uri_text
    if "?" in uri_text:
        return "Request-URI carries headers"
    if is_forbidden_ip(req.top_via.host):
        return "Via names a broadcast or multicast address"
    first = True
    for key, _name, value in req.headers:
        if key == "via":
            if first:
                first = False
                if "," not in value:
                    continue
                rest = split_commas(value)[1:]
            else:
                rest = split_commas(value)
            for text in rest:
                if is_forbidden_ip(parse_via(text).host):
                    return "Via names a broadcast or multicast address"
    scheme = uri_text[:4].lower()
    if scheme == "sip:" or scheme == "sips":
        try:
            host = req.uri.host
        except ParseError:
            return None  # answered on its own later (416, 400)
        if is_forbidden_ip(host):
            return "Request-URI names a broadcast or multicast address"
    return None


def sent_request_key(head: bytes) -> tuple[str, str] | None:
    """The client transaction key (top Via branch, method) of the start of a request
    the proxy sent; None for a response or what names no branch."""
    space = head.find(b" ", 0, 32)
    if space <= 0 or head.startswith(b"SIP/"):
        return None
    method = head[:space].decode("latin-1")
    end = head.find(b"\r\n\r\n")
    lower = (head if end < 0 else head[:end]).lower()
    at = lower.find(b"\nvia:")
    if at < 0:
        at = lower.find(b"\nv:")
        if at < 0:
            return None
    stop = lower.find(b"\n", at + 1)
    if stop < 0:
        return None  # the Via is cut short: its branch may be too
    start = lower.find(b";branch=", at, stop)
    if start < 0:
        return None
    start += 8
    j = start
    while j < stop and lower[j] not in b";,\r \t":
        j += 1
    if j == start:
        return None
    return head[start:j].decode("latin-1"), method


def _is_ip(host: str) -> bool:
    """An IPv4 or IPv6 literal (a destination's host may still be a name)."""
    h = host.strip("[]")
    return ":" in h or (h.replace(".", "").isdigit() and h.count(".") == 3)
