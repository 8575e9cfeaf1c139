"""What the proxy core counts: fixed fields, read by the metrics and the RPC.

Plain integer attributes, incremented where the event happens: cheaper than a
dictionary keyed by strings on the hot path, and the readers see a typed record
instead of parsing key names back.
"""

from __future__ import annotations

from typing import Final

KNOWN_METHODS: Final = frozenset(
    (
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
        "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    )
)  # fmt: skip
"""Methods of RFC 3261 and its extensions, counted one by one; any other method is
counted as ``other`` (a peer inventing methods cannot grow the table)."""
OTHER_METHOD: Final = "other"


class ProxyStats:
    """The proxy core's counters (all start at 0 and only grow)."""

    __slots__ = (
        "branch_timeouts",
        "branch_unreachable",
        "dropped",
        "failovers",
        "internal_errors",
        "parse_errors",
        "relayed_2xx",
        "replies_sent",
        "requests_by_method",
        "rx_replies",
        "rx_requests",
        "rx_retransmissions",
        "tx_replies_stateless",
        "tx_requests",
        "tx_requests_local",
    )

    def __init__(self) -> None:
        self.rx_requests = 0
        """Requests received (parsed)."""
        self.requests_by_method: dict[str, int] = {}
        """Requests received, by method (:data:`KNOWN_METHODS`, else ``other``)."""
        self.rx_replies = 0
        """Responses received (parsed)."""
        self.rx_retransmissions = 0
        """Request retransmissions absorbed by a server transaction."""
        self.replies_sent: dict[int, int] = {}
        """Final responses sent upstream by status code: the proxy's own, and the
        non-2xx it relays (relayed 2xx are in :attr:`relayed_2xx`)."""
        self.relayed_2xx = 0
        """2xx responses relayed upstream (the first of each request)."""
        self.tx_requests = 0
        """Requests sent on: branches, and the ACK and CANCEL the proxy makes for them."""
        self.tx_requests_local = 0
        """Requests of the proxy's own (OPTIONS pings)."""
        self.tx_replies_stateless = 0
        """Responses forwarded without a transaction (RFC 3261 §16.7)."""
        self.parse_errors = 0
        """Messages that did not parse."""
        self.dropped = 0
        """Messages dropped without an answer."""
        self.failovers = 0
        """Requests retried on the next destination."""
        self.branch_timeouts = 0
        """Branches with no final response before the timer."""
        self.branch_unreachable = 0
        """Of those, branches failed at once: their destination answered with ICMP
        unreachable (over UDP)."""
        self.internal_errors = 0
        """Bugs caught while handling a message or a timer."""

    def count_request(self, method: str) -> None:
        """A request was received."""
        self.rx_requests += 1
        key = method if method in KNOWN_METHODS else OTHER_METHOD
        by_method = self.requests_by_method
        by_method[key] = by_method.get(key, 0) + 1

    def count_reply(self, status: int) -> None:
        """A final response with ``status`` was sent upstream."""
        replies = self.replies_sent
        replies[status] = replies.get(status, 0) + 1
