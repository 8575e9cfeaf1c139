"""How a node's ``[cluster]`` keys become its Redis client, and how it speaks of that
Redis: without a password, in a few words, saying which keys to check."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection
from redis.exceptions import AuthenticationError, ConnectionError

from sipdispatch.cluster.redisconn import NoMaster, RedisTarget, connect
from sipdispatch.config import ClusterConfig, parse_config
from tests.integration.sippctl import free_ports


def cluster(**keys: object) -> ClusterConfig:
    return parse_config({"cluster": keys}).cluster


def test_a_redis_url_gives_its_address_user_and_a_masked_name() -> None:
    target = connect(cluster(redis_url="redis://sipd:p%40ss-word@10.0.0.5:6380/2"), 1.0)
    assert target.where == "redis://sipd:***@10.0.0.5:6380/2"
    assert (target.master(), target.user, target.sentinel) == ("10.0.0.5:6380", "sipd", None)
    kwargs = target.client.connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (2, "p@ss-word", 1.0)
    text = "ERR something about p@ss-word and p%40ss-word"
    assert target.scrub(text) == "ERR something about *** and ***"


def test_rediss_takes_the_tls_files_as_redis_py_arguments() -> None:
    target = connect(
        cluster(redis_url="rediss://10.0.0.5:6380/0", tls_ca="ca.pem", tls_cert="c.pem",
                tls_key="c.key", tls_check_hostname=False),
        1.0,
    )  # fmt: skip
    pool = target.client.connection_pool
    assert pool.connection_class is SSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (
        "ca.pem", "c.pem", "c.key",
    )  # fmt: skip
    assert kwargs["ssl_check_hostname"] is False and kwargs["ssl_cert_reqs"] == "required"


def test_sentinels_give_a_client_of_the_named_master_with_its_login_and_tls() -> None:
    target = connect(
        cluster(sentinels=["10.0.0.11", "[2001:db8::12]:26380"], sentinel_master="mymaster",
                sentinel_password="sentinel-secret", redis_db=3, redis_username="sipd",
                redis_password="master-secret", redis_tls=True, tls_ca="ca.pem"),
        2.0,
    )  # fmt: skip
    assert target.where == "master 'mymaster' (sentinels 10.0.0.11:26379, [2001:db8::12]:26380)"
    assert target.master() == ""  # until the sentinels name one
    pool = target.client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    assert pool.connection_class is SentinelManagedSSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (3, "sipd", "master-secret")
    assert target.sentinel is not None
    asked = [s.connection_pool.connection_kwargs for s in target.sentinel.sentinels]
    assert [(k["host"], k["port"]) for k in asked] == [("10.0.0.11", 26379),
                                                       ("2001:db8::12", 26380)]  # fmt: skip
    assert all(k["password"] == "sentinel-secret" and k["ssl_ca_certs"] == "ca.pem" for k in asked)
    for s in target.sentinel.sentinels:
        assert s.connection_pool.connection_class is SSLConnection
    assert set(target.secrets) == {"sentinel-secret", "master-secret"}


def test_a_refused_login_names_the_keys_to_check_and_no_password() -> None:
    url_target = connect(cluster(redis_url="redis://sipd:hunter22@10.0.0.5/0"), 1.0)
    said = url_target.explain(AuthenticationError("WRONGPASS hunter22 is wrong"))
    assert said == (
        "redis://sipd:***@10.0.0.5/0, user 'sipd': WRONGPASS *** is wrong. "
        "Check the user and password of cluster.redis_url"
    )
    sentinel_target = connect(
        cluster(sentinels=["10.0.0.11"], sentinel_master="m", redis_password="hunter22"), 1.0
    )
    said = sentinel_target.explain(AuthenticationError("invalid password"))
    assert "the default user" in said
    assert said.endswith("Check cluster.redis_username and cluster.redis_password")
    refused = NoMaster(["10.0.0.11:26379 refused our login: invalid password"], True)
    assert sentinel_target.explain(refused).endswith(
        "check cluster.sentinel_username and cluster.sentinel_password"
    )
    assert sentinel_target.explain(ConnectionError("Error 111")) == (
        "master 'm' (sentinels 10.0.0.11:26379): Error 111"
    )


def test_no_sentinel_answering_is_said_in_a_few_words_per_sentinel() -> None:
    ports = free_ports(2, "tcp")  # nothing listens there
    target = connect(
        cluster(sentinels=[f"127.0.0.1:{p}" for p in ports], sentinel_master="mymaster"), 1.0
    )

    async def discover(target: RedisTarget) -> str:
        assert target.sentinel is not None
        try:
            with pytest.raises(NoMaster) as info:
                await target.sentinel.discover_master("mymaster")
            return target.explain(info.value)
        finally:
            await target.aclose()

    said = asyncio.run(discover(target))
    assert said.startswith("no sentinel names master 'mymaster' (sentinels ")
    for port in ports:
        assert f"127.0.0.1:{port} Error 111 connecting to 127.0.0.1:{port}" in said
    assert "<redis" not in said and len(said) < 400
