"""``[dns]``: the servers asked to locate destinations by DNS, and the lookup timeout."""

from __future__ import annotations

from typing import Any

import pytest

from sipdispatch.config import ConfigError, parse_config


def test_nameservers_take_ip_and_ip_port_and_default_to_the_system_resolver() -> None:
    assert parse_config({}).dns.servers == ()
    dns = parse_config({"dns": {"nameservers": ["127.0.0.1:5353", "[::1]", " 10.0.0.1 "]}}).dns
    assert dns.nameservers == ("127.0.0.1:5353", "[::1]:53", "10.0.0.1:53")
    assert dns.servers == (("127.0.0.1", 5353), ("::1", 53), ("10.0.0.1", 53))
    assert dns.timeout == 2.0


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("127.0.0.1", "dns.nameservers ="),
        (["dns.example.com"], "dns.nameservers[0] ="),
        ([5353], "dns.nameservers[0] ="),
        (["127.0.0.1:0"], "dns.nameservers[0] ="),
        (["127.0.0.1", "[::1]:99999"], "dns.nameservers[1] ="),
        (["::1"], "dns.nameservers[0] ="),
    ],
)
def test_a_bad_nameserver_is_refused_naming_the_key_and_the_form(value: Any, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"dns": {"nameservers": value}})
    message = str(caught.value)
    assert where in message and '"ip" or "ip:port" strings' in message, message


@pytest.mark.parametrize("value", [0, -1, 31, "2", True])
def test_the_timeout_is_a_number_of_seconds_up_to_30(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"dns\.timeout = .*must be a number > 0 \(seconds\)"):
        parse_config({"dns": {"timeout": value}})
    assert parse_config({"dns": {"timeout": 0.5}}).dns.timeout == 0.5


def test_an_unknown_dns_key_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="allowed: nameservers, timeout"):
        parse_config({"dns": {"nameserver": []}})
