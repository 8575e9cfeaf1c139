"""`sipdispatch run` as an operator starts it: clear errors, clean stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .proxyctl import basic_config, proxy_env
from .sippctl import free_port

pytestmark = pytest.mark.timeout(60)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipdispatch", *args],
        cwd=cwd,
        env=proxy_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_config_error_names_the_key_and_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[transaction]\nfr_timer = -5\n")
    done = run_cli("run", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 2
    assert "transaction.fr_timer" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_destination_line_is_named_and_the_proxy_does_not_start(tmp_path: Path) -> None:
    listing = tmp_path / "dispatcher.list"
    listing.write_text("1 sip:127.0.0.1:5071 0 0\n1 sip:[bad 0 0\n")
    cfg = tmp_path / "sd.toml"
    cfg.write_text(basic_config(free_port(), free_port(), listing))
    done = run_cli("run", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 1
    assert f"{listing}:2" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_listen_address_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        listing = tmp_path / "dispatcher.list"
        listing.write_text("1 sip:127.0.0.1:5071 0 0\n")
        cfg = tmp_path / "sd.toml"
        cfg.write_text(basic_config(port, free_port(), listing))
        done = run_cli("run", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 1
    assert f"cannot listen on udp:127.0.0.1:{port}" in done.stderr, done.stderr
    assert "address in use" in done.stderr, done.stderr


def test_listen_address_not_on_this_host_says_so(tmp_path: Path) -> None:
    listing = tmp_path / "dispatcher.list"
    listing.write_text("1 sip:127.0.0.1:5071 0 0\n")
    cfg = tmp_path / "sd.toml"
    port = free_port()
    text = basic_config(port, free_port(), listing).replace(
        f'listen = ["udp:127.0.0.1:{port}", "tcp:127.0.0.1:{port}"]',
        f'listen = ["udp:192.0.2.77:{port}"]',  # TEST-NET-1: on no interface here
    )
    cfg.write_text(text)
    done = run_cli("run", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 1
    assert f"cannot listen on udp:192.0.2.77:{port}: no such address on this host" in (
        done.stderr
    ), done.stderr
