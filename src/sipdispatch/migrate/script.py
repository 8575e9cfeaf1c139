"""What a kamailio.cfg's routing script does with the dispatcher, found by walking it.

`analyse` follows ``request_route`` statement by statement, into every ``route(NAME)`` it
calls, along both branches of every ``if``, and keeps for each path:

- the conditions that hold on it (``Guard``): those of the ``if`` blocks it is inside
  (``branch``), and those that the requests left on it passed because the others were
  answered, dropped or relayed elsewhere before (``exit``);
- the constant values given to variables (``$var(alg) = 4``), so that a ``ds_select_dst``
  called with them can be read;
- the ``failure_route`` armed with ``t_on_failure``, and the dispatcher selections waiting
  for their ``t_relay``.

Paths are merged after each block (the conditions common to them, the variables equal on
them), so the walk is linear in the size of the script. Each ``ds_select_dst``,
``ds_select_domain``, ``ds_select`` and ``ds_select_routes`` is a `Site`: its conditions,
arguments, the failure route armed when its request is relayed, and what the script does
when it finds nothing (the reply sent, another selection tried).

Each path of ``request_route`` that ends without a selection is a `Termination` (what
it did to its requests: a reply, a relay of the script's own, nothing).

Each failure route a site relays with is then walked the same way (`analyse_failure`):
where ``ds_next_dst``/``ds_next_domain`` and ``ds_mark_dst`` are called, under which
conditions. Those conditions are evaluated for every final response code and for the two
kinds of branch timeout (`Scenario`), which gives the codes that fail over, whether a
timeout does, and when a destination is marked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from sipdispatch.migrate.cfgtext import CfgError, Where, posix_to_python
from sipdispatch.migrate.syntax import (
    Assign,
    Binary,
    Call,
    Expr,
    ExprStmt,
    If,
    Jump,
    Name,
    Num,
    PVar,
    RouteBlock,
    Script,
    Stmt,
    Str,
    Switch,
    Unary,
    While,
)

__all__ = [
    "SELECT_FUNCTIONS",
    "FailureSpec",
    "Guard",
    "Note",
    "Scenario",
    "ScriptFacts",
    "Site",
    "analyse",
    "analyse_failure",
    "const_value",
    "evaluate",
    "expr_text",
]

SELECT_FUNCTIONS: Final = frozenset(
    {"ds_select_dst", "ds_select_domain", "ds_select", "ds_select_routes"}
)
NEXT_FUNCTIONS: Final = frozenset({"ds_next_dst", "ds_next_domain"})
RELAY_FUNCTIONS: Final = frozenset(
    {
        "t_relay",
        "t_relay_to",
        "t_relay_to_udp",
        "t_relay_to_tcp",
        "t_relay_to_tls",
        "t_relay_to_sctp",
        "t_forward_nonack",
        "t_forward_nonack_udp",
        "t_forward_nonack_tcp",
        "t_forward_nonack_tls",
        "forward",
        "forward_udp",
        "forward_tcp",
        "forward_tls",
        "t_relay_cancel",
    }
)
REPLY_FUNCTIONS: Final = frozenset(
    {
        "sl_send_reply",
        "send_reply",
        "t_reply",
        "sl_reply",
        "t_send_reply",
        "send_reply_error",
        "sl_reply_error",
        "t_reply_error",
        "sl_forward_reply",
    }
)
BUILT_IN: Final = {
    "mf_process_maxfwd_header": "Max-Forwards: sipdispatch answers 483 at 0 and adds "
    "Max-Forwards: 70 when it is missing",
    "maxfwd_process": "Max-Forwards: sipdispatch answers 483 at 0",
    "sanity_check": "malformed requests: sipdispatch's parser answers 400 with the reason",
    "t_check_trans": "retransmissions and CANCEL: sipdispatch's transaction layer matches them",
    "t_precheck_trans": "retransmissions: sipdispatch's transaction layer absorbs them",
    "has_totag": "in-dialog requests: sipdispatch relays them along their route set",
    "loose_route": "in-dialog requests: sipdispatch relays them along their route set",
    "t_newtran": "transactions: sipdispatch is transaction stateful",
    "record_route": "Record-Route: [server] record_route",
    "pike_check_req": "requests over the flood limit: [security] flood_limit drops them",
    "ds_load_update": "call load (algorithm 10): sipdispatch counts each call itself, from its "
    "INVITE to its BYE, CANCEL or failure",
    "ds_load_unset": "call load (algorithm 10): sipdispatch counts each call itself, from its "
    "INVITE to its BYE, CANCEL or failure",
}
"""Script functions whose job sipdispatch's proxy core does by itself."""
QUIET: Final = frozenset(
    {
        "xlog",
        "xdbg",
        "xinfo",
        "xnotice",
        "xwarn",
        "xerr",
        "xalert",
        "xcrit",
        "xbug",
        "log",
        "xlogl",
        "setflag",
        "resetflag",
        "isflagset",
        "setbflag",
        "resetbflag",
        "isbflagset",
        "is_method",
        "t_on_branch",
        "t_on_reply",
        "t_on_failure",
        "t_is_set",
        "ds_is_from_list",
        "force_rport",
        "add_rport",
        "route",
        "t_check_status",
        "t_branch_timeout",
        "t_branch_replied",
        "t_any_timeout",
        "t_any_replied",
        "t_is_canceled",
        "is_present_hf",
        "t_set_fr",
        "xlog_level",
        "uri",
        "dlg_manage",
        "sl_reply_error",
        "send_reply_error",
        "t_reply_error",
        "drop",
        "exit",
        "return",
        "strempty",
        "defined",
        "starts_with",
        "ds_list_exists",
        "ds_list_exist",
        "ds_is_active",
        "append_to_reply",
        "set_reply_no_connect",
    }
)
"""Calls that change nothing a migration has to say (logging, flags, tests already read)."""


# ------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Guard:
    """A condition that holds on a path."""

    expr: Expr
    positive: bool
    kind: Literal["branch", "exit"]
    """``branch``: the path is inside an ``if`` on it; ``exit``: the requests for which
    it did not hold left the path before."""
    at: Where | None = None
    """The statement (``if``, ``switch``, ``while``) the condition belongs to."""

    @property
    def where(self) -> Where:
        return self.at if self.at is not None else self.expr.where


@dataclass(slots=True)
class Site:
    """One dispatcher selection in ``request_route`` (or a route it calls)."""

    index: int
    call: Call
    guards: tuple[Guard, ...]
    vars: dict[str, int | str]
    relays: list[frozenset[str]] = field(default_factory=list)
    """The failure routes armed at each relay of its request (one set per relay)."""
    fail_replies: list[tuple[int | None, Where]] = field(default_factory=list)
    """Replies sent on the paths where it found nothing."""
    fail_relays: list[Where] = field(default_factory=list)
    """Relays on the paths where it found nothing (to the R-URI: no destination set)."""
    fallbacks: list[int] = field(default_factory=list)
    """Sites tried on the paths where it found nothing."""
    fallback_of: int | None = None
    """The site whose failure this one is tried on."""
    checked: bool = True
    """Its result is tested (``if (!ds_select_dst(...))``)."""
    after: list[str] = field(default_factory=list)
    """Requests changed on its path before the relay (``$rU = ...``, ``append_hf``...)."""


@dataclass(frozen=True, slots=True)
class Note:
    """Something the script does that a migration reports: ``what`` happens at
    ``where``."""

    where: Where
    what: str
    category: str
    """``built-in`` (sipdispatch does it), ``differs`` (sipdispatch does something close,
    ``what`` says how), ``call`` (a function not carried), ``change`` (the request
    changed)."""


@dataclass(frozen=True, slots=True)
class Termination:
    """A path of ``request_route`` that ends without a dispatcher selection."""

    where: Where
    """Where it ends (``exit``, ``drop``, the end of the block)."""
    guards: tuple[Guard, ...]
    replies: tuple[tuple[int | None, Where], ...]
    relay: Where | None
    dropped: bool


@dataclass(slots=True)
class ScriptFacts:
    """What `analyse` found in ``request_route``."""

    sites: list[Site] = field(default_factory=list)
    ends: list[Termination] = field(default_factory=list)
    record_route: list[tuple[Where, str]] = field(default_factory=list)
    """Each ``record_route*()`` call: where and the function."""
    notes: dict[Where, Note] = field(default_factory=dict)
    unknown: dict[Where, str] = field(default_factory=dict)
    """Conditions the walk could not decide, by place."""
    calls: dict[str, list[Where]] = field(default_factory=dict)
    """Every function called on the walk (statements, and the actions of conditions)."""

    def note(self, where: Where, what: str, category: str) -> None:
        self.notes.setdefault(where, Note(where, what, category))


@dataclass(slots=True)
class _Ctx:
    """The state of one path."""

    guards: tuple[Guard, ...] = ()
    vars: dict[str, int | str] = field(default_factory=dict)
    armed: frozenset[str] = frozenset()
    pending: frozenset[int] = frozenset()
    failing: frozenset[int] = frozenset()
    stack: tuple[str, ...] = ()
    nexted: bool = False
    """(failure routes) ``ds_next_*`` succeeded on this path."""
    changes: tuple[str, ...] = ()
    replies: tuple[tuple[int | None, Where], ...] = ()
    """Replies sent on this path."""
    relay: Where | None = None
    """Where this path relayed the request."""
    dispatched: bool = False
    """A dispatcher selection was made on this path."""

    def copy(self, **changes: object) -> _Ctx:
        out = replace(self, **changes)  # type: ignore[arg-type]
        if "vars" not in changes:
            out.vars = dict(self.vars)
        return out

    def guarded(self, expr: Expr, positive: bool, at: Where | None = None) -> _Ctx:
        return self.copy(guards=(*self.guards, Guard(expr, positive, "branch", at)))


# ------------------------------------------------------------------------------------------
# Helpers over expressions
# ------------------------------------------------------------------------------------------


def expr_text(expr: Expr) -> str:
    """An expression written back as Kamailio script."""
    if isinstance(expr, Str):
        return '"' + expr.value.replace('"', '\\"') + '"'
    if isinstance(expr, Num):
        return str(expr.value)
    if isinstance(expr, PVar | Name):
        return expr.text
    if isinstance(expr, Call):
        return f"{expr.name}({', '.join(expr_text(a) for a in expr.args)})"
    if isinstance(expr, Unary):
        if expr.op in ("!", "-", "~"):
            return f"{expr.op}{expr_text(expr.operand)}"
        return f"{expr.op} {expr_text(expr.operand)}"
    return f"{_operand(expr.left, expr.op)} {expr.op} {_operand(expr.right, expr.op)}"


def _operand(expr: Expr, parent: str) -> str:
    """An operand of ``parent``, in parentheses when it binds less tightly."""
    text = expr_text(expr)
    if isinstance(expr, Binary) and expr.op != parent and expr.op in ("||", "&&"):
        return f"({text})"
    return text


def calls_in(expr: Expr) -> list[Call]:
    """The calls of an expression, in evaluation order (arguments first)."""
    out: list[Call] = []

    def visit(e: Expr) -> None:
        if isinstance(e, Call):
            for a in e.args:
                visit(a)
            out.append(e)
        elif isinstance(e, Unary):
            visit(e.operand)
        elif isinstance(e, Binary):
            visit(e.left)
            visit(e.right)

    visit(expr)
    return out


_PVAR_ONLY: Final = re.compile(r"^\$[A-Za-z_][A-Za-z0-9_.]*(\([^()]*\))?$")


def const_value(expr: Expr, vars: dict[str, int | str]) -> int | str | None:
    """The constant value of an argument: a number, a string without variables, or a
    variable whose constant value the walk knows; None otherwise."""
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Str):
        text = expr.value
        if "$" not in text:
            return text
        if _PVAR_ONLY.match(text):
            return vars.get(text)
        return None
    if isinstance(expr, PVar):
        return vars.get(expr.text)
    if isinstance(expr, Unary) and expr.op == "-":
        inner = const_value(expr.operand, vars)
        return -inner if isinstance(inner, int) else None
    if isinstance(expr, Binary) and expr.op == "+":
        left, right = const_value(expr.left, vars), const_value(expr.right, vars)
        if isinstance(left, int) and isinstance(right, int):
            return left + right
        if isinstance(left, str) and isinstance(right, str):
            return left + right
    return None


def as_int(value: int | str | None) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _strip_not(expr: Expr) -> tuple[Expr, bool]:
    positive = True
    while isinstance(expr, Unary) and expr.op == "!":
        expr = expr.operand
        positive = not positive
    return expr, positive


def _ends(stmts: Sequence[Stmt]) -> bool:
    """The statements always end the script (exit/drop/return), read syntactically."""
    for stmt in stmts:
        if isinstance(stmt, Jump) and stmt.kind in ("exit", "drop", "return"):
            return True
        if (
            isinstance(stmt, If)
            and stmt.orelse is not None
            and _ends(stmt.then)
            and _ends(stmt.orelse)
        ):
            return True
    return False


# ------------------------------------------------------------------------------------------
# The walk
# ------------------------------------------------------------------------------------------


class _Walker:
    def __init__(self, script: Script, mode: Literal["request", "failure"]) -> None:
        self.script = script
        self.mode = mode
        self.routes = script.routes("route")
        self.facts = ScriptFacts()
        self.frames: list[list[_Ctx]] = []
        self.next_sites: list[NextSite] = []
        self.marks: list[MarkSite] = []
        self.reselects: list[tuple[Call, tuple[Guard, ...]]] = []

    # -- sequences --------------------------------------------------------------------------

    def seq(self, stmts: Iterable[Stmt], ctx: _Ctx | None) -> _Ctx | None:
        for stmt in stmts:
            if ctx is None:
                return None
            if isinstance(stmt, Jump) and stmt.kind == "break":
                return ctx
            ctx = self.stmt(stmt, ctx)
        return ctx

    def stmt(self, stmt: Stmt, ctx: _Ctx) -> _Ctx | None:
        if isinstance(stmt, ExprStmt):
            return self.effects(stmt.expr, ctx, bare=True)
        if isinstance(stmt, Assign):
            return self.assign(stmt, ctx)
        if isinstance(stmt, If):
            return self.if_stmt(stmt, ctx)
        if isinstance(stmt, Switch):
            return self.switch(stmt, ctx)
        if isinstance(stmt, While):
            inside = self.seq(stmt.body, ctx.guarded(stmt.cond, True, stmt.where))
            return self.merge([c for c in (ctx, inside) if c is not None], ctx)
        if stmt.kind == "return" and len(self.frames) > 1:
            self.frames[-1].append(ctx)
            return None
        self.ended(ctx, stmt.where, dropped=stmt.kind == "drop")
        return None  # exit, drop, return from the main block

    def ended(self, ctx: _Ctx, where: Where, *, dropped: bool = False) -> None:
        if self.mode == "request" and not ctx.dispatched:
            self.facts.ends.append(Termination(where, ctx.guards, ctx.replies, ctx.relay, dropped))

    def assign(self, stmt: Assign, ctx: _Ctx) -> _Ctx | None:
        out = self.effects(stmt.value, ctx, bare=False)
        if out is None:
            return None
        value = const_value(stmt.value, out.vars) if stmt.op == "=" else None
        if value is None:
            out.vars.pop(stmt.target, None)
        else:
            out.vars[stmt.target] = value
        target = stmt.target
        if self.mode == "request" and re.match(
            r"^\$(ru|rU|rd|rp|rz|du|fu|fU|fd|tu|tU|td|fn|tn|rs|rr)\b", target
        ):
            what = f"{target} {stmt.op} {expr_text(stmt.value)}"
            self.facts.note(stmt.where, what, "change")
            out.changes = (*out.changes, f"{stmt.where}: {what}")
        return out

    def switch(self, stmt: Switch, ctx: _Ctx) -> _Ctx | None:
        out: list[_Ctx] = []
        has_default = False
        for value, body in stmt.cases:
            if value is None:
                has_default = True
                cond: Expr = Name(f"default of switch({expr_text(stmt.expr)})", stmt.where)
            else:
                cond = Binary("==", stmt.expr, value, stmt.where)
            end = self.seq(body, ctx.guarded(cond, True, stmt.where))
            if end is not None:
                out.append(end)
        if not has_default:
            out.append(ctx)
        return self.merge(out, ctx)

    # -- if ---------------------------------------------------------------------------------

    def site_calls(self, expr: Expr) -> list[Call]:
        names = SELECT_FUNCTIONS if self.mode == "request" else NEXT_FUNCTIONS
        return [c for c in calls_in(expr) if c.name in names]

    def fold(self, expr: Expr, ctx: _Ctx) -> bool | None:
        """What the walk knows of a condition on this path."""
        inner, positive = _strip_not(expr)
        if isinstance(inner, Call) and inner.name == "t_is_set" and inner.args:
            what = const_value(inner.args[0], ctx.vars)
            if what == "failure_route":
                return bool(ctx.armed) == positive
        if isinstance(inner, Num):
            return bool(inner.value) == positive
        return None

    def if_stmt(self, stmt: If, ctx: _Ctx) -> _Ctx | None:
        sites = self.site_calls(stmt.cond)
        if sites:
            return self.site_if(stmt, sites, ctx)
        after = self.effects(stmt.cond, ctx, bare=False)
        if after is None:
            return None
        known = self.fold(stmt.cond, after)
        then_end: _Ctx | None = None
        else_end: _Ctx | None = None
        if known is not False:
            then_end = self.seq(stmt.then, after.guarded(stmt.cond, True, stmt.where))
        if known is not True:
            else_end = self.seq(stmt.orelse or (), after.guarded(stmt.cond, False, stmt.where))
        if known is not None:
            return then_end if known else else_end
        ends = [c for c in (then_end, else_end) if c is not None]
        if len(ends) == 1:
            return self.only(ends[0], after)
        return self.merge(ends, after)

    def site_if(self, stmt: If, sites: list[Call], ctx: _Ctx) -> _Ctx | None:
        if self.mode == "failure":
            return self.next_if(stmt, sites[0], ctx)
        call = sites[0]
        cond, positive = _strip_not(stmt.cond)
        others: list[Expr] = []
        if cond is not call:
            if isinstance(cond, Binary) and cond.op == "&&" and positive:
                parts = _conjuncts(cond)
                picked = [p for p in parts if _strip_not(p)[0] is call]
                if picked:
                    cond, positive = _strip_not(picked[0])
                    others = [p for p in parts if p is not picked[0]]
            if cond is not call:
                self.facts.unknown.setdefault(
                    stmt.where,
                    f"the condition {expr_text(stmt.cond)} is read as if it were "
                    f"{call.name}(...) alone",
                )
                positive = True
        base = ctx
        for other in others:
            base = self.effects(other, base, bare=False) or base
        for c in calls_in(stmt.cond):
            if c is not call and c.name not in ("route",):
                self.call_effect(c, base)
        success_stmts = stmt.then if positive else (stmt.orelse or ())
        fail_stmts = (stmt.orelse or ()) if positive else stmt.then
        extra = tuple(Guard(o, True, "branch", stmt.where) for o in others)
        index = self.new_site(call, base.copy(guards=base.guards + extra))
        if index is None:
            return base
        ok = base.copy(
            guards=base.guards + extra,
            pending=base.pending | {index},
            failing=base.failing - {index},
            dispatched=True,
        )
        bad = base.copy(
            failing=base.failing | {index}, pending=base.pending - {index}, dispatched=True
        )
        ok_end = self.seq(success_stmts, ok)
        bad_end = self.seq(fail_stmts, bad)
        ends = [c for c in (ok_end, bad_end) if c is not None]
        return self.merge(ends, base) if ends else None

    def next_if(self, stmt: If, call: Call, ctx: _Ctx) -> _Ctx | None:
        """``if (ds_next_dst()) {...}`` in a failure route."""
        cond, positive = _strip_not(stmt.cond)
        if cond is not call:
            self.facts.unknown.setdefault(
                stmt.where,
                f"the condition {expr_text(stmt.cond)} is read as if it were {call.name}() alone",
            )
            positive = True
        self.next_sites.append(NextSite(call, ctx.guards))
        index = len(self.next_sites) - 1
        ok = ctx.copy(pending=ctx.pending | {index}, nexted=True)
        bad = ctx.copy(failing=ctx.failing | {index})
        ok_end = self.seq(stmt.then if positive else (stmt.orelse or ()), ok)
        bad_end = self.seq((stmt.orelse or ()) if positive else stmt.then, bad)
        return self.merge([c for c in (ok_end, bad_end) if c is not None], ctx)

    def only(self, end: _Ctx, base: _Ctx) -> _Ctx:
        """The one path that goes on after a block: its new conditions become ``exit``
        guards (the other requests left)."""
        added = end.guards[len(base.guards) :]
        converted = tuple(Guard(g.expr, g.positive, "exit", g.at) for g in added)
        return end.copy(guards=base.guards + converted, vars=end.vars)

    def merge(self, ends: list[_Ctx], base: _Ctx) -> _Ctx | None:
        if not ends:
            return None
        if len(ends) == 1:
            return ends[0]
        prefix = len(base.guards)
        common = min(len(e.guards) for e in ends)
        while prefix < common and all(e.guards[prefix] == ends[0].guards[prefix] for e in ends):
            prefix += 1
        first = ends[0]
        vars = {k: v for k, v in first.vars.items() if all(e.vars.get(k) == v for e in ends)}
        armed = frozenset().union(*(e.armed for e in ends))
        return _Ctx(
            guards=first.guards[:prefix],
            vars=vars,
            armed=armed,
            pending=frozenset().union(*(e.pending for e in ends)),
            failing=frozenset().union(*(e.failing for e in ends)),
            stack=base.stack,
            nexted=all(e.nexted for e in ends),
            changes=tuple(dict.fromkeys(c for e in ends for c in e.changes)),
            replies=tuple(dict.fromkeys(r for e in ends for r in e.replies)),
            relay=next((e.relay for e in ends if e.relay is not None), None),
            dispatched=any(e.dispatched for e in ends),
        )

    # -- calls ------------------------------------------------------------------------------

    def effects(self, expr: Expr, ctx: _Ctx, *, bare: bool) -> _Ctx | None:
        """The calls of an expression done, in order; a ``route()`` is walked into. The
        calls of a condition (``bare`` false) are tests, except the actions listed."""
        for call in calls_in(expr):
            places = self.facts.calls.setdefault(call.name, [])
            if call.where not in places:
                places.append(call.where)
            if not bare and not _is_action(call.name):
                continue
            if call.name in SELECT_FUNCTIONS and self.mode == "request":
                index = self.new_site(call, ctx)
                if index is not None:
                    self.facts.sites[index].checked = False
                    ctx = ctx.copy(
                        pending=ctx.pending | {index},
                        failing=ctx.failing | {index},
                        dispatched=True,
                    )
                continue
            if call.name in NEXT_FUNCTIONS and self.mode == "failure":
                self.next_sites.append(NextSite(call, ctx.guards, checked=False))
                index = len(self.next_sites) - 1
                ctx = ctx.copy(pending=ctx.pending | {index}, nexted=True)
                continue
            if call.name == "route":
                out = self.call_route(call, ctx)
                if out is None:
                    return None
                ctx = out
                continue
            ctx = self.call_effect(call, ctx)
        return ctx

    def call_effect(self, call: Call, ctx: _Ctx) -> _Ctx:
        name = call.name
        if name == "t_on_failure" and call.args:
            target = const_value(call.args[0], ctx.vars)
            if target is None:
                self.facts.unknown.setdefault(
                    call.where,
                    f"t_on_failure({expr_text(call.args[0])}): a failure route "
                    "named by a variable is not followed",
                )
                return ctx
            return ctx.copy(armed=frozenset({str(target)}))
        if name in RELAY_FUNCTIONS:
            self.relayed(ctx, call)
            return ctx.copy(pending=frozenset(), failing=frozenset(), relay=call.where)
        if name in REPLY_FUNCTIONS:
            code = _reply_code(call)
            ctx = ctx.copy(replies=(*ctx.replies, (code, call.where)))
            if self.mode == "request":
                for index in ctx.failing:
                    self.facts.sites[index].fail_replies.append((code, call.where))
            else:
                for index in ctx.failing:
                    self.next_sites[index].fail_replies.append((code, call.where))
            return ctx
        if self.mode == "failure":
            if name == "ds_mark_dst":
                letters = const_value(call.args[0], ctx.vars) if call.args else ""
                self.marks.append(
                    MarkSite(
                        call, ctx.guards, None if letters is None else str(letters), ctx.nexted
                    )
                )
            elif name in SELECT_FUNCTIONS:
                self.reselects.append((call, ctx.guards))
            return ctx
        if name.startswith("record_route"):
            self.facts.record_route.append((call.where, name))
            return ctx
        if name in BUILT_IN:
            self.facts.note(call.where, BUILT_IN[name], "built-in")
            return ctx
        if name == "remove_hf" and call.args and const_value(call.args[0], {}) == "Route":
            self.facts.note(
                call.where,
                "sipdispatch removes its own Route entries from an initial request and keeps "
                "the others",
                "differs",
            )
            return ctx
        if name in QUIET or name.startswith("ds_"):
            return ctx
        what = expr_text(call)
        self.facts.note(call.where, what, "call")
        if _changes_request(name):
            return ctx.copy(changes=(*ctx.changes, f"{call.where}: {what}"))
        return ctx

    def relayed(self, ctx: _Ctx, call: Call) -> None:
        if self.mode == "request":
            for index in ctx.pending:
                site = self.facts.sites[index]
                site.relays.append(ctx.armed)
                site.after.extend(c for c in ctx.changes if c not in site.after)
            for index in ctx.failing:
                self.facts.sites[index].fail_relays.append(call.where)
        else:
            for index in ctx.pending:
                self.next_sites[index].relays.append(ctx.armed)

    def call_route(self, call: Call, ctx: _Ctx) -> _Ctx | None:
        if not call.args:
            raise CfgError(call.where, "route() needs the name of a route")
        name = const_value(call.args[0], ctx.vars)
        if name is None and isinstance(call.args[0], Name):
            name = call.args[0].text
        if name is None:
            self.facts.unknown.setdefault(
                call.where,
                f"route({expr_text(call.args[0])}): a route named by a variable is not followed",
            )
            return ctx
        block = self.routes.get(str(name))
        if block is None:
            raise CfgError(call.where, f"route({name}): no route[{name}] in the configuration")
        if str(name) in ctx.stack:
            self.facts.unknown.setdefault(call.where, f"route({name}) calls itself: followed once")
            return ctx
        self.frames.append([])
        inner = ctx.copy(stack=(*ctx.stack, str(name)))
        end = self.seq(block.body, inner)
        returned = self.frames.pop()
        ends = [*returned, *([end] if end is not None else [])]
        if not ends:
            return None
        if len(ends) == 1:
            out = self.only(ends[0], ctx)
        else:
            merged = self.merge(ends, ctx)
            assert merged is not None
            out = self.only(merged, ctx)
        return out.copy(stack=ctx.stack, vars=out.vars)

    def new_site(self, call: Call, ctx: _Ctx) -> int | None:
        if self.mode != "request":
            return None
        site = Site(len(self.facts.sites), call, ctx.guards, dict(ctx.vars))
        for index in ctx.failing:
            self.facts.sites[index].fallbacks.append(site.index)
            if site.fallback_of is None:
                site.fallback_of = index
        self.facts.sites.append(site)
        return site.index


_ACTIONS_IN_CONDITIONS: Final = frozenset(
    {
        "lookup",
        "lookup_branches",
        "save",
        "registered",
        "t_load_contacts",
        "t_next_contacts",
        "t_newtran",
        "t_check_trans",
        "t_precheck_trans",
        "loose_route",
        "auth_check",
        "www_authorize",
        "proxy_authorize",
        "pike_check_req",
        "ds_mark_dst",
    }
)
"""Functions that act (and are usually tested) in conditions; the others there are tests."""


def _is_action(name: str) -> bool:
    return (
        name in _ACTIONS_IN_CONDITIONS
        or name in SELECT_FUNCTIONS
        or name in NEXT_FUNCTIONS
        or name in RELAY_FUNCTIONS
        or name in REPLY_FUNCTIONS
        or name in ("route", "t_on_failure")
        or name.startswith("record_route")
        or name in BUILT_IN
        or _changes_request(name)
    )


def _conjuncts(expr: Expr) -> list[Expr]:
    if isinstance(expr, Binary) and expr.op == "&&":
        return [*_conjuncts(expr.left), *_conjuncts(expr.right)]
    return [expr]


def _reply_code(call: Call) -> int | None:
    if not call.args:
        return None
    return as_int(const_value(call.args[0], {}))


_CHANGING: Final = re.compile(
    r"^(append_hf|insert_hf|append_urihf|insert_urihf|remove_hf|subst|subst_uri|subst_user"
    r"|subst_hf|replace|replace_all|prefix|strip|strip_tail|rewrite\w*|uac_replace_\w+"
    r"|set_uri|seturi|sethost|setuser|sethostport|setport|append_branch|add_uri_param"
    r"|change_reply_status|msg_apply_changes|fix_nated_\w+|set_contact_alias|add_contact_alias"
    r"|handle_ruri_alias|rtpproxy_\w+|rtpengine_\w+|set_rtp_proxy_set|topos_\w+)$"
)


def _changes_request(name: str) -> bool:
    return bool(_CHANGING.match(name))


def analyse(script: Script) -> ScriptFacts:
    """Walk ``request_route``. Raises `CfgError` for a route called but not defined."""
    walker = _Walker(script, "request")
    block = script.block("request")
    if block is not None:
        walker.frames.append([])
        end = walker.seq(block.body, _Ctx())
        for ctx in [*walker.frames.pop(), *([end] if end is not None else [])]:
            walker.ended(ctx, Where(block.where.file, _last_line(block)))
    return walker.facts


def _last_line(block: RouteBlock) -> int:
    return block.body[-1].where.line if block.body else block.where.line


# ------------------------------------------------------------------------------------------
# Failure routes
# ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class NextSite:
    call: Call
    guards: tuple[Guard, ...]
    checked: bool = True
    relays: list[frozenset[str]] = field(default_factory=list)
    fail_replies: list[tuple[int | None, Where]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MarkSite:
    call: Call
    guards: tuple[Guard, ...]
    letters: str | None
    """The state letters; None when not a constant."""
    after_next: bool
    """Called after a ``ds_next_*`` that succeeded: it marks the *next* destination."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """How a branch ended, as a failure route sees it."""

    code: int
    timeout: bool
    replied: bool

    @property
    def label(self) -> str:
        if self.timeout:
            return "a timeout after a provisional reply" if self.replied else "no reply (timeout)"
        return str(self.code)


RECEIVED: Final = tuple(Scenario(code, False, True) for code in range(300, 700))
NO_REPLY: Final = Scenario(408, True, False)
"""fr_timer fired: no reply at all (Kamailio's local 408)."""
RANG_OUT: Final = Scenario(408, True, True)
"""fr_inv_timer fired after a provisional reply (Kamailio's local 408)."""
ALL_SCENARIOS: Final = (*RECEIVED, NO_REPLY, RANG_OUT)


@dataclass(slots=True)
class FailureSpec:
    """What one failure route does, scenario by scenario."""

    name: str
    block: RouteBlock
    nexts: list[NextSite]
    marks: list[MarkSite]
    reselects: list[tuple[Call, tuple[Guard, ...]]]
    unknown: dict[Where, str]
    notes: dict[Where, Note]

    def fails_over(self, scenario: Scenario) -> bool:
        return any(self.holds(n.guards, scenario) for n in self.nexts)

    def holds(self, guards: Sequence[Guard], scenario: Scenario) -> bool:
        """All guards hold; a guard that cannot be decided counts as holding (and is
        listed in ``unknown``)."""
        for guard in guards:
            value = evaluate(guard.expr, scenario)
            if value is None:
                self.unknown.setdefault(
                    guard.where,
                    f"the condition {expr_text(guard.expr)} cannot be decided from the reply "
                    "code: read as true",
                )
                continue
            if value != guard.positive:
                return False
        return True

    def marked(self, mark: MarkSite, scenario: Scenario) -> bool:
        return self.holds(mark.guards, scenario)


def analyse_failure(script: Script, name: str) -> FailureSpec | None:
    """Walk ``failure_route[name]``; None when there is none."""
    block = script.block("failure", name)
    if block is None:
        return None
    walker = _Walker(script, "failure")
    walker.frames.append([])
    walker.seq(block.body, _Ctx())
    walker.frames.pop()
    return FailureSpec(
        name,
        block,
        walker.next_sites,
        walker.marks,
        walker.reselects,
        walker.facts.unknown,
        walker.facts.notes,
    )


# ------------------------------------------------------------------------------------------
# Evaluating a failure route's conditions
# ------------------------------------------------------------------------------------------


def evaluate(expr: Expr, scenario: Scenario) -> bool | None:
    """A condition of a failure route for a branch that ended as ``scenario``: True,
    False, or None when it depends on something else."""
    value = _value(expr, scenario)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    return None


def _value(expr: Expr, s: Scenario) -> bool | int | str | None:
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Str):
        return expr.value
    if isinstance(expr, PVar):
        if expr.text in ("$T_reply_code", "$T(reply_code)", "$T_rpl($rs)"):
            return s.code
        return None
    if isinstance(expr, Call):
        return _call_value(expr, s)
    if isinstance(expr, Unary):
        if expr.op == "!":
            inner = evaluate(expr.operand, s)
            return None if inner is None else not inner
        if expr.op == "-":
            v = _value(expr.operand, s)
            return -v if isinstance(v, int) and not isinstance(v, bool) else None
        return None
    if isinstance(expr, Binary):
        if expr.op in ("&&", "||"):
            a, b = evaluate(expr.left, s), evaluate(expr.right, s)
            if expr.op == "&&":
                if a is False or b is False:
                    return False
                return None if a is None or b is None else True
            if a is True or b is True:
                return True
            return None if a is None or b is None else False
        left, right = _value(expr.left, s), _value(expr.right, s)
        if left is None or right is None:
            return None
        if expr.op in ("=~", "!~"):
            try:
                found = re.search(posix_to_python(str(right)), str(left)) is not None
            except re.error:
                return None
            return found if expr.op == "=~" else not found
        if isinstance(left, int) and isinstance(right, str) and right.strip().isdigit():
            right = int(right)
        if isinstance(right, int) and isinstance(left, str) and left.strip().isdigit():
            left = int(left)
        ops: dict[str, Callable[[object, object], bool]] = {
            "==": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
        }
        if expr.op in ops:
            return ops[expr.op](left, right)
        if isinstance(left, int) and isinstance(right, int):
            compare: dict[str, Callable[[int, int], bool]] = {
                "<": lambda a, b: a < b,
                ">": lambda a, b: a > b,
                "<=": lambda a, b: a <= b,
                ">=": lambda a, b: a >= b,
            }
            if expr.op in compare:
                return compare[expr.op](left, right)
        return None
    return None


def _call_value(call: Call, s: Scenario) -> bool | None:
    name = call.name
    if name == "t_check_status" and call.args:
        pattern = const_value(call.args[0], {})
        if not isinstance(pattern, str):
            return None
        try:
            return re.search(posix_to_python(pattern), str(s.code)) is not None
        except re.error:
            return None
    if name in ("t_branch_timeout", "t_any_timeout"):
        return s.timeout
    if name in ("t_branch_replied", "t_any_replied"):
        return s.replied
    if name in ("t_is_canceled", "t_is_expired"):
        return False
    return None
