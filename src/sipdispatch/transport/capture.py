"""What the shell does with a copy of each SIP message it receives and sends.

Three consumers may want the copies: HEPv3 to a collector (``[capture] hep``,
:mod:`sipdispatch.transport.hep`), pcap files an operator starts and stops
(``capture.start``, :mod:`sipdispatch.transport.pcap`) and the ladder of the last
failed calls the console shows (:class:`Ladder`). :class:`Capture` holds them and
gives the shell one *tap*: ``copy(transport, src, dst, data, now)`` per message, or
None when nothing wants copies (then the shell spends nothing on them).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

from sipdispatch.sip.calls import OUTCOME_ANSWERED, CallRecord
from sipdispatch.transport.handoff import call_id_of
from sipdispatch.transport.hep import HepSender, HepStreamSender
from sipdispatch.transport.pcap import PcapWriter, merge

log: Final = logging.getLogger("sipdispatch.capture")

Address = tuple[str, int]


class Tap(Protocol):
    """Takes a copy of one SIP message going from ``src`` to ``dst``."""

    def copy(self, transport: str, src: Address, dst: Address, data: bytes, now: float) -> None:
        """``now`` is the wall-clock time."""


FILTER_ALL: Final = "all"
FILTER_CALL: Final = "call"
FILTER_SOURCE: Final = "source"
MAX_RECORDINGS: Final = 8
"""Captures that may run at once."""
FILE_PREFIX: Final = "sipdispatch-"
NAME_MAX: Final = 64
_NAME_FIRST: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_REST: Final = _NAME_FIRST | frozenset("._-")


def valid_name(name: str) -> bool:
    """What a capture's name may be (it becomes part of a file name): a letter or digit,
    then up to 63 letters, digits, dots, underscores or dashes."""
    return (
        0 < len(name) <= NAME_MAX
        and name[0] in _NAME_FIRST
        and all(ch in _NAME_REST for ch in name)
    )


class CaptureError(ValueError):
    """A capture that cannot be started or stopped, with the reason."""


def parse_filter(text: str) -> tuple[str, str, int]:
    """``all``, a source (``IP`` or ``IP:PORT``, ``[v6]:PORT``) or a Call-ID as
    ``(kind, value, port)``; port 0 = any."""
    text = text.strip()
    if not text or text.lower() == FILTER_ALL:
        return FILTER_ALL, "", 0
    host, port = text, 0
    if text.startswith("["):
        close = text.find("]")
        if close > 0:
            host = text[1:close]
            rest = text[close + 1 :]
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
            elif rest:
                return FILTER_CALL, text, 0
    elif text.count(":") == 1:
        head, _, tail = text.partition(":")
        if tail.isdigit():
            host, port = head, int(tail)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return FILTER_CALL, text, 0
    if not 0 <= port <= 65535:
        raise CaptureError(f"port {port} out of range")
    return FILTER_SOURCE, str(address), port


@dataclass(slots=True)
class Recording:
    """One running capture to one pcap file."""

    name: str
    path: Path
    kind: str
    value: str
    port: int
    started: float
    until: float
    max_bytes: int
    out: BinaryIO
    writer: PcapWriter
    call_id: bytes = b""
    stopped: str = ""
    """Why it ended (``stopped``, ``time``, ``size``); empty while it runs."""

    def wants(self, src: Address, dst: Address, data: bytes) -> bool:
        kind = self.kind
        if kind == FILTER_ALL:
            return True
        if kind == FILTER_SOURCE:
            value, port = self.value, self.port
            return (src[0] == value and (not port or src[1] == port)) or (
                dst[0] == value and (not port or dst[1] == port)
            )
        return call_id_of(data) == self.call_id

    def describe(self) -> dict[str, Any]:
        return {
            "NAME": self.name,
            "FILE": str(self.path),
            "FILTER": self.kind if self.kind == FILTER_ALL else f"{self.kind} {self.filter_text}",
            "STARTED": self.started,
            "UNTIL": self.until,
            "PACKETS": self.writer.packets,
            "BYTES": self.writer.size,
            "STATE": self.stopped or "running",
        }

    @property
    def filter_text(self) -> str:
        if self.kind != FILTER_SOURCE:
            return self.value
        host = f"[{self.value}]" if ":" in self.value else self.value
        return f"{host}:{self.port}" if self.port else host


@dataclass(slots=True)
class KeptCall:
    """A failed call's record and its messages, as the ladder shows them."""

    record: CallRecord
    at: float
    messages: list[tuple[float, str, Address, Address, bytes]]
    complete: bool = True
    """False when its messages were not looked for (too many failed calls at once)."""


LADDER_RING: Final = 8192
"""Messages the ladder holds, the newest (about 8 MB): a call's messages are found
there when it fails. At 500 calls/s that is a second or two of traffic, at 20 calls/s
a minute: a call that fails after ringing longer than that under load shows only the
messages still held."""
LADDER_MESSAGES: Final = 64
"""Messages kept of one call."""
SCAN_MARGIN: Final = 1.0
"""Seconds before a call's start its messages are looked for (the INVITE is received
a little before the core counts the call's start)."""
SCAN_BURST: Final = 50
SCAN_RATE: Final = 20.0
"""Failed calls per second whose messages are looked for, after a burst of
:data:`SCAN_BURST`: a storm of failures costs a bounded share of a core (each look
reads back over the ring); the calls past it are listed without their messages."""


class Ladder:
    """The messages of the last ``size`` failed calls (a bounded ring).

    Every message the proxy handles goes into a ring of the newest
    :data:`LADDER_RING`, as is: one append, no parse. When a call ends as anything but
    a simple success (its record from the call log), the ring is read back over the
    call's duration for the messages of its Call-ID, and the call is kept with them in
    the ring of the last ``size`` failed calls; the messages that come after its
    record (the ACK of a rejection) are added when it is shown.
    """

    def __init__(self, size: int, ring: int = LADDER_RING) -> None:
        self.size = size
        self.ring: deque[tuple[float, str, Address, Address, bytes]] = deque(maxlen=ring)
        self.kept: OrderedDict[bytes, KeptCall] = OrderedDict()
        self._tokens = float(SCAN_BURST)
        self._refilled = 0.0
        self.skipped = 0
        """Failed calls kept without their messages (too many at once)."""

    def copy(self, transport: str, src: Address, dst: Address, data: bytes, now: float) -> None:
        self.ring.append((now, transport, src, dst, data))

    def _scan(
        self, key: bytes, since: float, after: float | None = None
    ) -> list[tuple[float, str, Address, Address, bytes]]:
        """The ring's messages of Call-ID ``key`` from ``since`` on (newer than
        ``after`` when given), oldest first."""
        found = []
        for item in reversed(self.ring):
            when = item[0]
            if when < since or (after is not None and when <= after):
                break
            data = item[4]
            if key in data and call_id_of(data) == key:
                found.append(item)
        found.reverse()
        return found[:LADDER_MESSAGES]

    def record(self, record: CallRecord, now: float) -> None:
        """A call's record from the call log: a call that did not simply succeed is
        kept with its messages."""
        if record.outcome == OUTCOME_ANSWERED or self.size <= 0:
            return
        key = _key(record.call_id)
        self._tokens = min(float(SCAN_BURST), self._tokens + (now - self._refilled) * SCAN_RATE)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            kept = KeptCall(record, now, self._scan(key, now - record.duration - SCAN_MARGIN))
        else:
            self.skipped += 1
            kept = KeptCall(record, now, [], complete=False)
        self.kept.pop(key, None)
        self.kept[key] = kept
        while len(self.kept) > self.size:
            self.kept.popitem(last=False)

    def calls(self) -> list[KeptCall]:
        """The kept calls, newest first."""
        return list(reversed(self.kept.values()))

    def find(self, call_id: str) -> KeptCall | None:
        """A kept call, with the messages of its Call-ID that came after its record."""
        key = _key(call_id)
        kept = self.kept.get(key)
        if kept is None or not kept.complete:
            return kept
        if len(kept.messages) < LADDER_MESSAGES:
            last = kept.messages[-1][0] if kept.messages else kept.at
            kept.messages.extend(self._scan(key, kept.at, last))
            del kept.messages[LADDER_MESSAGES:]
        return kept


def _key(call_id: str) -> bytes:
    return call_id.encode("latin-1", "replace")  # the core decodes messages as latin-1


class _Fan:
    """Several taps as one."""

    __slots__ = ("taps",)

    def __init__(self, taps: list[Tap]) -> None:
        self.taps = taps

    def copy(self, transport: str, src: Address, dst: Address, data: bytes, now: float) -> None:
        for tap in self.taps:
            tap.copy(transport, src, dst, data, now)


class Capture:
    """The HEP sender, the running pcap captures and the ladder of one process."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        max_seconds: float,
        hep: HepSender | HepStreamSender | None = None,
        ladder: Ladder | None = None,
        suffix: str = "",
        on_change: Callable[[Tap | None], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.hep = hep
        self.ladder = ladder
        self.suffix = suffix
        """Added to every file name (``.w1``: one worker's share of a capture)."""
        self.on_change = on_change
        """Called with the new tap whenever it changes (the shell's ``tap``)."""
        self.clock = clock
        self.running: dict[str, Recording] = {}
        self.ended: OrderedDict[str, Recording] = OrderedDict()
        self._serial = 0
        self.tap: Tap | None = None
        self._update()

    def _update(self) -> None:
        taps: list[Tap] = [t for t in (self.hep, self.ladder) if t is not None]
        if self.running:
            taps.append(self)
        tap: Tap | None
        if not taps:
            tap = None
        elif len(taps) == 1:
            tap = taps[0]
        else:
            tap = _Fan(taps)
        self.tap = tap
        if self.on_change is not None:
            self.on_change(tap)

    def copy(self, transport: str, src: Address, dst: Address, data: bytes, now: float) -> None:
        """The running captures' share of a copy."""
        for rec in list(self.running.values()):
            if now >= rec.until:
                self._end(rec, "time")
                continue
            if not rec.wants(src, dst, data):
                continue
            try:
                rec.writer.write(transport, src, dst, data, now)
            except ValueError:
                continue  # not an IP address
            except OSError as exc:
                log.error("capture %s: cannot write %s: %s", rec.name, rec.path, exc)
                self._end(rec, "error")
                continue
            if rec.writer.size >= rec.max_bytes:
                self._end(rec, "size")

    def new_name(self, now: float) -> str:
        self._serial += 1
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
        return f"{stamp}-{os.getpid() % 100000}-{self._serial}"

    def start(self, what: str, seconds: float | None, name: str | None) -> Recording:
        """Start capturing ``what`` (see :func:`parse_filter`) for ``seconds`` (the
        configured most when None) to a new file. Raises CaptureError."""
        kind, value, port = parse_filter(what)
        if seconds is None:
            seconds = self.max_seconds
        if seconds <= 0 or seconds > self.max_seconds:
            raise CaptureError(f"SECONDS must be 1..{self.max_seconds:g} ([capture] max_seconds)")
        if len(self.running) >= MAX_RECORDINGS:
            raise CaptureError(f"{MAX_RECORDINGS} captures are running already; stop one first")
        now = self.clock()
        if name is None:
            name = self.new_name(now)
        elif not valid_name(name):
            raise CaptureError("NAME must be 1-64 letters, digits, '.', '_' or '-'")
        if name in self.running:
            raise CaptureError(f"capture {name} is running already")
        path = self.directory / f"{FILE_PREFIX}{name}{self.suffix}.pcap"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            out = open(path, "xb", buffering=0)  # noqa: SIM115 (closed by _end)
        except FileExistsError:
            raise CaptureError(f"{path} exists already; choose another NAME") from None
        except OSError as exc:
            raise CaptureError(f"cannot write {path}: {exc.strerror or exc}") from None
        rec = Recording(
            name, path, kind, value, port, now, now + seconds, self.max_bytes, out,
            PcapWriter(out), value.encode("utf-8", "surrogateescape"),
        )  # fmt: skip
        self.running[name] = rec
        self._update()
        log.warning(
            "capture %s started: %s for %gs to %s", name,
            kind if kind == FILTER_ALL else f"{kind} {rec.filter_text}", seconds, path,
        )  # fmt: skip
        return rec

    def stop(self, name: str | None) -> list[Recording]:
        """Stop one capture by name, or every one (``None`` / ``all``); the stopped."""
        if name is None or name == FILTER_ALL:
            stopped = list(self.running.values())
        else:
            rec = self.running.get(name)
            if rec is None:
                raise CaptureError(f"no running capture named {name}")
            stopped = [rec]
        for rec in stopped:
            self._end(rec, "stopped")
        return stopped

    def expire(self, now: float) -> None:
        """End the captures whose time is up (called on a timer: a quiet capture ends
        on time too)."""
        for rec in list(self.running.values()):
            if now >= rec.until:
                self._end(rec, "time")

    def _end(self, rec: Recording, why: str) -> None:
        if self.running.pop(rec.name, None) is None:
            return
        rec.stopped = why
        with contextlib.suppress(OSError):
            rec.out.close()
        self.ended[rec.name] = rec
        while len(self.ended) > 32:
            self.ended.popitem(last=False)
        self._update()
        log.warning(
            "capture %s ended (%s): %d packets, %d bytes in %s",
            rec.name, why, rec.writer.packets, rec.writer.size, rec.path,
        )  # fmt: skip

    def close(self) -> None:
        for rec in list(self.running.values()):
            self._end(rec, "stopped")
        if self.hep is not None:
            self.hep.close()


def _where(address: Address) -> str:
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    return f"{host}:{address[1]}"


def call_summary(kept: KeptCall) -> dict[str, Any]:
    """A kept call as the console's list of failed calls shows it."""
    r = kept.record
    return {
        "call_id": r.call_id,
        "at": kept.at,
        "status": r.status,
        "outcome": r.outcome,
        "ruri": r.ruri,
        "source": f"{r.source.transport}:{_where((r.source.host, r.source.port))}",
        "set": r.set_id,
        "attempts": [
            {"destination": a.destination, "status": a.status, "timeout": a.timeout}
            for a in r.attempts
        ],
        "messages": len(kept.messages),
        "complete": kept.complete,
    }


def call_ladder(kept: KeptCall) -> dict[str, Any]:
    """A kept call with its messages, oldest first, as the ladder draws them."""
    out = call_summary(kept)
    shown = []
    for when, transport, src, dst, data in kept.messages:
        text = data.decode("latin-1")
        end = text.find("\r\n")
        shown.append({
            "at": when,
            "transport": transport,
            "src": _where(src),
            "dst": _where(dst),
            "first": text[: end if end >= 0 else len(text)],
            "text": text,
        })  # fmt: skip
    out["messages"] = shown
    return out


def part_name(file: str) -> str:
    """The capture a file name (without the prefix) belongs to: ``NAME.pcap`` or one
    worker's ``NAME.wK.pcap``."""
    stem = file[: -len(".pcap")]
    dot = stem.rfind(".w")
    if dot > 0 and stem[dot + 2 :].isdigit() and stem[dot + 2 :].isascii():
        return stem[:dot]
    return stem


def capture_files(directory: Path) -> dict[str, list[Path]]:
    """The pcap files of the captures under ``directory`` by capture name (one file,
    or one per worker: ``NAME.w0.pcap``, ``NAME.w1.pcap``...)."""
    found: dict[str, list[Path]] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return found
    for path in entries:
        file = path.name
        if not (file.startswith(FILE_PREFIX) and file.endswith(".pcap")) or not path.is_file():
            continue
        name = part_name(file[len(FILE_PREFIX) :])
        if name:
            found.setdefault(name, []).append(path)
    return found


def list_captures(capture: Capture) -> list[dict[str, Any]]:
    """``capture.list``: each capture's files, size and state, newest first."""
    out = []
    for name, paths in capture_files(capture.directory).items():
        size, modified = 0, 0.0
        for path in paths:
            try:
                st = path.stat()
            except OSError:
                continue
            size += st.st_size
            modified = max(modified, st.st_mtime)
        rec = capture.running.get(name) or capture.ended.get(name)
        entry: dict[str, Any] = {
            "NAME": name,
            "FILES": [str(p) for p in paths],
            "BYTES": size,
            "MODIFIED": modified,
            "STATE": "running" if name in capture.running else (rec.stopped if rec else "done"),
        }
        if rec is not None:
            entry["FILTER"] = rec.describe()["FILTER"]
        out.append(entry)
    out.sort(key=lambda e: -float(e["MODIFIED"]))
    return out


def read_capture(directory: Path, name: str) -> bytes | None:
    """The pcap of capture ``name``: its file, or its workers' files merged in time
    order; None when there is no such capture."""
    if not valid_name(name):
        return None
    paths = capture_files(directory).get(name)
    if not paths:
        return None
    parts = []
    for path in paths:
        try:
            parts.append(path.read_bytes())
        except OSError:
            continue
    if len(parts) == 1:
        return parts[0]
    return merge(parts)
