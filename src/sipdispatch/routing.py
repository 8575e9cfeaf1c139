"""The routing rules of ``[[route]]`` on top of the dispatcher: Kamailio's
``request_route`` + ``ds_select_dst`` + ``failure_route`` with ``ds_next_dst``.

This is the one seam between the proxy core and the dispatcher: for an
out-of-dialog request, :meth:`DispatchRouter.route` finds the first rule that
matches, selects from its set with its algorithm, and returns a plan that walks
the failover list when a branch fails with a code of ``failover_on`` or times
out, marking the failed destination as ``mark_failed`` says (``ds_mark_dst``).
Algorithm 10's call load is kept here too (no script needed): +1 when an INVITE
goes to a destination, confirmed on 2xx, released on a failed final response
(CANCEL included: it ends in 487) or on BYE. See docs/routing.md.

This runs once per call, so the hot path stays small: the request's values a
hash needs are read only for the algorithm that hashes them, targets are built
only when they are tried, and the R-URI is copied only when a rule or a
destination rewrites it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from sipdispatch.dispatcher.addresses import DnsAddress
from sipdispatch.dispatcher.algorithms import SelectContext, SelectOptions, select_with
from sipdispatch.dispatcher.algorithms.hashed import (
    HashAuthUsername,
    HashFromUri,
    HashHeader,
    HashToUri,
)
from sipdispatch.dispatcher.algorithms.load import CallLoad
from sipdispatch.dispatcher.algorithms.roundrobin import RoundRobin, RoundRobinOverload
from sipdispatch.dispatcher.callload import CallLoadTable
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.hashing import is_hash_template, parse_hash_template
from sipdispatch.dispatcher.overload import OverloadControl, parse_via_control
from sipdispatch.dispatcher.sets import DispatcherSets, carry_runtime_state
from sipdispatch.dispatcher.states import DS_DISABLED_DST, DS_SKIP_MASK, parse_mark_letters
from sipdispatch.health.state import (
    ORIGIN_ADMIN,
    ORIGIN_CALL,
    ORIGIN_CLUSTER,
    StateChange,
    update_state,
)
from sipdispatch.health.statelog import StateLog
from sipdispatch.sip.addr import Addr
from sipdispatch.sip.calls import (
    OUTCOME_ANSWERED,
    OUTCOME_CANCELLED,
    OUTCOME_FAILED_OVER,
    OUTCOME_NO_DESTINATION,
    OUTCOME_NO_ROUTE,
    OUTCOME_REJECTED,
    OUTCOME_TIMEOUT,
    Attempt,
    CallRecord,
    CallSink,
)
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.headers import header_key, split_name_addr
from sipdispatch.sip.message import RELEASED, Header, Request
from sipdispatch.sip.router import NativePlan, NativeRouter, Plan, Reject, Target
from sipdispatch.sip.uri import parse_uri

log: Final = logging.getLogger("sipdispatch.routing")

ALGORITHM_HASH_FROM: Final = HashFromUri.number
ALGORITHM_HASH_TO: Final = HashToUri.number
ALGORITHM_HASH_AUTH: Final = HashAuthUsername.number
ALGORITHM_HASH_HEADER: Final = HashHeader.number
ALGORITHM_CALL_LOAD: Final = CallLoad.number
ALGORITHM_OVERLOAD: Final = RoundRobinOverload.number
"""Kamailio algorithm numbers whose selection needs something special from us."""

RouteMode = Literal["dst", "domain"]


# -- Python routing hooks: what the router hands a hook and takes back --------------------


@dataclass(frozen=True, slots=True)
class HookRoute:
    """A hook's "dispatch this request", checked and made plain by the shell
    (``sipdispatch.hooks.Route``): None fields take the rule's own value."""

    set_id: int | None = None
    """Destination set, or None for the rule's ``set``."""
    algorithm: int | None = None
    """Algorithm number, or None for the rule's ``algorithm``."""
    user: str | None = None
    """New Request-URI user part (before a destination's ``strip``/``prefix``), or None."""
    headers: tuple[Header, ...] = ()
    """Header lines added to every request forwarded for this call."""
    fallback: tuple[tuple[int, int | None], ...] | None = None
    """Sets tried after ``set_id``, in order, each with its algorithm (None: the route's
    algorithm); None for the rule's ``fallback``, ``()`` for none."""


HookFn = Callable[["RequestView"], "HookRoute | Reject | None"]
"""What a ``[[route]]`` rule with ``python`` calls (the shell's wrapper of the user's
function): a route, a local rejection, or None to go on with the next rule."""


class RequestView:
    """A read-only view of a request for a Python routing hook.

    Made once per hook call and cheap to make: each value is read from the request
    when the hook asks for it. Strings are "" where the request has nothing to
    give (no user part, a URI that does not parse), never None, except for
    :meth:`header`.
    """

    def __init__(self, request: Request, source: Addr, router: DispatchRouter) -> None:
        self._request = request
        self._source = source
        self._router = router

    @property
    def method(self) -> str:
        """Request method as written (upper case for the standard methods)."""
        return self._request.method

    @property
    def ruri(self) -> str:
        """The whole Request-URI as received."""
        return self._request.uri_text

    @property
    def ruri_user(self) -> str:
        """Request-URI user part (the number of a ``tel:`` URI), "" when none."""
        return _ruri_parts(self._request)[1]

    @property
    def ruri_host(self) -> str:
        """Request-URI host ("" for a ``tel:`` URI)."""
        return _ruri_parts(self._request)[0]

    @property
    def from_uri(self) -> str:
        """The From URI, without display name or tag."""
        return _uri_of(self._request.get("from"))

    @property
    def from_user(self) -> str:
        """User part of the From URI, "" when none."""
        return _user_of(self.from_uri)

    @property
    def to_uri(self) -> str:
        """The To URI, without display name or tag."""
        return _uri_of(self._request.get("to"))

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return self._request.call_id

    @property
    def source_ip(self) -> str:
        """IP address the request came from."""
        return self._source.host

    @property
    def source_port(self) -> int:
        """Port the request came from."""
        return self._source.port

    @property
    def transport(self) -> str:
        """``udp``, ``tcp`` or ``tls``: how the request came."""
        return self._source.transport

    @property
    def source_sets(self) -> frozenset[int]:
        """The destination sets the source belongs to (``ds_is_from_list``)."""
        return self._router.source_sets(self._source)

    def header(self, name: str) -> str | None:
        """Value of the first header ``name`` (any case, compact forms too), or None."""
        return self._request.get(header_key(name))

    def set_exists(self, set_id: int) -> bool:
        """Whether destination set ``set_id`` exists (Kamailio's ``ds_list_exists``)."""
        return self._router.sets.get(set_id) is not None

    def set_active(self, set_id: int, uri: str | None = None) -> bool:
        """Whether set ``set_id`` has a destination that takes calls (neither inactive
        nor disabled) -- or, with ``uri``, whether that destination of the set does
        (Kamailio's ``ds_is_active``)."""
        dset = self._router.sets.get(set_id)
        if dset is None:
            return False
        for dest in dset.dests:
            if uri is not None and dest.uri != uri:
                continue
            if not dest.state & DS_SKIP_MASK:
                return True
        return False

    def __repr__(self) -> str:
        return (
            f"<RequestView {self.method} {self.ruri} from "
            f"{self.transport}:{self.source_ip}:{self.source_port}>"
        )


def _user_of(uri_text: str) -> str:
    if _is_tel(uri_text):
        return uri_text[4:].partition(";")[0]
    try:
        return parse_uri(uri_text).user or ""
    except ParseError:
        return ""


# -- the rules and settings the router runs on ---------------------------------------


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """``match = {...}`` of a ``[[route]]`` rule; None fields match anything."""

    methods: tuple[str, ...] | None = None
    """Request methods (upper case, compared case-sensitively as RFC 3261 §7.1 requires)."""
    domain: str | None = None
    """Request-URI host, stored lower-case and compared case-insensitively."""
    user_prefix: str | None = None
    """Prefix of the Request-URI user part."""
    source_set: int | None = None
    """The request comes from a destination of this set (Kamailio ``ds_is_from_list``)."""

    def matches(self, method: str, domain: str, user: str, source_set: int | None) -> bool:
        """Whether a request with these properties matches every condition given."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.domain is not None and domain.lower() != self.domain:
            return False
        if self.user_prefix is not None and not user.startswith(self.user_prefix):
            return False
        return self.source_set is None or source_set == self.source_set


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One ``[[route]]`` rule; the first rule whose `match` fits a request routes it."""

    set_id: int
    """Destination set to dispatch to (TOML key ``set``)."""
    match: RouteMatch = RouteMatch()
    """Conditions; the empty match fits every request."""
    algorithm: int = RoundRobin.number
    """Algorithm number, as the algorithm registry knows it (Kamailio's 0..15, ours 114, 115)."""
    mode: RouteMode = "dst"
    """``dst`` = ds_select_dst (R-URI kept), ``domain`` = ds_select_domain (host rewritten)."""
    limit: int = 0
    """Length of the failover list, fallback sets included; 0 = no limit."""
    failover_codes: frozenset[int] = frozenset({404, 408})
    """Final response codes that make the call try the next destination."""
    failover_classes: frozenset[int] = frozenset({5})
    """Final response classes (5 = 5xx) that make the call try the next destination."""
    mark_failed: str = "ip"
    """``ds_mark_dst`` state given to a destination that failed a call; "" = leave it."""
    no_destination: int = 503
    """Reply code when no usable destination is left."""
    hook: HookFn | None = None
    """A Python routing hook (``python = "module:function"``): called with a
    :class:`RequestView` when `match` fits; its answer decides (None: the next rule).
    The shell wraps the user's function (timing, exceptions) before it lands here."""
    fallback: tuple[tuple[int, int], ...] = ()
    """(set, algorithm) of each set tried after ``set_id``, in order (Kamailio's
    ``ds_select_routes``): the failover list goes on with their destinations, and a
    call whose set has nothing usable goes to the first of them that has something."""

    def is_failover(self, code: int) -> bool:
        """Whether a final response ``code`` received on a branch makes the call try the
        next destination. A branch timeout fails over whatever this says, and nothing
        fails over when :attr:`RouterSettings.failover` is false."""
        return code in self.failover_codes or code // 100 in self.failover_classes

    def matches(self, method: str, domain: str, user: str, source_set: int | None) -> bool:
        """Whether this rule applies to a request; see :meth:`RouteMatch.matches`."""
        return self.match.matches(method, domain, user, source_set)


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """What the router takes from ``[dispatcher]`` (Kamailio's modparams of the same
    names)."""

    failover: bool = True
    """Try the next destination after a failure (Kamailio ``flags`` bit 2)."""
    use_default: bool = False
    """The last destination of a set is used whatever its state (``ds_use_default``)."""
    hash_user_only: bool = False
    """URI hashes take the user part alone (Kamailio ``flags`` bit 1)."""
    hash_header: str = ""
    """Header whose value algorithm 7 hashes."""
    hash_expire: int = 7200
    """Seconds a confirmed call counts towards load without a BYE (algorithm 10)."""
    hash_initexpire: int = 7200
    """Seconds an unconfirmed call counts towards load (algorithm 10)."""
    keep_state_on_reload: bool = True
    """Unchanged destinations keep state, latency and load across a reload."""
    probing_threshold: int = 1
    """Failures in a row before a destination is inactive (``ds_mark_dst`` counts too)."""
    inactive_threshold: int = 1
    """Successes in a row before an inactive destination is active again."""


DEFAULT_ROUTE: Final = RouteRule(set_id=1)
"""With no ``[[route]]`` at all, every request goes to set 1, round-robin (the
reference Kamailio setup: ``ds_select_dst("1", "4")``), failing over on 5xx,
404, 408 and timeouts and marking a failed destination ``ip``."""

NO_ROUTE: Final = Reject(404, "No route", OUTCOME_NO_ROUTE)
"""A request no ``[[route]]`` rule matches."""
NO_DESTINATION_REASON: Final = "No destination"

_NO_SETS: Final[frozenset[int]] = frozenset()
_HOPS_KEPT: Final = 4096
"""Next-hop addresses :meth:`DispatchRouter.target` keeps before it starts afresh."""


def _auth_username(request: Request) -> str | None:
    value = request.get("proxy-authorization") or request.get("authorization")
    if value is None:
        return None
    for part in value.split(","):
        name, sep, v = part.strip().partition("=")
        if sep and name.strip().lower().endswith("username"):
            return v.strip().strip('"')
    return None


def _uri_of(value: str | None) -> str:
    if not value:
        return ""
    try:
        return split_name_addr(value)[0]
    except ParseError:
        return ""


def render_hash_template(parts: tuple[tuple[str, str], ...], request: Request) -> str | None:
    """Algorithm 7's key from a template (``parse_hash_template``); None when every part
    the request should give is empty."""
    out: list[str] = []
    found = False
    for kind, arg in parts:
        if kind == "text":
            out.append(arg)
            continue
        if kind == "hdr":
            value = (request.get(header_key(arg)) or "").strip()
        elif kind == "call_id":
            value = request.call_id
        elif kind == "ruri":
            value = request.uri_text
        elif kind == "ruri_user":
            value = _user_of(request.uri_text)
        else:
            uri = _uri_of(request.get("from" if kind.startswith("from") else "to"))
            value = _user_of(uri) if kind.endswith("_user") else uri
        if value:
            found = True
            out.append(value)
    return "".join(out) if found else None


def _is_tel(uri_text: str) -> bool:
    return uri_text[:4].lower() == "tel:"


def _ruri_parts(request: Request) -> tuple[str, str]:
    """(host, user) of the Request-URI for rule matching; a ``tel:`` URI has no host
    and its number is the user (RFC 3966); anything unparsable gives ("", "")."""
    text = request.uri_text
    if _is_tel(text):
        return "", text[4:].partition(";")[0]
    try:
        uri = request.uri
    except ParseError:
        return "", ""
    return uri.host, uri.user or ""


_NO_RURI: Final = ("", "")

SETUP_TIME_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the call set-up time histogram (INVITE to final response):
a gateway on the LAN answers in milliseconds, a person picks up in seconds."""


class SetupTimes:
    """Histogram of call set-up times (INVITE to the final response sent upstream),
    Prometheus-style: cumulative counts are made when read, not per call."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(SETUP_TIME_BUCKETS) + 1)
        """Calls per bucket (not cumulative); the last is above every bound."""
        self.sum = 0.0
        """Seconds of every call added up."""

    def observe(self, seconds: float) -> None:
        """Count one call that took ``seconds``."""
        self.sum += seconds
        i = 0
        for bound in SETUP_TIME_BUCKETS:
            if seconds <= bound:
                break
            i += 1
        self.counts[i] += 1

    @property
    def count(self) -> int:
        """Calls counted."""
        return sum(self.counts)


class DispatchPlan(NativePlan):
    """One request's destinations: failover along the selection (``ds_next_dst``),
    marking failed destinations (``ds_mark_dst``), and algorithm 10's call load.

    ``dests`` is the selection's failover list (all of it forked at once when
    ``parallel``); the rule's fallback sets (``ds_select_routes``) are selected and
    added to it when the walk reaches its end. Targets are built when tried.
    """

    __slots__ = (
        "_addr_next",
        "_addrs",
        "_fork_blocked",
        "_fork_left",
        "_load_sets",
        "_next",
        "_room",
        "branch_at",
        "call_id",
        "counts_load",
        "current",
        "dests",
        "failures",
        "fallback",
        "fell_back",
        "generation",
        "hold",
        "hook",
        "is_call",
        "parallel",
        "request",
        "router",
        "rule",
        "set_id",
        "source",
        "started",
        "was_cancelled",
        "winner",
    )

    def __init__(
        self,
        router: DispatchRouter,
        rule: RouteRule,
        dests: tuple[Destination, ...],
        parallel: bool,
        request: Request,
        counts_load: bool,
        source: Addr | None = None,
        now: float = 0.0,
        hook: HookRoute | None = None,
        set_id: int | None = None,
        algorithm: int | None = None,
        fallback: tuple[tuple[int, int], ...] = (),
    ) -> None:
        """``set_id`` is the set the call was routed to and ``algorithm`` the algorithm
        ``dests`` were selected with (both by default the rule's, or its hook's);
        ``fallback`` the sets still to be tried after ``dests``."""
        self.router = router
        self.rule = rule
        self.dests = dests
        """The failover list in order (``targets[0]`` first); grows by a fallback set's
        list when the walk reaches its end."""
        self.parallel = parallel
        self.request = request
        """The request being routed (its R-URI is the base of any rewrite)."""
        self.call_id = request.call_id
        self.is_call = request.method == "INVITE"
        """An INVITE: a call, counted by outcome and logged."""
        self.counts_load = counts_load
        """The call counts on the destination it goes to while in progress (every
        INVITE, whatever the algorithm)."""
        if algorithm is None:
            algorithm = rule.algorithm
            if hook is not None and hook.algorithm is not None:
                algorithm = hook.algorithm
        if set_id is None:
            set_id = rule.set_id
            if hook is not None and hook.set_id is not None:
                set_id = hook.set_id
        self.set_id = set_id
        """The set the rule (or its hook) routes to; fallback sets are the others."""
        self.fallback = fallback
        """(set, algorithm) of the fallback sets not selected yet, in order."""
        load_sets: tuple[int, ...] = ()
        if counts_load:
            if algorithm == ALGORITHM_CALL_LOAD:
                load_sets = (dests[0].setid,)
            if fallback:
                load_sets += tuple(s for s, a in fallback if a == ALGORITHM_CALL_LOAD)
        self._load_sets = load_sets
        """Sets selected with algorithm 10 (each fallback set with its own algorithm):
        failover skips their destinations at their ``maxload``."""
        limit = rule.limit
        self._room = limit - len(dests) if limit else -1
        """How many more destinations the list may take (``limit``, which caps the whole
        list as in Kamailio's ``ds_select_routes``); -1 = no limit."""
        self._fork_left = len(dests) if parallel else 0
        """Forked branches (algorithm 12) without a final response yet."""
        self._fork_blocked = False
        """A forked branch gave an answer that is not a failover: no fallback set then."""
        self.fell_back = dests[0].setid != set_id
        """The call went to a fallback set."""
        if self.fell_back and self.is_call:
            router.count_fallback(set_id, dests[0].setid)
        self.generation = router.generation
        """The router's destination list generation at selection (see reload)."""
        self._next = 1
        self.source = source
        """Where the request came from (the call log)."""
        self.started = now
        """When the request came (set-up time)."""
        self.current = dests[0]
        """The destination tried last (serial failover)."""
        self.branch_at = now
        """When the INVITE went to ``current`` (its set-up time starts there)."""
        self.failures: list[tuple[Destination, int, bool]] | None = None
        """(destination, status, timed out) of each failed branch; None while none failed."""
        self.winner: Destination | None = None
        """The destination that answered 2xx."""
        self.was_cancelled = False
        self.hook = hook
        """What the rule's Python hook decided (R-URI user, added headers), if any."""
        self._addrs: list[DnsAddress] | None = None
        """The addresses of :attr:`current` in the order this request tries them, when it
        is a destination located by DNS with several; None otherwise."""
        self._addr_next = 0
        self.hold: Any = None
        """The cluster's hold on the first target (its call-load reservation), if any."""

    def first(self) -> list[Target]:
        """The selected destination, or every one for parallel forking (algorithm 12)."""
        router = self.router
        if self.parallel:
            return [router.target(d, self.rule, self.request, self.hook) for d in self.dests]
        dest = self.dests[0]
        if dest.located is not None and not dest.located.single:
            first = self._first_address(dest)
        else:
            first = router.target(dest, self.rule, self.request, self.hook)
        hold = self.hold
        if hold is not None:
            self.hold = None
            first.hold = hold
        return [first]

    def _first_address(self, dest: Destination) -> Target:
        """The first of ``dest``'s addresses in this request's order (RFC 2782); the
        others are kept for failover within the destination."""
        assert dest.located is not None
        order = self._addrs = dest.located.order(self.router.rng)
        self._addr_next = 1
        return self.router.target(dest, self.rule, self.request, self.hook, order[0].addr)

    def next_target(self, failed: Target, status: int, timeout: bool, now: float) -> Target | None:
        """``failure_route``: mark the failed destination and take the next one.

        Only a final response listed in the rule's ``failover_on``, or a branch
        that never answered, counts as a failure; anything else goes upstream.
        """
        rule = self.rule
        dest = failed.handle
        if self.is_call and isinstance(dest, Destination):
            if timeout:
                dest.calls_timeout += 1
            else:
                dest.count_rejected(status)
                dest.observe_setup(now - self.branch_at)
            failures = self.failures
            if failures is None:
                failures = self.failures = []
            failures.append((dest, status, timeout))
        fails_over = timeout or rule.is_failover(status)
        if self.parallel:
            self._fork_left -= 1
            if not fails_over:
                self._fork_blocked = True
        if not fails_over:
            return None
        router = self.router
        addrs = self._addrs
        if addrs is not None:
            # RFC 3263 §4.3: after a timeout, a transport error (reported as a timeout)
            # or a 503, the next address of the same destination is tried first.
            if (
                (timeout or status == 503)
                and self._addr_next < len(addrs)
                and router.settings.failover
                and dest is self.current
            ):
                address = addrs[self._addr_next]
                self._addr_next += 1
                return router.target(self.current, rule, self.request, self.hook, address.addr)
            self._addrs = None
        if rule.mark_failed and isinstance(dest, Destination):
            why = "no answer" if timeout else f"call failed with {status}"
            router.mark(dest, rule.mark_failed, why, now, self.generation)
        if not router.settings.failover:
            return None
        if self.parallel:
            if self._fork_left > 0 or self._fork_blocked or not self.fallback:
                return None  # the other branches are still running, or it is over
            # Every forked branch failed over: the fallback sets are tried, one
            # destination at a time.
            self.parallel = False
            self._next = len(self.dests)
        return self._advance(now)

    def refused(self, target: Target, now: float) -> Target | None:
        """The cluster's count found ``target``'s destination full (algorithm 10's
        ``maxload``, reached by calls of other nodes): the next destination of the
        selection that has room, as if the selection had known. Not a failure: nothing
        is marked or counted against the destination."""
        self._addrs = None
        dest = target.handle
        if isinstance(dest, Destination) and dest.dispatched > 0:
            dest.dispatched -= 1  # counted when the target was made; it never went
        if self.parallel:
            return None
        return self._advance(now)

    def _advance(self, now: float) -> Target | None:
        """The next destination of the selection that is up (and below its
        ``maxload`` for algorithm 10), with the call's load moved to it; at the end of
        the list, the next fallback set's list is selected and walked."""
        router = self.router
        rule = self.rule
        dests = self.dests
        n = len(dests)
        hold = None
        while self._next < n or self._extend(now):
            dests = self.dests
            n = len(dests)
            d = dests[self._next]
            self._next += 1
            if self.generation != router.generation:
                live = router.current(d, self.generation)
                if live is None:
                    continue  # removed by a reload
                d = live
            if d.state & DS_SKIP_MASK and not router.is_default(d):
                # Went down (probing, another call's failure, an operator) since the
                # selection: trying it would only cost a timeout.
                continue
            if self.counts_load:
                limited = d.setid in self._load_sets
                maxload = d.attrs.maxload
                if limited and maxload and d.dlg_load >= maxload:
                    continue
                # Kamailio ds_load_replace: the call's count moves to the new destination.
                calls = router.calls
                calls.on_invite_sent(self.call_id, d, now, limited)
                if calls.share is not None:
                    hold = calls.take_hold()
            if d.setid != self.current.setid and d.setid != self.set_id:
                self.fell_back = True
                if self.is_call:
                    router.count_fallback(self.set_id, d.setid)
            self.current = d
            self.branch_at = now
            if d.located is not None and not d.located.single:
                nxt = self._first_address(d)
            else:
                nxt = router.target(d, rule, self.request, self.hook)
            if hold is not None:
                nxt.hold = hold
            return nxt
        return None

    def _extend(self, now: float) -> bool:
        """Add the failover list of the next fallback set that has something usable
        (within what ``limit`` leaves) to ``dests``; False when there is none.

        Selected when the walk gets there rather than with the rule's set (Kamailio
        fills its list for every set at once): a set that is never reached is left
        alone (its round-robin position, its weight table), and what is selected
        reflects the states at the time it is tried."""
        fallback = self.fallback
        room = self._room
        router = self.router
        while fallback and room != 0:
            (set_id, alg), fallback = fallback[0], fallback[1:]
            more = router.select_fallback(set_id, alg, self.request, now, max(room, 0))
            if more:
                self.fallback = fallback
                if room > 0:
                    self._room = room - len(more)
                if alg == ALGORITHM_CALL_LOAD and set_id not in self._load_sets:
                    self._load_sets += (set_id,)
                self.dests += more
                return True
        self.fallback = ()
        return False

    def answered(self, target: Target, now: float) -> None:
        """A 2xx came back: the call's load is confirmed (``ds_load_update``)."""
        if self.counts_load:
            self.router.calls.on_confirmed(self.call_id, now)
        dest = target.handle
        if self.is_call and self.winner is None and isinstance(dest, Destination):
            self.winner = dest
            dest.calls_answered += 1
            dest.observe_setup(now - self.branch_at)

    def cancelled(self, now: float) -> None:
        """The caller sent CANCEL: counted on the destination the call was at."""
        if not self.was_cancelled:
            self.was_cancelled = True
            if self.is_call:
                self.current.calls_cancelled += 1

    def finished(self, status: int, now: float) -> None:
        """The final response went upstream: a failure (or CANCEL's 487) releases
        the call's load (``ds_load_unset``); a 2xx keeps it until the BYE. A call's
        set-up time is counted, and it goes to the call log unless it simply
        succeeded (or the log takes every call)."""
        ruri = self.request.uri_text
        self.request = RELEASED  # no target is made after the final
        if self.counts_load and status >= 300:
            self.router.calls.on_released(self.call_id)
        if not self.is_call:
            return
        router = self.router
        router.setup_times.observe(now - self.started)
        failures = self.failures
        if status >= 600 and not self.was_cancelled:
            # A 6xx ends the call at once, without a failover decision.
            self.current.count_rejected(status)
            self.current.observe_setup(now - self.branch_at)
        sink = router.call_log
        if sink is None or (
            failures is None and status < 300 and not router.log_all and not self.fell_back
        ):
            return  # a simple success: nothing is made for the log
        sink(self._record(status, ruri, now))

    def _record(self, status: int, ruri: str, now: float) -> CallRecord:
        attempts = [
            Attempt(d.uri, code, timeout, d.setid) for d, code, timeout in self.failures or ()
        ]
        last = self.failures[-1][0] if self.failures else None
        if self.winner is not None:
            attempts.append(Attempt(self.winner.uri, status, False, self.winner.setid))
        elif self.current is not last:
            attempts.append(Attempt(self.current.uri, status, False, self.current.setid))
        if self.was_cancelled:
            outcome = OUTCOME_CANCELLED
        elif status < 300:
            simple = self.failures is None and not self.fell_back
            outcome = OUTCOME_ANSWERED if simple else OUTCOME_FAILED_OVER
        elif attempts and attempts[-1].timeout:
            outcome = OUTCOME_TIMEOUT
        else:
            outcome = OUTCOME_REJECTED
        source = self.source if self.source is not None else Addr("udp", "", 0)
        return CallRecord(
            self.call_id, source, ruri, status, outcome, tuple(attempts),
            now - self.started, set_id=self.set_id,
        )  # fmt: skip


class DispatchRouter(NativeRouter):
    """Routes requests by the ``[[route]]`` rules over the dispatcher sets.

    Pure: no store, clock, DNS or event loop. Its randomness (algorithms 6, 9, 11,
    15, 115) comes from the ``rng`` given; state changes it makes go to ``state_log``.
    The shell-side dispatcher service loads destination lists and hands them over
    (:meth:`replace`, :meth:`install`).
    """

    def __init__(
        self,
        routes: tuple[RouteRule, ...],
        settings: RouterSettings,
        sets: DispatcherSets,
        rng: random.Random,
        state_log: StateLog,
    ) -> None:
        self.settings = settings
        self.rng = rng
        self.sets = sets
        self.state_log = state_log
        """Where every state change the router makes is recorded."""
        self.generation = 0
        """Incremented by every :meth:`replace`; plans made before look their
        destinations up again by set and URI."""
        self.calls = CallLoadTable(
            sets, hash_expire=settings.hash_expire, hash_initexpire=settings.hash_initexpire
        )
        self.routes: tuple[RouteRule, ...] = ()
        self.counts_calls = False
        """Some rule uses algorithm 10 (dispatcher.list then shows RUNTIME DLGLOAD; every
        call is counted on its destination whatever the algorithm)."""
        self.overload_control = False
        """Some rule (or fallback set) uses algorithm 64: the proxy announces RFC 7339
        overload control in its Via and reads the controls that come back."""
        self.on_overload: Callable[[bool], None] | None = None
        """Told whether :attr:`overload_control` is on whenever the rules change (the
        core's Via and response reading)."""
        self.call_log: CallSink | None = None
        """Where the record of a call that did not simply succeed goes (the shell's
        call log); None: no record is made."""
        self.log_all = False
        """Records for every call, simple successes included (``[log] calls = "all"``)."""
        self.setup_times = SetupTimes()
        """Call set-up times (INVITE to final response)."""
        self.no_destination: dict[int, int] = {}
        """Calls refused because their set had no usable destination, by set."""
        self.fallback_calls: dict[tuple[int, int], int] = {}
        """Calls that went to a fallback set, by (the rule's set, the fallback set): once
        per call and fallback set reached."""
        self._uses_source = False
        self._uses_ruri = False
        """Some rule matches on the R-URI's host or user: only then is it parsed here."""
        self._options: dict[int, tuple[RouteRule, SelectOptions]] = {}
        """Selection options per rule (by its id, with the rule: hashing a frozen
        dataclass runs Python code over every field), made on first use (they
        never change)."""
        self._exact: dict[tuple[str, int], frozenset[int]] = {}
        self._any_port: dict[str, frozenset[int]] = {}
        self._by_ip: dict[str, frozenset[int]] = {}
        self._hops: dict[tuple[str, int], Addr] = {}
        """The next-hop Addr of each resolved destination address (see :meth:`target`)."""
        self._hash_template = (
            parse_hash_template(settings.hash_header)
            if is_hash_template(settings.hash_header)
            else None
        )
        """Algorithm 7's template of several values, when ``hash_header`` is one."""
        self.replace_routes(routes)
        self._index_sources()

    def replace_routes(self, routes: tuple[RouteRule, ...]) -> None:
        """Run on ``routes`` from now on (start-up, and a reload that re-imported the
        Python hooks); plans in flight keep the rule they were made with."""
        self.routes = routes or (DEFAULT_ROUTE,)
        # A hook may pick algorithm 10 for any call.
        self.counts_calls = any(
            r.algorithm == ALGORITHM_CALL_LOAD
            or r.hook is not None
            or any(alg == ALGORITHM_CALL_LOAD for _, alg in r.fallback)
            for r in self.routes
        )
        self.overload_control = any(
            r.algorithm == ALGORITHM_OVERLOAD
            or any(alg == ALGORITHM_OVERLOAD for _, alg in r.fallback)
            for r in self.routes
        )
        if self.on_overload is not None:
            self.on_overload(self.overload_control)
        self._uses_source = any(r.match.source_set is not None for r in self.routes)
        self._uses_ruri = any(
            r.match.domain is not None or r.match.user_prefix is not None for r in self.routes
        )
        self._options = {}

    # -- overload control (RFC 7339, algorithm 64) ------------------------------------

    def overload(self, handle: Any, params: dict[str, str | None], now: float) -> None:
        """A destination's response carried an overload control in our Via (``oc``,
        ``oc-validity``, ``oc-seq``): apply it to the destination."""
        if not isinstance(handle, Destination):
            return
        parsed = parse_via_control(params)
        if parsed is not None:
            self.set_overload(handle, *parsed, now)

    def set_overload(
        self, dest: Destination, rate: int, validity: float, seq: float, now: float
    ) -> bool:
        """Put ``dest`` under overload control: ``rate`` skips in 100 by algorithm 64
        for ``validity`` seconds (negative: the default), if ``seq`` is newer than the
        control in force (Kamailio's ``ds_oc_set_attrs``). The ``ocmin`` and ``ocmax``
        attrs bound the rate."""
        oc = dest.oc
        if oc is None:
            oc = dest.oc = OverloadControl()
        was = oc.active(now)
        low, high = dest.attrs.get_int("ocmin"), dest.attrs.get_int("ocmax") or 100
        if not oc.set(rate, validity, seq, now, self.rng, low=low, high=high):
            return False
        if oc.active(now) != was:
            log.info("set %d %s: overload control %s", dest.setid, dest.uri,
                     f"on, {oc.rate} % of its calls elsewhere" if not was else "off")  # fmt: skip
        return True

    # -- destination list ----------------------------------------------------------

    def replace(self, dests: list[Destination]) -> int:
        """Switch to a freshly loaded destination list (the second half of a reload).

        With ``keep_state_on_reload`` unchanged destinations (same set, URI,
        flags, priority, attrs) keep their state, latency and run-time rweight
        (returns how many); otherwise every destination starts from its flags,
        as Kamailio does. Either way the calls in progress stay counted
        (algorithm 10): the load table is rebound to the new destinations.
        """
        sets = DispatcherSets(dests, self.rng)
        keep = self.settings.keep_state_on_reload
        carried = carry_runtime_state(self.sets, sets) if keep else 0
        self.install(sets)
        log.info(
            "dispatcher reloaded: %d sets, %d destinations (%d kept their state)",
            len(sets),
            len(dests),
            carried,
        )
        return carried

    def install(self, sets: DispatcherSets) -> None:
        """Make ``sets`` the running destination list (after a reload, or
        ``dispatcher.add``/``remove``, which build their sets themselves): plans in
        flight will look their destinations up again, the call-load table is
        rebound and the source addresses re-indexed."""
        self.sets = sets
        self.generation += 1
        self.calls.rebind(sets)
        self._index_sources()

    def current(self, dest: Destination, generation: int) -> Destination | None:
        """``dest`` as it is in the current list: itself when no reload happened since
        ``generation``, else the destination of the same set and URI (None if gone)."""
        if generation == self.generation:
            return dest
        return self.sets.find(dest.setid, dest.uri)

    def is_default(self, dest: Destination) -> bool:
        """``use_default``: the last destination of its set, used whatever its state."""
        if not self.settings.use_default:
            return False
        dset = self.sets.get(dest.setid)
        return dset is not None and len(dset.dests) > 1 and dset.dests[-1] is dest

    def mark(
        self,
        dest: Destination,
        letters: str,
        why: str,
        now: float = 0.0,
        generation: int | None = None,
    ) -> StateChange | None:
        """Set a destination's state as ``ds_mark_dst`` does (``ip``, ``t``, ``tp``...).

        The thresholds apply as in Kamailio (:func:`sipdispatch.health.state.update_state`):
        ``tx`` counts a miss and makes the destination inactive at
        ``probing_threshold``. A destination an operator disabled stays disabled:
        a failed call says nothing about maintenance. ``generation`` (of the plan
        that used ``dest``) maps it to the current list after a reload. A change
        is recorded in the state log (origin ``call``) and returned.
        """
        target = self.current(dest, self.generation if generation is None else generation)
        if target is None or target.state & DS_DISABLED_DST:
            return None
        settings = self.settings
        old = target.state
        transition = update_state(
            old,
            target.probing_count,
            parse_mark_letters(letters),
            probing_threshold=settings.probing_threshold,
            inactive_threshold=settings.inactive_threshold,
        )
        self.sets.set_state(target, transition.state)
        target.probing_count = transition.probing_count
        if target.state == old:
            return None
        change = StateChange(
            target.setid, target.uri, old, target.state, why, now, origin=ORIGIN_CALL
        )
        self.state_log.record(change)
        return change

    def set_state(self, dest: Destination, bits: int, why: str, now: float) -> StateChange | None:
        """An operator's ``dispatcher.set_state``: the state bits replaced as given,
        whatever the destination's state was (how a disabled one is enabled again),
        without the thresholds a failed call goes through (Kamailio's
        ``ds_reinit_state``). A change is recorded (origin ``admin``) and returned."""
        old = dest.state
        self.sets.set_state(dest, bits)
        if dest.state == old:
            return None
        change = StateChange(dest.setid, dest.uri, old, dest.state, why, now, origin=ORIGIN_ADMIN)
        self.state_log.record(change)
        return change

    def adopt_state(
        self, setid: int, uri: str, bits: int, why: str, now: float, origin: str = ORIGIN_CLUSTER
    ) -> StateChange | None:
        """A state another node of the cluster (or another worker process) gave a
        destination: applied as given (as :meth:`set_state`) and recorded with
        ``origin`` (``cluster`` or ``worker``), so it is not sent back. None when the
        destination is not here or already in that state."""
        dest = self.sets.find(setid, uri)
        if dest is None:
            return None
        old = dest.state
        self.sets.set_state(dest, bits)
        if dest.state == old:
            return None
        dest.probing_count = 0
        change = StateChange(dest.setid, dest.uri, old, dest.state, why, now, origin=origin)
        self.state_log.record(change)
        return change

    def expire_calls(self, now: float) -> list[str]:
        """Drop call-load entries past ``hash_expire``/``hash_initexpire`` (the admin
        API calls this before showing loads; selection does it by itself)."""
        return self.calls.expire(now)

    def _index_sources(self) -> None:
        """Addresses of the destinations, for ``match.source_set``
        (``ds_is_from_list``): see :meth:`source_sets`."""
        exact: dict[tuple[str, int], set[int]] = {}
        any_port: dict[str, set[int]] = {}
        by_ip: dict[str, set[int]] = {}
        for dest in self.sets.destinations():
            if dest.addr is None:
                continue  # not resolved (flag 16): no address to match, as Kamailio
            located = dest.located
            addrs = [a.addr for a in located.addresses] if located is not None else [dest.addr]
            for ip, port in addrs:
                exact.setdefault((ip, port), set()).add(dest.setid)
                by_ip.setdefault(ip, set()).add(dest.setid)
                if dest.sip_uri.port is None:
                    any_port.setdefault(ip, set()).add(dest.setid)
        self._exact = {k: frozenset(v) for k, v in exact.items()}
        self._any_port = {k: frozenset(v) for k, v in any_port.items()}
        self._by_ip = {k: frozenset(v) for k, v in by_ip.items()}

    def addresses_changed(self) -> None:
        """A destination's resolved address changed (an unresolved host resolved, or
        the DNS answer of one located by DNS changed): index the source addresses
        again."""
        self._index_sources()

    def is_destination_ip(self, ip: str) -> bool:
        """Whether ``ip`` is the address of a destination of any set (resolved)."""
        return ip in self._by_ip

    def source_sets(self, source: Addr) -> frozenset[int]:
        """The sets ``source`` belongs to (Kamailio ``ds_is_from_list``): a destination
        with the source's IP and port, or its IP when the destination URI names no
        port (Kamailio: port 0 matches any); over TCP/TLS the IP alone, since a
        connection's source port is ephemeral."""
        host = source.host
        found = self._exact.get((host, source.port), _NO_SETS)
        extra = self._by_ip.get(host) if source.reliable else self._any_port.get(host)
        return found | extra if extra else found

    # -- Router interface --------------------------------------------------------

    def route(self, request: Request, source: Addr, now: float) -> Plan | Reject:
        """``request_route``: the first matching rule's selection, or 404 when none matches."""
        domain, user = _ruri_parts(request) if self._uses_ruri else _NO_RURI
        method = request.method
        sources = self.source_sets(source) if self._uses_source else _NO_SETS
        for rule in self.routes:
            wanted = rule.match.source_set
            if wanted is not None and wanted not in sources:
                continue
            if rule.matches(method, domain, user, wanted):
                hook = rule.hook
                if hook is None:
                    return self._dispatch(rule, request, source, now)
                decided = hook(RequestView(request, source, self))
                if decided is None:
                    continue  # the hook passes: the next rule
                if isinstance(decided, Reject):
                    return decided
                return self._dispatch(rule, request, source, now, decided)
        return NO_ROUTE

    def _context(self, alg: int, request: Request, now: float) -> SelectContext:
        # Only what this rule's algorithm hashes is read from the request.
        header_value: Callable[[str], str | None] | None = None
        if alg == ALGORITHM_HASH_HEADER and self.settings.hash_header:
            template = self._hash_template
            if template is not None:

                def header_value(name: str) -> str | None:
                    return render_hash_template(template, request)

            else:

                def header_value(name: str) -> str | None:
                    return request.get(header_key(name))

        return SelectContext(
            call_id=request.call_id,
            from_uri=_uri_of(request.get("from")) if alg == ALGORITHM_HASH_FROM else "",
            to_uri=_uri_of(request.get("to")) if alg == ALGORITHM_HASH_TO else "",
            ruri=request.uri_text,
            auth_username=_auth_username(request) if alg == ALGORITHM_HASH_AUTH else None,
            header_value=header_value,
            now=now,
            method=request.method,
        )

    def _dispatch(
        self,
        rule: RouteRule,
        request: Request,
        source: Addr,
        now: float,
        hook: HookRoute | None = None,
    ) -> Plan | Reject:
        calls = self.calls
        set_id = rule.set_id
        alg = rule.algorithm
        if hook is not None:
            if hook.set_id is not None:
                set_id = hook.set_id
            if hook.algorithm is not None:
                alg = hook.algorithm
        # Every call counts on its destination while in progress (RUNTIME DLGLOAD,
        # metrics); algorithm 10 also selects by it.
        counts_load = request.method == "INVITE"
        if counts_load:
            deadline = calls.next_deadline()
            if deadline is not None and deadline <= now:
                calls.expire(now)
        known = self._options.get(id(rule))
        if known is not None and known[0] is rule:
            opts = known[1]
        else:
            d = self.settings
            opts = SelectOptions(
                limit=rule.limit,
                use_default=d.use_default,
                hash_user_only=d.hash_user_only,
                hash_header=d.hash_header,
                rng=self.rng,
            )
            self._options[id(rule)] = (rule, opts)
        fallback = rule.fallback
        if hook is not None and (fallback or hook.fallback is not None):
            fallback = _hook_fallback(hook, fallback, set_id, alg)
        selection = select_with(self.sets, set_id, alg, self._context(alg, request, now), opts)
        dests = selection.targets
        parallel = selection.parallel
        first_alg = alg
        if not dests and fallback:
            # Kamailio's ds_select_routes: a rule's set with nothing usable adds nothing
            # to the list, and the next set's destinations come first.
            dests, fallback, first_alg = self._first_fallback(fallback, request, now, rule.limit)
            parallel = False
        if not dests:
            if counts_load:
                self.no_destination[set_id] = self.no_destination.get(set_id, 0) + 1
            return Reject(rule.no_destination, NO_DESTINATION_REASON, OUTCOME_NO_DESTINATION)
        if counts_load:
            calls.on_invite_sent(request.call_id, dests[0], now, first_alg == ALGORITHM_CALL_LOAD)
        plan = DispatchPlan(
            self, rule, dests, parallel, request, counts_load, source, now, hook,
            set_id, first_alg, fallback,
        )  # fmt: skip
        if counts_load and calls.share is not None:
            plan.hold = calls.take_hold()
        return plan

    def select_fallback(
        self, set_id: int, alg: int, request: Request, now: float, limit: int
    ) -> tuple[Destination, ...]:
        """The failover list of fallback set ``set_id`` with algorithm ``alg``, at most
        ``limit`` long (0 = no limit). A fallback set is tried one destination at a
        time: the list of algorithm 12 (which only a hook's bare set id can give it) is
        its usable destinations in set order."""
        d = self.settings
        opts = SelectOptions(
            limit=limit,
            use_default=d.use_default,
            hash_user_only=d.hash_user_only,
            hash_header=d.hash_header,
            rng=self.rng,
        )
        context = self._context(alg, request, now)
        return select_with(self.sets, set_id, alg, context, opts).targets

    def _first_fallback(
        self, fallback: tuple[tuple[int, int], ...], request: Request, now: float, limit: int
    ) -> tuple[tuple[Destination, ...], tuple[tuple[int, int], ...], int]:
        """The first fallback set with something usable: (its failover list, the
        fallback sets after it, its algorithm); ``()`` when none has anything."""
        for i, (set_id, alg) in enumerate(fallback):
            dests = self.select_fallback(set_id, alg, request, now, limit)
            if dests:
                return dests, fallback[i + 1 :], alg
        return (), (), 0

    def count_fallback(self, rule_set: int, set_id: int) -> None:
        """A call went to fallback set ``set_id`` of a rule (or hook) routing to
        ``rule_set``."""
        key = (rule_set, set_id)
        self.fallback_calls[key] = self.fallback_calls.get(key, 0) + 1

    def target(
        self,
        dest: Destination,
        rule: RouteRule,
        request: Request,
        hook: HookRoute | None = None,
        addr: tuple[str, int] | None = None,
    ) -> Target:
        """Where a request goes for ``dest``: its resolved address (``addr``: one of
        the addresses of a destination located by DNS), and a new R-URI when the rule
        is ``mode = "domain"``, the destination has ``prefix``/``strip`` or the rule's
        hook gave a user; the hook's headers go with it."""
        dest.dispatched += 1
        if addr is None:
            addr = dest.addr
        if addr is not None and dest.transport != "tls":
            # One Addr per resolved address, kept: a named tuple is made by
            # interpreted code, dearer than the lookup.
            hops = self._hops
            hop = hops.get(addr)
            if hop is None or hop.transport != dest.transport:
                if len(hops) >= _HOPS_KEPT:
                    hops.clear()
                hop = hops[addr] = Addr(dest.transport, addr[0], addr[1])
        else:
            # Flag 16, or TLS: the shell resolves the name and checks that the
            # destination's certificate names it.
            hop = Addr(dest.transport, dest.host, dest.port)
        attrs = dest.attrs
        domain = rule.mode == "domain"
        if hook is not None:
            user = hook.user
            if not (domain or attrs.prefix or attrs.strip or user is not None):
                return Target(hop, None, dest, hook.headers)
            return Target(hop, _rewrite_ruri(request, dest, domain, user), dest, hook.headers)
        if not (domain or attrs.prefix or attrs.strip):
            return Target(hop, None, dest)
        return Target(hop, _rewrite_ruri(request, dest, domain), dest)

    def in_dialog(self, request: Request, now: float) -> None:
        """A BYE ends the call's load (``ds_load_update`` on BYE); in a cluster, also
        a call another node counted (the BYE may come here after the VIP moved)."""
        if request.method != "BYE":
            return
        calls = self.calls
        if len(calls) or (calls.share is not None and self.counts_calls):
            calls.on_released(request.call_id, self.counts_calls)


def _hook_fallback(
    hook: HookRoute, rule_fallback: tuple[tuple[int, int], ...], set_id: int, alg: int
) -> tuple[tuple[int, int], ...]:
    """The fallback sets of a call a hook routed to ``set_id`` with ``alg``: the hook's
    own (a set without algorithm takes ``alg``), else the rule's; never ``set_id``
    itself (the rule's fallback may name the set the hook chose)."""
    given = hook.fallback
    if given is None:
        return tuple(f for f in rule_fallback if f[0] != set_id)
    return tuple((s, alg if a is None else a) for s, a in given if s != set_id)


def _rewrite_ruri(
    request: Request, dest: Destination, domain: bool, user: str | None = None
) -> str | None:
    """The R-URI for ``dest``: host:port replaced (``ds_select_domain``) and/or the
    user part replaced by a hook's ``user``, then rewritten by ``strip`` then
    ``prefix``; None to keep it as it is."""
    attrs = dest.attrs
    rewrite_user = bool(attrs.prefix or attrs.strip)
    text = request.uri_text
    if _is_tel(text):
        # A tel: URI has no host to replace; its number is the "user".
        if not rewrite_user and user is None:
            return None
        number, sep, params = text[4:].partition(";")
        if user is not None:
            number = user
        if rewrite_user:
            number = attrs.rewrite_user(number) or ""
        return f"{text[:4]}{number}{sep}{params}"
    try:
        uri = request.uri.copy()
    except ParseError:
        return None
    if domain:
        target = dest.sip_uri
        uri.host, uri.port = target.host, target.port
        transport = target.params.get("transport")
        if transport:
            uri.params["transport"] = transport
    if user is not None:
        uri.user = user
    if rewrite_user:
        uri.user = attrs.rewrite_user(uri.user) or None
    return str(uri)
