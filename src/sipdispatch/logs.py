"""Log lines: their format (text or one JSON object per line) and the call log.

Every line has a timestamp. The call log takes the :class:`~sipdispatch.sip.calls.CallRecord`
the core and the router make (the core itself formats nothing) and writes one ``info``
line per call on the ``sipdispatch.calls`` logger::

    call a84b4c76e66710 from 192.0.2.4:5060 sip:1111111@proxy: mg1:5060 404 -> mg2:5060 200 (0.21 s)

A call that went on to a fallback set names the set of each attempt where it changes
(``set 1 mg1:5060 503 -> mg2:5060 503 -> set 2 mg3:5060 200``).

With ``[log] format = "json"`` the same call is one JSON object with its fields
(``call_id``, ``source``, ``ruri``, ``status``, ``outcome``, ``attempts``, ``duration``...),
for Loki or ELK.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from sipdispatch.sip.calls import OUTCOME_CANCELLED, Attempt, CallRecord

CALLS_LOGGER: Final = "sipdispatch.calls"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

calls_log = logging.getLogger(CALLS_LOGGER)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _short(uri: str) -> str:
    """A destination as the text line shows it: its URI without ``sip:``."""
    scheme, sep, rest = uri.partition(":")
    return rest if sep and scheme.lower() in ("sip", "sips") else uri


def _attempts_text(record: CallRecord) -> str:
    """``mg1:5060 404 -> mg2:5060 200``; when a call left its set for a fallback set,
    each set is named where the attempts enter it (``set 1 mg1:5060 503 -> set 2
    mg3:5060 200``)."""
    attempts = record.attempts
    named = any(a.set_id is not None and a.set_id != record.set_id for a in attempts)
    parts = []
    previous: int | None = None
    for i, a in enumerate(attempts):
        text = f"{_short(a.destination)} {'timeout' if a.timeout else a.status or 'no answer'}"
        if named and a.set_id is not None and (i == 0 or a.set_id != previous):
            text = f"set {a.set_id} {text}"
        previous = a.set_id
        parts.append(text)
    return " -> ".join(parts)


def call_text(record: CallRecord) -> str:
    """The text line of a call."""
    head = f"call {record.call_id} from {_hostport(record.source.host, record.source.port)}"
    body = _attempts_text(record)
    last = record.attempts[-1] if record.attempts else None
    if last is None:
        reason = f" {record.reason}" if record.reason else ""
        body = f"{record.status}{reason}"
    elif last.status != record.status:
        body += f", {record.status} upstream"
    if record.outcome == OUTCOME_CANCELLED:
        body += ", cancelled"
    return f"{head} {record.ruri}: {body} ({record.duration:.2f} s)"


def _attempt_fields(attempt: Attempt) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "destination": attempt.destination,
        "status": attempt.status,
        "timeout": attempt.timeout,
    }
    if attempt.set_id is not None:
        fields["set"] = attempt.set_id  # the router's attempts always know it
    return fields


def call_fields(record: CallRecord) -> dict[str, Any]:
    """The JSON fields of a call."""
    return {
        "call_id": record.call_id,
        "source": _hostport(record.source.host, record.source.port),
        "transport": record.source.transport,
        "ruri": record.ruri,
        "status": record.status,
        "reason": record.reason,
        "outcome": record.outcome,
        "set": record.set_id,
        "attempts": [_attempt_fields(a) for a in record.attempts],
        "duration": round(record.duration, 6),
    }


class CallLog:
    """The sink the core and the router hand their call records to."""

    def __init__(self, logger: logging.Logger = calls_log) -> None:
        self.logger = logger
        self.written = 0
        """Records written."""

    def __call__(self, record: CallRecord) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        self.written += 1
        logger.info("%s", _Lazy(record), extra={"call": record})


class _Lazy:
    """Formats the call's text only when a handler asks for the message."""

    __slots__ = ("record",)

    def __init__(self, record: CallRecord) -> None:
        self.record = record

    def __str__(self) -> str:
        return call_text(self.record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, and the
    call's fields for a call log line."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        call = getattr(record, "call", None)
        if isinstance(call, CallRecord):
            out["event"] = "call"
            out.update(call_fields(call))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``[log] format``: ``text`` or ``json``."""
    if fmt == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def setup_logging(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Log to stderr (or ``stream``) at ``level`` in format ``fmt``, replacing any handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


class _Tag(logging.Filter):
    """Starts every message with ``tag: `` (which worker process wrote the line)."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.prefix = f"{tag}: "

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and not record.msg.startswith(self.prefix):
            record.msg = self.prefix + record.msg
        return True


def tag_lines(tag: str) -> None:
    """Start every log line of this process with ``tag: `` (the root handlers')."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Tag(tag))


def announce(logger: logging.Logger, message: str, stream: TextIO | None = None) -> None:
    """Write ``message`` as an ``info`` line of ``logger`` whatever the log level (the
    ready line: scripts wait for it), through the root handlers' format; to ``stream``
    (stderr), with a timestamp, when no handler is set up."""
    record = logger.makeRecord(logger.name, logging.INFO, "", 0, message, (), None)
    handlers = logging.getLogger().handlers
    if handlers:
        for handler in handlers:
            handler.handle(record)
        return
    out = stream if stream is not None else sys.stderr
    print(logging.Formatter(TEXT_FORMAT).format(record), file=out, flush=True)
