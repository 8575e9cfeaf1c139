"""The key reference of ``docs/configuration.md``, written from the schema.

``python -m sipdispatch.config.docs [FILE]`` rewrites every generated block of FILE (default
``docs/configuration.md``) and leaves the prose around them as it is; ``--check`` only
reports whether the file is up to date (exit status 1 when it is not). A block is::

    <!-- BEGIN GENERATED: server -->
    ...
    <!-- END GENERATED: server -->

where the name is a table of the file (``server``, ``route``, ``route.match``...) or
``algorithms`` (the algorithm registry).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from sipdispatch.config.reference import FileKey, file_keys, sections
from sipdispatch.dispatcher.algorithms import REGISTRY

__all__ = ["ALGORITHM_SUMMARIES", "DEFAULT_PATH", "algorithm_table", "key_table", "render_blocks"]

DEFAULT_PATH: Final = Path("docs/configuration.md")

_BEGIN: Final = "<!-- BEGIN GENERATED: "
_END: Final = "<!-- END GENERATED: "
_CLOSE: Final = " -->"

ALGORITHM_SUMMARIES: Final[dict[int, str]] = {
    0: "hash of the Call-ID",
    1: "hash of the From URI",
    2: "hash of the To URI",
    3: "hash of the Request-URI",
    4: "round-robin",
    5: "hash of the authorization username (round-robin when there is none)",
    6: "random",
    7: "hash of the header named by `dispatcher.hash_header`",
    8: "first by priority (serial)",
    9: "`weight` attribute",
    10: "fewest active calls (`duid`, `maxload` attributes)",
    11: "`rweight` attribute, among active destinations",
    12: "all destinations of the set at once (parallel forking)",
    13: "latency-optimised (`cc` attribute, ping latency)",
    14: "round-robin (4) when every destination of the set has the same priority above 0, "
    "else serial (8)",
    15: "`weight` attribute, among the active destinations of the lowest priority value",
    64: "round-robin, leaving a destination under overload control (RFC 7339 `oc` in its "
    "answers, or `dispatcher.oc_set`) out of the share of choices it asks",
    114: "round-robin among the usable destinations of the highest priority; lower "
    "priorities are the failover, in set order (was 14)",
    115: "priority, then weight within a priority (SRV-like; was 15)",
}
"""What each algorithm selects by, for the table of names (the registry has the numbers and
names; compiled classes keep no docstrings to take this from)."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _is_toml_value(text: str) -> bool:
    try:
        tomllib.loads(f"x = {text}")
    except tomllib.TOMLDecodeError:
        return False
    return True


def _default(key: FileKey) -> str:
    if key.default is None:
        return "*required*"
    return f"`{key.default}`" if _is_toml_value(key.default) else key.default


def _allowed(key: FileKey) -> str:
    return key.allowed.removeprefix("must be ")


def key_table(where: str, cls: type) -> str:
    """The Markdown table of the keys of table `where` (schema class `cls`)."""
    lines = [
        "| key | type | default | allowed | meaning | Kamailio |",
        "|---|---|---|---|---|---|",
    ]
    for key in file_keys(cls, where).values():
        cells = (
            f"`{key.name}`",
            key.toml_type,
            _default(key),
            _allowed(key),
            key.description,
            key.kamailio or "—",
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def algorithm_table() -> str:
    """The Markdown table of the registry's algorithms: number, name, aliases."""
    lines = [
        "| number | name | also accepted | selects by | Kamailio |",
        "|---|---|---|---|---|",
    ]
    for number, alg in sorted(REGISTRY.items()):
        summary = ALGORITHM_SUMMARIES.get(number)
        if summary is None:
            raise KeyError(f"algorithm {number} ({alg.name}) has no summary in ALGORITHM_SUMMARIES")
        aliases = ", ".join(f"`{a}`" for a in alg.aliases) or "—"
        kamailio = "yes" if alg.kamailio else "no (sipdispatch's own)"
        lines.append(f"| {number} | `{alg.name}` | {aliases} | {_cell(summary)} | {kamailio} |")
    return "\n".join(lines)


def _blocks() -> dict[str, Callable[[], str]]:
    blocks: dict[str, Callable[[], str]] = {"algorithms": algorithm_table}
    for where, cls in sections():
        if where:
            blocks[where] = lambda where=where, cls=cls: key_table(where, cls)  # type: ignore[misc]
    return blocks


def render_blocks(text: str) -> str:
    """`text` with every generated block written anew from the schema.

    Raises ValueError for a block that is not closed or whose name is unknown.
    """
    blocks = _blocks()
    out: list[str] = []
    lines = iter(text.splitlines(keepends=True))
    for line in lines:
        out.append(line)
        stripped = line.strip()
        if not (stripped.startswith(_BEGIN) and stripped.endswith(_CLOSE)):
            continue
        name = stripped[len(_BEGIN) : -len(_CLOSE)]
        if name not in blocks:
            raise ValueError(f"unknown generated block {name!r}; known: {', '.join(blocks)}")
        end = f"{_END}{name}{_CLOSE}"
        for inner in lines:
            if inner.strip() == end:
                out.append(blocks[name]() + "\n")
                out.append(inner)
                break
        else:
            raise ValueError(f"generated block {name!r} has no {end!r}")
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sipdispatch.config.docs",
        description="Write the configuration key reference from the schema.",
    )
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--check", action="store_true", help="only check that FILE is up to date")
    args = parser.parse_args(argv)
    path: Path = args.file
    text = path.read_text(encoding="utf-8")
    new = render_blocks(text)
    if args.check:
        if new != text:
            print(f"{path} is out of date: run python -m sipdispatch.config.docs", file=sys.stderr)
            return 1
        return 0
    if new != text:
        path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
