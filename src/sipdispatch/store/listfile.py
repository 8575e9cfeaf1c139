"""A Kamailio ``dispatcher.list`` file as a destination store.

Reading uses :func:`sipdispatch.dispatcher.listfile.parse_list`, so a file is
read exactly as a reload reads it. Editing (``dispatcher add|rm|rmset|rmip``)
rewrites the file with only the affected lines changed: comments, blank lines,
other destinations, their spacing and the file's line endings stay as they
were. The new text is written to a temporary file in the same directory and
renamed over the old one, so a reader sees the old file or the new one, never a
half-written one; the file's permission bits are kept.

**Ids are line numbers** (1-based, as in error messages ``FILE:LINE``):
``rows()`` reports each destination's line, ``remove(id)`` deletes that line and
``add()`` returns the line it appended. Removing a line moves the lines after it
up by one, so ids shown before a removal are stale after it (run ``show``
again).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.errors import DispatcherLoadError
from sipdispatch.dispatcher.listfile import parse_line, parse_list
from sipdispatch.store.base import Row, StoreError, host_matches
from sipdispatch.store.validate import check_new_destination

try:  # POSIX: serialise concurrent editors of one directory
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

ENCODING = "utf-8"
"""Encoding of list files."""


def _fields(dest: Destination | None) -> tuple[object, ...] | None:
    if dest is None:
        return None
    return (dest.setid, dest.uri, dest.flags, dest.priority, dest.attrs.body, dest.description)


def _is_destination_line(line: str) -> bool:
    text = line.strip()
    return bool(text) and not text.startswith("#")


def format_line(
    setid: int, uri: str, flags: int, priority: int, attrs: str, description: str
) -> str:
    """One ``dispatcher.list`` line (without line ending) for these values.

    ``setid uri flags priority [attrs [description]]``; an empty attrs followed by a
    description is written ``""`` (read back as empty).
    """
    fields = [str(setid), uri, str(flags), str(priority)]
    if attrs or description:
        fields.append(attrs or '""')
    if description:
        fields.append(description)
    return " ".join(fields)


class ListFileStore:
    """Destinations in a Kamailio ``dispatcher.list`` file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        """The list file."""
        self._source = os.fspath(path)

    @property
    def location(self) -> str:
        """The file path as given."""
        return self._source

    def ensure_schema(self) -> None:
        """Nothing to prepare for a list file (``add`` creates a missing file)."""

    # -- reading ----------------------------------------------------------------------------

    def _read(self, *, missing_ok: bool = False) -> str:
        try:
            with open(self.path, encoding=ENCODING, newline="") as fh:
                return fh.read()
        except FileNotFoundError:
            if missing_ok:
                return ""
            raise StoreError(f"cannot read list file {self._source}: no such file") from None
        except UnicodeDecodeError as exc:
            raise StoreError(
                f"cannot read list file {self._source}: not {ENCODING} text ({exc.reason} "
                f"at byte {exc.start})"
            ) from None
        except OSError as exc:
            raise StoreError(
                f"cannot read list file {self._source}: {exc.strerror or exc}"
            ) from None

    def load(self) -> list[Destination]:
        """Every destination in file order, ``where`` = ``FILE:LINE``; the first bad
        line raises :class:`DispatcherLoadError`."""
        return parse_list(self._read(), self._source)

    def rows(self) -> list[Row]:
        """Each destination line as a :class:`Row` whose ``id`` is its line number.

        Lines are parsed as a load parses them, so a bad line raises
        :class:`DispatcherLoadError` naming it. ``destination`` is the URI as loaded
        (``sip:`` added when the line has no scheme, as Kamailio does).
        """
        rows: list[Row] = []
        for number, line in enumerate(self._read().splitlines(), start=1):
            dest = parse_line(line, f"{self._source}:{number}")
            if dest is None:
                continue
            rows.append(
                Row(
                    id=number,
                    setid=dest.setid,
                    destination=dest.uri,
                    flags=dest.flags,
                    priority=dest.priority,
                    attrs=dest.attrs.body,
                    description=dest.description,
                )
            )
        return rows

    # -- writing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the file's directory while editing, so two
        editors do not lose each other's change (the file itself is replaced, so
        it cannot carry the lock)."""
        directory = self.path.parent if str(self.path.parent) else Path(".")
        if fcntl is None:  # pragma: no cover - not POSIX
            yield
            return
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError as exc:
            raise StoreError(
                f"cannot edit list file {self._source}: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _write(self, text: str) -> None:
        """Replace the file's content atomically (temp file + rename), keeping its mode."""
        directory = self.path.parent if str(self.path.parent) else Path(".")
        try:
            mode = stat.S_IMODE(os.stat(self.path).st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        tmp_name: str | None = None
        try:
            with tempfile.NamedTemporaryFile(
                "w",
                encoding=ENCODING,
                newline="",
                dir=directory,
                prefix=f".{self.path.name}.",
                suffix=".tmp",
                delete=False,
            ) as tmp:
                tmp_name = tmp.name
                tmp.write(text)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp_name, mode)
            os.replace(tmp_name, self.path)
            tmp_name = None
        except OSError as exc:
            raise StoreError(
                f"cannot write list file {self._source}: {exc.strerror or exc}"
            ) from None
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    def add(
        self,
        setid: int,
        uri: str,
        flags: int = 0,
        priority: int = 0,
        attrs: str = "",
        description: str = "",
    ) -> int:
        """Append a destination line after checking it as a load would; return its
        line number. Creates the file when it does not exist.

        Raises :class:`DispatcherLoadError` (nothing written) when a value is bad or
        cannot be written as a list-file field (a URI or attrs with spaces, a
        description starting with ``#``...).
        """
        where = f"{self._source}: new line"
        uri = uri.strip()
        check_new_destination(setid, uri, flags, priority, attrs, description, where=where)
        # The format splits fields on whitespace: a description is written with single
        # spaces, as it would be read back.
        description = " ".join(description.split())
        expected = check_new_destination(
            setid, uri, flags, priority, attrs, description, where=where
        )
        for name, value in (("URI", uri), ("attrs", attrs)):
            if any(c.isspace() for c in value):
                raise DispatcherLoadError(
                    where, f"bad {name} {value!r}: a list-file field cannot contain spaces"
                )
        line = format_line(setid, uri, flags, priority, attrs, description)
        if _fields(parse_line(line, where)) != _fields(expected):
            raise DispatcherLoadError(
                where,
                f"these values cannot be written as a list-file line: {line!r} would not "
                "read back the same (a field starting with #?)",
            )
        with self._locked():
            text = self._read(missing_ok=True)
            ending = self._line_ending(text)
            if text and not text.endswith(("\n", "\r")):
                text += ending
            number = len(text.splitlines()) + 1
            self._write(text + line + ending)
        return number

    @staticmethod
    def _line_ending(text: str) -> str:
        """The file's line ending (``\\r\\n`` when its first line has one), else ``\\n``."""
        first = text.splitlines(keepends=True)[:1]
        return "\r\n" if first and first[0].endswith("\r\n") else "\n"

    def _remove_lines(self, doomed: Callable[[int, str], bool]) -> int:
        """Rewrite the file without the lines (number, text) for which ``doomed``
        is true; return how many were removed. The file is not touched when
        none is."""
        with self._locked():
            text = self._read()
            kept: list[str] = []
            removed = 0
            for number, line in enumerate(text.splitlines(keepends=True), start=1):
                if doomed(number, line):
                    removed += 1
                else:
                    kept.append(line)
            if removed:
                self._write("".join(kept))
        return removed

    def _parsed(self, number: int, line: str) -> Destination | None:
        """The line's destination, or None for comments, blank and bad lines (which
        the set/IP removals leave alone)."""
        try:
            return parse_line(line, f"{self._source}:{number}")
        except DispatcherLoadError:
            return None

    def remove(self, id: int) -> int:
        """Delete the destination on line ``id`` (even one that does not parse);
        return 0 when that line is a comment, blank, or past the end."""
        return self._remove_lines(lambda n, line: n == id and _is_destination_line(line))

    def remove_set(self, setid: int) -> int:
        """Delete every destination line of ``setid``; return the count."""

        def doomed(number: int, line: str) -> bool:
            dest = self._parsed(number, line)
            return dest is not None and dest.setid == setid

        return self._remove_lines(doomed)

    def remove_ip(self, ip: str, setid: int) -> int:
        """Delete the destination lines of ``setid`` whose URI host is ``ip`` (see
        :func:`~sipdispatch.store.base.host_matches`); return the count."""

        def doomed(number: int, line: str) -> bool:
            dest = self._parsed(number, line)
            return dest is not None and dest.setid == setid and host_matches(dest.uri, ip)

        return self._remove_lines(doomed)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> ListFileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ListFileStore {self._source}>"
