"""The ``[[route]]`` rules: one for each dispatcher selection of the routing script, with
the ``match`` of the conditions it is inside, the algorithm with the meaning of the
Kamailio version, the fallback sets of ``ds_select_routes`` (or of a selection tried when
another finds nothing), and failover_on, mark_failed and limit from its failure route."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

from sipdispatch.migrate.base import (
    Base,
    release,
)
from sipdispatch.migrate.cfgtext import CfgError, Where
from sipdispatch.migrate.emit import Section
from sipdispatch.migrate.script import (
    ALL_SCENARIOS,
    NO_REPLY,
    RANG_OUT,
    RECEIVED,
    FailureSpec,
    Guard,
    Site,
    analyse_failure,
    as_int,
    const_value,
    expr_text,
)
from sipdispatch.migrate.syntax import (
    Binary,
    Call,
    Expr,
    Name,
    Num,
    PVar,
    Str,
    Unary,
)

__all__ = ["ALGORITHM_SINCE", "RulesPart", "asserted", "condition_text"]

ALGORITHM_SINCE: Final = {11: (4, 4), 12: (5, 1), 13: (5, 5), 14: (6, 1), 15: (6, 2), 64: (6, 0)}
"""Kamailio release that brought each of the newer algorithms."""


class RulesPart(Base):
    """[[route]] from the routing script."""

    def read_rules(self) -> None:
        if self.facts.sites and not self.loaded("dispatcher"):
            call = self.facts.sites[0].call
            raise CfgError(call.where, f"{call.name}: the dispatcher module is not loaded")
        rules: list[tuple[Site, Section, bool]] = []
        for site in self.facts.sites:
            if site.fallback_of is not None and self.is_fallback(site):
                continue
            built = self.rule(site, [s for _, s, _ in rules])
            if built is None:
                continue
            same = [s for _, s, _ in rules if _values(s) == _values(built[0])]
            if same:
                # The same selection reached twice (a route called from two places).
                same[0].intro.append(f"also {built[0].intro[0]}")
                continue
            rules.append((site, built[0], built[1]))
        any_failover = any(fails for _, _, fails in rules)
        failover = self.failover_possible and any_failover
        if self.loaded("dispatcher"):
            flags, where = self.dp("flags")
            if where is not None:
                origin = self.origin(where) + (
                    " (bit 2: failover)" if self.flags & 2 else " (no bit 2: no failover)"
                )
            else:
                origin = (
                    "Kamailio default: flags 0, no failover (sipdispatch's own default fails over)"
                )
            entry = self.dispatcher.add("failover", failover, origin)
            if self.failover_possible and not any_failover:
                entry.origin.append(
                    "no dispatched request is relayed with a failure_route calling ds_next_dst: "
                    "nothing fails over, not even a branch that times out"
                )
            del flags
        for site, section, fails in rules:
            if failover and not fails:
                self.warn(
                    site.call.where,
                    "this selection does not fail over in Kamailio, but "
                    "sipdispatch still tries the next destination when one does not "
                    "answer (failover_on = [] covers replies only)",
                )
            self.routes.append(section)
        if not rules and self.loaded("dispatcher"):
            self.warn(
                None,
                "no ds_select_* call was carried over from request_route: "
                "sipdispatch's default sends every request to set 1, round-robin",
            )

    def is_fallback(self, site: Site) -> bool:
        """A selection tried when another one found nothing becomes its fallback set."""
        parent = self.facts.sites[site.fallback_of] if site.fallback_of is not None else None
        return parent is not None and parent.call.name != "ds_select_routes"

    def rule(self, site: Site, earlier: list[Section]) -> tuple[Section, bool] | None:
        call = site.call
        where = call.where
        args = call.args
        fallback: list[dict[str, int]] = []
        mode = "dst"
        limit: int | None = None
        if call.name == "ds_select_routes":
            if len(args) < 2:
                raise CfgError(where, "ds_select_routes(rules, mode[, limit]) needs two parameters")
            rules_text = const_value(args[0], site.vars)
            mode_text = const_value(args[1], site.vars)
            if not isinstance(rules_text, str) or mode_text is None:
                self.skip_site(site, "its rules or mode are variables the migration cannot read")
                return None
            pairs = _select_routes_rules(rules_text, where)
            first_set, first_alg = pairs[0]
            set_id, algorithm = first_set, first_alg
            for s, a in pairs[1:]:
                fallback.append({"set": s, "algorithm": self.algorithm(a, where)})
            mode_char = str(mode_text)[:1]
            if mode_char in "0dD":
                mode = "dst"
            elif mode_char in "1rR":
                mode = "domain"
            elif mode_char in "2xX":
                self.warn(
                    where,
                    f"ds_select_routes mode {mode_text!r} (XAVP only): the script "
                    "sets the destination itself; carried over as mode dst",
                )
            else:
                raise CfgError(where, f"ds_select_routes: invalid routing mode {mode_text!r}")
            if len(args) > 2:
                limit = as_int(const_value(args[2], site.vars))
        else:
            if len(args) < 2:
                raise CfgError(where, f"{call.name}(set, alg[, limit]) needs two parameters")
            raw_set = as_int(const_value(args[0], site.vars))
            raw_alg = as_int(const_value(args[1], site.vars))
            if raw_set is None or raw_alg is None:
                self.skip_site(site, "its set or algorithm is a variable the migration cannot read")
                return None
            set_id, algorithm = raw_set, raw_alg
            if len(args) > 2:
                limit = as_int(const_value(args[2], site.vars))
                if limit is None:
                    self.warn(
                        where,
                        f"{call.name}: the limit {expr_text(args[2])} is a variable: "
                        "no limit carried over",
                    )
            if call.name == "ds_select_domain":
                mode = "domain"
            elif call.name == "ds_select":
                self.warn(
                    where,
                    "ds_select() only fills the failover list; the script's next "
                    "ds_set_dst/ds_next_* sets the destination: carried over as mode dst",
                )
        if set_id < 0:
            raise CfgError(where, f"{call.name}: set {set_id} must be >= 0")
        section = Section("route", array=True)
        section.intro.append(f"from {self.origin(where)}")
        match, match_notes = self.match(site, earlier)
        if match:
            section.add("match", match, *match_notes)
        elif match_notes:
            section.intro.extend(match_notes)
        section.add("set", set_id, f"{call.name} set {set_id}")
        section.add("algorithm", self.algorithm(algorithm, where), *self.algorithm_notes(algorithm))
        section.add(
            "mode",
            mode,
            f"{call.name}: "
            + (
                "the Request-URI is kept, the destination is the next hop"
                if mode == "dst"
                else "the Request-URI host and port are rewritten"
            ),
        )
        for index in site.fallbacks:
            fb = self.facts.sites[index]
            if not self.is_fallback(fb) or fb.call.name == "ds_select_routes":
                continue
            fset = as_int(const_value(fb.call.args[0], fb.vars)) if fb.call.args else None
            falg = as_int(const_value(fb.call.args[1], fb.vars)) if len(fb.call.args) > 1 else None
            if fset is None or falg is None or fset == set_id:
                self.skip_site(
                    fb,
                    "tried when the first selection finds nothing, with a set or "
                    "algorithm the migration cannot use",
                )
                continue
            fallback.append({"set": fset, "algorithm": self.algorithm(falg, fb.call.where)})
            self.warn(
                fb.call.where,
                f"{expr_text(fb.call)} is tried when {expr_text(call)} finds "
                "nothing usable: carried over as a fallback set, which sipdispatch also "
                "tries after the first set's destinations have failed",
            )
        seen: set[int] = set()
        unique = []
        for entry in fallback:
            if entry["set"] == set_id or entry["set"] in seen:
                self.warn(where, f"set {entry['set']} given twice: its second selection is dropped")
                continue
            seen.add(entry["set"])
            unique.append(entry)
        if unique:
            section.add(
                "fallback",
                unique,
                f"the other rules of {call.name}, tried in order"
                if call.name == "ds_select_routes"
                else "tried when the set has nothing usable",
            )
        fails = self.failover(site, section, limit)
        self.no_destination(site, section)
        self.check_sets(site, section)
        for change in site.after:
            self.warn(
                site.call.where,
                f"the request is changed on its way to the relay ({change}): not carried over",
            )
        return section, fails

    def skip_site(self, site: Site, why: str) -> None:
        self.not_carried(self.script_notes, site.call.where, f"{expr_text(site.call)}: {why}")
        self.warn(site.call.where, f"{expr_text(site.call)} not carried over: {why}")

    def algorithm(self, number: int, where: Where) -> int:
        since = ALGORITHM_SINCE.get(number)
        if 0 <= number <= 13 and (since is None or self.version >= since):
            return number
        if number in (14, 15) and since is not None and self.version >= since:
            return number
        if number == 64 and self.version >= (6, 0):
            return number  # the controls come from the destinations' Via (RFC 7339)
        self.warn(
            where,
            f"algorithm {number} is not in Kamailio {release(self.version)}"
            + (f" (it came in {release(since)})" if since else "")
            + ", which then uses the first destination in set order: carried over as 8 "
            "(priority), which does the same",
        )
        return 8

    def algorithm_notes(self, number: int) -> list[str]:
        names = {
            0: "hash of the Call-ID",
            1: "hash of the From URI",
            2: "hash of the To URI",
            3: "hash of the Request-URI",
            4: "round-robin",
            5: "hash of the auth username",
            6: "random",
            7: "hash of hash_pvar (hash_header)",
            8: "priority (serial)",
            9: "weight",
            10: "call load",
            11: "relative weight",
            12: "parallel forking",
            13: "latency",
            14: "round-robin, or serial when priorities differ",
            15: "priority, then weight (SRV-like)",
            64: "round-robin with overload control",
        }
        return [f"Kamailio algorithm {number}: {names.get(number, 'unknown')}"]

    def match(self, site: Site, earlier: list[Section]) -> tuple[dict[str, object], list[str]]:
        """The rule's ``match`` from the conditions the selection is inside: each part of
        a condition that a ``match`` key stands for is carried over, the others are
        named (unless the rules before take the requests they would exclude)."""
        match: dict[str, object] = {}
        notes: list[str] = []
        unsupported: list[tuple[Guard, Expr, bool]] = []
        for guard in site.guards:
            if guard.kind != "branch":
                continue
            carried = False
            for expr, truth in asserted(guard.expr, guard.positive):
                if isinstance(expr, Call) and expr.name == "ds_is_from_list" and len(expr.args) > 1:
                    mode = as_int(const_value(expr.args[1], {}))
                    if mode != 2:
                        self.warn(
                            guard.where,
                            f"ds_is_from_list mode {expr_text(expr.args[1])}: sipdispatch "
                            "matches the address and port, not the transport (mode 2), and "
                            "over TCP or TLS the address alone",
                        )
                got = _guard_match(expr, truth, self.sets)
                if got is None:
                    unsupported.append((guard, expr, truth))
                    continue
                carried = carried or bool(got)
                for key, value in got.items():
                    if key == "method" and "method" in match:
                        both = [m for m in _list(match["method"]) if m in _list(value)]
                        match["method"] = both or _list(value)
                    elif key in match and match[key] != value:
                        self.warn(
                            guard.where,
                            f"two conditions on {key} ({match[key]!r} and "
                            f"{value!r}): the inner one is carried over",
                        )
                        match[key] = value
                    else:
                        match[key] = value
            if carried:
                notes.append(self.origin(guard.where))
        for guard, expr, truth in unsupported:
            shown = condition_text(expr, truth)
            positive_form = _guard_match(expr, not truth, self.sets)
            if positive_form:
                combined = {**match, **positive_form}
                if any(_match_of(section) == combined for section in earlier):
                    notes.append(
                        f"{self.origin(guard.where)} ({shown}: the rule before takes "
                        "the other requests)"
                    )
                    continue
            self.warn(
                guard.where,
                f"condition {shown} is not carried over: this rule also takes "
                "the requests for which it does not hold",
            )
            notes.append(f"not carried over: the condition {shown} at {guard.where}")
        return match, notes

    def failover(self, site: Site, section: Section, limit: int | None) -> bool:
        """failover_on, mark_failed and limit from the failure route the request is relayed
        with; True when the rule fails over in Kamailio."""
        armed = [name for relay in site.relays for name in sorted(relay)]
        names = list(dict.fromkeys(armed))
        if not site.relays:
            self.warn(
                site.call.where,
                f"{expr_text(site.call)}: no t_relay() follows it on the "
                "walk of the script: its failover cannot be read",
            )
        spec: FailureSpec | None = None
        if names:
            if len(names) > 1:
                self.warn(
                    site.call.where,
                    f"the request is relayed with failure routes "
                    f"{', '.join(names)} on different paths: {names[0]} is carried over",
                )
            spec = analyse_failure(self.script, names[0])
            if spec is None:
                raise CfgError(
                    site.call.where,
                    f't_on_failure("{names[0]}"): no '
                    f"failure_route[{names[0]}] in the configuration",
                )
        if len(site.relays) > len([r for r in site.relays if r]) and names:
            self.warn(
                site.call.where,
                "on some paths the request is relayed without a "
                "failure_route: those calls do not fail over in Kamailio",
            )
        if spec is None or not spec.nexts:
            why = (
                "no failure_route is armed (t_on_failure)"
                if spec is None
                else f"failure_route[{spec.name}] does not call ds_next_dst/ds_next_domain"
            )
            section.add("failover_on", [], f"no failover in Kamailio: {why}")
            section.add("mark_failed", "", "nothing calls ds_mark_dst")
            if limit:
                section.add("limit", limit, f"{expr_text(site.call)}")
            return False
        relaying = [n for n in spec.nexts if n.relays]
        if not relaying:
            self.warn(
                spec.block.where,
                f"failure_route[{spec.name}] calls ds_next_dst but does "
                "not relay the request again: nothing fails over",
            )
            section.add("failover_on", [], f"failure_route[{spec.name}] does not relay again")
            section.add("mark_failed", "", "")
            return False
        spec.nexts = relaying
        if not self.failover_possible:
            why = (
                'xavp_dst is ""'
                if self.param("xavp_dst") is not None and self.dp("xavp_dst")[0] == ""
                else "flags has no bit 2"
            )
            section.add(
                "failover_on",
                [],
                f"failure_route[{spec.name}] calls ds_next_dst, but "
                f"{why}: it finds nothing, and ds_mark_dst does nothing",
            )
            section.add("mark_failed", "", "")
            self.warn(
                spec.nexts[0].call.where,
                f"ds_next_dst is called but {why}: Kamailio fails nothing over",
            )
            return False
        codes = [s.code for s in RECEIVED if spec.fails_over(s)]
        no_reply = spec.fails_over(NO_REPLY)
        rang_out = spec.fails_over(RANG_OUT)
        failover_on = _compress(codes)
        origins = [f"failure_route[{spec.name}]: {self.origin(n.call.where)}" for n in spec.nexts]
        guard_lines = {g.where for n in spec.nexts for g in n.guards}
        origins += [self.origin(w) for w in sorted(guard_lines, key=lambda w: (w.file, w.line))]
        section.add("failover_on", failover_on, *origins)
        for where, text in spec.unknown.items():
            self.warn(where, text)
        if not no_reply:
            self.warn(
                spec.nexts[0].call.where,
                f"failure_route[{spec.name}] does not try the "
                "next destination when one does not answer; sipdispatch always does",
            )
        if rang_out != (408 in codes):
            if rang_out:
                text = (
                    "fails over when a branch that rang times out (fr_inv_timer) but not on a "
                    "408 reply; sipdispatch handles both as a 408, which failover_on leaves out "
                    "here: such a branch is not failed over"
                )
            else:
                text = (
                    "fails over on a 408 reply but not when a branch that rang times out "
                    "(fr_inv_timer); sipdispatch handles both as a 408: such a branch is "
                    "failed over too"
                )
            self.warn(spec.nexts[0].call.where, f"failure_route[{spec.name}] {text}")
        if any(c >= 600 for c in codes):
            self.warn(
                spec.nexts[0].call.where,
                "a 6xx reply ends the call in sipdispatch, as "
                "RFC 3261 requires of a proxy: it is not failed over",
            )
        self.marking(spec, section, codes, no_reply)
        rearmed = all(spec.name in relay for n in spec.nexts for relay in n.relays)
        if not rearmed:
            limit = 2 if not limit else min(limit, 2)
            section.add(
                "limit",
                limit,
                f"failure_route[{spec.name}] does not arm itself again "
                "(t_on_failure) before relaying: one failover only",
            )
        elif limit:
            section.add("limit", limit, f"{expr_text(site.call)}")
        mode = section.get("mode")
        for next_site in spec.nexts:
            wanted = "domain" if next_site.call.name == "ds_next_domain" else "dst"
            if mode is not None and mode.value != wanted:
                what = (
                    "rewrites the Request-URI host of"
                    if wanted == "domain"
                    else "only sets the next hop of"
                )
                self.warn(
                    next_site.call.where,
                    f"{next_site.call.name}() after {expr_text(site.call)}: Kamailio {what} "
                    f"the next destinations; sipdispatch keeps mode {mode.value} for every "
                    "destination",
                )
            for code, where in next_site.fail_replies:
                self.warn(
                    where,
                    f"when no destination is left, failure_route[{spec.name}] "
                    f"answers {code if code is not None else 'a reply'}; sipdispatch "
                    "sends the best reply it got (RFC 3261 proxy rules)",
                )
        for call, _ in spec.reselects:
            self.warn(
                call.where,
                f"{expr_text(call)} in failure_route[{spec.name}] is not carried "
                "over: write the other set as fallback",
            )
        return True

    def marking(
        self, spec: FailureSpec, section: Section, codes: list[int], no_reply: bool
    ) -> None:
        failed = [s for s in ALL_SCENARIOS if spec.fails_over(s)]
        chosen = None
        chosen_set: list[str] = []
        for mark in spec.marks:
            marked = [s for s in ALL_SCENARIOS if spec.marked(mark, s)]
            if not marked:
                continue
            if mark.after_next:
                self.warn(
                    mark.call.where,
                    "ds_mark_dst after a ds_next_dst marks the next "
                    "destination, not the one that failed; not carried over",
                )
                continue
            if mark.letters is None:
                self.warn(
                    mark.call.where,
                    f"{expr_text(mark.call)}: its state is a variable; not carried over",
                )
                continue
            letters = mark.letters.lower() or self.default_mark()
            if not re.fullmatch(r"[aitdp]+", letters):
                raise CfgError(
                    mark.call.where,
                    f"ds_mark_dst({mark.letters!r}): the state is letters of a, i, t, d, p",
                )
            if chosen is not None and letters != chosen[0]:
                self.warn(
                    mark.call.where,
                    f'ds_mark_dst("{letters}") here and '
                    f'ds_mark_dst("{chosen[0]}") before: sipdispatch marks one way, '
                    f'"{chosen[0]}"',
                )
                continue
            if chosen is None:
                chosen = (letters, mark)
                chosen_set = [s.label for s in marked]
                differ = [s.label for s in failed if s not in marked]
                extra = [s.label for s in marked if s not in failed]
                if differ:
                    self.warn(
                        mark.call.where,
                        f"Kamailio marks the destination only for "
                        f"{_labels(chosen_set)}; sipdispatch marks it at every failover "
                        f"(also {_labels(differ)})",
                    )
                if extra:
                    self.warn(
                        mark.call.where,
                        f"Kamailio also marks the destination for "
                        f"{_labels(extra)}, which does not fail over; sipdispatch marks "
                        "only at a failover",
                    )
        if chosen is None:
            section.add("mark_failed", "", f"failure_route[{spec.name}] does not call ds_mark_dst")
            return
        letters, mark = chosen
        origin = self.origin(mark.call.where)
        if not mark.letters:
            origin += f' (no state given: "{letters}")'
        section.add("mark_failed", letters, origin)

    def default_mark(self) -> str:
        mode, _ = self.dp("ds_probing_mode")
        return "ip" if mode == 1 else "i"

    def no_destination(self, site: Site, section: Section) -> None:
        replies = [(c, w) for c, w in site.fail_replies]
        fallbacks = [
            self.facts.sites[i] for i in site.fallbacks if self.is_fallback(self.facts.sites[i])
        ]
        for fb in fallbacks:
            replies.extend(fb.fail_replies)
        codes = [(c, w) for c, w in replies if c is not None and 300 <= c <= 699]
        if codes:
            code, where = codes[0]
            section.add("no_destination", code, self.origin(where))
            if len({c for c, _ in codes}) > 1:
                self.warn(
                    where,
                    f"different replies when nothing is usable "
                    f"({', '.join(str(c) for c, _ in codes)}): {code} is carried over",
                )
            return
        if replies:
            _, at = replies[0]
            section.add("no_destination", 500, self.origin(at) + " (read as 500)")
            return
        relays = site.fail_relays or [r for fb in fallbacks for r in fb.fail_relays]
        if relays or not site.checked:
            self.warn(
                site.call.where,
                f"when {expr_text(site.call)} finds nothing, Kamailio "
                "relays the request to its Request-URI (no destination set); sipdispatch "
                "answers 503",
            )
            section.add("no_destination", 503, "Kamailio relays to the Request-URI instead")
        else:
            self.warn(
                site.call.where,
                f"when {expr_text(site.call)} finds nothing, kamailio.cfg "
                "sends no reply; sipdispatch answers 503",
            )
            section.add("no_destination", 503, "kamailio.cfg sends no reply")

    def check_sets(self, site: Site, section: Section) -> None:
        if self.sets is None:
            return
        wanted = [section.get("set")]
        entry = section.get("fallback")
        ids = [e.value for e in wanted if e is not None]
        if entry is not None and isinstance(entry.value, list):
            ids += [item["set"] for item in entry.value]
        for set_id in ids:
            if isinstance(set_id, int) and set_id not in self.sets:
                self.warn(site.call.where, f"set {set_id} has no destination in the list")


# ------------------------------------------------------------------------------------------
# Reading conditions into `match`
# ------------------------------------------------------------------------------------------


def condition_text(expr: Expr, positive: bool) -> str:
    """A condition as it holds: ``!x`` negated reads ``x``."""
    while isinstance(expr, Unary) and expr.op == "!":
        expr, positive = expr.operand, not positive
    if not positive and isinstance(expr, Binary) and expr.op in _OPPOSITE:
        return expr_text(Binary(_OPPOSITE[expr.op], expr.left, expr.right, expr.where))
    text = expr_text(expr)
    if positive:
        return text
    return f"!{text}" if isinstance(expr, Call | PVar | Name) else f"!({text})"


_OPPOSITE: Final = {
    "==": "!=", "!=": "==", "=~": "!~", "!~": "=~", "<": ">=", ">=": "<", ">": "<=", "<=": ">",
}  # fmt: skip
"""A comparison that does not hold, written as the one that does."""


def _values(section: Section) -> list[tuple[str, object]]:
    return [(e.key, e.value) for e in section.entries]


def _list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _match_of(section: Section) -> dict[str, object]:
    entry = section.get("match")
    return dict(entry.value) if entry is not None and isinstance(entry.value, dict) else {}


_RURI_USER: Final = frozenset({"$rU", "$(ru{uri.user})", "@ruri.user"})
_RURI_HOST: Final = frozenset({"$rd", "$(ru{uri.host})", "@ruri.host", "$(ru{uri.domain})"})


_METHOD: Final = frozenset({"$rm", "method"})


def _guard_match(
    expr: Expr, positive: bool, sets: Mapping[int, object] | None
) -> dict[str, object] | None:
    """The ``match`` keys a condition stands for, or None when there are none."""
    while isinstance(expr, Unary) and expr.op == "!":
        expr, positive = expr.operand, not positive
    if isinstance(expr, Num):
        return {} if bool(expr.value) == positive else None
    if isinstance(expr, Binary) and expr.op == "&&" and positive:
        left = _guard_match(expr.left, True, sets)
        right = _guard_match(expr.right, True, sets)
        if left is None or right is None:
            return None
        out = dict(left)
        for key, value in right.items():
            if key == "method" and "method" in out:
                both = [m for m in _list(out["method"]) if m in _list(value)]
                if not both:
                    return None
                out["method"] = both
            elif key in out and out[key] != value:
                return None
            else:
                out[key] = value
        return out
    if isinstance(expr, Binary) and expr.op == "||" and positive:
        left = _guard_match(expr.left, True, sets)
        right = _guard_match(expr.right, True, sets)
        if left is not None and right is not None and set(left) == set(right) == {"method"}:
            return {"method": list(dict.fromkeys(_list(left["method"]) + _list(right["method"])))}
        return None
    if not positive:
        return None
    if isinstance(expr, Call):
        if expr.name == "is_method" and expr.args and isinstance(expr.args[0], Str):
            methods = [m for m in expr.args[0].value.split("|") if m]
            if methods and all(re.fullmatch(r"[A-Za-z]+", m) for m in methods):
                return {"method": [m.upper() for m in methods]}
            return None
        if expr.name == "ds_is_from_list":
            if not expr.args:
                if sets is not None and len(sets) == 1:
                    return {"source_set": next(iter(sets))}
                return None
            if len(expr.args) > 2:
                return None
            value = as_int(const_value(expr.args[0], {}))
            if value is None:
                return None
            if value == -1:
                if sets is not None and len(sets) == 1:
                    return {"source_set": next(iter(sets))}
                return None
            return {"source_set": value} if value >= 0 else None
        if expr.name == "starts_with" and len(expr.args) == 2:
            subject = _subject(expr.args[0])
            prefix = const_value(expr.args[1], {})
            if subject in _RURI_USER and isinstance(prefix, str) and prefix and " " not in prefix:
                return {"user_prefix": prefix}
        return None
    if isinstance(expr, Binary):
        subject, other = _subject(expr.left), expr.right
        if expr.op in ("==", "ieq") and isinstance(other, Str):
            if subject in _METHOD and re.fullmatch(r"[A-Za-z]+", other.value):
                return {"method": [other.value.upper() if expr.op == "ieq" else other.value]}
            if subject in _RURI_HOST and other.value and " " not in other.value:
                return {"domain": other.value.lower()}
            m = re.fullmatch(r"\$\(rU\{s\.substr,0,(\d+)\}\)", subject or "")
            if m and len(other.value) == int(m.group(1)) and other.value:
                return {"user_prefix": other.value}
        if expr.op == "=~" and isinstance(other, Str) and subject in _RURI_USER:
            prefix = _regex_prefix(other.value)
            if prefix:
                return {"user_prefix": prefix}
        if expr.op == "=~" and isinstance(other, Str) and subject in _METHOD:
            m = re.fullmatch(r"\^?\(?([A-Z]+(?:\|[A-Z]+)*)\)?\$?", other.value)
            if m and other.value.startswith("^") and other.value.endswith("$"):
                return {"method": m.group(1).split("|")}
    return None


def _subject(expr: Expr) -> str | None:
    if isinstance(expr, PVar | Name):
        return expr.text
    if isinstance(expr, Str) and _is_pvar_text(expr.value):
        return expr.value
    return None


def _is_pvar_text(text: str) -> bool:
    return bool(re.fullmatch(r"\$[A-Za-z_(][^ ]*", text))


def _regex_prefix(regex: str) -> str | None:
    """``^44``, ``^\\+44``, ``^44.*`` -> the literal prefix; None for anything else."""
    m = re.fullmatch(r"\^((?:[A-Za-z0-9_\-*#]|\\[+.*])+)(?:\.\*)?", regex)
    if m is None:
        return None
    return re.sub(r"\\(.)", r"\1", m.group(1))


def asserted(expr: Expr, positive: bool) -> list[tuple[Expr, bool]]:
    while isinstance(expr, Unary) and expr.op == "!":
        expr, positive = expr.operand, not positive
    if isinstance(expr, Binary) and (
        (expr.op == "&&" and positive) or (expr.op == "||" and not positive)
    ):
        return [*asserted(expr.left, positive), *asserted(expr.right, positive)]
    return [(expr, positive)]


# ------------------------------------------------------------------------------------------
# Reply codes
# ------------------------------------------------------------------------------------------


def _compress(codes: Sequence[int]) -> list[str]:
    """Reply codes as failover_on writes them: a whole class as ``"5xx"``."""
    out: list[str] = []
    present = set(codes)
    for klass in range(3, 7):
        members = set(range(klass * 100, klass * 100 + 100))
        if members <= present:
            out.append(f"{klass}xx")
            present -= members
    out.extend(str(c) for c in sorted(present))
    return sorted(out, key=lambda s: (0 if s.endswith("xx") else 1, s))


def _labels(labels: Sequence[str]) -> str:
    """Scenario labels for a message: whole classes as ``5xx``, runs of codes as ranges."""
    codes = sorted({int(x) for x in labels if x.isdigit()})
    others = [x for x in labels if not x.isdigit()]
    parts = [c for c in _compress(codes) if c.endswith("xx")]
    rest = [c for c in codes if f"{c // 100}xx" not in parts]
    i = 0
    while i < len(rest):
        j = i
        while j + 1 < len(rest) and rest[j + 1] == rest[j] + 1:
            j += 1
        parts.append(str(rest[i]) if i == j else f"{rest[i]}-{rest[j]}")
        i = j + 1
    return ", ".join([*parts, *others]) or "nothing"


def _select_routes_rules(text: str, where: Where) -> list[tuple[int, int]]:
    pairs = []
    for part in text.split(";"):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)=(\d+)", part)
        if m is None:
            raise CfgError(
                where,
                f"ds_select_routes: invalid rule {part!r} in {text!r} "
                "(SET=ALG;SET=ALG..., no spaces)",
            )
        pairs.append((int(m.group(1)), int(m.group(2))))
    if not pairs:
        raise CfgError(where, f"ds_select_routes: no rule in {text!r}")
    return pairs
