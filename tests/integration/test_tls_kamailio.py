"""TLS against an independent implementation: Kamailio with its TLS module sends a call
to sipdispatch's ``tls:`` listener and receives it back as sipdispatch's TLS
destination (kamailio/tls_relay.cfg.in draws the path). sipp is the caller."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from .conftest import ProxyFactory, in_ci
from .gateway import GatewayThread
from .proxyctl import basic_config, toml_str, write_list_file
from .sippctl import free_port, run_sipp
from .test_connection_limits import metrics

pytestmark = pytest.mark.timeout(240)

HERE = Path(__file__).resolve().parent
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")


def kamailio_with_tls() -> str:
    """Path of kamailio when it and its TLS module are installed; else skip (fail on CI)."""
    binary = shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if os.path.exists("/usr/sbin/kamailio") else None
    )
    if binary is None or not (MODULES / "tls.so").exists():
        message = "kamailio with its TLS module is needed (apt-get install kamailio-tls-modules)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return binary


@pytest.fixture
def kamailio_tls(tmp_path: Path) -> Iterator[dict[str, object]]:
    binary = kamailio_with_tls()
    ca = trustme.CA()
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    for i, pem in enumerate(leaf.cert_chain_pems):
        pem.write_to_path(str(files["cert"]), append=i > 0)
    leaf.private_key_pem.write_to_path(str(files["key"]))
    ports = {"udp": free_port(), "tls": free_port("tcp"), "proxy_tls": free_port("tcp")}
    gw = GatewayThread("mg-behind-kamailio", "udp").start()
    tls_cfg = (HERE / "kamailio" / "tls.cfg.in").read_text()
    for key, value in {"@CERT@": files["cert"], "@KEY@": files["key"], "@CA@": files["ca"]}.items():
        tls_cfg = tls_cfg.replace(key, str(value))
    (tmp_path / "tls.cfg").write_text(tls_cfg)
    cfg = (HERE / "kamailio" / "tls_relay.cfg.in").read_text()
    ctl = tmp_path / "kamailio_ctl"
    for key, value in {
        "@UDP@": ports["udp"],
        "@TLS@": ports["tls"],
        "@PROXY_TLS@": ports["proxy_tls"],
        "@GW@": gw.port,
        "@MPATH@": f"{MODULES}/",
        "@TLSCFG@": tmp_path / "tls.cfg",
        "@CTL@": ctl,
    }.items():
        cfg = cfg.replace(key, str(value))
    (tmp_path / "kamailio.cfg").write_text(cfg)
    log = open(tmp_path / "kamailio.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [binary, "-DD", "-E", "-f", str(tmp_path / "kamailio.cfg"), "-m", "64", "-M", "8",
         "-P", str(tmp_path / "kamailio.pid")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ctl.exists():
            assert proc.poll() is None, (tmp_path / "kamailio.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "kamailio did not start"
            time.sleep(0.1)
        time.sleep(1.0)  # the workers fork after the control socket appears
        yield {"ports": ports, "files": files, "gateway": gw, "log": tmp_path / "kamailio.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        log.close()
        gw.stop()


def test_a_call_from_kamailio_over_tls_goes_back_to_kamailio_over_tls_and_is_answered(
    sipp: str, tmp_path: Path, kamailio_tls: dict[str, object], proxy_factory: ProxyFactory
) -> None:
    ports: dict[str, int] = kamailio_tls["ports"]  # type: ignore[assignment]
    files: dict[str, Path] = kamailio_tls["files"]  # type: ignore[assignment]
    gw: GatewayThread = kamailio_tls["gateway"]  # type: ignore[assignment]
    port, admin = free_port(), free_port("tcp")
    # The destination is named as its certificate names it, and checked.
    list_file = write_list_file(
        tmp_path / "dispatcher.list", [f"1 sip:localhost:{ports['tls']};transport=tls"]
    )
    tls = (
        f"\n[tls]\ncertificate = {toml_str(str(files['cert']))}\n"
        f"private_key = {toml_str(str(files['key']))}\nca_file = {toml_str(str(files['ca']))}\n"
    )
    toml = basic_config(port, admin, list_file, ping_interval=1, extra=tls).replace(
        f'"tcp:127.0.0.1:{port}"]', f'"tcp:127.0.0.1:{port}", "tls:127.0.0.1:{ports["proxy_tls"]}"]'
    )
    proxy = proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)
    calls = run_sipp("uac_call", "127.0.0.1", ports["udp"], calls=5, rate=5, timeout=90)
    log = Path(kamailio_tls["log"]).read_text(errors="replace")  # type: ignore[arg-type]
    assert calls.ok and calls.successful == 5, calls.report() + log[-3000:]
    assert gw.invites == 5 and gw.byes == 5
    # Each INVITE crossed sipdispatch: its Via for TLS sits between Kamailio's two.
    vias = gw.requests("INVITE")[0].values("via")
    assert any(v.startswith("SIP/2.0/TLS") and f":{ports['proxy_tls']};" in v for v in vias), vias
    assert "relaying INVITE" in log and "from tls:127.0.0.1" in log
    m = metrics(proxy.admin_url)
    assert m["sipdispatch_tls_connect_failures_total"] == 0
    # The TLS destination answers the proxy's pings over TLS too.
    assert m["sipdispatch_prober_events_total"] > 0
