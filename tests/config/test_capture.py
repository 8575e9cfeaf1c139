"""``[capture]``: where HEPv3 copies of the SIP messages go."""

from __future__ import annotations

from typing import Any

import pytest

from sipdispatch.config import ConfigError, parse_config


def test_capture_is_off_by_default() -> None:
    capture = parse_config({}).capture
    assert (capture.hep, capture.collector, capture.hep_id) == ("", None, 1)
    assert capture.capture_pings is False and capture.hep_password == ""


@pytest.mark.parametrize(
    ("written", "kept", "collector"),
    [
        ("udp:10.0.0.5:9060", "udp:10.0.0.5:9060", ("10.0.0.5", 9060)),
        ("10.0.0.5", "udp:10.0.0.5:9060", ("10.0.0.5", 9060)),
        ("UDP:homer.example.com:9061", "udp:homer.example.com:9061", ("homer.example.com", 9061)),
        ("udp:[2001:db8::5]:9060", "udp:[2001:db8::5]:9060", ("2001:db8::5", 9060)),
        ("TCP:10.0.0.5", "tcp:10.0.0.5:9060", ("10.0.0.5", 9060)),
    ],
)
def test_hep_takes_udp_host_port(written: str, kept: str, collector: tuple[str, int]) -> None:
    capture = parse_config({"capture": {"hep": written, "hep_id": 2001}}).capture
    assert (capture.hep, capture.collector, capture.hep_id) == (kept, collector, 2001)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"hep": "tls:10.0.0.5:9060"}, "capture.hep"),
        ({"hep": "udp:10.0.0.5:0"}, "capture.hep"),
        ({"hep": "udp:10.0.0.5:70000"}, "capture.hep"),
        ({"hep": 9060}, "capture.hep"),
        ({"hep_id": -1}, "capture.hep_id"),
        ({"capture_pings": "sometimes"}, "capture.capture_pings"),
        ({"hep_dir": "/tmp"}, "capture.hep_dir"),
        ({"dir": 5}, "capture.dir"),
        ({"max_bytes": 100}, "capture.max_bytes"),
        ({"max_seconds": 0}, "capture.max_seconds"),
        ({"max_seconds": 100_000}, "capture.max_seconds"),
        ({"ladder": -1}, "capture.ladder"),
        ({"ladder": 5000}, "capture.ladder"),
    ],
)
def test_a_bad_capture_key_is_named_with_what_is_allowed(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"capture": table})
    assert info.value.key == key, str(info.value)


def test_pcap_captures_and_the_ladder_have_their_defaults_and_take_values() -> None:
    capture = parse_config({}).capture
    assert (capture.dir, capture.max_bytes, capture.max_seconds, capture.ladder) == (
        "capture", 50_000_000, 3600, 50)  # fmt: skip
    given = {"dir": "/var/lib/sipdispatch/pcap", "max_bytes": 10_000, "max_seconds": 60,
             "ladder": 0}  # fmt: skip
    capture = parse_config({"capture": given}).capture
    assert (capture.dir, capture.max_bytes, capture.max_seconds, capture.ladder) == (
        "/var/lib/sipdispatch/pcap", 10_000, 60, 0)  # fmt: skip


def test_hep_over_tcp_is_named_as_its_transport() -> None:
    assert parse_config({"capture": {"hep": "tcp:10.0.0.5:9061"}}).capture.hep_transport == "tcp"
    assert parse_config({"capture": {"hep": "10.0.0.5"}}).capture.hep_transport == "udp"
