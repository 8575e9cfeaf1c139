"""Writing the migrated configuration: TOML with a comment on every key.

A `Section` is one table (``[server]``) or one element of an array of tables
(``[[route]]``): its keys (`Entry`), each with the comment lines that say where it came
from, and the notes written at its end (what was not carried over, and why). Values are
TOML strings, integers, booleans, arrays and inline tables.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Entry", "Section", "render", "toml_value"]

WIDTH: Final = 96
"""Comment lines are wrapped at this width."""
_QUOTE: Final = re.compile(r"^(?:not carried over: |from |failure_route\[[^\]]*\]: )?\S+:\d+: ")
"""A comment line that quotes a line of the configuration: ``FILE:LINE: text``."""


@dataclass(slots=True)
class Entry:
    key: str
    value: object
    origin: list[str] = field(default_factory=list)
    """Comment lines written above the key (where it came from)."""
    item_notes: list[str] | None = None
    """For an array: one comment per element, written after it (the array is then written
    one element a line)."""


@dataclass(slots=True)
class Section:
    name: str
    array: bool = False
    title: str = ""
    """A section of comments only (no table): its title."""
    intro: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Comment paragraphs written after the keys."""

    def add(self, key: str, value: object, *origin: str) -> Entry:
        entry = Entry(key, value, [o for o in origin if o])
        self.entries.append(entry)
        return entry

    def get(self, key: str) -> Entry | None:
        for entry in self.entries:
            if entry.key == key:
                return entry
        return None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def toml_value(value: object) -> str:
    """A value in TOML: strings as basic strings, lists as arrays, mappings as inline
    tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        inner = ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _key(key: object) -> str:
    text = str(key)
    if text and all(c.isalnum() or c in "_-" for c in text):
        return text
    return json.dumps(text)


def comment(text: str, indent: str = "") -> list[str]:
    """``text`` as comment lines, wrapped; a text's own line breaks are kept, and a line
    that starts with spaces keeps them (a continuation)."""
    out: list[str] = []
    for line in text.split("\n"):
        lead = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if not body:
            out.append(f"{indent}#")
            continue
        prefix = f"{indent}# " + " " * lead
        if _QUOTE.match(body):
            out.append(prefix + body)  # a quoted kamailio.cfg line is kept whole
            continue
        wrapped = textwrap.wrap(
            body, WIDTH - len(prefix), break_long_words=False, break_on_hyphens=False
        ) or [body]
        out.append(prefix + wrapped[0])
        out.extend(prefix + "  " + rest for rest in wrapped[1:])
    return out


def render(header: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole file."""
    lines: list[str] = []
    for text in header:
        lines.extend(comment(text))
    for section in sections:
        if not section.entries and not section.notes and not section.intro:
            continue
        lines.append("")
        if section.title:
            lines.append(f"# --- {section.title} ---")
        elif section.entries:
            lines.append(f"[[{section.name}]]" if section.array else f"[{section.name}]")
        else:
            # A table without keys is not written: an empty [tls] would turn TLS on.
            lines.append(f"# [{section.name}]: nothing carried over")
        for text in section.intro:
            lines.extend(comment(text))
        for entry in section.entries:
            for text in entry.origin:
                lines.extend(comment(text))
            if entry.item_notes is not None and isinstance(entry.value, list):
                lines.append(f"{entry.key} = [")
                for item, note in zip(entry.value, entry.item_notes, strict=True):
                    item_line = f"    {toml_value(item)},"
                    lines.append(item_line)
                    if note:
                        lines.extend(comment(note, "    "))
                lines.append("]")
            else:
                lines.append(f"{_key(entry.key)} = {toml_value(entry.value)}")
        for text in section.notes:
            lines.append("#")
            lines.extend(comment(text))
    return "\n".join(lines).rstrip("\n") + "\n"
