"""Errors of the SIP layer.

:class:`ParseError` is the peer's fault: a malformed message; it carries the status
a reply should use. (The core raises nothing else on purpose: what the program asks
of it is checked by the types.)
"""

from __future__ import annotations


class SipError(Exception):
    """Base class of every error raised by :mod:`sipdispatch.sip`."""


class ParseError(SipError):
    """The peer sent something that is not valid SIP.

    ``status`` is the response code a stateless reply should carry (400, or 513
    for an over-size message) and ``reason`` a short phrase that says what is wrong,
    fit to be sent as the reason phrase.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.start_line: str | None = None
        """The start line, when the message got that far (to build a 400)."""
        self.headers: list[tuple[str, str, str]] | None = None
        """The parsed headers, when the message got that far (to build a 400)."""
