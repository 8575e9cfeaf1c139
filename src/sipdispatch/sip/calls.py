"""What the call log needs to know of one call: a small record, made by the core.

A call (an out-of-dialog INVITE) ends in one final response sent upstream. Where
that answer is decided -- the router's plan for a dispatched call, the proxy core
for a request it rejects itself -- a :class:`CallRecord` is made and handed to an
injected callback; the shell formats and writes it. Nothing here formats text or
does I/O, and no record is made at all when no callback is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from sipdispatch.sip.addr import Addr

OUTCOME_ANSWERED: Final = "answered"
"""The first destination answered 2xx."""
OUTCOME_FAILED_OVER: Final = "failed_over"
"""A 2xx came from a destination tried after another failed, or from a fallback set."""
OUTCOME_REJECTED: Final = "rejected"
"""A final response of 300 or more went upstream (from a destination or from us)."""
OUTCOME_TIMEOUT: Final = "timeout"
"""The last destination tried never answered; the caller got 408."""
OUTCOME_CANCELLED: Final = "cancelled"
"""The caller sent CANCEL before a final answer."""
OUTCOME_NO_DESTINATION: Final = "no_destination"
"""The set had no usable destination."""
OUTCOME_NO_ROUTE: Final = "no_route"
"""No ``[[route]]`` rule matched."""
OUTCOME_NOT_HERE: Final = "not_here"
"""An in-dialog request without a route set (404 Not here)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One destination a call was sent to, and what it answered."""

    destination: str
    """The destination's URI."""
    status: int
    """Its final status; 0 when it gave none (the call ended elsewhere first)."""
    timeout: bool = False
    """It never answered before the timer (``status`` is then 408)."""
    set_id: int | None = field(default=None, compare=False)
    """The destination set it was tried in (the rule's set, or a fallback set). Not
    compared: an attempt is a destination and its answer, wherever it was listed."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call, once its final response went upstream."""

    call_id: str
    source: Addr
    """Where the INVITE came from."""
    ruri: str
    """The Request-URI as received."""
    status: int
    """The final status sent upstream."""
    outcome: str
    """One of the ``OUTCOME_*`` names."""
    attempts: tuple[Attempt, ...] = ()
    """The destinations tried, in order (empty when rejected before routing)."""
    duration: float = 0.0
    """Seconds from the INVITE to the final response (call set-up time)."""
    reason: str | None = None
    """The reason phrase of a local rejection."""
    set_id: int | None = None
    """The destination set the call was routed to (its rule's, or its hook's), if any;
    an attempt in a fallback set names its own."""

    @property
    def simple_success(self) -> bool:
        """Answered by the first destination tried, nothing else happened."""
        return self.outcome == OUTCOME_ANSWERED


CallSink = Callable[[CallRecord], None]
"""Where the call records go (the shell's call log)."""
