"""Destinations and their ``attrs``, as in Kamailio's dispatcher.

A :class:`Destination` is one line of ``dispatcher.list`` (or one row of the
``dispatcher`` table): set id, SIP URI, flags, priority, attrs and description,
plus the run-time fields Kamailio keeps per destination (state bits, latency
statistics, call load, the resolved address).

Attrs follow Kamailio's ``ds_set_attrs`` (``dispatch.c``): ``name=value`` pairs
separated by ``;``, names compared case-insensitively, a trailing ``;`` dropped
from the body, the last occurrence of a name winning. Beyond Kamailio:
``prefix`` and ``strip``, and bad values of known keys are errors
instead of being logged and ignored (see docs/dispatcher.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from sipdispatch.dispatcher.addresses import LocatedAddresses
from sipdispatch.dispatcher.errors import AttrsError
from sipdispatch.dispatcher.latency import TRAINING_COUNT, LatencyStats
from sipdispatch.dispatcher.overload import OverloadControl
from sipdispatch.dispatcher.states import DS_NODNSARES_DST, DS_SKIP_MASK, DS_STATES_ALL, flags_text
from sipdispatch.sip.errors import ParseError
from sipdispatch.sip.uri import SipUri, parse_hostport, parse_uri

WEIGHT_MAX: Final = 100
"""Kamailio: ``weight`` and ``rweight`` must be 1..100 (0 = not set)."""

SETUP_RING: Final = 64
"""Call set-up times a destination keeps (the newest)."""
SOCKET_PROTOS: Final = frozenset({"udp", "tcp", "tls", "sctp", "ws", "wss"})
"""Protocols Kamailio's ``parse_phostport`` accepts in ``socket=proto:host:port``."""


@dataclass(frozen=True, slots=True)
class SocketAddr:
    """A parsed ``socket=`` attribute: ``[proto:]host[:port]``."""

    proto: str | None
    """Lower-cased protocol, or None when the value names none."""
    host: str
    """Local address (IPv6 without brackets) or name."""
    port: int | None
    """Port, or None when the value names none."""


def parse_socket(text: str) -> SocketAddr:
    """Parse ``[proto:]host[:port]`` (IPv6 bracketed) as Kamailio's ``parse_phostport``.

    Raises :class:`AttrsError` when malformed.
    """
    proto: str | None = None
    rest = text
    head, sep, tail = text.partition(":")
    if sep and head.lower() in SOCKET_PROTOS:
        proto, rest = head.lower(), tail
    try:
        host, port = parse_hostport(rest, "socket")
    except ParseError as exc:
        raise AttrsError(f"socket={text}: {exc}; expected [proto:]host[:port]") from None
    return SocketAddr(proto, host, port)


def _split_params(text: str) -> list[tuple[str, str | None]]:
    """Split ``a=1;b="x;y";c`` into ordered (name, value) pairs.

    Whitespace around names and values is dropped; a double-quoted value may hold
    ``;`` and loses its quotes (Kamailio's ``parse_params``); empty items are
    skipped.
    """
    pairs: list[tuple[str, str | None]] = []
    i = 0
    n = len(text)
    while i < n:
        j = i
        while j < n and text[j] not in "=;":
            j += 1
        name = text[i:j].strip()
        value: str | None = None
        if j < n and text[j] == "=":
            k = j + 1
            while k < n and text[k] in " \t":
                k += 1
            if k < n and text[k] == '"':
                end = text.find('"', k + 1)
                if end < 0:
                    raise AttrsError(f"{name}: unterminated quoted value")
                value = text[k + 1 : end]
                j = end + 1
                while j < n and text[j] in " \t":
                    j += 1
                if j < n and text[j] != ";":
                    raise AttrsError(f"{name}: junk after quoted value")
            else:
                end = text.find(";", k)
                if end < 0:
                    end = n
                value = text[k:end].strip()
                j = end
        if name:
            pairs.append((name, value))
        elif value is not None:
            raise AttrsError(f"attribute without a name: ={value}")
        i = j + 1
    return pairs


def _int_value(name: str, value: str | None, low: int, high: int | None) -> int:
    allowed = f"an integer {low}..{high}" if high is not None else f"an integer >= {low}"
    # isascii: isdigit alone takes '¹', which int() rejects
    if value is None or not value.isascii() or not value.lstrip("+-").isdigit():
        raise AttrsError(f"{name}={value or ''}: must be {allowed}")
    number = int(value)
    if number < low or (high is not None and number > high):
        raise AttrsError(f"{name}={value}: must be {allowed}")
    return number


@dataclass(frozen=True, slots=True)
class Attrs:
    """Parsed destination attributes (the ``attrs`` column).

    Known keys are typed; every pair, known or not, is kept in ``pairs`` in the
    order written, and the unknown ones also in ``extra``. ``body`` is the string
    as given (trailing ``;`` dropped, as Kamailio) for display.
    """

    body: str = ""
    """The attrs string as written, trailing ``;`` removed."""
    duid: str | None = None
    """Destination unique id (call load, algorithm 10; ``set_duid_state``)."""
    maxload: int = 0
    """Call limit for algorithm 10; 0 = no limit."""
    weight: int = 0
    """Percentage for algorithm 9 (1..100); 0 = not set."""
    rweight: int = 0
    """Relative weight for algorithm 11 (1..100); 0 = not set."""
    cc: int = 0
    """Congestion control (``cc=1``): rweight follows latency (algorithms 11, 13)."""
    latency: int | None = None
    """Initial latency estimate in ms (seeds the latency stats)."""
    ping_from: str | None = None
    """From URI of this destination's OPTIONS pings."""
    socket: str | None = None
    """Local socket to send from, ``proto:host:port``."""
    prefix: str = ""
    """sipdispatch: prepended to the R-URI user when this destination is used."""
    strip: int = 0
    """sipdispatch: leading R-URI user characters removed before ``prefix``."""
    pairs: tuple[tuple[str, str | None], ...] = ()
    """Every ``name=value`` pair in order, names as written."""
    extra: tuple[tuple[str, str | None], ...] = ()
    """The pairs whose name is not a key listed above, in order."""

    @classmethod
    def parse(cls, text: str | None) -> Attrs:
        """Parse an attrs string; None or empty gives empty attrs.

        Raises :class:`AttrsError` naming the key and value when a known key has a
        value that cannot be used.
        """
        if not text:
            return EMPTY_ATTRS
        body = text.strip()
        if body.endswith(";"):
            body = body[:-1]
        if not body:
            return EMPTY_ATTRS
        pairs = _split_params(body)
        duid: str | None = None
        maxload = weight = rweight = cc = strip = 0
        latency: int | None = None
        ping_from: str | None = None
        socket: str | None = None
        prefix = ""
        extra: list[tuple[str, str | None]] = []
        for name, value in pairs:
            key = name.lower()
            if key == "duid":
                if not value:
                    raise AttrsError("duid: must not be empty")
                duid = value
            elif key == "maxload":
                maxload = _int_value(name, value, 0, None)
            elif key == "weight":
                weight = _int_value(name, value, 0, WEIGHT_MAX)
            elif key == "rweight":
                rweight = _int_value(name, value, 0, WEIGHT_MAX)
            elif key == "cc":
                cc = _int_value(name, value, 0, 1)
            elif key == "latency":
                latency = _int_value(name, value, 0, None)
            elif key == "ping_from":
                if not value:
                    raise AttrsError("ping_from: must be a SIP URI")
                try:
                    parse_uri(value)
                except ParseError as exc:
                    raise AttrsError(f"ping_from={value}: {exc}") from None
                ping_from = value
            elif key == "socket":
                if not value:
                    raise AttrsError("socket: must be [proto:]host[:port]")
                parse_socket(value)
                socket = value
            elif key == "prefix":
                if not value:
                    raise AttrsError("prefix: must not be empty")
                prefix = value
            elif key == "strip":
                strip = _int_value(name, value, 0, None)
            else:
                extra.append((name, value))
        return cls(
            body=body, duid=duid, maxload=maxload, weight=weight, rweight=rweight,
            cc=cc, latency=latency, ping_from=ping_from, socket=socket,
            prefix=prefix, strip=strip, pairs=tuple(pairs), extra=tuple(extra),
        )  # fmt: skip

    def get(self, name: str) -> str | None:
        """The value of attribute ``name`` (any key, case-insensitive; last wins)."""
        key = name.lower()
        found: str | None = None
        for n, v in self.pairs:
            if n.lower() == key:
                found = v
        return found

    def get_int(self, name: str) -> int:
        """Attribute ``name`` as an integer; 0 when absent or not one."""
        value = self.get(name)
        try:
            return int(value) if value else 0
        except ValueError:
            return 0

    @property
    def socket_addr(self) -> SocketAddr | None:
        """The ``socket`` attribute parsed, or None."""
        return parse_socket(self.socket) if self.socket else None

    def rewrite_user(self, user: str | None) -> str | None:
        """Apply ``strip`` then ``prefix`` to an R-URI user part (None stays None
        unless a prefix is set)."""
        if not self.strip and not self.prefix:
            return user
        rest = (user or "")[self.strip :]
        out = self.prefix + rest
        return out if out or user is not None else None


EMPTY_ATTRS: Final = Attrs()
"""Attrs of a destination that has none."""


@dataclass(slots=True, eq=False)
class Destination:
    """One destination of a set, with Kamailio's run-time fields.

    Identity is the object (``eq=False``): two lines with the same URI are two
    destinations, as in Kamailio.
    """

    setid: int
    """Set (group) id."""
    uri: str
    """Destination URI text as loaded (``sip:`` prepended when it had no scheme)."""
    sip_uri: SipUri
    """The URI parsed."""
    flags: int = 0
    """The ``flags`` column as loaded: initial state bits (see :mod:`.states`)."""
    priority: int = 0
    """Priority: higher first in the set."""
    attrs: Attrs = EMPTY_ATTRS
    """Parsed attrs."""
    description: str = ""
    """Free text (the table's ``description`` column; rest of a list-file line)."""
    where: str = ""
    """Where it was loaded from (``file:line`` / ``row id=N``), for messages."""

    state: int = field(init=False)
    """Run-time state bits (``DS_*_DST``); starts as ``flags``."""
    probing_count: int = field(init=False, default=0)
    """Consecutive failed (or, when inactive, answered) pings, as Kamailio's."""
    latency: LatencyStats = field(init=False)
    """Ping latency statistics."""
    dlg_load: int = field(init=False, default=0)
    """Calls in progress through this destination (algorithm 10)."""
    dispatched: int = field(init=False, default=0)
    """Requests sent to this destination since it was loaded (metrics)."""
    calls_answered: int = field(init=False, default=0)
    """Calls (INVITEs) it answered with 2xx (metrics)."""
    calls_timeout: int = field(init=False, default=0)
    """Calls it did not answer before the timer."""
    calls_cancelled: int = field(init=False, default=0)
    """Calls the caller cancelled while they were at this destination."""
    calls_rejected: list[int] = field(init=False, default_factory=lambda: [0, 0, 0, 0])
    """Calls it rejected, by class: 3xx, 4xx, 5xx, 6xx."""
    setup_times: list[float] = field(init=False, default_factory=lambda: [0.0] * SETUP_RING)
    """The last :data:`SETUP_RING` call set-up times here (seconds from the INVITE sent to
    it to its final response, answered or rejected), as a ring: the console's
    recent median and 90th percentile."""
    setup_count: int = field(init=False, default=0)
    """Set-up times observed since it was loaded (the next one goes to index
    ``setup_count % SETUP_RING``)."""
    rweight: int = field(init=False)
    """Run-time relative weight: ``attrs.rweight``, changed by congestion control."""
    rpriority: int = field(init=False, default=0)
    """Algorithm 13's last computed latency-adjusted priority."""
    addr: tuple[str, int] | None = field(init=False, default=None)
    """Resolved (IP, port) to send to; None until resolved (or flag 16)."""
    unresolved: str | None = field(init=False, default=None)
    """Why its host did not resolve at start (it is then inactive and gets no calls nor
    pings until it resolves); None once resolved."""
    transport: str = field(init=False)
    """``udp``/``tcp``/``tls`` from the URI's transport parameter or scheme."""
    oc: OverloadControl | None = field(init=False, default=None)
    """Overload control in force or last in force (RFC 7339, algorithm 64); None when
    none was ever set."""
    located: LocatedAddresses | None = field(init=False, default=None)
    """For a destination located by DNS (:attr:`by_dns`): the last good answer, its
    addresses in order; ``addr`` is then the first of them. None otherwise."""
    iuid: str = field(init=False, default="")
    """Kamailio's internal unique id of the loaded destination (``IUID`` in
    ``dispatcher.list``), given by whoever loads it (a reload gives new ones); "" until
    then."""

    def __post_init__(self) -> None:
        self.state = self.flags & DS_STATES_ALL
        self.latency = LatencyStats()
        if self.attrs.latency is not None:
            self.latency.seed(self.attrs.latency, TRAINING_COUNT)
        self.rweight = self.attrs.rweight
        self.transport = self.sip_uri.transport

    @property
    def key(self) -> str:
        """Call-load identity: ``duid`` when set, else the URI."""
        return self.attrs.duid or self.uri

    @property
    def host(self) -> str:
        """Host of the URI (IPv6 without brackets)."""
        return self.sip_uri.host

    @property
    def port(self) -> int:
        """Port of the URI, or the scheme's default."""
        return self.sip_uri.effective_port

    @property
    def by_dns(self) -> bool:
        """Located by DNS (NAPTR, SRV, then A/AAAA): a host name, not an IP address,
        with no port, over UDP or TCP (not TLS), and not flag 16."""
        uri = self.sip_uri
        if uri.port is not None or self.flags & DS_NODNSARES_DST or self.transport == "tls":
            return False
        if self.transport not in ("udp", "tcp"):
            return False
        try:
            ipaddress.ip_address(uri.host)
        except ValueError:
            return True
        return False

    @property
    def transport_given(self) -> bool:
        """The URI names its transport (``;transport=``): DNS may not pick another."""
        return bool(self.sip_uri.params.get("transport"))

    def use_located(self, located: LocatedAddresses) -> None:
        """Take the addresses DNS gave (a first answer, or a changed one): ``addr``
        becomes the first and ``transport`` the one NAPTR chose; the down marks of the
        addresses still there are kept."""
        if self.located is not None:
            located.carry_down(self.located)
        self.located = located
        first = located.first
        self.addr = first.addr
        self.transport = first.transport

    def count_rejected(self, status: int) -> None:
        """Count a call this destination rejected with ``status`` (300..699)."""
        index = status // 100 - 3
        if 0 <= index < 4:
            self.calls_rejected[index] += 1

    def observe_setup(self, seconds: float) -> None:
        """Keep one call's set-up time (its INVITE here to the final response)."""
        self.setup_times[self.setup_count % SETUP_RING] = seconds
        self.setup_count += 1

    def is_usable(self) -> bool:
        """Not inactive and not disabled (Kamailio ``!ds_skip_dst``); trying is usable."""
        return not self.state & DS_SKIP_MASK

    def flags_text(self) -> str:
        """Kamailio's two state letters: ``AP``, ``IP``, ``DX``, ``AX``, ``TX``..."""
        return flags_text(self.state)

    def __repr__(self) -> str:
        return f"<Destination {self.setid} {self.uri} {self.flags_text()} prio={self.priority}>"
