"""The statements of a kamailio.cfg: core parameters, modules, module parameters and the
routing blocks, parsed from the tokens of `cfgtext`.

The parser takes Kamailio's grammar as far as migrating needs it: the global part
(``name = value`` core parameters, ``socket = { ... }``, ``loadmodule``, ``modparam``)
and every routing block (``request_route``, ``route[NAME]``, ``failure_route[NAME]``,
``branch_route``, ``onreply_route``, ``event_route[...]``...) with their statements
(``if``/``else``, ``switch``, ``while``, calls, assignments, ``exit``/``drop``/``return``)
and expressions. Expressions are kept as trees; what they mean is `script`'s business.

A construct the parser cannot read is a `CfgError` at its ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sipdispatch.migrate.cfgtext import CfgError, CfgText, Tok, Where

__all__ = [
    "Assign",
    "Binary",
    "Call",
    "CoreParam",
    "Expr",
    "ExprStmt",
    "If",
    "Jump",
    "LoadModule",
    "ModParam",
    "Name",
    "Num",
    "PVar",
    "RouteBlock",
    "Script",
    "Stmt",
    "Str",
    "Switch",
    "Unary",
    "While",
    "parse_script",
]

# -- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Str:
    value: str
    where: Where


@dataclass(frozen=True, slots=True)
class Num:
    value: int
    where: Where


@dataclass(frozen=True, slots=True)
class PVar:
    text: str
    """As written: ``$rU``, ``$var(x)``, ``$(ru{uri.user})``."""
    where: Where


@dataclass(frozen=True, slots=True)
class Name:
    """A bare word: ``myself``, ``uri``, ``method``, ``status``, an IP address..."""

    text: str
    where: Where


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    """``!``, ``-``, ``defined``, ``strlen``, ``strempty``."""
    operand: Expr
    where: Where


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    """``||``, ``&&``, ``==``, ``!=``, ``=~``, ``!~``, ``<``... (``or``/``and`` read as
    ``||``/``&&``)."""
    left: Expr
    right: Expr
    where: Where


Expr = Str | Num | PVar | Name | Call | Unary | Binary

# -- statements ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExprStmt:
    expr: Expr
    where: Where


@dataclass(frozen=True, slots=True)
class Assign:
    target: str
    op: str
    value: Expr
    where: Where


@dataclass(frozen=True, slots=True)
class If:
    cond: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] | None
    where: Where


@dataclass(frozen=True, slots=True)
class Switch:
    expr: Expr
    cases: tuple[tuple[Expr | None, tuple[Stmt, ...]], ...]
    """(value, statements) in order; value None is ``default``."""
    where: Where


@dataclass(frozen=True, slots=True)
class While:
    cond: Expr
    body: tuple[Stmt, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class Jump:
    kind: str
    """``exit``, ``drop``, ``return`` or ``break``."""
    where: Where


Stmt = ExprStmt | Assign | If | Switch | While | Jump

# -- the global part -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoreParam:
    """``name = value`` of the global part; ``value`` is the text as written (tokens
    joined), ``parts`` the tokens."""

    name: str
    value: str
    parts: tuple[Tok, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class LoadModule:
    name: str
    """The module's name: ``dispatcher`` for ``"dispatcher.so"`` or a path to it."""
    where: Where
    pos: int = 0
    """Its place in the file, to tell what comes before what."""


@dataclass(frozen=True, slots=True)
class ModParam:
    module: str
    """As written: a module name, or a regular expression over names."""
    param: str
    value: str | int
    where: Where
    pos: int = 0
    """Its place in the file, to tell what comes before what."""


@dataclass(frozen=True, slots=True)
class RouteBlock:
    kind: str
    """``request``, ``route``, ``failure``, ``branch``, ``onreply``, ``reply``,
    ``onsend``, ``event``."""
    name: str
    """``""`` for the main block of a kind."""
    body: tuple[Stmt, ...]
    where: Where


@dataclass(slots=True)
class Script:
    cfg: CfgText
    core: list[CoreParam] = field(default_factory=list)
    modules: list[LoadModule] = field(default_factory=list)
    modparams: list[ModParam] = field(default_factory=list)
    blocks: list[RouteBlock] = field(default_factory=list)
    cfgengine: tuple[str, Where] | None = None

    def block(self, kind: str, name: str = "") -> RouteBlock | None:
        for block in self.blocks:
            if block.kind == kind and block.name == name:
                return block
        return None

    def routes(self, kind: str) -> dict[str, RouteBlock]:
        return {b.name: b for b in self.blocks if b.kind == kind}


_BLOCK_KINDS: Final = {
    "request_route": "request",
    "route": "route",
    "failure_route": "failure",
    "branch_route": "branch",
    "onreply_route": "onreply",
    "reply_route": "reply",
    "onsend_route": "onsend",
    "event_route": "event",
}
_WORD_OPS: Final = {
    "or": "||",
    "and": "&&",
    "mod": "%",
    "eq": "==",
    "ne": "!=",
    "ieq": "ieq",
    "ine": "ine",
}
_LEVELS: Final = (
    ("||",),
    ("&&",),
    ("==", "!=", "=~", "!~", "<", ">", "<=", ">=", "ieq", "ine"),
    ("|", "&", "^"),
    ("+", "-"),
    ("*", "/", "%"),
)
_BOOL_WORDS: Final = {
    "yes": 1,
    "true": 1,
    "on": 1,
    "enable": 1,
    "no": 0,
    "false": 0,
    "off": 0,
    "disable": 0,
}
_UNARY_WORDS: Final = frozenset({"defined", "strlen", "strempty", "not"})


def parse_script(cfg: CfgText) -> Script:
    """Parse the tokens of a configuration. Raises `CfgError`."""
    return _Parser(cfg).script()


class _Parser:
    def __init__(self, cfg: CfgText) -> None:
        self.cfg = cfg
        self.toks = cfg.tokens
        self.pos = 0

    # -- helpers ----------------------------------------------------------------------------

    @property
    def tok(self) -> Tok:
        return self.toks[self.pos]

    def peek(self, ahead: int = 1) -> Tok:
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def next(self) -> Tok:
        tok = self.toks[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def at(self, kind: str, text: str | None = None) -> bool:
        tok = self.tok
        return tok.kind == kind and (text is None or tok.text == text)

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def expect_op(self, op: str, what: str = "") -> Tok:
        if not self.at_op(op):
            raise self.error(f"expected {op!r}{' ' + what if what else ''}")
        return self.next()

    def error(self, message: str, tok: Tok | None = None) -> CfgError:
        tok = tok or self.tok
        shown = "end of file" if tok.kind == "eof" else repr(tok.text)
        return CfgError(tok.where, f"{message}, found {shown}")

    # -- the file ---------------------------------------------------------------------------

    def script(self) -> Script:
        script = Script(self.cfg)
        while not self.at("eof"):
            tok = self.tok
            if self.at_op(";"):
                self.next()
            elif tok.kind == "id" and tok.text in _BLOCK_KINDS and self.is_block_start():
                script.blocks.append(self.route_block())
            elif tok.kind == "id" and tok.text in ("loadmodule", "loadmodulex"):
                self.next()
                if self.at_op("("):
                    self.next()
                    name = self.expect_str("loadmodule")
                    self.expect_op(")")
                else:
                    name = self.expect_str("loadmodule")
                base = name.rsplit("/", 1)[-1]
                script.modules.append(LoadModule(base.removesuffix(".so"), tok.where, self.pos))
            elif tok.kind == "id" and tok.text in ("modparam", "modparamx"):
                script.modparams.append(self.modparam())
            elif tok.kind == "id" and tok.text in ("loadpath", "mpath"):
                self.next()
                if self.at_op("="):
                    self.next()
                self.expect_str(tok.text)
            elif tok.kind == "id" and tok.text == "cfgengine":
                self.next()
                script.cfgengine = (self.expect_str("cfgengine"), tok.where)
            elif tok.kind == "id" and self.peek().kind == "op" and self.peek().text in ("=", "."):
                param = self.core_param()
                script.core.append(param)
            else:
                raise self.error("expected a core parameter, loadmodule, modparam or a route block")
        return script

    def is_block_start(self) -> bool:
        nxt = self.peek()
        return nxt.kind == "op" and nxt.text in ("{", "[")

    def expect_str(self, what: str) -> str:
        if not self.at("str"):
            raise self.error(f"{what} needs a quoted string")
        return self.next().text

    def modparam(self) -> ModParam:
        start = self.next()
        self.expect_op("(", "after modparam")
        module = self.expect_str("modparam's module name")
        self.expect_op(",")
        param = self.expect_str("modparam's parameter name")
        self.expect_op(",")
        value: str | int
        if self.at("str"):
            value = self.next().text
        elif self.at("num") or self.at_op("-"):
            negative = self.at_op("-")
            if negative:
                self.next()
            num = self.next()
            value = self.number(num) * (-1 if negative else 1)
        elif self.tok.kind == "id" and self.tok.text.lower() in _BOOL_WORDS:
            value = _BOOL_WORDS[self.next().text.lower()]
        elif self.tok.kind == "id":
            raise self.error(
                f"modparam's value must be a string or a number ({self.tok.text} "
                "is not defined with #!define)"
            )
        else:
            raise self.error("modparam's value must be a string or a number")
        self.expect_op(")", "to close modparam")
        return ModParam(module, param, value, start.where, self.pos)

    def number(self, tok: Tok) -> int:
        if tok.kind != "num":
            raise self.error("expected a number", tok)
        try:
            return int(tok.text, 0) if not tok.text.isdigit() else int(tok.text)
        except ValueError:
            raise CfgError(tok.where, f"bad number {tok.text!r}") from None

    def core_param(self) -> CoreParam:
        start = self.tok
        name = self.next().text
        while self.at_op("."):  # cfg_group.var = value
            self.next()
            name += "." + self.next().text
        self.expect_op("=")
        parts: list[Tok] = []
        depth = 0
        line = start.where
        while not self.at("eof"):
            tok = self.tok
            if depth == 0 and (tok.where != line and parts and tok.space):
                break
            if depth == 0 and self.at_op(";"):
                self.next()
                break
            if tok.kind == "op" and tok.text == "{":
                depth += 1
            elif tok.kind == "op" and tok.text == "}":
                depth -= 1
                if depth < 0:
                    raise self.error(f"unbalanced '}}' in the value of {name}")
            parts.append(self.next())
            if depth == 0 and parts[0].text == "{":
                break
        if not parts:
            raise self.error(f"{name} = needs a value")
        return CoreParam(name, join_tokens(parts), tuple(parts), start.where)

    def route_block(self) -> RouteBlock:
        start = self.next()
        kind = _BLOCK_KINDS[start.text]
        name = ""
        if self.at_op("["):
            self.next()
            parts: list[str] = []
            while not self.at_op("]"):
                if self.at("eof"):
                    raise self.error(f"{start.text}[ not closed by ]")
                parts.append(self.next().text)
            self.next()
            name = "".join(parts)
        if kind == "route" and name == "":
            kind = "request"
        if kind == "route" and name in ("0", "DEFAULT_ROUTE"):
            kind, name = "request", ""
        if kind == "onreply" and name == "":
            kind = "reply"
        self.expect_op("{", f"to open {start.text}")
        body = self.statements_until("}")
        self.expect_op("}")
        return RouteBlock(kind, name, body, start.where)

    # -- statements -------------------------------------------------------------------------

    def statements_until(self, *closers: str) -> tuple[Stmt, ...]:
        out: list[Stmt] = []
        while not (self.at("eof") or (self.tok.kind in ("op", "id") and self.tok.text in closers)):
            stmt = self.statement()
            if stmt is not None:
                out.append(stmt)
        if self.at("eof"):
            raise self.error(f"expected {' or '.join(repr(c) for c in closers)}")
        return tuple(out)

    def block_or_statement(self) -> tuple[Stmt, ...]:
        if self.at_op("{"):
            self.next()
            body = self.statements_until("}")
            self.expect_op("}")
            return body
        stmt = self.statement()
        return () if stmt is None else (stmt,)

    def end_statement(self) -> None:
        """A statement ends with ';' (Kamailio accepts its absence before '}' and 'else')."""
        if self.at_op(";"):
            self.next()
        elif not (self.at_op("}") or self.at("id", "else")):
            raise self.error("expected ';'")

    def statement(self) -> Stmt | None:
        tok = self.tok
        if self.at_op(";"):
            self.next()
            return None
        if self.at_op("{"):
            body = self.block_or_statement()
            # a bare block: as `if (1) {...}`
            return If(Num(1, tok.where), body, None, tok.where)
        if tok.kind == "id":
            word = tok.text
            if word == "if":
                return self.if_statement()
            if word == "switch":
                return self.switch_statement()
            if word == "while":
                self.next()
                self.expect_op("(", "after while")
                cond = self.expression()
                self.expect_op(")", "to close while's condition")
                return While(cond, self.block_or_statement(), tok.where)
            if word in ("exit", "drop", "return", "break"):
                self.next()
                if self.at_op("(") and self.peek().kind == "op" and self.peek().text == ")":
                    self.next()
                    self.next()
                elif word in ("exit", "return", "drop") and not self.at_op(";", "}"):
                    self.expression()  # return(1), exit 0...
                self.end_statement()
                return Jump(word, tok.where)
        if (
            tok.kind == "pvar"
            and self.peek().kind == "op"
            and self.peek().text in ("=", ":=", "+=")
        ):
            target = self.next().text
            op = self.next().text
            value = self.expression()
            self.end_statement()
            return Assign(target, op, value, tok.where)
        expr = self.expression()
        self.end_statement()
        return ExprStmt(expr, tok.where)

    def if_statement(self) -> If:
        start = self.next()
        self.expect_op("(", "after if")
        cond = self.expression()
        self.expect_op(")", "to close if's condition")
        then = self.block_or_statement()
        orelse: tuple[Stmt, ...] | None = None
        if self.at("id", "else"):
            self.next()
            orelse = self.block_or_statement()
        return If(cond, then, orelse, start.where)

    def switch_statement(self) -> Switch:
        start = self.next()
        self.expect_op("(", "after switch")
        expr = self.expression()
        self.expect_op(")", "to close switch's value")
        self.expect_op("{", "to open switch's cases")
        cases: list[tuple[Expr | None, tuple[Stmt, ...]]] = []
        while not self.at_op("}"):
            if self.at("id", "case"):
                self.next()
                value: Expr | None = self.unary()
                self.expect_op(":", "after case's value")
            elif self.at("id", "default"):
                self.next()
                value = None
                self.expect_op(":", "after default")
            else:
                raise self.error("expected case or default in switch")
            body = self.statements_until("case", "default", "}")
            cases.append((value, body))
        self.next()
        return Switch(expr, tuple(cases), start.where)

    # -- expressions ------------------------------------------------------------------------

    def expression(self, level: int = 0) -> Expr:
        if level == len(_LEVELS):
            return self.unary()
        left = self.expression(level + 1)
        while True:
            tok = self.tok
            op = (
                tok.text
                if tok.kind == "op"
                else _WORD_OPS.get(tok.text, "")
                if tok.kind == "id"
                else ""
            )
            if op not in _LEVELS[level]:
                return left
            self.next()
            right = self.expression(level + 1)
            left = Binary(op, left, right, tok.where)

    def unary(self) -> Expr:
        tok = self.tok
        if self.at_op("!") or self.at_op("-") or self.at_op("~"):
            self.next()
            return Unary(tok.text, self.unary(), tok.where)
        if tok.kind == "id" and tok.text in _UNARY_WORDS and not self.peek_is_call():
            self.next()
            return Unary("!" if tok.text == "not" else tok.text, self.unary(), tok.where)
        return self.primary()

    def peek_is_call(self) -> bool:
        nxt = self.peek()
        return nxt.kind == "op" and nxt.text == "(" and not nxt.space

    def primary(self) -> Expr:
        tok = self.tok
        if self.at_op("("):
            self.next()
            cast = self.tok
            if cast.kind == "id" and cast.text in ("int", "str") and self.peek().text == ")":
                self.next()
                self.next()
                return Unary(f"({cast.text})", self.unary(), tok.where)
            inner = self.expression()
            self.expect_op(")")
            return inner
        if tok.kind == "str":
            self.next()
            return Str(tok.text, tok.where)
        if tok.kind == "pvar":
            self.next()
            return PVar(tok.text, tok.where)
        if tok.kind == "num":
            if self.peek().kind == "op" and self.peek().text == "." and not self.peek().space:
                return Name(self.address(), tok.where)
            self.next()
            return Num(self.number(tok), tok.where)
        if self.at_op("["):  # an IPv6 address
            return Name(self.address(), tok.where)
        if self.at_op("@"):  # a select: @ruri.user
            parts = [self.next().text]
            while (
                self.tok.kind in ("id", "num") or self.at_op(".", "[", "]")
            ) and not self.tok.space:
                parts.append(self.next().text)
            return Name("".join(parts), tok.where)
        if tok.kind == "id":
            self.next()
            if self.at_op("("):
                self.next()
                args: list[Expr] = []
                if not self.at_op(")"):
                    args.append(self.expression())
                    while self.at_op(","):
                        self.next()
                        args.append(self.expression())
                self.expect_op(")", f"to close {tok.text}(")
                return Call(tok.text, tuple(args), tok.where)
            if tok.text in ("true", "yes", "on"):
                return Num(1, tok.where)
            if tok.text in ("false", "no", "off"):
                return Num(0, tok.where)
            name = tok.text
            # a host name, a dotted word or an old select (msg:len, uri:host)
            while (
                self.at_op(".", ":")
                and not self.tok.space
                and self.peek().kind in ("id", "num")
                and not self.peek().space
            ):
                name += self.next().text + self.next().text
            return Name(name, tok.where)
        raise self.error("expected a value")

    def address(self) -> str:
        """An IPv4/IPv6 address (with a /mask) written bare in an expression."""
        parts = [self.next().text]
        while not self.tok.space and (
            self.tok.kind in ("num", "id") or self.at_op(".", ":", "/", "[", "]")
        ):
            parts.append(self.next().text)
        return "".join(parts)


def join_tokens(parts: tuple[Tok, ...] | list[Tok]) -> str:
    """Tokens back into text: a space where the source had one, strings re-quoted."""
    out = []
    for i, tok in enumerate(parts):
        text = tok.text
        if tok.kind == "str":
            text = tok.quote + text.replace("\\", "\\\\").replace('"', '\\"') + tok.quote
        out.append((" " if tok.space and i else "") + text)
    return "".join(out)
