"""The core parameters: ``listen=`` and ``socket = {...}`` (with ``name`` and
``advertise``), ``port``, ``disable_tcp``, ``advertised_address``; the admin listener
(where ctl's ``binrpc`` listened); Record-Route; pike and permissions; the core
parameters that have a ``[server]`` key, and those that do not."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from sipdispatch.config import ListenAddr
from sipdispatch.migrate.base import (
    ADMIN_PORT,
    SIP_PORT,
    SIPS_PORT,
    Base,
    Listener,
    is_address,
    is_loopback,
    overlaps,
    release,
)
from sipdispatch.migrate.cfgtext import CfgError, Tok, Where
from sipdispatch.migrate.syntax import CoreParam

__all__ = ["CorePart"]

CORE_IGNORED: Final = frozenset(
    {
        "fork",
        "log_stderror",
        "log_facility",
        "log_name",
        "log_prefix",
        "log_color",
        "memdbg",
        "memlog",
        "mlock_pages",
        "shm_force_alloc",
        "auto_aliases",
        "alias",
        "sip_warning",
        "server_signature",
        "server_header",
        "user_agent_header",
        "mpath",
        "loadpath",
        "dns",
        "rev_dns",
        "dns_try_ipv6",
        "dns_try_naptr",
        "dns_use_search_list",
        "dns_search_full_match",
        "dns_cache_init",
        "use_dns_cache",
        "use_dns_failover",
        "dns_srv_lb",
        "tcp_accept_aliases",
        "tcp_async",
        "tcp_children",
        "tcp_keepalive",
        "tcp_keepidle",
        "tcp_keepintvl",
        "tcp_keepcnt",
        "tcp_crlf_ping",
        "tcp_accept_no_cl",
        "tcp_rd_buf_size",
        "tcp_wq_blk_size",
        "tcp_conn_wq_max",
        "tcp_wq_max",
        "tcp_send_timeout",
        "tcp_connect_timeout",
        "tcp_fd_cache",
        "tcp_accept_haproxy",
        "tcp_reuse_port",
        "udp_mtu",
        "udp_mtu_try_proto",
        "latency_log",
        "latency_limit_action",
        "latency_limit_db",
        "latency_cfg_log",
        "onsend_route_reply",
        "pv_buffer_size",
        "pv_buffer_slots",
        "maxbuffer",
        "max_while_loops",
        "corelog",
        "stats_name_separator",
        "shm_mem_size",
        "pkg_mem_size",
        "group",
        "user",
        "chroot",
        "workdir",
        "wdir",
        "rundir",
        "run_dir",
        "pid_file",
        "kemi.onsend_route_callback",
        "kemi.reply_route_callback",
        "kemi.event_route_callback",
        "async_workers",
        "async_usleep",
        "async_nonblock",
        "flags",
        "avpflags",
        "sock_mode",
        "sock_user",
        "sock_group",
        "local_rport",
        "auto_bind_ipv6",
        "bind_ipv6_link_local",
        "ip_free_bind",
        "enable_sctp",
        "sctp_children",
        "disable_core_dump",
        "open_files_limit",
        "shutdown_timeout",
        "modinit_delay",
        "fork_delay",
        "http_reply_parse",
        "reply_to_via",
        "phone2tel",
        "enable_tls",
        "tls_port_no",
        "tls_max_connections",
        "disable_tcp",
        "port",
        "advertised_address",
        "advertised_port",
        "listen",
        "socket",
        "children",
        "debug",
        "tcp_max_connections",
        "tcp_connection_lifetime",
        "tcp_msg_read_timeout",
        "tcp_msg_data_timeout",
        "mhomed",
        "tcp_source_ipv4",
        "tcp_source_ipv6",
        "socket_workers",
        "received_route_mode",
        "version_table",
        "xavp_via_params",
        "xavp_via_fields",
    }
)
"""Core parameters read below, or that have nothing to carry (logging, memory, DNS cache,
process details); the others are listed as not carried over."""


def _words(parts: Sequence[Tok]) -> list[str]:
    """Tokens into the words they were written as (``udp:1.2.3.4:5060``). A string on its
    own is a quoted word (``name "lan"``); a string glued to the word before is part of it
    (``udp:IP:5060`` with ``#!define IP "10.0.0.1"``), as Kamailio reads it."""
    words: list[str] = []
    for tok in parts:
        if tok.space or not words:
            words.append('"' + tok.text + '"' if tok.kind == "str" else tok.text)
        else:
            words[-1] += tok.text
    return words


_ADDRESS: Final = re.compile(
    r"^(?:(?P<proto>udp|tcp|tls|sctp|ws|wss|any)(?=:)\:)?"
    r"(?P<host>\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::(?P<port>\d+)(?:-(?P<end>\d+))?)?$",
    re.I,
)


class CorePart(Base):
    """[server], [admin], [security] and [tls] from the core and its modules."""

    def read_listeners(self) -> None:
        port_param = self.core_int("port")
        port = port_param[0] if port_param else SIP_PORT
        tls_param = self.core_int("tls_port_no")
        tls_port = tls_param[0] if tls_param else SIPS_PORT
        no_tcp = self.core_int("disable_tcp")
        tcp_off = bool(no_tcp and no_tcp[0])
        tls = self.core_int("enable_tls")
        tls_on = bool(tls and tls[0])
        raw: list[Listener] = []
        for param in self.script.core:
            if param.name == "listen":
                raw.extend(self.parse_listen(param, port, tls_port, tcp_off, tls_on))
            elif param.name == "socket":
                raw.extend(self.parse_socket_block(param, port, tls_port))
        if not raw:
            where = port_param[1] if port_param else None
            protos = ["udp"] + ([] if tcp_off else ["tcp"])
            raw = [Listener(p, "0.0.0.0", port, where or Where(self.path, 1)) for p in protos]
            origin = (
                "no listen= in kamailio.cfg: Kamailio listens on every IPv4 address of the host"
                f" (udp{'' if tcp_off else ' and tcp'}, port {port}); sipdispatch does the same "
                "on 0.0.0.0"
            )
            self.warn(
                None,
                "kamailio.cfg has no listen=: Kamailio binds each address of the "
                "host and answers from the address a request came to; sipdispatch "
                "listens on 0.0.0.0 (write the addresses in server.listen to keep "
                "replies on the address called)",
            )
            notes = [origin] + [""] * (len(raw) - 1)
        else:
            notes = []
        kept: list[Listener] = []
        for lst in raw:
            if lst.proto == "tls" and not self.tls_possible():
                self.not_carried(
                    self.server,
                    lst.where,
                    f"the tls listener {lst.text()}: "
                    "sipdispatch needs [tls] certificate and private_key, "
                    "which kamailio.cfg's tls module parameters do not give",
                )
                self.warn(
                    lst.where,
                    f"tls listener {lst.text()} not carried over: no "
                    "certificate found in the tls module's parameters",
                )
                continue
            if any(k.text() == lst.text() for k in kept):
                continue
            kept.append(lst)
        self.listeners = kept
        if not kept:
            self.warn(
                None,
                "no listener could be carried over: sipdispatch's default "
                "(udp and tcp on 127.0.0.1:5060) is used",
            )
            return
        self.apply_default_socket()
        entry = self.server.add("listen", [lst.text() for lst in self.listeners])
        if notes:
            entry.origin = [notes[0]]
            entry.item_notes = [""] * len(self.listeners)
        else:
            entry.item_notes = [self.origin(lst.where) for lst in self.listeners]
        self.read_advertise()
        udp = [lst for lst in self.listeners if lst.proto == "udp"]
        families = {":" in lst.host for lst in udp}
        if len(udp) > len(families):
            self.warn(
                udp[1].where,
                "several udp listeners of one address family: Kamailio sends "
                "from the socket a request came in on (or the one a script or destination "
                "chooses); sipdispatch sends every datagram from the first udp listener "
                "of the family",
            )

    def parse_listen(
        self, param: CoreParam, port: int, tls_port: int, tcp_off: bool, tls_on: bool
    ) -> list[Listener]:
        words = _words(param.parts)
        out: list[Listener] = []
        advertise = name = ""
        addresses: list[str] = []
        i = 0
        while i < len(words):
            word = words[i]
            low = word.lower()
            if low in ("advertise", "as") and i + 1 < len(words):
                advertise = words[i + 1]
                i += 2
            elif low == "name" and i + 1 < len(words):
                name = words[i + 1].strip('"')
                i += 2
            elif low in ("virtual",):
                i += 1
            elif low in ("workers", "socket_workers", "agname", "vrf") and i + 1 < len(words):
                i += 2
            else:
                addresses.append(word)
                i += 1
        for address in addresses:
            out.extend(
                self.address(address, param.where, port, tls_port, tcp_off, tls_on, advertise, name)
            )
        return out

    def address(
        self,
        text: str,
        where: Where,
        port: int,
        tls_port: int,
        tcp_off: bool,
        tls_on: bool,
        advertise: str,
        name: str,
    ) -> list[Listener]:
        m = _ADDRESS.match(text.strip().strip('"'))
        if m is None:
            raise CfgError(where, f"cannot read the listen address {text!r}")
        proto = (m.group("proto") or "").lower()
        host = m.group("host").strip("[]")
        if m.group("end"):
            self.warn(
                where,
                f"listen {text}: a port range is not supported; only port "
                f"{m.group('port')} is carried over",
            )
        if proto in ("sctp", "ws", "wss"):
            self.not_carried(
                self.server,
                where,
                f"the {proto} listener {text}: sipdispatch listens on udp, tcp and tls",
            )
            self.warn(where, f"{proto} listener {text} not carried over")
            return []
        if not is_address(host) and "." not in host and host != "localhost":
            self.not_carried(
                self.server,
                where,
                f"listen on {host!r}: a network interface name "
                "(Kamailio listens on its addresses); write its address in "
                "server.listen",
            )
            self.warn(where, f"listen on interface {host!r} not carried over: give its address")
            return []
        protos = (
            [proto]
            if proto and proto != "any"
            else (["udp"] + ([] if tcp_off else ["tcp"]) + (["tls"] if tls_on else []))
        )
        out = []
        for p in protos:
            given = m.group("port")
            number = int(given) if given else (tls_port if p == "tls" else port)
            listener = Listener(p, host, number, where, advertise, name)
            try:
                ListenAddr.parse(listener.text())
            except ValueError as exc:
                raise CfgError(where, f"cannot read the listen address {text!r}: {exc}") from None
            out.append(listener)
        return out

    def parse_socket_block(self, param: CoreParam, port: int, tls_port: int) -> list[Listener]:
        if self.version < (5, 7):
            raise CfgError(
                param.where,
                "socket = { ... } is Kamailio 5.7's (this is "
                f"--kamailio-version {release(self.version)})",
            )
        inner = list(param.parts[1:-1])
        fields: dict[str, str] = {}
        current: list[Tok] = []
        for tok in [*inner, None]:
            if tok is None or (tok.kind == "op" and tok.text == ";"):
                if current:
                    words = _words(current)
                    if len(words) >= 3 and words[1] == "=":
                        fields[words[0].lower()] = " ".join(words[2:]).strip('"')
                    elif len(words) >= 1 and "=" in words[0]:
                        key, _, value = words[0].partition("=")
                        fields[key.lower()] = (value + " ".join(words[1:])).strip('"')
                    else:
                        raise CfgError(param.where, f"cannot read {' '.join(words)!r} in socket")
                current = []
            else:
                current.append(tok)
        bind = fields.get("bind")
        if not bind:
            raise CfgError(param.where, "socket = { ... } needs bind = proto:address:port")
        return self.address(
            bind,
            param.where,
            port,
            tls_port,
            False,
            False,
            fields.get("advertise", ""),
            fields.get("name", ""),
        )

    def read_advertise(self) -> None:
        global_addr = self.core("advertised_address")
        global_port = self.core_int("advertised_port")
        values = [(lst.advertise, lst.where) for lst in self.listeners if lst.advertise]
        if global_addr is not None:
            text = global_addr.value.strip('"')
            if global_port is not None:
                text = f"{text}:{global_port[0]}"
            values.insert(0, (text, global_addr.where))
        if not values:
            return
        text, where = values[0]
        others = {v for v, _ in values if v != text}
        self.server.add("advertise", text.strip('"'), self.origin(where))
        if others:
            self.warn(
                where,
                "different advertised addresses per listener: sipdispatch has one "
                f"advertise for all; {text} is carried over, not {', '.join(sorted(others))}",
            )
        if (
            any(not lst.advertise for lst in self.listeners)
            and len(self.listeners) > 1
            and global_addr is None
        ):
            self.warn(
                where,
                f"advertise {text} is written by sipdispatch for every listener, "
                "Kamailio only for the listener it was given to",
            )

    def apply_default_socket(self) -> None:
        sockname = self.param("ds_default_sockname")
        sock = self.param("ds_default_socket")
        target: Listener | None = None
        source = sockname or sock
        if sockname is not None:
            found = [lst for lst in self.listeners if lst.name == str(sockname.value)]
            if not found:
                self.warn(
                    sockname.where,
                    f'ds_default_sockname "{sockname.value}": no listener of that name',
                )
            else:
                target = found[0]
        elif sock is not None:
            m = _ADDRESS.match(str(sock.value))
            if m is not None:
                proto = (m.group("proto") or "").lower() or None
                port = int(m.group("port")) if m.group("port") else None
                found = [
                    lst
                    for lst in self.listeners
                    if lst.matches(proto, m.group("host").strip("[]"), port)
                ]
                target = found[0] if found else None
            if target is None:
                self.warn(sock.where, f'ds_default_socket "{sock.value}": no such listener')
        if target is None or source is None:
            return
        self.listeners.remove(target)
        self.listeners.insert(0, target)
        self.dispatcher.note(
            f"{self.origin(source.where)}\n  carried over as the order of server.listen: "
            f"{target.text()} is first, and sipdispatch sends from the first listener of a "
            "transport (requests and pings alike)"
        )

    def tls_possible(self) -> bool:
        return bool(self.tls_files())

    def tls_files(self) -> dict[str, tuple[str, Where]]:
        """certificate / private_key / ca_list given as tls module parameters."""
        out: dict[str, tuple[str, Where]] = {}
        if not self.loaded("tls"):
            return out
        for name in ("certificate", "private_key", "ca_list"):
            mp = self.param(name, "tls")
            if mp is not None and isinstance(mp.value, str) and mp.value:
                out[name] = (mp.value, mp.where)
        return out if "certificate" in out else {}

    def read_record_route(self) -> None:
        calls = self.facts.record_route
        if calls:
            where, name = calls[0]
            self.server.add("record_route", True, self.origin(where))
            for w, n in calls:
                if n != "record_route":
                    self.not_carried(
                        self.server,
                        w,
                        f"{n}(): sipdispatch writes its own "
                        "address (or [server] advertise) in Record-Route",
                    )
                    self.warn(
                        w,
                        f"{n}() is carried over as record_route(): the address "
                        "written is sipdispatch's",
                    )
        else:
            self.server.add(
                "record_route",
                False,
                "request_route never calls record_route(): "
                "in-dialog requests go straight to the far end",
            )
        rr = {name: mp for (module, name), mp in self.params.items() if module == "rr"}
        for name, mp in rr.items():
            if name == "enable_double_rr" and mp.value != 0:
                self.server.note(
                    f"{self.origin(mp.where)}\n  the same in sipdispatch: two Record-Route "
                    "entries when the caller's transport and the destination's differ"
                )
                continue
            why = {
                "enable_full_lr": "sipdispatch writes ;lr",
                "append_fromtag": "sipdispatch does not add the From tag to Record-Route",
                "enable_double_rr": "sipdispatch writes two Record-Route entries when the "
                "transports differ (Kamailio's enable_double_rr 1)",
            }.get(name, "no sipdispatch key for it")
            self.not_carried(self.server, mp.where, why)

    def read_admin(self) -> None:
        host, port = "127.0.0.1", ADMIN_PORT
        origin = (
            "sipdispatch's default: its JSON-RPC (kamcmd's dispatcher.* methods, with "
            "'sipdispatch rpc') and /metrics"
        )
        binrpc = [
            mp for (module, name), mp in self.params.items() if module == "ctl" and name == "binrpc"
        ]
        for mp in binrpc:
            m = re.fullmatch(r"tcp:(\[[0-9a-fA-F:.]+\]|[^:]+):(\d+)", str(mp.value).strip())
            if m is None:
                continue
            wanted = m.group(1).strip("[]")
            port = int(m.group(2))
            origin = (
                f"{self.origin(mp.where)}\n  where kamcmd reached Kamailio's RPC: "
                "sipdispatch's JSON-RPC (sipdispatch rpc) and /metrics listen there"
            )
            if not is_loopback(wanted):
                self.warn(
                    mp.where,
                    f"ctl binrpc on {wanted}: sipdispatch's admin listener needs "
                    "[admin] token off loopback; carried over on 127.0.0.1",
                )
            break
        taken = {(lst.host, lst.port) for lst in self.listeners if lst.proto in ("tcp", "tls")}
        moved = False
        while any(overlaps(h, host) and p == port for h, p in taken):
            port += 1
            moved = True
        if moved:
            origin += f"; moved to port {port}: the port is a SIP tcp listener here"
        self.admin.add("listen", f"{host}:{port}", origin)
        for module in ("jsonrpcs", "xhttp", "ctl", "xmlrpc", "xhttp_rpc", "xhttp_prom"):
            if self.loaded(module):
                self.admin.note(
                    f"Kamailio's {module} module: sipdispatch's admin listener does "
                    "its job (JSON-RPC at POST /RPC, metrics at GET /metrics)"
                )

    def read_security(self) -> None:
        called = self.called()
        if self.loaded("pike") and "pike_check_req" in called:
            where = called["pike_check_req"][0]
            density = self.param("reqs_density_per_unit", "pike")
            unit = self.param("sampling_time_unit", "pike")
            limit = density.value if density is not None and isinstance(density.value, int) else 30
            window = unit.value if unit is not None and isinstance(unit.value, int) else 2
            self.security.add(
                "flood_limit",
                limit,
                self.origin(density.where)
                if density
                else f"pike_check_req() at {where}, pike's default 30",
            )
            self.security.add(
                "flood_window", window, self.origin(unit.where) if unit else "pike's default 2 s"
            )
            self.warn(
                where,
                "pike_check_req(): carried over as [security] flood_limit, which "
                "drops the source's requests over the limit (the script's own handling of "
                "them is not carried)",
            )
        for name in ("allow_source_address", "allow_trusted", "allow_address", "allow_routing"):
            for where in called.get(name, []):
                self.not_carried(
                    self.security,
                    where,
                    f"{name}(): permissions' tables are not "
                    "read; write the sources in [security] allow/deny",
                )
                self.warn(where, f"{name}() not carried over: write [security] allow")
        files = self.tls_files()
        if files and any(lst.proto == "tls" for lst in self.listeners):
            for key, name in (
                ("certificate", "certificate"),
                ("private_key", "private_key"),
                ("ca_file", "ca_list"),
            ):
                if name in files:
                    value, where = files[name]
                    self.tls.add(key, value, self.origin(where))
            verify = self.param("verify_certificate", "tls")
            if verify is None:
                self.tls.add(
                    "verify_peer",
                    False,
                    "Kamailio default: tls verify_certificate 0, a destination's certificate is "
                    "not checked (sipdispatch's default checks it)",
                )
                self.warn(
                    None,
                    "tls verify_certificate is Kamailio's default 0: verify_peer = false is "
                    "written, so TLS destinations are not authenticated, as with Kamailio",
                )
            else:
                self.tls.add("verify_peer", bool(verify.value), self.origin(verify.where))
            required = self.param("require_certificate", "tls")
            if required is not None:
                self.tls.add("verify_client", bool(required.value), self.origin(required.where))

    def read_other_core(self) -> None:
        children = self.core_int("children")
        if children is not None:
            self.not_carried(
                self.server,
                children[1],
                "Kamailio's workers handle one message "
                "at a time; one sipdispatch process handles many at once ([server] "
                "workers = 0 runs one per core when one is not enough)",
            )
        debug = self.core_int("debug")
        if debug is not None:
            level = (
                "debug"
                if debug[0] >= 3
                else "info"
                if debug[0] >= 1
                else "warning"
                if debug[0] == 0
                else "error"
            )
            self.server.add("log_level", level, self.origin(debug[1]))
        maxconn = self.core_int("tcp_max_connections")
        if maxconn is not None and maxconn[0] >= 1:
            self.server.add("tcp_max_connections", maxconn[0], self.origin(maxconn[1]))
        lifetime = self.core_int("tcp_connection_lifetime")
        if lifetime is not None and lifetime[0] >= 1:
            self.server.add("tcp_idle_timeout", float(lifetime[0]), self.origin(lifetime[1]))
        timeout = self.core_int("tcp_msg_read_timeout")
        if timeout is not None and timeout[0] >= 1:
            self.server.add("tcp_message_timeout", float(timeout[0]), self.origin(timeout[1]))
        mhomed = self.core_int("mhomed")
        if mhomed is not None and mhomed[0]:
            self.not_carried(
                self.server,
                mhomed[1],
                "sipdispatch sends from the first listener "
                "of a transport; it does not choose the address by the route",
            )
        seen: set[str] = set()
        for param in self.script.core:
            if param.name in CORE_IGNORED or param.name in seen:
                continue
            seen.add(param.name)
            self.not_carried(self.server, param.where, "a core parameter with no sipdispatch key")
