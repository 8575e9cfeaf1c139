"""``[cluster]``: standalone by default, a Redis URL to join a cluster."""

from __future__ import annotations

import os

import pytest

from sipdispatch.config import ConfigError, default_config, parse_config


def test_cluster_is_off_by_default() -> None:
    cluster = default_config().cluster
    assert cluster.redis_url == ""
    assert (cluster.namespace, cluster.node_id, cluster.heartbeat, cluster.probing) == (
        "sipdispatch",
        "",
        1.0,
        "split",
    )


def test_cluster_keys_are_read_from_the_file() -> None:
    config = parse_config(
        {
            "cluster": {
                "redis_url": "redis://127.0.0.1:6379/2",
                "namespace": "lb-east",
                "node_id": "lb1",
                "heartbeat": 2,
                "probing": "ALL",
            }
        }
    )
    c = config.cluster
    assert (c.redis_url, c.namespace, c.node_id, c.heartbeat, c.probing) == (
        "redis://127.0.0.1:6379/2",
        "lb-east",
        "lb1",
        2.0,
        "all",
    )


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("redis_url", "http://127.0.0.1:6379", "redis://"),
        ("heartbeat", 0, "> 0"),
        ("probing", "some", "split"),
        ("namespace", "", "cluster.namespace"),
    ],
)
def test_a_wrong_cluster_key_is_named(key: str, value: object, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"cluster": {key: value}})
    assert f"cluster.{key}" in str(info.value)
    assert says in str(info.value)


def test_several_workers_are_read_with_a_redis_url() -> None:
    config = parse_config(
        {"server": {"workers": 4}, "cluster": {"redis_url": "redis://127.0.0.1:6379/0"}}
    )
    assert config.server.workers == 4


def test_several_workers_need_no_redis_and_zero_is_one_per_core() -> None:
    assert parse_config({"server": {"workers": 2}}).server.worker_count == 2
    assert parse_config({"server": {"workers": 0}}).server.worker_count == (os.cpu_count() or 1)
    with pytest.raises(ConfigError) as info:
        parse_config({"server": {"workers": -1}})
    assert info.value.key == "server.workers"


def test_sentinels_name_the_master_and_its_login() -> None:
    c = parse_config(
        {
            "cluster": {
                "sentinels": ["10.0.0.5", "10.0.0.6:26380", "[2001:db8::7]"],
                "sentinel_master": "mymaster",
                "redis_db": 2,
                "redis_username": "sipd",
                "redis_password": "s3cret",
                "redis_tls": True,
                "tls_ca": "/etc/redis/ca.pem",
            }
        }
    ).cluster
    assert c.sentinels == ("10.0.0.5:26379", "10.0.0.6:26380", "[2001:db8::7]:26379")
    assert (c.sentinel_master, c.redis_db, c.redis_username) == ("mymaster", 2, "sipd")
    assert c.enabled and c.tls
    assert "s3cret" not in repr(c)


def test_redis_url_and_sentinels_together_is_an_error_naming_both() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"cluster": {"redis_url": "redis://10.0.0.5/0", "sentinels": ["10.0.0.5:26379"],
                         "sentinel_master": "mymaster"}}
        )  # fmt: skip
    assert info.value.key == "cluster.sentinels"
    assert "cluster.redis_url" in str(info.value) and "choose one" in str(info.value)


@pytest.mark.parametrize(
    ("table", "key", "says"),
    [
        ({"sentinels": ["10.0.0.5"]}, "cluster.sentinel_master", "sentinel monitor"),
        ({"sentinels": "10.0.0.5"}, "cluster.sentinels", '"host:port"'),
        ({"sentinels": ["10.0.0.5:0"], "sentinel_master": "m"}, "cluster.sentinels[0]", "26379"),
        ({"sentinels": ["a", "a:26379"], "sentinel_master": "m"}, "cluster.sentinels[1]", "twice"),
        ({"redis_url": "redis://h/0", "redis_db": 3}, "cluster.redis_db", "cluster.redis_url"),
        ({"redis_url": "redis://h/0", "sentinel_master": "m"}, "cluster.sentinel_master", "only"),
        ({"redis_url": "redis://h/0", "tls_ca": "ca.pem"}, "cluster.tls_ca", "rediss://"),
        ({"redis_url": "rediss://h/0", "tls_key": "k.pem"}, "cluster.tls_key", "tls_cert"),
        ({"redis_url": "redis://h/0?ssl_ca_certs=ca.pem"}, "cluster.redis_url", "?query"),
        ({"redis_url": "redis://h:port/0"}, "cluster.redis_url", "redis://"),
    ],
)
def test_a_wrong_redis_connection_key_is_named_with_what_is_allowed(
    table: dict[str, object], key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"cluster": table})
    assert info.value.key == key
    assert says in str(info.value)


@pytest.mark.parametrize(
    "table",
    [
        {"redis_url": "redis://sipd:hunter22@h:port/0"},
        {"redis_url": "redis://h/0", "redis_password": "hunter22"},
        {"sentinels": ["h"], "sentinel_master": "m", "sentinel_password": 12345678},
    ],
)
def test_a_password_is_masked_in_config_errors(table: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"cluster": table})
    assert "hunter22" not in str(info.value) and "12345678" not in str(info.value)
    assert "***" in str(info.value)
