"""TLS: ``tls:`` listeners and TLS destinations of a running proxy, with certificates
made by trustme, and never a silent downgrade to plain TCP."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from .conftest import ProxyFactory
from .gateway import GatewayThread
from .proxyctl import basic_config, proxy_env, toml_str, write_list_file
from .sippctl import free_port, run_sipp
from .test_connection_limits import metrics

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pki(tmp_path: Path, ca: trustme.CA) -> dict[str, Path]:
    """PEM files: the CA, the proxy's certificate (for localhost and 127.0.0.1)."""
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "proxy.pem", "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    proxy = ca.issue_cert("localhost", "127.0.0.1")
    proxy.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for pem in proxy.cert_chain_pems[1:]:
        pem.write_to_path(str(files["cert"]), append=True)
    proxy.private_key_pem.write_to_path(str(files["key"]))
    return files


@contextlib.contextmanager
def tls_gateway(
    ca: trustme.CA, name: str, *names: str, uri_host: str = "127.0.0.1"
) -> Iterator[GatewayThread]:
    """A scripted gateway on TLS whose certificate names ``names``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names).configure_cert(ctx)
    with GatewayThread(name, "tls", ssl_context=ctx, uri_host=uri_host) as gw:
        yield gw


def tls_table(pki: dict[str, Path], **extra: str) -> str:
    lines = [
        "[tls]",
        f"certificate = {toml_str(str(pki['cert']))}",
        f"private_key = {toml_str(str(pki['key']))}",
        f"ca_file = {toml_str(str(pki['ca']))}",
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def start(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    destinations: list[str],
    extra: str,
    *,
    tls_port: int | None = None,
    server: str = "",
) -> object:
    """A proxy relaying to ``destinations``; ``server`` holds more ``[server]`` keys."""
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(tmp_path / "dispatcher.list", [f"1 {d}" for d in destinations])
    toml = basic_config(port, admin, list_file, extra="\n" + extra)
    toml = toml.replace("record_route = true\n", "record_route = true\n" + server)
    if tls_port is not None:
        toml = toml.replace(
            f'"tcp:127.0.0.1:{port}"]', f'"tcp:127.0.0.1:{port}", "tls:127.0.0.1:{tls_port}"]'
        )
    return proxy_factory(toml, port=port, admin_port=admin, expect_clean_exit=True)


def test_calls_reach_a_tls_destination_over_tls_with_its_certificate_checked(
    sipp: str, tmp_path: Path, ca: trustme.CA, pki: dict[str, Path], proxy_factory: ProxyFactory
) -> None:
    with tls_gateway(ca, "mg-tls", "localhost", uri_host="localhost") as gw:
        proxy = start(tmp_path, proxy_factory, [gw.uri], tls_table(pki))
        calls = run_sipp("uac_call", "127.0.0.1", proxy.port, calls=5, rate=10, timeout=60)  # type: ignore[attr-defined]
        assert calls.ok and calls.successful == 5, calls.report()
        assert gw.invites == 5 and gw.byes == 5
        assert all((r.get("via") or "").startswith("SIP/2.0/TLS") for r in gw.requests("INVITE"))
        assert all(r.transport == "tls" for r in gw.requests("INVITE"))


def test_a_tls_destination_whose_certificate_names_another_host_is_never_used(
    sipp: str, tmp_path: Path, ca: trustme.CA, pki: dict[str, Path], proxy_factory: ProxyFactory
) -> None:
    """The certificate says other.example; the URI says 127.0.0.1: the handshake fails
    and the call fails over to the next destination (a UDP gateway)."""
    with (
        GatewayThread("mg-udp", "udp") as backup,
        tls_gateway(ca, "mg-tls", "other.example") as gw,
    ):
        proxy = start(
            tmp_path, proxy_factory, [f"{gw.uri} 0 10", f"{backup.uri} 0 5"], tls_table(pki)
        )
        calls = run_sipp("uac_call", "127.0.0.1", proxy.port, calls=2, rate=10, timeout=60)  # type: ignore[attr-defined]
        assert calls.ok and calls.successful == 2, calls.report()
        assert gw.invites == 0 and backup.invites == 2
        assert metrics(proxy.admin_url)["sipdispatch_tls_connect_failures_total"] >= 1  # type: ignore[attr-defined]


def test_without_a_tls_table_a_tls_destination_is_never_reached_over_plain_tcp(
    sipp: str, tmp_path: Path, proxy_factory: ProxyFactory
) -> None:
    """A plain TCP listener on the TLS destination's port sees no connection."""
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen(8)
    plain.settimeout(0.2)
    tls_uri = f"sip:127.0.0.1:{plain.getsockname()[1]};transport=tls"
    with plain, GatewayThread("mg-udp", "udp") as backup:
        proxy = start(tmp_path, proxy_factory, [f"{tls_uri} 0 10", f"{backup.uri} 0 5"], "")
        calls = run_sipp("uac_call", "127.0.0.1", proxy.port, calls=2, rate=10, timeout=60)  # type: ignore[attr-defined]
        assert calls.ok and calls.successful == 2, calls.report()
        assert backup.invites == 2
        with pytest.raises(TimeoutError):
            plain.accept()
        assert metrics(proxy.admin_url)["sipdispatch_tls_unconfigured_total"] >= 1  # type: ignore[attr-defined]
        assert "no [tls] table" in proxy.log_text()  # type: ignore[attr-defined]


def options_over_tls(port: int, ca_file: Path, call_id: str) -> bytes:
    """Send one OPTIONS over TLS to the proxy and return the first response."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=20) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as s,
    ):
        local = s.getsockname()
        s.sendall(
            (
                f"OPTIONS sip:ping@127.0.0.1:{port};transport=tls SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS 127.0.0.1:{local[1]};branch=z9hG4bK-{call_id}\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\n"
                f"To: <sip:ping@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65535)
            assert chunk, "connection closed before a response"
            data += chunk
        return data


def test_a_request_over_a_tls_listener_is_relayed_and_answered_on_the_same_connection(
    tmp_path: Path, pki: dict[str, Path], proxy_factory: ProxyFactory
) -> None:
    tls_port = free_port("tcp")
    with GatewayThread("mg-udp", "udp") as gw:
        proxy = start(tmp_path, proxy_factory, [gw.uri], tls_table(pki), tls_port=tls_port)
        answer = options_over_tls(tls_port, pki["ca"], "tls-options-1")
        assert answer.startswith(b"SIP/2.0 200"), answer
        assert gw.options >= 1
        # The gateway saw the proxy's own Via, for UDP, above the caller's TLS one.
        vias = gw.requests("OPTIONS")[-1].values("via")
        assert vias[0].startswith("SIP/2.0/UDP") and vias[1].startswith("SIP/2.0/TLS")
        assert metrics(proxy.admin_url)["sipdispatch_tcp_connections"] >= 0  # type: ignore[attr-defined]


def test_a_tls_handshake_that_never_completes_is_closed_after_the_message_timeout(
    tmp_path: Path, pki: dict[str, Path], proxy_factory: ProxyFactory
) -> None:
    tls_port = free_port("tcp")
    with GatewayThread("mg-udp", "udp") as gw:
        start(
            tmp_path,
            proxy_factory,
            [gw.uri],
            tls_table(pki),
            tls_port=tls_port,
        )
        with socket.create_connection(("127.0.0.1", tls_port), timeout=30) as s:
            s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
            started = time.monotonic()
            s.settimeout(30)
            assert s.recv(100) == b""  # closed by the proxy
            elapsed = time.monotonic() - started
        # server.tcp_message_timeout is 10 s by default.
        assert 8 <= elapsed < 25, elapsed


def test_tls_connections_count_against_the_per_source_limit_before_their_handshake(
    tmp_path: Path, pki: dict[str, Path], proxy_factory: ProxyFactory
) -> None:
    """Two connections that never start a handshake fill a per-source limit of 2: a
    third is closed at once, long before the message timeout; once they are gone, a
    TLS request is answered again (what they held was released)."""
    tls_port = free_port("tcp")
    with GatewayThread("mg-udp", "udp") as gw:
        proxy = start(
            tmp_path,
            proxy_factory,
            [gw.uri],
            tls_table(pki),
            tls_port=tls_port,
            server="tcp_max_connections_per_source = 2\n",
        )
        held = [socket.create_connection(("127.0.0.1", tls_port), timeout=30) for _ in range(2)]
        try:
            deadline = time.monotonic() + 20
            while True:  # the proxy accepts asynchronously: poll until the third is refused
                with socket.create_connection(("127.0.0.1", tls_port), timeout=30) as third:
                    third.settimeout(5)
                    started = time.monotonic()
                    try:
                        closed = third.recv(100) == b""
                    except (ConnectionResetError, TimeoutError):
                        closed = not isinstance(sys.exc_info()[1], TimeoutError)
                    if closed and time.monotonic() - started < 5:
                        break
                assert time.monotonic() < deadline, "a third connection was never refused"
            refused = metrics(proxy.admin_url)["sipdispatch_tcp_connections_refused_total"]  # type: ignore[attr-defined]
            assert refused >= 1
        finally:
            for s in held:
                s.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = options_over_tls(tls_port, pki["ca"], "tls-after-limit")
                break
            except (ConnectionError, ssl.SSLError, AssertionError, TimeoutError):
                assert time.monotonic() < deadline, "the held connections were never released"
                time.sleep(0.2)
        assert answer.startswith(b"SIP/2.0 200"), answer
        assert metrics(proxy.admin_url)["sipdispatch_tls_handshakes_failed_total"] >= 2  # type: ignore[attr-defined]


def test_a_certificate_file_that_does_not_load_stops_start_up_naming_the_key(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    port, admin = free_port(), free_port("tcp")
    list_file = write_list_file(tmp_path / "dispatcher.list", ["1 sip:127.0.0.1:5999"])
    bad = dict(pki, cert=tmp_path / "missing.pem")
    config = tmp_path / "bad.toml"
    config.write_text(basic_config(port, admin, list_file, extra="\n" + tls_table(bad)))
    done = subprocess.run(
        [sys.executable, "-m", "sipdispatch", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env=proxy_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "tls.certificate" in done.stderr and "missing.pem" in done.stderr
