"""``sipdispatch migrate``: kamailio.cfg files as operators write them, migrated.

Each input is first checked by Kamailio itself (``kamailio -c -f``, skipped only when
Kamailio is not installed), then migrated with the command line, and the result loaded
by sipdispatch's own configuration loader: the values must be the ones the kamailio.cfg
stands for, every key must name the Kamailio line it came from, what is not carried over
must be a comment and, when behaviour differs, a warning. A kamailio.cfg that cannot be
read gives one ``file:line`` error. The last test runs the proxy on a migrated
configuration and relays a call from sipp through it, failing over as the
failure_route of the kamailio.cfg did.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sipdispatch.cli import main
from sipdispatch.config import Config, RouteRule, load_config
from sipdispatch.migrate.cfgtext import read_cfg
from sipdispatch.migrate.syntax import parse_script
from tests.integration.gateway import GatewayThread
from tests.integration.proxyctl import start_proxy
from tests.integration.sippctl import free_port, run_sipp, sipp_path

KAMAILIO = shutil.which("kamailio") or (
    "/usr/sbin/kamailio" if os.access("/usr/sbin/kamailio", os.X_OK) else None
)


@dataclass
class Cfg:
    """A kamailio.cfg and the files next to it."""

    main: str
    files: dict[str, str] = field(default_factory=dict)
    defines: tuple[str, ...] = ()
    """Defines given to both ``kamailio -c -A`` and ``sipdispatch migrate -D``."""


# -- the inputs ------------------------------------------------------------------------------

CLASSIC = Cfg(
    """\
#!KAMAILIO
#
# Load balancer in front of two media gateways: round-robin over set 1,
# failover to the next gateway on 5xx, 404, 408 and timeouts.

#!define FLT_ACC 1

####### Global Parameters #########

debug=2
log_stderror=no
log_facility=LOG_LOCAL0
fork=yes
children=4
auto_aliases=no

listen=udp:127.0.0.1:5060
listen=tcp:127.0.0.1:5060

####### Modules Section ########

loadmodule "jsonrpcs.so"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "ctl.so"
loadmodule "dispatcher.so"

# ----- tm params -----
modparam("tm", "fr_timer", 3000)
modparam("tm", "fr_inv_timer", 40000)

# ----- rr params -----
modparam("rr", "enable_full_lr", 1)

# ----- dispatcher params -----
modparam("dispatcher", "list_file", "dispatcher.list")
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "xavp_dst", "_dsdst_")
modparam("dispatcher", "ds_ping_from", "sip:lb@example.com")
modparam("dispatcher", "ds_ping_interval", 10)
modparam("dispatcher", "ds_probing_threshold", 3)
modparam("dispatcher", "ds_inactive_threshold", 2)
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_ping_reply_codes", "class=2;code=404;code=480")
modparam("dispatcher", "ds_ping_latency_stats", 1)
modparam("dispatcher", "ds_timer_mode", 1)

####### Routing Logic ########

request_route {
	route(REQINIT);

	if (is_method("CANCEL")) {
		if (t_check_trans()) {
			route(RELAY);
		}
		exit;
	}

	if (!is_method("ACK")) {
		if (t_precheck_trans()) {
			t_check_trans();
			exit;
		}
		t_check_trans();
	}

	route(WITHINDLG);

	remove_hf("Route");
	if (is_method("INVITE|SUBSCRIBE")) {
		record_route();
	}

	if (is_method("INVITE")) {
		setflag(FLT_ACC);
	}

	route(DISPATCH);
}

route[RELAY] {
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}

route[REQINIT] {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (!sanity_check("1511", "7")) {
		xlog("Malformed SIP message from $si:$sp\\n");
		exit;
	}
}

route[WITHINDLG] {
	if (!has_totag()) {
		return;
	}
	if (loose_route()) {
		route(RELAY);
	}
	if (is_method("ACK")) {
		if (t_check_trans()) {
			t_relay();
			exit;
		} else {
			exit;
		}
	}
	sl_send_reply("404", "Not here");
	exit;
}

route[DISPATCH] {
	# round-robin over the media gateways of set 1
	if (!ds_select_dst("1", "4")) {
		send_reply("503", "Service Unavailable");
		exit;
	}
	xdbg("--- going to <$ru> via <$du>\\n");
	t_on_failure("RTF_DISPATCH");
	route(RELAY);
	exit;
}

failure_route[RTF_DISPATCH] {
	if (t_is_canceled()) {
		exit;
	}
	if (t_check_status("5[0-9][0-9]|404|408")
			or (t_branch_timeout() and !t_branch_replied())) {
		ds_mark_dst("ip");
		if (ds_next_dst()) {
			t_on_failure("RTF_DISPATCH");
			route(RELAY);
			exit;
		}
	}
}
""",
    {
        "dispatcher.list": "# media gateways\n"
        "1 sip:127.0.0.1:5071 0 0 duid=mg1 Media Gateway 1\n"
        "1 sip:127.0.0.1:5072 0 0 duid=mg2 Media Gateway 2\n"
    },
)

IFDEF_MAIN = """\
#!KAMAILIO
#
# The same script for the lab and for production: features switched on with
# kamailio -A WITH_... (or #!define WITH_... here).

#!ifndef LB_PORT
#!define LB_PORT 5060
#!endif
#!trydef DISPATCH_ALG 8
#!substdef "!PING_FROM!sip:ping@lb.example.com!g"

#!ifdef WITH_DEBUG
debug=3
#!else
debug=1
#!endif

listen=udp:127.0.0.1:LB_PORT
#!ifdef WITH_TCP
listen=tcp:127.0.0.1:LB_PORT
#!else
disable_tcp=yes
#!endif

include_file "lb-modules.cfg"

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (has_totag()) {
		if (loose_route()) {
			t_relay();
		} else {
			sl_send_reply("404", "Not here");
		}
		exit;
	}
	if (is_method("INVITE|MESSAGE")) {
		if (!ds_select_dst("1", DISPATCH_ALG)) {
			sl_send_reply("500", "No gateway");
			exit;
		}
		t_on_failure("FAILOVER");
		t_relay();
		exit;
	}
	sl_send_reply("403", "Forbidden");
}

failure_route[FAILOVER] {
#!ifdef WITH_FAILOVER_ON_404
	if (t_check_status("404|5[0-9][0-9]")) {
#!else
	if (t_check_status("5[0-9][0-9]")) {
#!endif
		if (ds_next_dst()) {
			t_on_failure("FAILOVER");
			t_relay();
			exit;
		}
	}
}
"""
IFDEF_FILES = {
    "lb-modules.cfg": """\
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "dispatcher.so"

modparam("tm", "fr_timer", 5000)
modparam("dispatcher", "list_file", "dispatcher.list")
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "ds_ping_from", "PING_FROM")
#!ifdef WITH_PING
modparam("dispatcher", "ds_ping_interval", 15)
#!endif
""",
    "dispatcher.list": "1 sip:127.0.0.1:5071\n1 sip:127.0.0.1:5072\n",
}
IFDEF = Cfg(IFDEF_MAIN, IFDEF_FILES)
IFDEF_DEFINED = Cfg(
    IFDEF_MAIN,
    IFDEF_FILES,
    ("WITH_TCP", "WITH_PING", "WITH_FAILOVER_ON_404", "LB_PORT=5070", "DISPATCH_ALG=4"),
)

SOCKETS = Cfg(
    """\
#!KAMAILIO
#
# Two networks: PBXs on the LAN side (set 1), carriers on the WAN side (set 2).
# Calls from a carrier go to the PBXs; everything else goes out to the carriers,
# from the WAN socket by default.

children=8
port=5060

listen=udp:127.0.0.1:5060 name "lan"
#!ifdef KAMAILIO_5_6
listen=udp:127.0.0.2:5060 advertise 192.0.2.10:5060 name "wan"
#!else
socket = {
	bind = udp:127.0.0.2:5060;
	advertise = 192.0.2.10:5060;
	name = "wan";
}
#!endif
disable_tcp=yes

loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "dispatcher.so"

modparam("dispatcher", "list_file", "gateways.list")
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "ds_default_sockname", "wan")
modparam("dispatcher", "ds_ping_interval", 30)
modparam("dispatcher", "ds_probing_mode", 1)

request_route {
	if (has_totag()) {
		if (loose_route()) {
			t_relay();
			exit;
		}
		sl_send_reply("404", "Not here");
		exit;
	}
	record_route();
	if (ds_is_from_list("2")) {
		# inbound from a carrier: to the PBXs, first by priority
		if (!ds_select_dst("1", "8")) {
			sl_send_reply("480", "No PBX");
			exit;
		}
	} else {
		if (!ds_select_dst("2", "4")) {
			sl_send_reply("503", "No carrier");
			exit;
		}
	}
	t_on_failure("NEXT");
	t_relay();
}

failure_route[NEXT] {
	if (t_is_canceled()) exit;
	if ($T_reply_code >= 500 || t_branch_timeout()) {
		ds_mark_dst();
		if (ds_next_dst()) {
			t_on_failure("NEXT");
			t_relay();
		}
	}
}
""",
    {
        "gateways.list": "# PBXs, reached from the LAN socket\n"
        "1 sip:127.0.0.1:5081 0 10 socket=udp:127.0.0.1:5060\n"
        "1 sip:127.0.0.1:5082 0 5 socket=udp:127.0.0.1:5060\n"
        "# carriers\n"
        "2 sip:127.0.0.2:5091 0 0\n"
        "2 sip:127.0.0.2:5092 0 0\n"
    },
)

SELECT_ROUTES = Cfg(
    """\
#!KAMAILIO
#
# Outbound calls: carrier A's gateways (set 1) first, carrier B (set 2) when
# carrier A has nothing left; calls to the emergency domain go to set 3, then set 4.

listen=udp:127.0.0.1:5060
listen=tcp:127.0.0.1:5060

loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "maxfwd.so"
loadmodule "dispatcher.so"

modparam("tm", "fr_timer", 2000)
modparam("tm", "fr_inv_timer", 60000)
modparam("dispatcher", "list_file", "carriers.list")
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "ds_ping_interval", 20)
modparam("dispatcher", "ds_probing_threshold", 2)

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (has_totag()) {
		if (loose_route()) {
			t_relay();
		}
		exit;
	}
	if (is_method("CANCEL")) {
		if (t_check_trans()) t_relay();
		exit;
	}
	record_route();
	if ($rd == "sos.example.net") {
		$var(rules) = "3=8;4=8";
		if (!ds_select_routes("$var(rules)", "ruri")) {
			sl_send_reply("503", "No emergency gateway");
			exit;
		}
		t_on_failure("REROUTE");
		t_relay();
		exit;
	}
	if (!ds_select_routes("1=4;2=8", "0", "3")) {
		send_reply("503", "No gateway");
		exit;
	}
	t_on_failure("REROUTE");
	t_relay();
	exit;
}

failure_route[REROUTE] {
	if (t_is_canceled()) {
		exit;
	}
	if (t_check_status("408|5[0-9][0-9]") || (t_branch_timeout() && !t_branch_replied())) {
		ds_mark_dst("tp");
		if (ds_next_dst()) {
			t_on_failure("REROUTE");
			t_relay();
			exit;
		}
	}
}
""",
    {
        "carriers.list": "1 sip:127.0.0.1:5101 0 0\n1 sip:127.0.0.1:5102 0 0\n"
        "2 sip:127.0.0.1:5201 0 10\n2 sip:127.0.0.1:5202 0 5\n"
        "3 sip:127.0.0.1:5301 0 0\n4 sip:127.0.0.1:5401 0 0\n"
    },
)

DB_URL = Cfg(
    """\
#!KAMAILIO
#
# Calls to the conference farm: the least loaded bridge (call load), the
# destinations in the database shared with the provisioning system.
# (db_mysql is loaded with -A WITH_MYSQL; kamailio -c does not open the database.)

#!ifndef DBURL
#!define DBURL "mysql://kamailio:kamailiorw@127.0.0.1/kamailio"
#!endif

listen=udp:10.0.0.10:5060
listen=tcp:10.0.0.10:5060
advertised_address="sip.example.com"

#!ifdef WITH_MYSQL
loadmodule "db_mysql.so"
#!endif
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "dispatcher.so"

modparam("tm", "fr_timer", 4000)
modparam("dispatcher", "db_url", DBURL)
modparam("dispatcher", "table_name", "lb_bridges")
modparam("dispatcher", "setid_col", "groupid")
modparam("dispatcher", "flags", 3)
modparam("dispatcher", "use_default", 1)
modparam("dispatcher", "ds_hash_size", 9)
modparam("dispatcher", "ds_hash_expire", 3600)
modparam("dispatcher", "ds_hash_initexpire", 60)
modparam("dispatcher", "ds_hash_check_interval", 10)
modparam("dispatcher", "ds_ping_interval", 5)
modparam("dispatcher", "ds_ping_method", "INFO")
modparam("dispatcher", "ds_ping_latency_stats", 1)
modparam("dispatcher", "ds_latency_estimator_alpha", 750)
modparam("dispatcher", "hash_pvar", "$fU@$ci")
modparam("dispatcher", "ds_load_mode", 1)

request_route {
	if (has_totag()) {
		if (loose_route()) {
			if (is_method("BYE")) {
				ds_load_update();
			}
			t_relay();
		}
		exit;
	}
	if (is_method("CANCEL")) {
		ds_load_update();
		t_relay();
		exit;
	}
	record_route();
	if (is_method("INVITE") && $rU =~ "^800") {
		if (!ds_select_domain("2", "10")) {
			sl_send_reply("486", "All bridges busy");
			exit;
		}
		t_on_failure("BRIDGE_FAIL");
		t_on_reply("BRIDGE_REPLY");
		t_relay();
		exit;
	}
	sl_send_reply("404", "Not a conference number");
}

onreply_route[BRIDGE_REPLY] {
	if (status =~ "2[0-9][0-9]") {
		ds_load_update();
	} else if (status =~ "[3-6][0-9][0-9]") {
		ds_load_unset();
	}
}

failure_route[BRIDGE_FAIL] {
	if (t_is_canceled()) {
		exit;
	}
	if (t_check_status("503")) {
		ds_mark_dst("i");
	}
	if (t_check_status("5[0-9][0-9]")) {
		if (ds_next_domain()) {
			t_on_failure("BRIDGE_FAIL");
			t_relay();
			exit;
		}
	}
}

event_route[dispatcher:dst-down] {
	xlog("L_ERR", "bridge down: $rm $ru ($du)\\n");
}
"""
)

EDGE = Cfg(
    """\
#!KAMAILIO
#
# Facing the internet: TLS for the callers, pike against floods, an ACL of the
# trunks; the gateways hashed by a customer header.

listen=udp:127.0.0.1:5060
listen=tls:127.0.0.1:5061
enable_tls=yes

loadmodule "pv.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pike.so"
loadmodule "tls.so"
loadmodule "permissions.so"
loadmodule "dispatcher.so"

modparam("tls", "certificate", "/etc/kamailio/kamailio-selfsigned.pem")
modparam("tls", "private_key", "/etc/kamailio/kamailio-selfsigned.key")
modparam("pike", "sampling_time_unit", 5)
modparam("pike", "reqs_density_per_unit", 50)
modparam("dispatcher", "list_file", "gateways.list")
modparam("dispatcher", "hash_pvar", "$hdr(X-Customer)")
modparam("dispatcher", "flags", 2)

request_route {
	if (!pike_check_req()) {
		exit;
	}
	if (!allow_source_address("1")) {
		sl_send_reply("403", "Forbidden");
		exit;
	}
	if (!ds_select_dst("1", "7")) {
		sl_send_reply("503", "No gateway");
		exit;
	}
	t_on_failure("NEXT");
	t_relay();
}

failure_route[NEXT] {
	if (t_check_status("486|600")) {
		exit;
	}
	if (!t_check_status("[1-2][0-9][0-9]")) {
		ds_mark_dst("ip");
		ds_next_dst();
		t_relay();
	}
}
""",
    {"gateways.list": "1 sip:127.0.0.1:5071 0x8 0 weight=50;prefix=49\n1 sip:gw.example.com 0 0\n"},
)

PREPROCESSOR = Cfg(
    """\
#!KAMAILIO
/* The preprocessor as operators use it.
#!define NOT_A_DEFINE 1
*/
#!define LB_IP "127.0.0.1"
#!define SIP_PORT 5080
#!trydef SIP_PORT 5090
#!define GW_SET 2
#!redefine GW_SET 3
#!define ALG_PART 4
#!define SELECT_ARGS "GW_SET_TEXT", ALG_PART
#!substdef "/GW_SET_TEXT/3/"
#!subst "/@PINGER@/sip:keepalive@lb.example.net/"

#!ifdef NOT_A_DEFINE
listen=udp:127.0.0.1:9999
#!endif

#!ifndef WITH_LAB
listen=udp:LB_IP:SIP_PORT
#!ifdef WITH_LAB
listen=udp:127.0.0.1:1
#!endif
#!else
listen=udp:127.0.0.1:5999
#!endif

import_file "optional-local.cfg"
include_file "modules.cfg"

modparam("dispatcher", "ds_ping_from", "@PINGER@")

request_route {
	if (!ds_select_dst(SELECT_ARGS)) {
		sl_send_reply("503", "No gateway");
		exit;
	}
	t_relay();
}
""",
    {
        "modules.cfg": 'loadmodule "tm.so"\nloadmodule "sl.so"\nloadmodule "dispatcher.so"\n'
        'modparam("dispatcher", "list_file", "dispatcher.list")\n',
        "dispatcher.list": "3 sip:127.0.0.1:5071\n",
    },
)

END_TO_END = """\
#!KAMAILIO
# Two media gateways by priority: MG1 first, MG2 when MG1 answers 5xx.

listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "ctl.so"
loadmodule "dispatcher.so"

modparam("ctl", "binrpc", "tcp:127.0.0.1:{admin}")
modparam("tm", "fr_timer", 3000)
modparam("dispatcher", "list_file", "dispatcher.list")
modparam("dispatcher", "flags", 2)

request_route {{
	if (has_totag()) {{
		if (loose_route()) {{
			t_relay();
		}}
		exit;
	}}
	record_route();
	if (!ds_select_dst("1", "8")) {{
		sl_send_reply("503", "No gateway");
		exit;
	}}
	t_on_failure("GW_FAILED");
	t_relay();
}}

failure_route[GW_FAILED] {{
	if (t_is_canceled()) exit;
	if (t_check_status("5[0-9][0-9]") || (t_branch_timeout() && !t_branch_replied())) {{
		ds_mark_dst("ip");
		if (ds_next_dst()) {{
			t_on_failure("GW_FAILED");
			t_relay();
		}}
	}}
}}
"""

INPUTS = {
    "classic": CLASSIC,
    "ifdef": IFDEF,
    "ifdef-with-defines": IFDEF_DEFINED,
    "sockets": SOCKETS,
    "select-routes": SELECT_ROUTES,
    "db-url": DB_URL,
    "tls-pike-acl": EDGE,
    "preprocessor": PREPROCESSOR,
    "end-to-end": Cfg(
        END_TO_END.format(port=5060, admin=2049),
        {"dispatcher.list": "1 sip:127.0.0.1:5071 0 10\n1 sip:127.0.0.1:5072 0 5\n"},
    ),
}


# -- helpers ---------------------------------------------------------------------------------


def write(cfg: Cfg, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in cfg.files.items():
        (directory / name).write_text(text)
    main_path = directory / "kamailio.cfg"
    main_path.write_text(cfg.main)
    return main_path


@dataclass
class Result:
    status: int
    text: str
    """The configuration written (empty when none was)."""
    warnings: list[str]
    stderr: str
    config: Config | None


def migrate(
    path: Path, capsys: pytest.CaptureFixture[str], *args: str, defines: tuple[str, ...] = ()
) -> Result:
    """``sipdispatch migrate PATH -o OUT ARGS...``, the result loaded by sipdispatch."""
    out = path.parent / "sipdispatch.toml"
    out.unlink(missing_ok=True)
    capsys.readouterr()
    argv = ["migrate", str(path), "-o", str(out), *args]
    for define in defines:
        argv += ["-D", define]
    status = main(argv)
    err = capsys.readouterr().err
    warnings = [
        line.removeprefix("sipdispatch: migrate: warning: ")
        for line in err.splitlines()
        if line.startswith("sipdispatch: migrate: warning: ")
    ]
    text = out.read_text() if out.exists() else ""
    config = load_config(out) if out.exists() else None
    return Result(status, text, warnings, err, config)


def ok(result: Result) -> Config:
    assert result.status == 0, result.stderr
    assert result.config is not None
    return result.config


def commented(text: str, key: str, comment: str) -> bool:
    """``key = ...`` of the TOML text has ``comment`` in the comment lines above it."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"^{re.escape(key)} = ", line):
            above = []
            j = i - 1
            while j >= 0 and lines[j].startswith("#") and lines[j] != "#":
                above.insert(0, lines[j])
                j -= 1
            if comment in " ".join(a.lstrip("# ") for a in above):
                return True
    return False


def line(cfg: Cfg | str, snippet: str, name: str = "kamailio.cfg") -> str:
    """``kamailio.cfg:N: <the line>`` for the first line of the file holding ``snippet``."""
    text = (
        cfg if isinstance(cfg, str) else (cfg.main if name == "kamailio.cfg" else cfg.files[name])
    )
    for number, content in enumerate(text.splitlines(), 1):
        if snippet in content:
            return f"{name}:{number}: {content.strip()}"
    raise AssertionError(f"{snippet!r} is not in {name}")


def only_rule(config: Config) -> RouteRule:
    assert len(config.routes) == 1, config.routes
    return config.routes[0]


# -- every input is Kamailio's ----------------------------------------------------------------


@pytest.mark.parametrize("name", INPUTS)
def test_every_input_is_a_kamailio_cfg_that_kamailio_accepts(name: str, tmp_path: Path) -> None:
    if KAMAILIO is None:
        pytest.skip("kamailio is not installed")
    cfg = INPUTS[name]
    path = write(cfg, tmp_path)
    argv = [KAMAILIO, "-c", "-f", str(path)]
    for define in cfg.defines:
        argv += ["-A", define]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the classic dispatcher configuration -------------------------------------------------


def test_the_classic_config_keeps_listeners_timers_probing_and_the_failover_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ok(migrate(write(CLASSIC, tmp_path), capsys, "--kamailio-version", "5.6"))
    assert [str(a) for a in config.server.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert config.server.record_route is True
    assert (config.transaction.fr_timer, config.transaction.fr_inv_timer) == (3000, 40000)
    d = config.dispatcher
    assert d.list_file == str(tmp_path / "dispatcher.list")
    assert (d.ping_interval, d.ping_from, d.probing_mode) == (10, "sip:lb@example.com", 1)
    assert (d.probing_threshold, d.inactive_threshold) == (3, 2)
    # class=2 is what sipdispatch always accepts; the codes stay
    assert (d.ping_reply_codes, d.ping_reply_classes) == ((404, 480), ())
    assert d.ping_latency_stats is True
    assert (d.failover, d.hash_user_only, d.use_default) == (True, False, False)
    rule = only_rule(config)
    assert (rule.set_id, rule.algorithm, rule.mode, rule.limit) == (1, 4, "dst", 0)
    assert rule.fallback == ()
    assert (rule.failover_codes, rule.failover_classes) == ({404, 408}, {5})
    assert rule.mark_failed == "ip"
    assert rule.no_destination == 503
    assert rule.match.methods is None


def test_each_key_names_the_kamailio_line_it_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(write(CLASSIC, tmp_path), capsys, "--kamailio-version", "5.6")
    text = result.text
    assert commented(text, "fr_timer", line(CLASSIC, '"fr_timer"'))
    assert commented(text, "ping_interval", line(CLASSIC, '"ds_ping_interval"'))
    assert commented(text, "failover", line(CLASSIC, '"flags", 2'))
    assert commented(text, "set", line(CLASSIC, "ds_select_dst("))
    assert commented(text, "failover_on", line(CLASSIC, "t_check_status("))
    assert commented(text, "failover_on", line(CLASSIC, "if (ds_next_dst())"))
    assert commented(text, "mark_failed", line(CLASSIC, "ds_mark_dst("))
    assert commented(text, "no_destination", line(CLASSIC, 'send_reply("503"'))
    assert commented(text, "record_route", line(CLASSIC, "record_route();"))
    # Every key of every table says where it came from.
    lines = text.splitlines()
    for i, key_line in enumerate(lines):
        if key_line.endswith(" = ["):  # one element a line, each with its own comment
            j = i + 1
            while lines[j] != "]":
                assert lines[j + 1].lstrip().startswith("# "), f"no comment after {lines[j]!r}"
                j += 2
        elif re.match(r"^[a-z_]+ = ", key_line):
            assert lines[i - 1].startswith("#"), f"no comment above {key_line!r}"


def test_unsupported_parameters_are_comments_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = migrate(write(CLASSIC, tmp_path), capsys, "--kamailio-version", "5.6").text
    assert f"{line(CLASSIC, 'ds_timer_mode')}\n#   sipdispatch has no timer processes" in text
    assert f"# not carried over: {tmp_path}/{line(CLASSIC, 'ds_timer_mode')}" in text
    assert f"# not carried over: {tmp_path}/{line(CLASSIC, 'xavp_dst')}" in text
    assert f"# not carried over: {tmp_path}/{line(CLASSIC, 'children=4')}" in text
    # What sipdispatch does itself is said once, with the lines.
    assert "in-dialog requests: sipdispatch relays them along their route set" in text


def test_kamailio_defaults_that_sipdispatch_does_not_share_are_written_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = Cfg(
        """\
#!KAMAILIO
listen=udp:127.0.0.1:5060
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "dispatcher.so"
request_route {
	if (!ds_select_dst("1", "4")) {
		sl_send_reply("503", "No destination");
		exit;
	}
	t_relay();
}
"""
    )
    result = migrate(write(cfg, tmp_path), capsys, "--kamailio-version", "5.6")
    config = ok(result)
    d = config.dispatcher
    # ds_ping_interval 0: no pings; flags 0: no failover; the list at Kamailio's place;
    # a reload resets every destination, as Kamailio does.
    assert (d.ping_interval, d.failover, d.keep_state_on_reload) == (0, False, False)
    assert d.list_file == "/etc/kamailio/dispatcher.list"
    assert config.server.record_route is False
    rule = only_rule(config)
    assert (rule.failover_codes, rule.failover_classes, rule.mark_failed) == (set(), set(), "")
    assert commented(result.text, "ping_interval", "Kamailio default: 0, no pings")
    assert commented(result.text, "failover", "Kamailio default: flags 0, no failover")
    assert any(
        "list_file /etc/kamailio/dispatcher.list: cannot read it" in w for w in result.warnings
    )


# -- #!ifdef, #!define and -D ------------------------------------------------------------------


def test_ifdef_blocks_without_defines_give_the_plain_setup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(write(IFDEF, tmp_path), capsys, "--kamailio-version", "5.6")
    config = ok(result)
    assert [str(a) for a in config.server.listen] == ["udp:127.0.0.1:5060"]
    assert config.server.log_level == "info"
    assert config.transaction.fr_timer == 5000
    assert config.dispatcher.ping_interval == 0
    assert config.dispatcher.ping_from == "sip:ping@lb.example.com"  # from #!substdef
    rule = only_rule(config)
    assert rule.match.methods == ("INVITE", "MESSAGE")
    assert (rule.set_id, rule.algorithm, rule.no_destination) == (1, 8, 500)
    assert (rule.failover_codes, rule.failover_classes) == (set(), {5})
    # Behaviour that differs is said: no failover on a timeout in the failure_route; the
    # 403 for the other methods.
    assert any(
        "does not try the next destination when one does not answer" in w for w in result.warnings
    )
    forbidden = line(IFDEF, '"403"').split(": ", 1)[0]
    assert (
        f'{tmp_path}/{forbidden}: requests where !is_method("INVITE|MESSAGE"): Kamailio '
        "answers them 403; sipdispatch sends them through its [[route]] rules (404 when none "
        "matches)"
    ) in result.warnings


def test_defines_given_with_d_switch_the_ifdef_blocks_as_kamailio_a_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(IFDEF_DEFINED, tmp_path)
    config = ok(migrate(path, capsys, "--kamailio-version", "5.6", defines=IFDEF_DEFINED.defines))
    assert [str(a) for a in config.server.listen] == ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"]
    assert config.dispatcher.ping_interval == 15
    rule = only_rule(config)
    assert rule.algorithm == 4  # -D DISPATCH_ALG=4 wins over #!trydef DISPATCH_ALG 8
    assert (rule.failover_codes, rule.failover_classes) == ({404}, {5})


def test_include_file_is_read_relative_to_the_including_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(IFDEF, tmp_path / "etc")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = migrate(path, capsys, "--kamailio-version", "5.6")
    config = ok(result)
    assert config.transaction.fr_timer == 5000
    assert config.dispatcher.list_file == str(tmp_path / "etc" / "dispatcher.list")
    where = line(IFDEF, '"fr_timer"', "lb-modules.cfg")
    assert commented(result.text, "fr_timer", f"{tmp_path / 'etc'}/{where}")


# -- named sockets and ds_default_socket ------------------------------------------------------


@pytest.mark.parametrize("version", ["5.6", "6.1"])
def test_named_sockets_put_the_default_socket_first_with_its_advertised_address(
    version: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 5.6 reads the listen= line, 6.1 the socket = { ... } block: the same sockets.
    result = migrate(write(SOCKETS, tmp_path), capsys, "--kamailio-version", version)
    config = ok(result)
    assert [str(a) for a in config.server.listen] == ["udp:127.0.0.2:5060", "udp:127.0.0.1:5060"]
    assert (config.server.advertise_host, config.server.advertise_port) == ("192.0.2.10", 5060)
    assert 'modparam("dispatcher", "ds_default_sockname", "wan")' in result.text
    assert "carried over as the order of server.listen: udp:127.0.0.2:5060 is first" in result.text
    assert any(
        "advertise 192.0.2.10:5060 is written by sipdispatch for every listener" in w
        for w in result.warnings
    )
    assert any("several udp listeners of one address family" in w for w in result.warnings)


def test_socket_attrs_of_the_destinations_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(write(SOCKETS, tmp_path), capsys, "--kamailio-version", "5.6")
    ok(result)
    found = [w for w in result.warnings if "attrs socket= is kept but not acted on" in w]
    assert [w.split(": ", 2)[:2] for w in found] == [
        ["gateways.list:2", "sip:127.0.0.1:5081"],
        ["gateways.list:3", "sip:127.0.0.1:5082"],
    ]


def test_a_set_chosen_by_source_and_its_else_branch_become_two_rules_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(write(SOCKETS, tmp_path), capsys, "--kamailio-version", "5.6")
    config = ok(result)
    inbound, outbound = config.routes
    assert (inbound.match.source_set, inbound.set_id, inbound.algorithm) == (2, 1, 8)
    assert inbound.no_destination == 480
    # The else branch needs no condition: the rule before takes the carriers' requests.
    assert (outbound.match.source_set, outbound.set_id, outbound.algorithm) == (None, 2, 4)
    assert outbound.no_destination == 503
    for rule in config.routes:
        # $T_reply_code >= 500: every 5xx and 6xx; ds_mark_dst() in probing mode 1 is "ip"
        assert (rule.failover_codes, rule.failover_classes) == (set(), {5, 6})
        assert rule.mark_failed == "ip"
    assert not any("condition !ds_is_from_list" in w for w in result.warnings)
    assert any("a 6xx reply ends the call in sipdispatch" in w for w in result.warnings)


# -- ds_select_routes -----------------------------------------------------------------------------


def test_ds_select_routes_gives_fallback_sets_and_its_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(write(SELECT_ROUTES, tmp_path), capsys, "--kamailio-version", "5.6")
    config = ok(result)
    emergency, outbound = config.routes
    assert (outbound.set_id, outbound.algorithm, outbound.mode, outbound.limit) == (1, 4, "dst", 3)
    assert outbound.fallback_algorithms() == ((2, 8),)
    assert (outbound.failover_codes, outbound.failover_classes) == ({408}, {5})
    assert outbound.mark_failed == "tp"
    assert outbound.match.domain is None
    # The rules in a variable are followed; "ruri" rewrites the Request-URI.
    assert emergency.match.domain == "sos.example.net"
    assert (emergency.set_id, emergency.algorithm, emergency.mode) == (3, 8, "domain")
    assert emergency.fallback_algorithms() == ((4, 8),)
    assert emergency.limit == 0
    # The failure route's ds_next_dst only sets the next hop of the emergency calls'
    # next destinations, where their rule rewrites the Request-URI.
    assert any(
        'ds_next_dst() after ds_select_routes("$var(rules)", "ruri"): Kamailio only sets the '
        "next hop" in w
        for w in result.warnings
    )
    assert (config.transaction.fr_timer, config.transaction.fr_inv_timer) == (2000, 60000)
    assert config.dispatcher.probing_threshold == 2


# -- db_url ----------------------------------------------------------------------------------------


def test_db_url_keeps_the_database_table_and_call_load_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(write(DB_URL, tmp_path), capsys, "--kamailio-version", "5.6")
    config = ok(result)
    d = config.dispatcher
    assert (d.store_kind, d.db_url, d.table_name) == (
        "db",
        "mysql://kamailio:kamailiorw@127.0.0.1/kamailio",
        "lb_bridges",
    )
    assert (d.hash_size, d.hash_expire, d.hash_initexpire) == (9, 3600, 60)
    assert (d.failover, d.hash_user_only, d.use_default) == (True, True, True)
    assert (d.ping_interval, d.ping_method, d.ping_latency_stats) == (5, "INFO", True)
    assert (config.server.advertise_host, config.server.advertise_port) == ("sip.example.com", None)
    rule = only_rule(config)
    assert (rule.match.methods, rule.match.user_prefix) == (("INVITE",), "800")
    assert (rule.set_id, rule.algorithm, rule.mode, rule.no_destination) == (2, 10, "domain", 486)
    assert (rule.failover_codes, rule.failover_classes, rule.mark_failed) == (set(), {5}, "i")
    assert "call load (algorithm 10): sipdispatch counts each call itself" in result.text


def test_what_the_database_setup_does_that_sipdispatch_does_not_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(write(DB_URL, tmp_path), capsys, "--kamailio-version", "5.6")
    ok(result)
    text = result.text
    here = f"# not carried over: {tmp_path}/"
    assert ok(result).dispatcher.setid_col == "groupid"  # carried, as Kamailio names it
    assert ok(result).dispatcher.hash_header == "{from_user}@{call_id}"  # "$fU@$ci"
    assert here + line(DB_URL, "event_route[dispatcher:dst-down]") in text
    assert here + line(DB_URL, "onreply_route[BRIDGE_REPLY]") in text
    at = {
        name: f"{tmp_path}/" + line(DB_URL, snippet).split(": ", 1)[0]
        for name, snippet in (
            ("mark", 'ds_mark_dst("i")'),
            ("event", "event_route["),
        )
    }
    warnings = result.warnings
    assert (
        f"{at['mark']}: Kamailio marks the destination only for 503; sipdispatch marks it at "
        "every failover (also 500-502, 504-599)"
    ) in warnings
    assert any(
        w.startswith(f"{at['event']}: event_route[dispatcher:dst-down] is not run")
        for w in warnings
    )


@pytest.mark.parametrize(("version", "alpha"), [("5.6", 250), ("6.1", 750)])
def test_the_latency_estimator_alpha_takes_the_meaning_of_the_kamailio_version(
    version: str, alpha: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before 6.1, 750 weighed the previous estimate; sipdispatch's key weighs the new sample.
    config = ok(migrate(write(DB_URL, tmp_path), capsys, "--kamailio-version", version))
    assert config.dispatcher.latency_estimator_alpha == alpha


# -- algorithms and versions ---------------------------------------------------------------------


def _one_selection(alg: str) -> Cfg:
    return Cfg(
        f"""\
#!KAMAILIO
listen=udp:127.0.0.1:5060
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "dispatcher.so"
modparam("dispatcher", "list_file", "dispatcher.list")
request_route {{
	if (!ds_select_dst("1", "{alg}")) {{
		sl_send_reply("503", "No destination");
		exit;
	}}
	t_relay();
}}
""",
        {"dispatcher.list": "1 sip:127.0.0.1:5071 0 10\n1 sip:127.0.0.1:5072 0 10\n"},
    )


@pytest.mark.parametrize(
    ("alg", "version", "carried", "warning"),
    [
        ("14", "6.1", 14, None),
        ("14", "5.6", 8, "algorithm 14 is not in Kamailio 5.6 (it came in 6.1)"),
        ("15", "6.1", 8, "algorithm 15 is not in Kamailio 6.1 (it came in 6.2)"),
        ("15", "6.2", 15, None),
        ("64", "6.1", 64, None),
        ("64", "5.6", 8, "algorithm 64 is not in Kamailio 5.6 (it came in 6.0)"),
        ("13", "5.4", 8, "algorithm 13 is not in Kamailio 5.4 (it came in 5.5)"),
        ("99", "6.1", 8, "algorithm 99 is not in Kamailio 6.1"),
    ],
)
def test_algorithms_keep_the_meaning_of_the_kamailio_version(
    alg: str,
    version: str,
    carried: int,
    warning: str | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = migrate(write(_one_selection(alg), tmp_path), capsys, "--kamailio-version", version)
    assert only_rule(ok(result)).algorithm == carried
    found = [w for w in result.warnings if ("algorithm" in w and "not in" in w) or "64" in w]
    if warning is None:
        assert found == []
    else:
        assert any(warning in w for w in found), result.warnings


def test_a_selection_reached_from_two_places_is_one_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = Cfg(
        _BASE
        + """\
request_route {
	if ($si == "192.0.2.7") {
		route(DISPATCH);
	}
	route(DISPATCH);
}

route[DISPATCH] {
	if (!ds_select_dst("1", "4")) {
		sl_send_reply("503", "No destination");
		exit;
	}
	t_relay();
	exit;
}
"""
    )
    result = migrate(write(cfg, tmp_path), capsys, "--kamailio-version", "5.6")
    rule = only_rule(ok(result))
    assert (rule.set_id, rule.algorithm) == (1, 4)
    assert result.text.count("[[route]]") == 1
    assert "# also from " in result.text


def test_the_preprocessor_reads_defines_substitutions_and_nested_ifdefs_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A #!define inside a comment is no define; a string define glued into a listen
    # address is part of it, as Kamailio reads it; #!trydef keeps the first value,
    # #!redefine replaces it; a define can hold several arguments; #!substdef and #!subst
    # change strings; a missing import_file is skipped.
    config = ok(migrate(write(PREPROCESSOR, tmp_path), capsys, "--kamailio-version", "5.6"))
    assert [str(a) for a in config.server.listen] == ["udp:127.0.0.1:5080"]
    assert config.dispatcher.ping_from == "sip:keepalive@lb.example.net"
    rule = only_rule(config)
    assert (rule.set_id, rule.algorithm) == (3, 4)
    lab = ok(migrate(write(PREPROCESSOR, tmp_path), capsys, "-D", "WITH_LAB"))
    assert [str(a) for a in lab.server.listen] == ["udp:127.0.0.1:5999"]


def test_ifexp_and_defexp_evaluate_defines_and_the_version(tmp_path: Path) -> None:
    # Kamailio 5.7's directives: read here by the preprocessor alone (the Kamailio
    # installed for the tests may be older than 5.7).
    path = tmp_path / "kamailio.cfg"
    path.write_text(
        "#!define LIMIT 30\n"
        "#!defexp DOUBLE LIMIT * 2\n"
        "#!ifexp KAMAILIO_VERSION >= 5008000 && DOUBLE == 60\n"
        "new_enough=1\n"
        "#!else\n"
        "new_enough=0\n"
        "#!endif\n"
        "#!ifexp defined_nowhere || !(LIMIT < 10)\n"
        "limit=LIMIT\n"
        "#!endif\n"
    )
    for version, expected in (((6, 1), "1"), ((5, 7), "0")):
        script = parse_script(read_cfg(str(path), version=version))
        values = {p.name: p.value for p in script.core}
        assert values == {"new_enough": expected, "limit": "30"}, version


def test_without_kamailio_version_a_version_dependent_value_is_read_as_6_1_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(write(DB_URL, tmp_path), capsys)
    assert ok(result).dispatcher.latency_estimator_alpha == 750
    assert any(
        "ds_latency_estimator_alpha 750 is read with Kamailio 6.1's meaning" in w
        and "give --kamailio-version" in w
        for w in result.warnings
    )


def test_the_kamailio_cfg_itself_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(_one_selection("4"), tmp_path)
    before = path.read_text()
    capsys.readouterr()
    assert main(["migrate", str(path), "-o", str(path)]) == 1
    assert "is the kamailio.cfg read; not overwritten" in capsys.readouterr().err
    assert path.read_text() == before


def test_the_output_goes_to_standard_output_without_o(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(_one_selection("4"), tmp_path)
    capsys.readouterr()
    assert main(["migrate", str(path), "--kamailio-version", "5.6"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# sipdispatch configuration migrated from")
    assert "[[route]]\n" in out and "set = 1\n" in out


# -- TLS, pike, permissions, and the destination list ------------------------------------------


def test_tls_pike_and_the_header_hash_are_carried_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(write(EDGE, tmp_path), capsys, "--kamailio-version", "5.6")
    config = ok(result)
    assert [str(a) for a in config.server.listen] == ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061"]
    assert config.tls is not None
    assert config.tls.certificate == "/etc/kamailio/kamailio-selfsigned.pem"
    assert config.tls.private_key == "/etc/kamailio/kamailio-selfsigned.key"
    # tls verify_certificate's default 0: destinations' certificates are not checked.
    assert config.tls.verify_peer is False
    assert (config.security.flood_limit, config.security.flood_window) == (50, 5.0)
    assert config.dispatcher.hash_header == "X-Customer"
    rule = only_rule(config)
    assert rule.algorithm == 7
    # Everything but 486, 600 and the classes 1 and 2 fails over: every 3xx, 4xx but 486,
    # 5xx and 6xx but 600.
    assert rule.failover_classes == {3, 5}
    assert rule.failover_codes == (set(range(400, 500)) - {486}) | (set(range(600, 700)) - {600})
    # The failure route relays once without arming itself again: one failover.
    assert (rule.limit, rule.mark_failed) == (2, "ip")
    # The pike path is the flood limit; the ACL is not carried.
    warnings = result.warnings
    assert not any("pike_check_req()): Kamailio" in w for w in warnings)
    assert any(
        "allow_source_address() not carried over: write [security] allow" in w for w in warnings
    )
    assert any("verify_peer = false is written" in w for w in warnings)


def test_the_destination_list_is_read_as_sipdispatch_reads_it_and_differences_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(write(EDGE, tmp_path), capsys, "--kamailio-version", "5.6")
    ok(result)
    assert (
        "the destinations of gateways.list, read as sipdispatch reads them (2 in 1 set(s)):"
        in result.text
    )
    by_line = {w.split(": ", 1)[0]: w for w in result.warnings if w.startswith("gateways.list")}
    first = [w for w in result.warnings if w.startswith("gateways.list:1:")]
    assert any(
        "flags 0x8: Kamailio before 6.1 reads only decimal flags: flags 0, priority 0 "
        "and attrs 'x8'"
        in w
        and "sipdispatch reads flags 8" in w
        for w in first
    )
    assert any(
        "attrs prefix=/strip=: Kamailio only keeps them for the script; sipdispatch "
        "rewrites the Request-URI user" in w
        for w in first
    )
    assert "located by NAPTR, SRV and A/AAAA" in by_line["gateways.list:2"]
    # On 6.1 hex flags mean the same to both.
    later = migrate(write(EDGE, tmp_path), capsys, "--kamailio-version", "6.1")
    assert not any("flags 0x8" in w for w in later.warnings)


# -- a kamailio.cfg that cannot be read ------------------------------------------------------------

_BASE = """\
#!KAMAILIO
listen=udp:127.0.0.1:5060
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "dispatcher.so"
"""
_ROUTE = """\
request_route {
	if (!ds_select_dst("1", "4")) {
		sl_send_reply("503", "No destination");
		exit;
	}
	t_relay();
}
"""


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (_BASE + "#!ifdef WITH_X\n" + _ROUTE, "kamailio.cfg:6: #!ifdef without #!endif"),
        (_BASE + "#!endif\n" + _ROUTE, "kamailio.cfg:6: #!endif without #!ifdef"),
        (
            _BASE + "#!define A 1\n#!define A 2\n" + _ROUTE,
            "kamailio.cfg:7: already defined: A (at kamailio.cfg:6)",
        ),
        (
            _BASE + 'modparam("dispatcher", "ds_no_such", 1)\n' + _ROUTE,
            "kamailio.cfg:6: parameter <ds_no_such> not found in module <dispatcher>",
        ),
        (
            _BASE + 'modparam("dispatcher", "flags", "2")\n' + _ROUTE,
            "kamailio.cfg:6: parameter <flags> of dispatcher takes an integer, not '2'",
        ),
        (
            _BASE + 'modparam("dispatcher", "ds_ping_fr_timer", 2)\n' + _ROUTE,
            "kamailio.cfg:6: parameter <ds_ping_fr_timer> of dispatcher is not in Kamailio 5.6 "
            "(it came in 6.1",
        ),
        (
            '#!KAMAILIO\nmodparam("dispatcher", "flags", 2)\nloadmodule "dispatcher.so"\n',
            "kamailio.cfg:2: modparam: no module matching <dispatcher> loaded before this line",
        ),
        (
            _BASE + 'include_file "missing.cfg"\n' + _ROUTE,
            'kamailio.cfg:6: cannot open included file: "missing.cfg"',
        ),
        (
            _BASE + "request_route {\n\troute(NOWHERE);\n}\n",
            "kamailio.cfg:7: route(NOWHERE): no route[NOWHERE] in the configuration",
        ),
        (
            _BASE + 'request_route {\n\tds_select_dst("1", "4");\n\tt_on_failure("NOPE");\n'
            "\tt_relay();\n}\n",
            'kamailio.cfg:7: t_on_failure("NOPE"): no failure_route[NOPE] in the configuration',
        ),
        (
            _BASE + 'request_route {\n\tsl_send_reply("404, "x");\n}\n',
            'kamailio.cfg:7: string " not closed',
        ),
        (
            _BASE + 'request_route {\n\tif (is_method("INVITE") {\n\t\texit;\n\t}\n}\n',
            "kamailio.cfg:7: expected ')' to close if's condition, found '{'",
        ),
        (
            _BASE + "listen=udp:[::1:5060\n" + _ROUTE,
            "kamailio.cfg:6: cannot read the listen address",
        ),
        (
            _BASE.replace('loadmodule "dispatcher.so"\n', "") + _ROUTE,
            "kamailio.cfg:6: ds_select_dst: the dispatcher module is not loaded",
        ),
    ],
    ids=[
        "ifdef-not-closed",
        "endif-alone",
        "defined-twice",
        "unknown-parameter",
        "wrong-type",
        "parameter-of-a-later-version",
        "modparam-before-loadmodule",
        "missing-include",
        "missing-route",
        "missing-failure-route",
        "unclosed-string",
        "syntax",
        "bad-listen",
        "dispatcher-not-loaded",
    ],
)
def test_a_cfg_that_cannot_be_read_is_one_file_line_error_and_no_output(
    text: str, error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(write(Cfg(text), tmp_path), capsys, "--kamailio-version", "5.6")
    assert result.status == 1
    assert result.text == ""
    [message] = result.stderr.splitlines()
    expected = error.replace("kamailio.cfg", str(tmp_path / "kamailio.cfg"))
    assert message.startswith(f"sipdispatch: migrate: {expected}"), message


def test_a_missing_cfg_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = migrate(tmp_path / "kamailio.cfg", capsys)
    assert result.status == 1
    assert "cannot read " in result.stderr and "kamailio.cfg" in result.stderr


# -- end to end: the proxy on a migrated configuration, sipp calling ---------------------------


@pytest.fixture
def two_gateways() -> Iterator[tuple[GatewayThread, GatewayThread]]:
    mg1 = GatewayThread("mg1", "udp", 0, None, reject=503)
    mg2 = GatewayThread("mg2", "udp", 0, None)
    mg1.start()
    mg2.start()
    yield mg1, mg2
    mg2.stop()
    mg1.stop()


@pytest.mark.timeout(120)
def test_a_migrated_config_relays_a_call_and_fails_over_as_its_failure_route_did(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    two_gateways: tuple[GatewayThread, GatewayThread],
) -> None:
    if sipp_path() is None:
        pytest.skip("sipp is not installed (apt-get install sip-tester)")
    mg1, mg2 = two_gateways
    port, admin = free_port(), free_port("tcp")
    cfg = Cfg(
        END_TO_END.format(port=port, admin=admin),
        {"dispatcher.list": f"1 {mg1.uri} 0 10\n1 {mg2.uri} 0 5\n"},
    )
    result = migrate(write(cfg, tmp_path / "kamailio"), capsys, "--kamailio-version", "5.6")
    config = ok(result)
    assert (config.admin.host, config.admin.port) == ("127.0.0.1", admin)  # ctl's binrpc
    proxy = start_proxy(
        result.text, tmp_path / "proxy", port=port, admin_port=admin, expect_clean_exit=True
    )
    try:
        call = run_sipp(
            "uac_call", "127.0.0.1", port, calls=1, timeout=60, workdir=tmp_path / "sipp"
        )
        assert call.ok, call.report()
        # MG1 first (priority 10): its 503 is ACKed hop by hop and MG2 answers the call.
        mg1.wait_for(lambda: mg1.acks == 1, timeout=20)
        mg2.wait_for(lambda: mg2.byes == 1, timeout=20)
        assert [(o.final_code, o.acked) for o in mg1.outcomes()] == [(503, True)]
        assert (mg1.invites, mg2.invites) == (1, 1)
    finally:
        proxy.stop()
    # The call log names both attempts: MG1's 503, then MG2's 200.
    short = [gw.uri.removeprefix("sip:") for gw in (mg1, mg2)]
    assert f"{short[0]} 503 -> {short[1]} 200" in proxy.log_text(), proxy.log_text()


@pytest.mark.parametrize(
    ("param", "version", "delta"),
    [
        ("", "5.6", 5),  # Kamailio 5.3 to 6.1 wait 5 s between reloads by default
        ("", "6.2", 0),
        ('modparam("dispatcher", "reload_delta", 0)\n', "5.6", 0),
        ('modparam("dispatcher", "reload_delta", 12)\n', "6.1", 12),
    ],
)
def test_reload_delta_is_carried_with_the_default_of_the_kamailio_version(
    param: str, version: str, delta: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = Cfg(_BASE + 'modparam("dispatcher", "list_file", "dispatcher.list")\n' + param + _ROUTE)
    cfg.files["dispatcher.list"] = "1 sip:127.0.0.1:5071\n"
    result = migrate(write(cfg, tmp_path), capsys, "--kamailio-version", version)
    assert ok(result).dispatcher.reload_delta == delta
