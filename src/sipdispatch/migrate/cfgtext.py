"""Reading a kamailio.cfg into tokens, the way Kamailio's lexer does.

Kamailio's preprocessor is part of its lexer, and so it is here: directives are handled
as the text is read, in order, so a ``#!define`` affects what follows it and a
``#!ifdef`` tests what has been defined before it. What is covered:

- ``#!define NAME [value]`` (a value goes on to the end of the line, ``\\`` continues it),
  ``#!trydef``/``#!trydefine`` (only when not defined yet), ``#!redef``/``#!redefine``,
  ``#!undef``/``#!tryundef``, ``#!defenv[s]``/``#!trydefenv[s]`` (from the environment),
  ``#!defexp[s]`` (the value of an expression);
- ``#!ifdef``, ``#!ifndef``, ``#!ifexp`` (numbers, strings, defines, comparisons and
  ``&& || !``), ``#!else``, ``#!endif``;
- ``#!subst``, ``#!substdef``, ``#!substdefs`` (the substitutions apply to strings, as
  Kamailio applies them);
- ``include_file`` / ``import_file`` (with or without ``#!``): the file's path relative to
  the including file, else to the working directory; a missing ``import_file`` is
  skipped, as Kamailio does;
- the defines Kamailio's core makes for its own version (``KAMAILIO_5``, ``KAMAILIO_5_6``,
  ``KAMAILIO_5_6_0``, and ``KAMAILIO_VERSION`` from 5.7 on), for the version migrated from.

An identifier that names a define is replaced by the define's value, which is read again
as configuration text (a define without a value removes the identifier), exactly where
Kamailio's lexer does it: outside strings and comments. Comments are ``#`` and ``//`` to
the end of the line and nested ``/* ... */``.

Errors are `CfgError`, naming ``file:line`` as Kamailio's own messages do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["CfgError", "CfgText", "Tok", "TokKind", "Where", "read_cfg"]

MAX_INCLUDE_DEPTH: Final = 10
"""Kamailio's ``MAX_INCLUDE_DEPTH``."""
MAX_DEFINE_DEPTH: Final = 50
"""Defines replaced inside defines before we call it a loop (Kamailio has no limit and
loops for ever)."""

TokKind = Literal["id", "num", "str", "pvar", "op", "eof"]

_ID_START: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_ID_CHARS: Final = _ID_START | frozenset("0123456789")
_DIGITS: Final = frozenset("0123456789")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_SPACE: Final = frozenset(" \t\r\b\f")
_OPERATORS: Final = (
    "=~",
    "!~",
    "==",
    "!=",
    "<=",
    ">=",
    "&&",
    "||",
    "+=",
    ":=",
    "=>",
    "<<",
    ">>",
    "=",
    "<",
    ">",
    "!",
    "&",
    "|",
    "^",
    "~",
    "+",
    "-",
    "*",
    "/",
    "%",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ";",
    ",",
    ":",
    ".",
    "@",
)
_DIRECTIVES: Final = frozenset(
    {
        "define",
        "trydef",
        "trydefine",
        "redef",
        "redefine",
        "undef",
        "tryundef",
        "ifdef",
        "ifndef",
        "ifexp",
        "else",
        "endif",
        "subst",
        "substdef",
        "substdefs",
        "defenv",
        "defenvs",
        "trydefenv",
        "trydefenvs",
        "defexp",
        "defexps",
        "include_file",
        "import_file",
        "KAMAILIO",
        "SER",
        "MAX_COMPAT",
        "OPENSER",
    }
)
_CONDITIONALS: Final = frozenset({"ifdef", "ifndef", "ifexp", "else", "endif"})


@dataclass(frozen=True, slots=True)
class Where:
    """A place in the configuration: the file (as the operator knows it) and the line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class CfgError(Exception):
    """The configuration cannot be read; ``str(error)`` is ``file:line: message``."""

    def __init__(self, where: Where | None, message: str) -> None:
        super().__init__(f"{where}: {message}" if where is not None else message)
        self.where = where
        self.message = message


@dataclass(frozen=True, slots=True)
class Tok:
    """One token of the configuration."""

    kind: TokKind
    text: str
    """As written; for a string, its value (escapes read, substitutions made)."""
    where: Where
    space: bool = True
    """White space (or a comment, or a line start) comes before it in the text."""
    quote: str = ""
    """For a string: the quote it was written with (``"`` or ``'``)."""


@dataclass(slots=True)
class _Define:
    value: str | None
    where: Where | None


@dataclass(slots=True)
class _Cond:
    active: bool
    """This branch is read."""
    parent_active: bool
    """The enclosing text is read (a skipped #!ifdef inside skipped text stays skipped)."""
    where: Where
    seen_else: bool = False


@dataclass(slots=True)
class CfgText:
    """Everything read from a kamailio.cfg and the files it includes."""

    tokens: list[Tok]
    lines: dict[str, list[str]]
    """Each file's lines as written (display name -> lines), to quote them."""
    defines: dict[str, str | None]
    """The defines in force at the end of the file."""
    files: list[str] = field(default_factory=list)
    """The files read, in order (display names)."""

    def line_text(self, where: Where) -> str:
        """The line at ``where`` as written, stripped."""
        lines = self.lines.get(where.file, [])
        if 1 <= where.line <= len(lines):
            return lines[where.line - 1].strip()
        return ""


def version_defines(version: tuple[int, int]) -> dict[str, str | None]:
    """The defines Kamailio's core makes for its version (``pp_define_core``)."""
    major, minor = version
    out: dict[str, str | None] = {}
    if version >= (5, 2):
        out[f"KAMAILIO_{major}"] = None
        out[f"KAMAILIO_{major}_{minor}"] = None
        out[f"KAMAILIO_{major}_{minor}_0"] = None
    if version >= (5, 7):
        out["KAMAILIO_VERSION"] = str(major * 1_000_000 + minor * 1000)
        out["OS_NAME"] = '"linux"'
    return out


def read_cfg(
    path: str,
    defines: Mapping[str, str | None] = {},
    *,
    version: tuple[int, int] = (6, 1),
    environ: Mapping[str, str] | None = None,
) -> CfgText:
    """Read ``path`` (and what it includes) into tokens. ``defines`` are added first, as
    ``kamailio -A NAME[=VALUE]`` does. Raises `CfgError`."""
    reader = _Reader(dict(os.environ) if environ is None else dict(environ))
    for name, value in version_defines(version).items():
        reader.defines[name] = _Define(value, None)
    for name, value in defines.items():
        reader.defines[name] = _Define(value, None)
    reader.read_file(path, path, None, 0)
    if reader.conds:
        cond = reader.conds[-1]
        raise CfgError(cond.where, "#!ifdef without #!endif")
    end = Where(path, max(1, len(reader.lines.get(path, [""]))))
    reader.tokens.append(Tok("eof", "", end))
    return CfgText(
        tokens=reader.tokens,
        lines=reader.lines,
        defines={k: d.value for k, d in reader.defines.items()},
        files=reader.files,
    )


class _Reader:
    """The lexer with its preprocessor state, shared by every file read."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.environ = environ
        self.defines: dict[str, _Define] = {}
        self.substs: list[tuple[re.Pattern[str], str, bool]] = []
        self.conds: list[_Cond] = []
        self.tokens: list[Tok] = []
        self.lines: dict[str, list[str]] = {}
        self.files: list[str] = []

    # -- files ------------------------------------------------------------------------------

    def read_file(self, real: str, shown: str, where: Where | None, depth: int) -> None:
        if depth > MAX_INCLUDE_DEPTH:
            raise CfgError(where, f"too many nested include_file (more than {MAX_INCLUDE_DEPTH})")
        try:
            with open(real, encoding="utf-8", errors="surrogateescape") as file:
                text = file.read()
        except OSError as exc:
            raise CfgError(where, f"cannot read {shown}: {exc.strerror or exc}") from None
        self.lines[shown] = text.split("\n")
        self.files.append(shown)
        _Scanner(self, text, shown, real, depth).run()

    def include(
        self,
        name: str,
        current: str,
        shown_current: str,
        where: Where,
        depth: int,
        *,
        optional: bool,
    ) -> None:
        if not name:
            raise CfgError(where, "invalid included file name: empty")
        candidates: list[tuple[str, str]] = []
        if os.path.isabs(name):
            candidates.append((name, name))
        else:
            base = os.path.dirname(current)
            shown_base = os.path.dirname(shown_current)
            candidates.append((os.path.join(base, name), os.path.join(shown_base, name)))
            candidates.append((name, name))
        for real, shown in candidates:
            if os.path.isfile(real):
                self.read_file(real, os.path.normpath(shown), where, depth + 1)
                return
        if optional:
            return
        raise CfgError(where, f'cannot open included file: "{name}"')

    # -- defines ----------------------------------------------------------------------------

    def define(self, name: str, value: str | None, where: Where, kind: str) -> None:
        known = self.defines.get(name)
        if known is not None and kind == "define":
            first = f" (at {known.where})" if known.where is not None else " (on the command line)"
            raise CfgError(where, f"already defined: {name}{first}")
        if known is not None and kind == "trydef":
            return
        self.defines[name] = _Define(value, where)

    def substitute(self, text: str) -> str:
        for pattern, repl, every in self.substs:
            text = pattern.sub(repl, text, count=0 if every else 1)
        return text

    def add_subst(self, rule: str, where: Where) -> tuple[str, str]:
        """A ``/regex/replacement/flags`` rule (any separator); returns (regex, replacement)."""
        if len(rule) < 3 or rule[0] == "\\":
            raise CfgError(where, f"invalid subst rule {rule!r}: /regex/replacement/flags expected")
        sep = rule[0]
        parts: list[str] = []
        current = ""
        i = 1
        while i < len(rule):
            c = rule[i]
            if c == sep and rule[i - 1] != "\\":
                parts.append(current)
                current = ""
            else:
                current += c
            i += 1
        if len(parts) < 2:
            raise CfgError(where, f"invalid subst rule {rule!r}: /regex/replacement/flags expected")
        regex, repl = parts[0], parts[1]
        flags = current if len(parts) == 2 else parts[2]
        try:
            pattern = re.compile(_posix_to_python(regex), re.IGNORECASE if "i" in flags else 0)
        except re.error as exc:
            raise CfgError(
                where, f"invalid regular expression in subst rule {rule!r}: {exc}"
            ) from None
        self.substs.append((pattern, re.sub(r"\\([0-9])", r"\\g<\1>", repl), "g" in flags))
        return regex, repl

    # -- conditionals -----------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return not self.conds or self.conds[-1].active

    def cond_directive(self, word: str, arg: str, where: Where) -> None:
        if word in ("ifdef", "ifndef", "ifexp"):
            outer = self.active
            if not outer:
                truth = False
            elif word == "ifexp":
                truth = bool(self.evaluate(arg, where))
            else:
                name = arg.split()[0] if arg.split() else ""
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    raise CfgError(where, f"#!{word} needs a define name, got {arg!r}")
                truth = (name in self.defines) == (word == "ifdef")
            self.conds.append(_Cond(outer and truth, outer, where))
        elif word == "else":
            if not self.conds:
                raise CfgError(where, "#!else without #!ifdef")
            cond = self.conds[-1]
            if cond.seen_else:
                raise CfgError(where, f"second #!else for the #!ifdef at {cond.where}")
            cond.seen_else = True
            cond.active = cond.parent_active and not cond.active
        else:
            if not self.conds:
                raise CfgError(where, "#!endif without #!ifdef")
            self.conds.pop()

    def evaluate(self, text: str, where: Where) -> int | str:
        """An ``#!ifexp`` / ``#!defexp`` expression."""
        return _Expression(text, self.defines, where).value()


class _Scanner:
    """One file's text, read character by character."""

    def __init__(self, reader: _Reader, text: str, shown: str, real: str, depth: int) -> None:
        self.r = reader
        self.text = text
        self.shown = shown
        self.real = real
        self.depth = depth
        self.i = 0
        self.line = 1
        self.space = True

    def where(self) -> Where:
        return Where(self.shown, self.line)

    def run(self) -> None:
        text, n = self.text, len(self.text)
        while self.i < n:
            if not self.r.active:
                self.skip()
                continue
            c = text[self.i]
            if c == "\n":
                self.line += 1
                self.i += 1
                self.space = True
            elif c in _SPACE:
                self.i += 1
                self.space = True
            elif text.startswith(("#!", "!!"), self.i) and self.directive_word() is not None:
                self.directive()
                self.space = True
            elif c == "#" or text.startswith("//", self.i):
                self.to_line_end()
                self.space = True
            elif text.startswith("/*", self.i):
                self.block_comment()
                self.space = True
            else:
                self.token()

    # -- skipping and comments --------------------------------------------------------------

    def skip(self) -> None:
        """Inside a false #!ifdef: only the conditionals count."""
        text = self.text
        if text.startswith(("#!", "!!"), self.i):
            word = self.directive_word()
            if word in _CONDITIONALS:
                self.directive()
                return
        if text[self.i] == "\n":
            self.line += 1
        self.i += 1

    def to_line_end(self) -> None:
        end = self.text.find("\n", self.i)
        self.i = len(self.text) if end < 0 else end

    def block_comment(self) -> None:
        start = self.where()
        depth = 0
        text, n = self.text, len(self.text)
        while self.i < n:
            if text.startswith("/*", self.i):
                depth += 1
                self.i += 2
            elif text.startswith("*/", self.i):
                depth -= 1
                self.i += 2
                if depth == 0:
                    return
            else:
                if text[self.i] == "\n":
                    self.line += 1
                self.i += 1
        raise CfgError(start, "comment /* ... not closed by */")

    # -- directives -------------------------------------------------------------------------

    def directive_word(self) -> str | None:
        m = re.compile(r"[A-Za-z_]+").match(self.text, self.i + 2)
        if m is None:
            return None
        word = m.group()
        return word if word in _DIRECTIVES else None

    def rest_of_line(self, *, continued: bool) -> str:
        """The text up to the end of the line (``\\`` + newline continues it when
        ``continued``); the newline itself is left to be read."""
        text, n = self.text, len(self.text)
        out = []
        while self.i < n and text[self.i] != "\n":
            if continued and text[self.i] == "\\" and text.startswith("\n", self.i + 1):
                self.i += 2
                self.line += 1
                continue
            out.append(text[self.i])
            self.i += 1
        return "".join(out)

    def directive(self) -> None:
        where = self.where()
        word = self.directive_word()
        assert word is not None
        self.i += 2 + len(word)
        r = self.r
        if word in _CONDITIONALS:
            r.cond_directive(word, self.rest_of_line(continued=False).strip(), where)
            return
        if word in ("KAMAILIO", "SER", "MAX_COMPAT", "OPENSER"):
            self.to_line_end()
            return
        if word in ("include_file", "import_file"):
            self.include(word, where)
            return
        if word in ("define", "trydef", "trydefine", "redef", "redefine"):
            kind = {"trydefine": "trydef", "redefine": "redef"}.get(word, word)
            rest = self.rest_of_line(continued=True)
            m = re.match(r"\s+([A-Za-z_][A-Za-z0-9_]*)(.*)$", rest, re.S)
            if m is None:
                raise CfgError(where, f"#!{word} needs a name")
            name, value = m.group(1), m.group(2)
            if value.startswith("-"):
                raise CfgError(where, f"'-' not allowed in the name of #!{word} {name}")
            r.define(name, value.strip() or None, where, kind)
            return
        if word in ("undef", "tryundef"):
            name = self.rest_of_line(continued=False).strip()
            if name not in r.defines and word == "undef":
                raise CfgError(where, f"#!undef of {name!r}, which is not defined")
            r.defines.pop(name, None)
            return
        if word in ("defenv", "defenvs", "trydefenv", "trydefenvs"):
            arg = self.rest_of_line(continued=False).strip()
            name, _, env = arg.partition("=")
            name, env = name.strip(), (env.strip() or name.strip())
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise CfgError(where, f"#!{word} needs NAME or NAME=ENVVAR, got {arg!r}")
            value = r.environ.get(env)
            if value is None:
                if word.startswith("try"):
                    return
                raise CfgError(where, f"#!{word}: environment variable {env} is not set")
            if word.endswith("s"):
                value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            r.define(name, value, where, "redef")
            return
        if word in ("defexp", "defexps"):
            rest = self.rest_of_line(continued=True)
            m = re.match(r"\s+([A-Za-z_][A-Za-z0-9_]*)(.*)$", rest, re.S)
            if m is None:
                raise CfgError(where, f"#!{word} needs a name and an expression")
            result = r.evaluate(m.group(2), where)
            text = str(result)
            if word == "defexps" or isinstance(result, str):
                text = '"' + str(result).replace('"', '\\"') + '"'
            r.define(m.group(1), text, where, "define")
            return
        # subst, substdef, substdefs: a quoted rule follows
        self.skip_blanks()
        tok = (
            self.string_token() if self.i < len(self.text) and self.text[self.i] in "\"'" else None
        )
        if tok is None:
            raise CfgError(where, f'#!{word} needs a quoted rule, e.g. "/regex/value/"')
        regex, repl = r.add_subst(tok.text, where)
        if word != "subst":
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", regex):
                raise CfgError(where, f"#!{word}: {regex!r} is not a define name")
            value = '"' + repl.replace('"', '\\"') + '"' if word == "substdefs" else repl
            r.define(regex, value or None, where, "define")

    def skip_blanks(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in _SPACE:
            self.i += 1

    def include(self, word: str, where: Where) -> None:
        self.skip_blanks()
        if self.i >= len(self.text) or self.text[self.i] not in "\"'":
            raise CfgError(where, f"{word}: the file name must be between quotes")
        tok = self.string_token()
        self.r.include(
            tok.text, self.real, self.shown, where, self.depth, optional=word == "import_file"
        )

    # -- tokens -----------------------------------------------------------------------------

    def emit(self, kind: TokKind, text: str, where: Where, quote: str = "") -> None:
        self.r.tokens.append(Tok(kind, text, where, self.space, quote))
        self.space = False

    def token(self) -> None:
        text, i = self.text, self.i
        c = text[i]
        where = self.where()
        if c in "\"'":
            tok = self.string_token()
            self.emit("str", tok.text, where, tok.quote)
        elif c == "$":
            self.emit("pvar", self.pvar(), where)
        elif c in _ID_START:
            j = i
            while j < len(text) and text[j] in _ID_CHARS:
                j += 1
            word = text[i:j]
            self.i = j
            if word in ("include_file", "import_file"):
                self.include(word, where)
                self.space = True
                return
            self.identifier(word, where, 0)
        elif c in _DIGITS:
            j = i + 1
            if c == "0" and text[j : j + 1] in ("x", "X") and text[j + 1 : j + 2] in _HEX:
                j += 1
                while j < len(text) and text[j] in _HEX:
                    j += 1
            else:
                while j < len(text) and text[j] in _ID_CHARS:
                    j += 1
            self.i = j
            self.emit("num", text[i:j], where)
        else:
            for op in _OPERATORS:
                if text.startswith(op, i):
                    self.i = i + len(op)
                    self.emit("op", op, where)
                    return
            raise CfgError(where, f"unexpected character {c!r}")

    def identifier(self, word: str, where: Where, depth: int) -> None:
        define = self.r.defines.get(word)
        if define is None:
            self.emit("id", word, where)
            return
        if define.value is None:
            return
        if depth >= MAX_DEFINE_DEPTH:
            raise CfgError(where, f"define {word} expands into itself")
        _Expansion(self, define.value, where, depth + 1).run()

    def string_token(self) -> Tok:
        """A quoted string at the current position; adjacent ``"..."`` strings are joined,
        as Kamailio joins them."""
        text, n = self.text, len(self.text)
        start = self.where()
        quote = text[self.i]
        if quote == "'":
            end = text.find("'", self.i + 1)
            if end < 0:
                raise CfgError(start, "string ' not closed")
            value = text[self.i + 1 : end]
            self.line += value.count("\n")
            self.i = end + 1
            return Tok("str", self.r.substitute(value), start, quote="'")
        out: list[str] = []
        while True:
            self.i += 1
            while True:
                if self.i >= n:
                    raise CfgError(start, 'string " not closed')
                c = text[self.i]
                if c == '"':
                    self.i += 1
                    break
                if c == "\n":
                    self.line += 1
                if c == "\\" and self.i + 1 < n:
                    nxt = text[self.i + 1]
                    simple = {"n": "\n", "r": "\r", "a": "\a", "t": "\t", '"': '"', "\\": "\\"}
                    if nxt in simple:
                        out.append(simple[nxt])
                        self.i += 2
                        continue
                    if nxt == "\n":
                        self.line += 1
                        self.i += 2
                        continue
                    m = re.compile(r"x([0-9a-fA-F]{1,2})|([0-7]{2,3})").match(text, self.i + 1)
                    if m is not None:
                        out.append(chr(int(m.group(1), 16) if m.group(1) else int(m.group(2), 8)))
                        self.i = m.end()
                        continue
                out.append(c)
                self.i += 1
            # "abc" "def" is one string
            j = self.i
            lines = 0
            while j < n and text[j] in " \t\r\n":
                lines += text[j] == "\n"
                j += 1
            if j < n and text[j] == '"':
                self.i = j
                self.line += lines
                continue
            return Tok("str", self.r.substitute("".join(out)), start, quote='"')

    def pvar(self) -> str:
        """``$name``, ``$name(...)``, ``$(...)``, with a trailing ``[...]`` index."""
        text, n = self.text, len(self.text)
        start = self.i
        where = self.where()
        j = self.i + 1
        if text.startswith("?", j):  # $? is the last return code
            j += 1
        while j < n and (text[j] in _ID_CHARS or text[j] == "."):
            j += 1
        if j < n and text[j] in "({":
            close = {"(": ")", "{": "}"}[text[j]]
            opener = text[j]
            depth = 0
            while j < n:
                if text[j] == opener:
                    depth += 1
                elif text[j] == close:
                    depth -= 1
                    if depth == 0:
                        j += 1
                        break
                elif text[j] == "\n":
                    raise CfgError(where, f"pseudo-variable {text[start:j]} not closed")
                j += 1
            else:
                raise CfgError(where, f"pseudo-variable {text[start:j]} not closed")
        if j == start + 1:
            raise CfgError(where, "'$' not followed by a pseudo-variable name")
        self.i = j
        return self.r.substitute(text[start:j])


class _Expansion(_Scanner):
    """The value of a define, read as configuration text where the define was used."""

    def __init__(self, outer: _Scanner, value: str, where: Where, depth: int) -> None:
        super().__init__(outer.r, value, outer.shown, outer.real, outer.depth)
        self.outer = outer
        self.at = where
        self.define_depth = depth
        self.space = outer.space

    def where(self) -> Where:
        return self.at

    def run(self) -> None:
        text, n = self.text, len(self.text)
        while self.i < n:
            c = text[self.i]
            if c in _SPACE or c == "\n":
                self.i += 1
                self.space = True
            elif c == "#" or text.startswith("//", self.i):
                self.to_line_end()
            elif text.startswith("/*", self.i):
                self.block_comment()
            else:
                self.token()
        self.outer.space = self.space

    def identifier(self, word: str, where: Where, depth: int) -> None:
        super().identifier(word, where, self.define_depth)


# ------------------------------------------------------------------------------------------
# #!ifexp expressions
# ------------------------------------------------------------------------------------------


class _Expression:
    """A small evaluator for ``#!ifexp``: integers, strings, define names (their value;
    0 when not defined, 1 when defined without a value), ``+ - * / %``, comparisons,
    ``&& || !`` and parentheses."""

    _TOKEN = re.compile(
        r'\s*(?:(0x[0-9a-fA-F]+|\d+)|"((?:[^"\\]|\\.)*)"|([A-Za-z_][A-Za-z0-9_]*)'
        r"|(==|!=|<=|>=|&&|\|\||[-+*/%<>!()]))"
    )

    def __init__(self, text: str, defines: Mapping[str, _Define], where: Where) -> None:
        self.where = where
        self.defines = defines
        self.items: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = self._TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise CfgError(where, f"cannot read the expression {text!r} at {text[pos:]!r}")
            num, string, name, op = m.groups()
            if num is not None:
                self.items.append(("num", num))
            elif string is not None:
                self.items.append(("str", string))
            elif name is not None:
                self.items.append(("name", name))
            else:
                self.items.append(("op", op))
            pos = m.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.pos = 0

    def value(self) -> int | str:
        if not self.items:
            raise CfgError(self.where, "empty expression")
        result = self.parse(0)
        if self.pos != len(self.items):
            raise CfgError(self.where, f"unexpected {self.items[self.pos][1]!r} in expression")
        return result

    _LEVELS: Final = (
        ("||",),
        ("&&",),
        ("==", "!=", "<", ">", "<=", ">="),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def parse(self, level: int) -> int | str:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.parse(level + 1)
        while self.pos < len(self.items) and self.items[self.pos] in [
            ("op", o) for o in self._LEVELS[level]
        ]:
            op = self.items[self.pos][1]
            self.pos += 1
            right = self.parse(level + 1)
            left = self.apply(op, left, right)
        return left

    def apply(self, op: str, a: int | str, b: int | str) -> int | str:
        ops: dict[str, Callable[[int | str, int | str], bool]] = {
            "==": lambda x, y: x == y,
            "!=": lambda x, y: x != y,
        }
        if op in ops:
            return int(ops[op](a, b))
        if op == "||":
            return int(bool(a) or bool(b))
        if op == "&&":
            return int(bool(a) and bool(b))
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        if not isinstance(a, int) or not isinstance(b, int):
            raise CfgError(self.where, f"{op} needs numbers in the expression")
        if op in ("/", "%") and b == 0:
            raise CfgError(self.where, "division by zero in the expression")
        result = {
            "<": lambda: int(a < b),
            ">": lambda: int(a > b),
            "<=": lambda: int(a <= b),
            ">=": lambda: int(a >= b),
            "+": lambda: a + b,
            "-": lambda: a - b,
            "*": lambda: a * b,
            "/": lambda: a // b,
            "%": lambda: a % b,
        }[op]()
        return result

    def unary(self) -> int | str:
        if self.pos >= len(self.items):
            raise CfgError(self.where, "expression ends too early")
        kind, text = self.items[self.pos]
        self.pos += 1
        if (kind, text) == ("op", "!"):
            return int(not self.unary())
        if (kind, text) == ("op", "-"):
            operand = self.unary()
            if not isinstance(operand, int):
                raise CfgError(self.where, "- needs a number in the expression")
            return -operand
        if (kind, text) == ("op", "("):
            inner = self.parse(0)
            if self.pos >= len(self.items) or self.items[self.pos] != ("op", ")"):
                raise CfgError(self.where, "missing ) in the expression")
            self.pos += 1
            return inner
        if kind == "num":
            return int(text, 0)
        if kind == "str":
            return text
        if kind == "name":
            define = self.defines.get(text)
            if define is None:
                return 0
            if define.value is None:
                return 1
            value = define.value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                return value[1:-1]
            try:
                return int(value, 0)
            except ValueError:
                return value
        raise CfgError(self.where, f"unexpected {text!r} in expression")


def _posix_to_python(regex: str) -> str:
    """A POSIX extended regular expression as Python's ``re`` reads it (the character
    classes ``[[:digit:]]`` and the like)."""
    classes = {
        "[:digit:]": r"\d",
        "[:alpha:]": "a-zA-Z",
        "[:alnum:]": "a-zA-Z0-9",
        "[:space:]": r"\s",
        "[:upper:]": "A-Z",
        "[:lower:]": "a-z",
        "[:xdigit:]": "0-9a-fA-F",
        "[:punct:]": r"!-/:-@\[-`{-~",
    }
    for name, repl in classes.items():
        regex = regex.replace(name, repl)
    return regex


posix_to_python = _posix_to_python
"""For the script's regular expressions (``t_check_status``, ``=~``)."""
