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
