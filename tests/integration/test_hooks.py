"""Python routing hooks through ``sipdispatch run``, as an operator sets them up.

The carriers example (examples/hooks/carriers.py and a CSV) sits next to the config
file; sipp dials numbers and the scripted gateways show which carrier got each call
and the ``X-Carrier`` header the hook added. ``dispatcher.reload`` reads the table
again, and a broken table is refused while calls keep going by the running one. A
hook that raises gives the caller a 500 and the proxy carries on; a hook that does
not import stops the proxy at start-up with a config error naming the rule.

Nothing waits a fixed time: every wait polls a condition with a generous deadline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import GatewayFactory, ProxyFactory
from .gateway import GatewayThread
from .proxyctl import ProxyProcess, proxy_env, toml_str, write_list_file
from .sippctl import SippResult, free_port, run_sipp

pytestmark = pytest.mark.timeout(180)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hooks"
SIPP_TIMEOUT = 60
WAIT = 20.0


def config(port: int, admin: int, list_file: Path, hook: str) -> str:
    return f"""\
[server]
listen = ["udp:127.0.0.1:{port}"]

[admin]
listen = "127.0.0.1:{admin}"

[dispatcher]
list_file = {toml_str(str(list_file))}
ping_interval = 0

[[route]]
match = {{ method = ["INVITE"] }}
python = "{hook}"
set = 1

[[route]]
set = 1
"""


def start(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gws: list[tuple[int, GatewayThread]],
    hook: str,
    files: dict[str, str],
) -> ProxyProcess:
    """A proxy whose config directory holds ``files`` (the hook module, its table)."""
    workdir = tmp_path / "proxy"
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (workdir / name).write_text(text)
    port, admin = free_port(), free_port()
    listing = write_list_file(tmp_path / "dispatcher.list", [(s, gw.uri) for s, gw in gws])
    return proxy_factory(
        config(port, admin, listing, hook), port=port, admin_port=admin, expect_clean_exit=True
    )


def dial(proxy: ProxyProcess, tmp_path: Path, number: str, name: str, **kw: Any) -> SippResult:
    scenario = str(kw.pop("scenario", "uac_call"))
    return run_sipp(
        scenario,
        "127.0.0.1",
        proxy.port,
        service=number,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / f"sipp-{name}",
        **kw,
    )


def rpc(proxy: ProxyProcess, method: str) -> dict[str, Any]:
    payload = json.dumps({"jsonrpc": "2.0", "method": method, "params": [], "id": 1}).encode()
    request = urllib.request.Request(f"{proxy.admin_url}/RPC", data=payload, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as err:  # a method's fault comes with HTTP 500
        return json.loads(err.read())  # type: ignore[no-any-return]


def carriers_of(gw: GatewayThread) -> list[str | None]:
    """The X-Carrier header of every INVITE the gateway got, in order."""
    return [r.get("X-Carrier") for r in gw.requests("INVITE")]


def test_carrier_table_hook_routes_by_longest_prefix_and_reload_reads_the_table_again(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    default, uk, london = gateways("mg-default"), gateways("mg-uk"), gateways("mg-london")
    table = "prefix,set,carrier\n44,2,uk-wholesale\n4420,3,uk-london\n"
    proxy = start(
        tmp_path,
        proxy_factory,
        [(1, default), (2, uk), (3, london)],
        "carriers:route",
        {"carriers.py": (EXAMPLES / "carriers.py").read_text(), "carriers.csv": table},
    )
    for number, name in [("442071234567", "london"), ("441611234567", "uk"), ("3312", "fr")]:
        result = dial(proxy, tmp_path, number, name)
        assert result.ok, result.report()
    assert carriers_of(london) == ["uk-london"]
    assert carriers_of(uk) == ["uk-wholesale"]
    assert carriers_of(default) == [None]  # no prefix: the next rule, no header
    uri = london.requests("INVITE")[0].uri
    assert uri is not None and uri.startswith("sip:442071234567@")

    # The table changes; a reload imports the hook again, which reads it again.
    csv = tmp_path / "proxy" / "carriers.csv"
    csv.write_text("prefix,set,carrier\n44,1,uk-moved\n")
    assert rpc(proxy, "dispatcher.reload")["result"] == "Ok. Dispatcher successfully reloaded."
    result = dial(proxy, tmp_path, "442071234567", "moved")
    assert result.ok, result.report()
    assert carriers_of(default) == [None, "uk-moved"]

    # A broken table refuses the reload, and calls go on by the running one.
    csv.write_text("prefix,set,carrier\n44,one,uk-broken\n")
    error = rpc(proxy, "dispatcher.reload")["error"]
    assert error["message"].startswith(
        'Reload Failed: route[0].python = "carriers:route": cannot import carriers: ValueError: '
        "carriers.csv:2: '44,one,uk-broken'"
    ), error
    result = dial(proxy, tmp_path, "442071234567", "kept")
    assert result.ok, result.report()
    assert carriers_of(default) == [None, "uk-moved", "uk-moved"]
    assert (london.invites, uk.invites) == (1, 1)
    assert "dispatcher.reload refused, running hooks and list unchanged" in proxy.log_text()

    # Every call was timed.
    with urllib.request.urlopen(f"{proxy.admin_url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    hook = ("hook", "route[0] carriers:route")
    assert samples[("sipdispatch_hook_seconds_count", (hook,))] >= 5
    assert samples[("sipdispatch_hook_calls_total", (hook, ("outcome", "route")))] >= 4
    assert samples[("sipdispatch_hook_calls_total", (hook, ("outcome", "pass")))] >= 1


RAISING_HOOK = """\
from sipdispatch.hooks import Route

def route(request):
    if request.ruri_user.startswith("9"):
        raise LookupError("no tariff for " + request.ruri_user)
    return Route(set=2, headers={"X-Hooked": "yes"})
"""


def test_a_hook_that_raises_gives_the_caller_a_500_and_the_proxy_carries_on(
    sipp: str, tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    proxy = start(
        tmp_path, proxy_factory, [(1, mg1), (2, mg2)], "tariffs:route", {"tariffs.py": RAISING_HOOK}
    )
    refused = dial(proxy, tmp_path, "900123", "refused", scenario="uac_expect_500", calls=3)
    assert refused.ok and refused.successful == 3, refused.report()
    assert (mg1.invites, mg2.invites) == (0, 0)
    fine = dial(proxy, tmp_path, "100123", "fine", calls=2)
    assert fine.ok, fine.report()
    assert [r.get("X-Hooked") for r in mg2.requests("INVITE")] == ["yes", "yes"]
    assert proxy.alive()
    log = proxy.log_text()
    # One line for the three failures (rate-limited), naming the hook and where it failed.
    lines = [line for line in log.splitlines() if "raised LookupError" in line]
    assert len(lines) == 1, log
    assert "route[0].python = 'tariffs:route' raised LookupError: no tariff for 900123" in lines[0]
    assert "at tariffs.py:5 in route; answered 500" in lines[0]


def test_a_hook_that_does_not_import_stops_the_start_with_a_config_error(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "proxy"
    workdir.mkdir()
    shutil.copy(EXAMPLES / "carriers.py", workdir / "carriers.py")
    (workdir / "carriers.csv").write_text("prefix,set,carrier\nxx,1,bad\n")
    listing = write_list_file(tmp_path / "dispatcher.list", [(1, "sip:127.0.0.1:5999")])
    path = workdir / "proxy.toml"
    path.write_text(config(free_port(), free_port(), listing, "carriers:route"))
    done = subprocess.run(
        [sys.executable, "-m", "sipdispatch", "run", "--config", str(path)],
        cwd=tmp_path,
        env=proxy_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        'sipdispatch: config: route[0].python = "carriers:route": cannot import carriers: '
        "ValueError: carriers.csv:2: 'xx,1,bad': prefix 'xx' is not digits"
    ), done.stderr
    assert "Traceback" not in done.stderr
