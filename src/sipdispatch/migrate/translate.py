"""From a kamailio.cfg to a sipdispatch configuration: `migrate`.

The configuration is read (`cfgtext`, `syntax`), its routing script walked (`script`),
and every setting that has a sipdispatch key is written with the Kamailio line it came
from. Where kamailio.cfg leaves a dispatcher or tm parameter at Kamailio's default, the
default is written out too when sipdispatch's own differs (``ds_ping_interval`` 0: no
pings; ``flags`` 0: no failover), so the result behaves as Kamailio did. What has no
sipdispatch counterpart is written as a comment saying what and why, and what behaves
differently is also a `MigrationWarning`. The result is checked by sipdispatch's own
configuration loader before it is returned.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sipdispatch.config import Config, ConfigError, parse_config
from sipdispatch.migrate.base import (
    DEFAULT_VERSION,
    MigrationWarning,
    by_place,
    parse_version,
    release,
)
from sipdispatch.migrate.cfgtext import Where, read_cfg
from sipdispatch.migrate.core import CorePart
from sipdispatch.migrate.emit import Section, render
from sipdispatch.migrate.params import ParamsPart
from sipdispatch.migrate.rules import RulesPart, asserted, condition_text
from sipdispatch.migrate.script import (
    BUILT_IN,
    Guard,
    Termination,
    analyse,
)
from sipdispatch.migrate.syntax import (
    Call,
    Str,
    parse_script,
)

__all__ = ["DEFAULT_VERSION", "Migration", "MigrationWarning", "migrate", "parse_version"]


@dataclass(slots=True)
class Migration:
    text: str
    """The TOML configuration, with its comments."""
    warnings: list[MigrationWarning]
    config: Config
    """``text`` as sipdispatch's loader reads it."""
    files: list[str] = field(default_factory=list)
    """The configuration files read."""


def migrate(
    path: str,
    defines: Mapping[str, str | None] | None = None,
    *,
    version: tuple[int, int] = DEFAULT_VERSION,
    version_given: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Migration:
    """Migrate the kamailio.cfg at ``path``. ``defines`` are ``kamailio -A`` defines;
    ``version`` the Kamailio release it ran on. Raises `CfgError` (``file:line``) for a
    configuration that cannot be read."""
    cfg = read_cfg(path, defines or {}, version=version, environ=environ)
    script = parse_script(cfg)
    facts = analyse(script)
    return _Migrator(path, cfg, script, facts, version, version_given, dict(defines or {})).run()


class _Migrator(CorePart, ParamsPart, RulesPart):
    """One migration: the parts run in order, then the text is written and checked."""

    def run(self) -> Migration:
        if self.script.cfgengine is not None and self.script.cfgengine[0] != "native":
            engine, where = self.script.cfgengine
            self.warn(
                where,
                f'cfgengine "{engine}": the routing logic is in a KEMI script, '
                "which is not read; only kamailio.cfg's parameters are migrated",
            )
        self.index_modules()
        if not self.loaded("dispatcher"):
            self.warn(
                None,
                "kamailio.cfg does not load the dispatcher module: there are no "
                "destinations or dispatching rules to migrate",
            )
        self.read_listeners()
        self.read_dispatcher()
        self.read_tm()
        self.read_rules()
        self.read_record_route()
        self.read_admin()
        self.read_security()
        self.read_other_core()
        self.read_other_modules()
        self.read_script_notes()
        text = render(self.header(), self.sections())
        config = self.check(text)
        return Migration(text, self.warnings, config, list(self.cfg.files))

    def sections(self) -> list[Section]:
        return [
            self.server,
            self.transaction,
            self.admin,
            self.dispatcher,
            self.security,
            self.tls,
            *self.routes,
            self.script_notes,
        ]

    def header(self) -> list[str]:
        defines = " ".join(
            f"-D {k}" + ("" if v is None else f"={v}") for k, v in self.defines.items()
        )
        return [
            f"sipdispatch configuration migrated from {self.path} (Kamailio "
            f"{release(self.version)}{', ' + defines if defines else ''}) by "
            "`sipdispatch migrate`.",
            "Every key says where it came from: the kamailio.cfg line, or 'Kamailio default' "
            "where kamailio.cfg leaves a parameter at Kamailio's default and sipdispatch's own "
            "default would behave differently. 'not carried over' comments say what "
            "sipdispatch does not do, and why. docs/kamailio.md has the whole table.",
        ]

    def check(self, text: str) -> Config:
        """The result as sipdispatch reads it; a failure here is a bug of the migration."""
        try:
            return parse_config(tomllib.loads(text), "<migrated>")
        except (tomllib.TOMLDecodeError, ConfigError) as exc:
            raise RuntimeError(f"the migrated configuration does not load: {exc}\n{text}") from exc

    def read_other_modules(self) -> None:
        reported: set[str] = set()
        for mp in self.other_params:
            if mp.module in reported:
                continue
            reported.add(mp.module)
        for name in self.modules:
            if name in (
                "dispatcher",
                "tm",
                "tmx",
                "sl",
                "rr",
                "pv",
                "maxfwd",
                "textops",
                "siputils",
                "xlog",
                "sanity",
                "kex",
                "corex",
                "ctl",
                "jsonrpcs",
                "xhttp",
                "pike",
                "tls",
                "cfgutils",
                "kemix",
                "textopsx",
                "htable",
            ):
                continue
            self.script_notes.note(
                f"not carried over: module {name} (loaded at "
                f"{self._module_where(name)}) and its parameters"
            )

    def _module_where(self, name: str) -> str:
        for module in self.script.modules:
            if module.name == name:
                return str(module.where)
        return "?"

    def read_script_notes(self) -> None:
        notes = self.script_notes
        builtin: dict[str, list[Where]] = {}
        for end in self.facts.ends:
            kind = _builtin_path(end.guards)
            if kind is not None:
                builtin.setdefault(kind, []).append(end.where)
                continue
            self.termination(end)
        for note in self.facts.notes.values():
            if note.category == "built-in":
                builtin.setdefault(note.what, []).append(note.where)
        if builtin:
            lines = [
                f"{what} ({', '.join(str(w) for w in sorted(set(wheres), key=by_place)[:3])}"
                f"{', ...' if len(set(wheres)) > 3 else ''})"
                for what, wheres in sorted(builtin.items())
            ]
            notes.notes.insert(
                0, "done by sipdispatch itself, as in kamailio.cfg:\n  " + "\n  ".join(lines)
            )
        for note in self.facts.notes.values():
            if note.category == "differs":
                notes.note(f"not carried over: {self.origin(note.where)}\n  {note.what}")
        calls = [n for n in self.facts.notes.values() if n.category in ("call", "change")]
        for note in sorted(calls, key=lambda n: by_place(n.where)):
            name = note.what.split("(", 1)[0]
            if name in (
                "pike_check_req",
                "t_set_fr",
                "allow_source_address",
                "allow_trusted",
                "allow_address",
                "allow_routing",
            ):
                continue
            notes.note(
                f"not carried over: {self.origin(note.where)}\n  sipdispatch does not do "
                "this (a Python routing hook can: docs/hooks.md)"
            )
        for where, text in self.facts.unknown.items():
            self.warn(where, text)
        used = {name for site in self.facts.sites for relay in site.relays for name in relay}
        for block in self.script.blocks:
            label = f"{block.kind}_route[{block.name}]" if block.name else f"{block.kind}_route"
            if block.kind in ("request", "route") or (
                block.kind == "failure" and block.name in used
            ):
                continue
            if block.kind == "event" and block.name.startswith("dispatcher:"):
                notes.note(
                    f"not carried over: {self.origin(block.where)}\n  sipdispatch runs no "
                    "script on a state change: [events] calls a Python function "
                    "(on_destination_down / on_destination_up), a command or a webhook "
                    "at the same changes (docs/hooks.md, Destination events)"
                )
                self.warn(
                    block.where,
                    f"{label} is not run by sipdispatch: write what it does as an [events] "
                    "hook, command or webhook",
                )
            elif block.kind == "failure":
                notes.note(
                    f"not carried over: {self.origin(block.where)}\n  no dispatched "
                    "request is relayed with it"
                )
            else:
                notes.note(
                    f"not carried over: {self.origin(block.where)}\n  sipdispatch runs "
                    f"no {block.kind} route script (a Python routing hook sees requests "
                    "only)"
                )
        if notes.notes:
            notes.intro.append(
                "The routing script: what request_route does besides "
                "dispatching, and what of it sipdispatch does."
            )

    def termination(self, end: Termination) -> None:
        described = [g for g in end.guards if g.kind == "branch"] or list(end.guards[-1:])
        conditions = " && ".join(condition_text(g.expr, g.positive) for g in described[-2:]) or (
            "every request reaching it"
        )
        if end.relay is not None:
            what = f"relays them itself ({end.relay})"
        elif end.replies:
            codes = sorted({str(c) for c, _ in end.replies if c is not None})
            what = f"answers them {', '.join(codes)}" if codes else "answers them"
        elif end.dropped:
            what = "drops them"
        else:
            what = "leaves them unanswered"
        where = end.replies[0][1] if end.replies else end.where
        text = (
            f"requests where {conditions}: Kamailio {what}; sipdispatch sends them through "
            "its [[route]] rules (404 when none matches)"
        )
        self.script_notes.note(f"not carried over: {self.origin(where)}\n  {text}")
        self.warn(where, text)


_WHEN_TRUE: Final = frozenset({"has_totag", "loose_route", "t_check_trans", "t_precheck_trans"})
"""Tests whose true branch is a job of sipdispatch's proxy core (in-dialog requests,
retransmissions)."""
_WHEN_FALSE: Final = frozenset(
    {"mf_process_maxfwd_header", "maxfwd_process", "sanity_check", "pike_check_req"}
)
"""Tests whose false branch is one (Max-Forwards, malformed requests, floods)."""


def _builtin_path(guards: Sequence[Guard]) -> str | None:
    """The built-in job a path ending stands for: in-dialog requests, retransmissions,
    CANCEL, Max-Forwards, malformed requests, floods; None for others."""
    for guard in guards:
        for expr, truth in asserted(guard.expr, guard.positive):
            if not isinstance(expr, Call):
                continue
            name = expr.name
            if (name in _WHEN_TRUE and truth) or (name in _WHEN_FALSE and not truth):
                return BUILT_IN[name]
            if name == "is_method" and truth and expr.args and isinstance(expr.args[0], Str):
                methods = set(expr.args[0].value.upper().split("|"))
                if methods <= {"CANCEL", "ACK"}:
                    return BUILT_IN["t_check_trans"]
    return None
