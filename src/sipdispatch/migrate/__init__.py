"""``sipdispatch migrate``: a kamailio.cfg turned into a sipdispatch configuration.

`migrate(path)` reads an operator's kamailio.cfg -- its preprocessor directives, listeners,
``modparam`` of dispatcher, tm, rr and pike, and the routing script's ``ds_select_*``,
``failure_route`` and ``ds_mark_dst`` -- and returns a `Migration`: the TOML text (every
key with the Kamailio line it came from, and comments for what is not carried over), the
`Config` sipdispatch reads from it, and the warnings about behaviour that differs.

The modules: `cfgtext` (the preprocessor and the tokens), `syntax` (statements and
expressions), `script` (the walk of the routing blocks), `translate` (the keys), `emit`
(the TOML with its comments). docs/kamailio.md says what is carried over and how.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from sipdispatch.migrate.cfgtext import CfgError, Where
from sipdispatch.migrate.translate import (
    DEFAULT_VERSION,
    Migration,
    MigrationWarning,
    migrate,
    parse_version,
)

__all__ = [
    "DEFAULT_VERSION",
    "CfgError",
    "Migration",
    "MigrationWarning",
    "Where",
    "add_arguments",
    "main_from_args",
    "migrate",
    "parse_version",
]


def _define(text: str) -> tuple[str, str | None]:
    name, eq, value = text.partition("=")
    name = name.strip()
    if (
        not name
        or not (name[0].isalpha() or name[0] == "_")
        or not all(c.isalnum() or c == "_" for c in name)
    ):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME or NAME=VALUE")
    return name, (value if eq else None)


def _version(text: str) -> tuple[int, int]:
    try:
        return parse_version(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sipdispatch migrate``."""
    parser.add_argument("cfg", metavar="KAMAILIO_CFG", help="the kamailio.cfg to read")
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write the configuration there (default: standard output)",
    )
    parser.add_argument(
        "-D",
        "--define",
        metavar="NAME[=VALUE]",
        action="append",
        type=_define,
        default=[],
        help="a define for #!ifdef and the script, as kamailio -A NAME[=VALUE] (repeatable)",
    )
    default = f"{DEFAULT_VERSION[0]}.{DEFAULT_VERSION[1]}"
    parser.add_argument(
        "--kamailio-version",
        metavar="X.Y",
        type=_version,
        default=None,
        help="the Kamailio release kamailio.cfg is for: the meaning of version-dependent "
        f"parameters, algorithms and #!ifdef KAMAILIO_X_Y (default {default}, the current "
        "release)",
    )


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``sipdispatch migrate``: 0 on success, 1 when kamailio.cfg cannot be read."""
    version = args.kamailio_version or DEFAULT_VERSION
    defines = dict(args.define)
    try:
        result = migrate(
            args.cfg, defines, version=version, version_given=args.kamailio_version is not None
        )
    except CfgError as exc:
        print(f"sipdispatch: migrate: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # the result does not load: a gap in the migration
        first = str(exc).split("\n", 1)[0]
        print(f"sipdispatch: migrate: {first} (nothing written)", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"sipdispatch: migrate: warning: {warning}", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(result.text)
        return 0
    out = args.output
    if os.path.exists(out) and os.path.samefile(out, args.cfg):
        print(
            f"sipdispatch: migrate: {out}: is the kamailio.cfg read; not overwritten",
            file=sys.stderr,
        )
        return 1
    try:
        directory = os.path.dirname(os.path.abspath(out))
        if os.path.exists(out):
            mode = os.stat(out).st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        fd, tmp = tempfile.mkstemp(prefix=".migrate-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(result.text)
        os.chmod(tmp, mode)
        os.replace(tmp, out)
    except OSError as exc:
        print(f"sipdispatch: migrate: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(
        f"sipdispatch: migrate: wrote {out} ({len(result.warnings)} warning(s)); check it with "
        f"'sipdispatch run --config {out}'",
        file=sys.stderr,
    )
    return 0
