"""The module parameters: every dispatcher parameter (its type, the Kamailio versions
that have it, and what it becomes), tm's timers, and the destination list, read as
sipdispatch reads it to say where sipdispatch and Kamailio would differ."""

from __future__ import annotations

import os
import re
from typing import Final

from sipdispatch.config.values import (
    Invalid,
    parse_db_url,
    parse_extra_attrs,
    parse_hash_header,
    parse_header_name,
    parse_method,
    parse_reply_codes,
    parse_sip_uri,
    parse_sql_identifier,
)
from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.errors import DispatcherLoadError
from sipdispatch.dispatcher.listfile import parse_list
from sipdispatch.migrate.base import (
    KAMAILIO_LIST_FILE,
    Base,
    release,
)
from sipdispatch.migrate.cfgtext import CfgError, Where
from sipdispatch.migrate.syntax import ModParam

__all__ = ["DISPATCHER_PARAMS", "NOT_CARRIED", "ParamsPart"]

_INT, _STR = "int", "str"
DISPATCHER_PARAMS: Final[dict[str, tuple[str, tuple[int, int], tuple[int, int] | None]]] = {
    # name: (type, first version, last version)
    "list_file": (_STR, (1, 0), None),
    "db_url": (_STR, (1, 0), None),
    "table_name": (_STR, (1, 0), None),
    "setid_col": (_STR, (1, 0), None),
    "destination_col": (_STR, (1, 0), None),
    "flags_col": (_STR, (1, 0), None),
    "priority_col": (_STR, (1, 0), None),
    "attrs_col": (_STR, (1, 0), None),
    "force_dst": (_INT, (1, 0), None),
    "flags": (_INT, (1, 0), None),
    "use_default": (_INT, (1, 0), None),
    "xavp_dst": (_STR, (5, 2), None),
    "xavp_dst_mode": (_INT, (5, 2), None),
    "xavp_ctx": (_STR, (5, 2), None),
    "xavp_ctx_mode": (_INT, (5, 2), None),
    "hash_pvar": (_STR, (1, 0), None),
    "setid_pvname": (_STR, (1, 0), None),
    "attrs_pvname": (_STR, (4, 1), None),
    "ds_ping_method": (_STR, (1, 0), None),
    "ds_ping_from": (_STR, (1, 0), None),
    "ds_ping_interval": (_INT, (1, 0), None),
    "ds_ping_fr_timer": (_INT, (6, 1), None),
    "ds_ping_fr_timeout": (_INT, (6, 1), None),
    "ds_probing_threshold": (_INT, (1, 0), None),
    "ds_inactive_threshold": (_INT, (4, 3), None),
    "ds_ping_reply_codes": (_STR, (1, 0), None),
    "ds_probing_mode": (_INT, (1, 0), None),
    "ds_ping_latency_stats": (_INT, (5, 1), None),
    "ds_retain_latency_stats": (_INT, (5, 8), None),
    "ds_latency_estimator_alpha": (_INT, (5, 1), None),
    "ds_hash_size": (_INT, (1, 0), None),
    "ds_hash_expire": (_INT, (1, 0), None),
    "ds_hash_initexpire": (_INT, (1, 0), None),
    "ds_hash_check_interval": (_INT, (1, 0), None),
    "outbound_proxy": (_STR, (1, 0), None),
    "ds_default_socket": (_STR, (4, 3), None),
    "ds_default_sockname": (_STR, (5, 4), None),
    "ds_ping_socket": (_STR, (6, 1), None),
    "ds_timer_mode": (_INT, (4, 4), None),
    "event_callback": (_STR, (5, 1), None),
    "event_callback_mode": (_INT, (6, 1), None),
    "ds_attrs_none": (_INT, (5, 2), None),
    "ds_db_extra_attrs": (_STR, (5, 2), None),
    "ds_load_mode": (_INT, (5, 3), None),
    "reload_delta": (_INT, (5, 3), None),
    "ds_dns_mode": (_INT, (5, 6), None),
    "ds_dns_interval": (_INT, (5, 6), None),
    "ds_dns_ttl": (_INT, (5, 6), None),
    "ds_dns_match_all": (_INT, (6, 2), None),
    # the AVPs that held the failover list before the XAVPs of 5.2
    "dst_avp": (_STR, (1, 0), (5, 1)),
    "grp_avp": (_STR, (1, 0), (5, 1)),
    "cnt_avp": (_STR, (1, 0), (5, 1)),
    "dstid_avp": (_STR, (1, 0), (5, 1)),
    "attrs_avp": (_STR, (1, 0), (5, 1)),
    "sock_avp": (_STR, (1, 0), (5, 1)),
}
"""Every dispatcher module parameter, its type and the Kamailio versions that have it."""
NOT_CARRIED: Final[dict[str, str]] = {
    "force_dst": "sipdispatch always sets the next hop of a dispatched request, as force_dst 1 "
    "(the default) does",
    "xavp_dst": "sipdispatch keeps a call's failover list itself: there are no XAVPs for a "
    "script to read",
    "xavp_dst_mode": "no XAVPs: the failover list is internal",
    "xavp_ctx": "no XAVPs: the failover list is internal",
    "xavp_ctx_mode": "no XAVPs: the failover list is internal",
    "setid_pvname": "no script variables: a Python routing hook gets the sets of a request's "
    "source as request.source_sets (docs/hooks.md)",
    "attrs_pvname": "no script variables: a Python routing hook sees the request, and the "
    "destination's attrs are in dispatcher.list",
    "ds_hash_check_interval": "sipdispatch expires call-load entries at their exact time, "
    "not on a scan every N seconds",
    "ds_ping_socket": "pings are sent from the first listener of their transport (the first "
    "udp entry of server.listen for UDP)",
    "ds_timer_mode": "sipdispatch has no timer processes to choose from: its timers run in "
    "its event loop",
    "event_callback": "no KEMI event callback: every state change is a log line "
    "(sipdispatch.health) and a metric, and the state log has subscribers (docs/health.md)",
    "event_callback_mode": "no event routes or callbacks (see event_callback)",
    "ds_attrs_none": "no XAVPs for the attrs of a destination",
    "ds_dns_interval": "a destination located by DNS is looked up again when its TTL runs "
    "out, not every N seconds",
    "ds_dns_ttl": "sipdispatch keeps DNS answers for their TTL (at least 5 s, at most 1 h)",
    "ds_dns_match_all": "every address of a destination located by NAPTR/SRV is matched; for "
    "a name with a port, its first A/AAAA address",
    "dst_avp": "no AVPs: the failover list is internal",
    "grp_avp": "no AVPs: the failover list is internal",
    "cnt_avp": "no AVPs: the failover list is internal",
    "dstid_avp": "no AVPs: the failover list is internal",
    "attrs_avp": "no AVPs: the failover list is internal",
    "sock_avp": "no AVPs: the failover list is internal",
}
"""Why a dispatcher parameter has no sipdispatch key."""
TM_TIMERS: Final = {
    "fr_timer": ("fr_timer", 30000),
    "fr_inv_timer": ("fr_inv_timer", 120000),
    "retr_timer1": ("t1", 500),
    "retr_timer2": ("t2", 4000),
    "wt_timer": ("wait_timer", 5000),
}
"""tm parameters carried into [transaction]: sipdispatch key and Kamailio's default (ms)."""


class ParamsPart(Base):
    """[dispatcher] and [transaction] from the module parameters."""

    def index_modules(self) -> None:
        for module in self.script.modules:
            self.modules.setdefault(module.name, module.pos)
        for mp in self.script.modparams:
            try:
                pattern = re.compile(mp.module)
            except re.error:
                pattern = re.compile(re.escape(mp.module))
            targets = [
                name
                for name, pos in self.modules.items()
                if pos < mp.pos and (name == mp.module or pattern.fullmatch(name))
            ]
            if not targets:
                raise CfgError(
                    mp.where,
                    f"modparam: no module matching <{mp.module}> loaded "
                    "before this line (loadmodule it first)",
                )
            for name in targets:
                if name == "dispatcher":
                    self.check_dispatcher_param(mp)
                self.params[(name, mp.param)] = mp
                if name not in ("dispatcher", "tm", "rr", "pike", "tls"):
                    self.other_params.append(mp)

    def check_dispatcher_param(self, mp: ModParam) -> None:
        known = DISPATCHER_PARAMS.get(mp.param)
        kind = "int" if isinstance(mp.value, int) else "str"
        if known is None:
            raise CfgError(mp.where, f"parameter <{mp.param}> not found in module <dispatcher>")
        expected, since, until = known
        if self.version < since:
            raise CfgError(
                mp.where,
                f"parameter <{mp.param}> of dispatcher is not in Kamailio "
                f"{release(self.version)} (it came in {release(since)}; --kamailio-version "
                "says which release kamailio.cfg is for)",
            )
        if until is not None and self.version > until:
            raise CfgError(
                mp.where,
                f"parameter <{mp.param}> of dispatcher is not in Kamailio "
                f"{release(self.version)} (it was removed after {release(until)}: xavp_dst "
                "replaced it)",
            )
        if kind != expected:
            what = "an integer" if expected == _INT else "a string"
            raise CfgError(
                mp.where, f"parameter <{mp.param}> of dispatcher takes {what}, not {mp.value!r}"
            )

    def read_dispatcher(self) -> None:
        if not self.loaded("dispatcher"):
            return
        self.read_store()
        self.read_probing()
        self.read_hashing()
        flags, where = self.dp("flags")
        self.flags = flags if isinstance(flags, int) else 0
        self.failover_possible = bool(self.flags & 2)
        xavp, xwhere = self.dp("xavp_dst")
        if xavp == "" and self.failover_possible:
            self.failover_possible = False
            self.warn(
                xwhere,
                'xavp_dst "": Kamailio keeps no failover list, so nothing fails '
                "over (dispatcher.failover = false)",
            )
        use_default, uwhere = self.dp("use_default")
        self.put("use_default", bool(use_default), uwhere, "0")
        # failover and hash_user_only are written by read_rules (failover depends on them)
        self.dispatcher.add(
            "hash_user_only",
            bool(self.flags & 1),
            (
                self.origin(where)
                + (
                    " (bit 1: URI hashes take the user part only)"
                    if self.flags & 1
                    else " (no bit 1: URI hashes take user, host and port)"
                )
            )
            if where
            else "Kamailio default: flags 0",
        )
        retain, rwhere = self.dp("ds_retain_latency_stats")
        self.dispatcher.add(
            "keep_state_on_reload",
            False,
            "Kamailio resets every destination to its flags on reload (sipdispatch's default "
            "keeps state, latency and load of the destinations a reload does not change)",
        )
        if retain:
            self.warn(
                rwhere,
                "ds_retain_latency_stats 1: Kamailio keeps latency statistics "
                "across a reload but not states; sipdispatch keeps both or neither "
                "(keep_state_on_reload = false: neither)",
            )
        for name in ("setid_col", "destination_col", "flags_col", "priority_col", "attrs_col"):
            value, w = self.dp(name)
            if value is not None and value != name.removesuffix("_col"):
                self.put(name, str(value), w)
        for name, why in NOT_CARRIED.items():
            value, w = self.dp(name)
            if w is None:
                continue
            if name == "force_dst" and value == 1:
                self.dispatcher.note(f"{self.origin(w)}\n  the same in sipdispatch: {why}")
                continue
            self.not_carried(self.dispatcher, w, why)
            if name in (
                "ds_ping_socket",
                "event_callback",
                "force_dst",
            ):
                self.warn(w, f"{name} not carried over: {why}")
        extra, ewhere = self.dp("ds_db_extra_attrs")
        if isinstance(extra, str) and extra.strip():
            try:
                parse_extra_attrs(extra)
            except Invalid as exc:
                raise CfgError(ewhere, f"ds_db_extra_attrs {extra!r}: {exc.allowed}") from None
            self.put("db_extra_attrs", extra.strip(), ewhere)
        delta, dwhere = self.dp("reload_delta")
        if isinstance(delta, int) and delta > 0:
            self.put("reload_delta", delta, dwhere)
        elif delta is None and (5, 3) <= self.version < (6, 2):
            self.put("reload_delta", 5, None, f"5 s in Kamailio {release(self.version)}")
        self.read_load_and_dns()

    def read_store(self) -> None:
        db_url, dwhere = self.dp("db_url")
        list_file, lwhere = self.dp("list_file")
        if isinstance(db_url, str) and db_url:
            converted, note = self.convert_db_url(db_url, dwhere)
            if converted is not None:
                self.dispatcher.add(
                    "db_url", converted, self.origin(dwhere) if dwhere else "", note
                )
                table, twhere = self.dp("table_name")
                name = str(table) if table is not None else "dispatcher"
                try:
                    parse_sql_identifier(name)
                except Invalid as exc:
                    raise CfgError(twhere, f"table_name {name!r}: {exc.allowed}") from None
                self.put("table_name", name, twhere, '"dispatcher"')
                self.dispatcher.note(
                    "the destinations stay in the database table: sipdispatch "
                    "reads Kamailio's dispatcher table (version 4) as it is"
                )
            if lwhere is not None:
                self.not_carried(
                    self.dispatcher,
                    lwhere,
                    "db_url is set: Kamailio reads the "
                    "database and ignores list_file, and so does this configuration",
                )
            return
        shown = list_file if isinstance(list_file, str) and list_file else KAMAILIO_LIST_FILE
        real = self.find_list_file(shown)
        written = os.path.abspath(real) if real is not None else shown
        origin = (
            self.origin(lwhere)
            if lwhere
            else (
                f"Kamailio default: {KAMAILIO_LIST_FILE} when neither list_file nor db_url is set"
            )
        )
        entry = self.dispatcher.add("list_file", written, origin)
        if real is not None and written != shown:
            entry.origin.append(f"found at {written}")
        if real is None:
            self.warn(
                lwhere, f"list_file {shown}: cannot read it here, its destinations were not checked"
            )
            return
        self.check_list(real, shown, lwhere)

    def find_list_file(self, name: str) -> str | None:
        if os.path.isabs(name):
            return name if os.path.isfile(name) else None
        for base in (os.path.dirname(self.path), os.getcwd()):
            candidate = os.path.join(base, name)
            if os.path.isfile(candidate):
                return candidate
        return None

    def convert_db_url(self, url: str, where: Where | None) -> tuple[str | None, str]:
        scheme = url.partition("://")[0].lower()
        note = ""
        converted: str | None = None
        if scheme in ("mysql", "postgres", "postgresql"):
            converted = url
        elif scheme == "sqlite":
            path = url[len("sqlite://") :]
            if path.startswith("/") and not path.startswith("//"):
                converted = "sqlite:///" + path
                note = (
                    "db_sqlite reads sqlite:///PATH relative to Kamailio's working directory, "
                    "/ when systemd starts it; written as the absolute path"
                )
            else:
                converted = url
        if converted is None:
            self.not_carried(
                self.dispatcher,
                where,
                f"db_url of scheme {scheme}: sipdispatch's "
                "SQL store is SQLite, MySQL/MariaDB or PostgreSQL (move the rows "
                "with 'sipdispatch dispatcher add', or to a list_file)",
            )
            self.warn(
                where,
                f"db_url {scheme}:// is not supported: sipdispatch would use its "
                "default SQLite store ./sipdispatch.db",
            )
            return None, ""
        try:
            parse_db_url(converted)
        except Invalid as exc:
            raise CfgError(where, f"db_url: {exc.allowed}") from None
        return converted, note

    def check_list(self, real: str, shown: str, where: Where | None) -> None:
        try:
            with open(real, encoding="utf-8", errors="replace") as file:
                text = file.read()
        except OSError as exc:
            self.warn(
                where,
                f"list_file {shown}: cannot read it ({exc.strerror}): its "
                "destinations were not checked",
            )
            return
        try:
            dests = parse_list(text, shown)
        except DispatcherLoadError as exc:
            load_mode, _ = self.dp("ds_load_mode")
            kamailio = (
                "refuses the whole list too (ds_load_mode 1)"
                if load_mode == 1
                else "skips that line and loads the others (ds_load_mode 0)"
            )
            self.warn(
                where,
                f"sipdispatch refuses this list: {exc} (Kamailio {kamailio}); "
                "the proxy will not start until the line is fixed",
            )
            self.dispatcher.note(f"the list {shown} does not load in sipdispatch: {exc}")
            return
        sets: dict[int, list[Destination]] = {}
        for dest in dests:
            sets.setdefault(dest.setid, []).append(dest)
        self.sets = sets
        summary = "; ".join(
            f"set {setid}: {', '.join(d.uri for d in items[:4])}"
            + (f" and {len(items) - 4} more" if len(items) > 4 else "")
            for setid, items in sorted(sets.items())
        )
        self.dispatcher.note(
            f"the destinations of {shown}, read as sipdispatch reads them "
            f"({len(dests)} in {len(sets)} set(s)): {summary or 'none'}"
        )
        for line_no, line in enumerate(text.split("\n"), 1):
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 3 and fields[2].lower().startswith("0x") and self.version < (6, 1):
                self.warn(
                    Where(shown, line_no),
                    f"flags {fields[2]}: Kamailio before 6.1 reads only decimal flags: "
                    f"flags 0, priority 0 and attrs {fields[2][1:]!r}, the fields after it "
                    f"not read; sipdispatch reads flags {_flags_value(fields[2])}; write the "
                    "flags in decimal to keep what Kamailio did",
                )
        dns_warned = False
        for dest in dests:
            keys = {name.lower() for name, _ in dest.attrs.pairs}
            at = _where_of(dest, shown)
            if keys & {"prefix", "strip"}:
                self.warn(
                    at,
                    f"{dest.uri}: attrs prefix=/strip=: Kamailio only keeps them for "
                    "the script; sipdispatch rewrites the Request-URI user with them "
                    "(strip, then prefix) when it uses this destination",
                )
            for key in sorted(
                keys & {"socket", "sockname", "ping_socket", "obproxy", "ocmin", "ocmax", "ocrate"}
            ):
                self.warn(
                    at,
                    f"{dest.uri}: attrs {key}= is kept but not acted on (sipdispatch "
                    "sends from the first listener of the transport; no overload control)",
                )
            if dest.by_dns and not dns_warned:
                dns_warned = True
                mode, _ = self.dp("ds_dns_mode")
                self.warn(
                    at,
                    f"{dest.uri}: a host name without a port is located by NAPTR, SRV "
                    "and A/AAAA (RFC 3263) and refreshed at its TTL by sipdispatch; "
                    f"Kamailio (ds_dns_mode {mode if mode is not None else 1}) looks up "
                    "its A/AAAA record at load",
                )

    def read_probing(self) -> None:
        interval, iwhere = self.dp("ds_ping_interval")
        self.put(
            "ping_interval",
            interval if isinstance(interval, int) else 0,
            iwhere,
            "0, no pings (sipdispatch's own default is 10 s)",
        )
        if isinstance(interval, int) and interval < 0:
            raise CfgError(iwhere, "ds_ping_interval must be >= 0")
        method, mwhere = self.dp("ds_ping_method")
        if method is not None:
            try:
                parse_method(str(method), "a SIP method in upper-case letters")
            except Invalid as exc:
                raise CfgError(mwhere, f"ds_ping_method {method!r}: {exc.allowed}") from None
        self.put(
            "ping_method", str(method) if method is not None else "OPTIONS", mwhere, '"OPTIONS"'
        )
        ping_from, fwhere = self.dp("ds_ping_from")
        if ping_from is not None:
            try:
                parse_sip_uri(str(ping_from))
            except Invalid as exc:
                raise CfgError(fwhere, f"ds_ping_from {ping_from!r}: {exc.allowed}") from None
        self.put(
            "ping_from",
            str(ping_from) if ping_from is not None else "sip:dispatcher@localhost",
            fwhere,
            '"sip:dispatcher@localhost"',
        )
        codes, cwhere = self.dp("ds_ping_reply_codes")
        text = str(codes) if codes is not None else ""
        carried = text
        if text:
            kept = []
            for part in (p.strip() for p in text.split(";")):
                if re.fullmatch(r"class=2", part):
                    continue  # 2xx always count
                m = re.fullmatch(r"class=([3-6])00", part)
                if m:
                    kept.append(f"class={m.group(1)}")
                    continue
                kept.append(part)
            carried = ";".join(p for p in kept if p)
            try:
                parse_reply_codes(carried)
            except Invalid as exc:
                self.not_carried(
                    self.dispatcher,
                    cwhere,
                    f"ds_ping_reply_codes {text!r}: sipdispatch {exc.allowed}",
                )
                self.warn(cwhere, f"ds_ping_reply_codes {text!r} not carried over: {exc.allowed}")
                carried = ""
        self.put("ping_reply_codes", carried, cwhere, '"" (only 2xx)')
        if cwhere is not None and carried != text:
            self.dispatcher.entries[-1].origin.append(
                "written as sipdispatch reads it (2xx always count)"
            )
        threshold, twhere = self.dp("ds_probing_threshold")
        self.put(
            "probing_threshold", max(1, threshold) if isinstance(threshold, int) else 1, twhere, "1"
        )
        inactive, awhere = self.dp("ds_inactive_threshold")
        self.put(
            "inactive_threshold", max(1, inactive) if isinstance(inactive, int) else 1, awhere, "1"
        )
        for value, w, name in (
            (threshold, twhere, "ds_probing_threshold"),
            (inactive, awhere, "ds_inactive_threshold"),
        ):
            if isinstance(value, int) and value < 1:
                self.warn(w, f"{name} {value}: written as 1, the least sipdispatch takes")
        mode, pwhere = self.dp("ds_probing_mode")
        if isinstance(mode, int) and not 0 <= mode <= 3:
            raise CfgError(pwhere, f"ds_probing_mode {mode}: must be 0..3")
        self.put("probing_mode", mode if isinstance(mode, int) else 0, pwhere, "0")
        stats, swhere = self.dp("ds_ping_latency_stats")
        self.put("ping_latency_stats", bool(stats), swhere, "0")
        alpha, lwhere = self.dp("ds_latency_estimator_alpha")
        if isinstance(alpha, int):
            self.latency_alpha(alpha, lwhere)
        else:
            self.put(
                "latency_estimator_alpha",
                100,
                None,
                "a new sample weighs 0.1 in the estimate (Kamailio 6.1's 100, older "
                "releases' 900 by their meaning)",
            )
        fr_timer, rwhere = self.dp("ds_ping_fr_timer")
        if fr_timer is None:
            fr_timer, rwhere = self.dp("ds_ping_fr_timeout")
        if isinstance(fr_timer, int) and fr_timer > 0:
            # Kamailio hands the number to tm as its timer ticks (16 a second).
            self.put("ping_fr_timer", max(1, round(fr_timer * 1000 / 16)), rwhere)
            self.warn(
                rwhere,
                f"ds_ping_fr_timer {fr_timer}: Kamailio reads it as timer ticks of 1/16 s, "
                f"so ping_fr_timer = {max(1, round(fr_timer * 1000 / 16))} (milliseconds)",
            )
        proxy, pwhere = self.dp("outbound_proxy")
        if proxy:
            try:
                parse_sip_uri(str(proxy))
            except Invalid as exc:
                raise CfgError(pwhere, f"outbound_proxy {proxy!r}: {exc.allowed}") from None
            self.put("outbound_proxy", str(proxy), pwhere)

    def latency_alpha(self, alpha: int, where: Where | None) -> None:
        if not 0 < alpha < 1000:
            self.warn(
                where,
                f"ds_latency_estimator_alpha {alpha}: Kamailio refuses it and uses "
                "its default; written as that default",
            )
            self.put(
                "latency_estimator_alpha",
                100,
                None,
                "Kamailio's default (its value is out of range)",
            )
            return
        if self.version >= (6, 1):
            value = alpha
            how = "the weight of a new sample (Kamailio 6.1's meaning, and sipdispatch's)"
        else:
            value = 1000 - alpha
            how = (
                f"Kamailio {release(self.version)} weighs the previous estimate by {alpha}/1000; "
                f"sipdispatch's key is the new sample's weight: 1000 - {alpha}"
            )
        self.dispatcher.add(
            "latency_estimator_alpha", value, self.origin(where) if where else "", how
        )
        if not self.version_given:
            self.warn(
                where,
                f"ds_latency_estimator_alpha {alpha} is read with Kamailio "
                f"{release(self.version)}'s meaning (the new sample's weight); Kamailio before "
                f"6.1 gave it the opposite meaning: give --kamailio-version",
            )

    def read_hashing(self) -> None:
        size, swhere = self.dp("ds_hash_size")
        if isinstance(size, int) and not 0 <= size <= 16:
            self.warn(swhere, f"ds_hash_size {size}: written as 16, the most sipdispatch takes")
        self.put("hash_size", min(max(size, 0), 16) if isinstance(size, int) else 0, swhere, "0")
        for name, key in (
            ("ds_hash_expire", "hash_expire"),
            ("ds_hash_initexpire", "hash_initexpire"),
        ):
            value, w = self.dp(name)
            if isinstance(value, int) and value < 1:
                self.warn(
                    w,
                    f"{name} {value}: written as 1 second (Kamailio expires such entries "
                    "at its next check)",
                )
            self.put(key, max(1, value) if isinstance(value, int) else 7200, w, "7200")
        pvar, pwhere = self.dp("hash_pvar")
        if isinstance(pvar, str) and pvar:
            m = re.fullmatch(r"\s*\$hdr\(([^()]+)\)\s*", pvar)
            header = ""
            if m is not None:
                try:
                    header = parse_header_name(m.group(1).strip())
                except Invalid:
                    header = ""
            else:
                header = pv_template(pvar)
            if header:
                self.hash_header = header
                self.dispatcher.add("hash_header", header, self.origin(pwhere) if pwhere else "")
            else:
                self.not_carried(
                    self.dispatcher,
                    pwhere,
                    f"hash_pvar {pvar!r}: sipdispatch's "
                    "algorithm 7 hashes one header (hash_header); other variables "
                    "or templates are not supported",
                )
                self.warn(
                    pwhere,
                    f"hash_pvar {pvar!r} not carried over: only $hdr(Name), $ci, $fu, $fU, "
                    "$tu, $tU, $ru, $rU and text are",
                )

    def read_load_and_dns(self) -> None:
        load_mode, lwhere = self.dp("ds_load_mode")
        if lwhere is not None:
            if load_mode == 1:
                self.dispatcher.note(
                    f"{self.origin(lwhere)}\n  the same in sipdispatch, "
                    "which always refuses a list with a bad line"
                )
            else:
                self.not_carried(
                    self.dispatcher,
                    lwhere,
                    "sipdispatch refuses a list with a bad "
                    "line (at start the proxy does not start, a reload keeps the "
                    "running list); Kamailio's 0 skips the line",
                )
        dns_mode, dwhere = self.dp("ds_dns_mode")
        if dwhere is not None:
            self.not_carried(
                self.dispatcher,
                dwhere,
                "sipdispatch resolves every host at load "
                "(A/AAAA; NAPTR/SRV for a name without a port, refreshed at its "
                f"TTL); ds_dns_mode {dns_mode} is not a choice here",
            )
        default, dfwhere = self.dp("ds_default_socket")
        sockname, snwhere = self.dp("ds_default_sockname")
        if sockname is not None and dfwhere is not None:
            self.not_carried(
                self.dispatcher,
                dfwhere,
                "ds_default_sockname is set: Kamailio ignores ds_default_socket",
            )
        del default, snwhere

    def read_tm(self) -> None:
        if not self.loaded("tm"):
            if self.loaded("dispatcher"):
                self.transaction.note(
                    "tm is not loaded: Kamailio relays statelessly and "
                    "cannot fail over; sipdispatch is a stateful proxy"
                )
            return
        for name, (key, default) in TM_TIMERS.items():
            mp = self.param(name, "tm")
            if mp is None:
                if key in ("fr_timer", "fr_inv_timer"):
                    self.transaction.add(key, default, f"Kamailio default: tm {name} {default} ms")
                continue
            if not isinstance(mp.value, int) or mp.value < 1:
                raise CfgError(
                    mp.where, f"tm {name} {mp.value!r}: must be a number of milliseconds >= 1"
                )
            self.transaction.add(key, mp.value, self.origin(mp.where))
        t1 = self.transaction.get("t1")
        t2 = self.transaction.get("t2")
        if t1 is not None and t2 is None and isinstance(t1.value, int) and t1.value > 4000:
            self.transaction.add("t2", t1.value, "raised to t1: sipdispatch needs t2 >= t1")
        for (module, name), mp in self.params.items():
            if module != "tm" or name in TM_TIMERS:
                continue
            why = {
                "auto_inv_100": "sipdispatch always answers an INVITE with 100 Trying",
                "restart_fr_on_each_reply": "fr_inv_timer runs from the first provisional reply",
                "max_inv_lifetime": "an INVITE branch ends at fr_inv_timer after its first "
                "provisional reply",
                "max_noninv_lifetime": "a non-INVITE branch ends at fr_timer",
                "noisy_ctimer": "a branch that rang is cancelled at fr_inv_timer",
            }.get(name, "no sipdispatch key for it")
            self.not_carried(self.transaction, mp.where, why)
        if "t_set_fr" in self.called():
            for where in self.called()["t_set_fr"]:
                self.not_carried(
                    self.transaction,
                    where,
                    "per-transaction timers: sipdispatch "
                    "uses [transaction] fr_timer and fr_inv_timer for every call",
                )
                self.warn(
                    where,
                    "t_set_fr() not carried over: every call uses [transaction] "
                    "fr_timer and fr_inv_timer",
                )


def _flags_value(text: str) -> str:
    """Hex flags as sipdispatch reads them (``0x8`` -> ``8``)."""
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        return str(int(text, 16))
    return text


def _where_of(dest: Destination, shown: str) -> Where:
    m = re.search(r":(\d+)$", dest.where)
    return Where(shown, int(m.group(1))) if m else Where(shown, 1)


_PV_FIELDS: Final = {
    "ci": "call_id", "fu": "from_uri", "fU": "from_user", "tu": "to_uri", "tU": "to_user",
    "ru": "ruri", "rU": "ruri_user",
}  # fmt: skip
"""Kamailio pseudo-variables a hash template has, by their name."""
_PV: Final = re.compile(r"\$hdr\(([^()]+)\)|\$\(?([A-Za-z]+)\)?")


def pv_template(pvar: str) -> str:
    """``hash_pvar``'s format string as a hash template (``"$hdr(X-Tenant)$fU"`` ->
    ``"{hdr:X-Tenant}{from_user}"``); "" when it uses what a template cannot name."""
    out: list[str] = []
    at = 0
    for m in _PV.finditer(pvar):
        text = pvar[at : m.start()]
        if "{" in text or "}" in text:
            return ""
        out.append(text)
        if m.group(1) is not None:
            out.append(f"{{hdr:{m.group(1).strip()}}}")
        elif m.group(2) in _PV_FIELDS:
            out.append(f"{{{_PV_FIELDS[m.group(2)]}}}")
        else:
            return ""
        at = m.end()
    tail = pvar[at:]
    if "{" in tail or "}" in tail or "$" in tail:
        return ""
    out.append(tail)
    template = "".join(out).strip()
    try:
        parse_hash_header(template)
    except Invalid:
        return ""
    return template
