"""Logging in to Redis and TLS to it: a real ``sipdispatch run`` node on a private
redis-server with an ACL user and its password (in ``redis_url``, or ``redis_username``
and ``redis_password`` with Sentinel), over TLS with a client certificate
(``rediss://`` with ``tls_ca``, ``tls_cert``, ``tls_key``; ``redis_tls`` to the
sentinels and the master). A wrong password or CA is said clearly in the log at the
start, and no password ever shows in the log, ``cluster.nodes``, ``/health`` or
``/metrics``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme

from tests.integration.conftest import GatewayFactory, ProxyFactory
from tests.integration.proxyctl import READY_LINE, ProxyProcess, toml_str
from tests.integration.sippctl import free_port
from tests.integration.test_admin import result, wait_for

from .conftest import SENTINEL_MASTER, PrivateRedis, acl_args, private_sentinel, tls_args
from .test_two_nodes import Cluster, metric

pytestmark = pytest.mark.timeout(120)

USER = "sipd"
PASSWORD = "acl-pw-93be5d"
WRONG = "wrong-pw-1c7f0a"
SENTINEL_PASSWORD = "sentinel-pw-42aa90"


def shown_by(proxy: ProxyProcess) -> str:
    """Everything the node shows of itself: its log, cluster.nodes, /health, /metrics."""
    texts = [proxy.log_text(), json.dumps(result(proxy, "cluster.nodes"))]
    for path in ("/health", "/metrics"):
        try:
            with urllib.request.urlopen(proxy.admin_url + path, timeout=30) as resp:
                texts.append(resp.read().decode())
        except urllib.error.HTTPError as exc:  # /health's 503 has the same summary
            texts.append(exc.read().decode())
    return "\n".join(texts)


def redis_in_use(proxy: ProxyProcess) -> dict[str, Any]:
    info: dict[str, Any] = result(proxy, "cluster.nodes")["REDIS"]
    return info


def logged_before_ready(proxy: ProxyProcess, text: str) -> bool:
    log = proxy.log_text()
    return text in log and log.index(text) < log.index(READY_LINE)


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server whose only user is ``USER`` with ``PASSWORD``."""
    server = PrivateRedis(free_port("tcp"), tmp_path / "redis", args=acl_args(USER, PASSWORD))
    server.start()
    yield server
    server.kill()


def narrow_rights(namespace: str) -> list[str]:
    """The rights docs/cluster.md gives the sipdispatch user: its namespace's keys and
    channel, the commands of its categories."""
    return [f"~{namespace}:*", f"&{namespace}:*", "-@all", "+@connection", "+@read",
            "+@write", "+@keyspace", "+@pubsub", "+@scripting", "+time"]  # fmt: skip


def test_an_acl_user_and_password_in_redis_url_join_and_the_password_shows_nowhere(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    acl_redis: PrivateRedis,
    sipp: str,
) -> None:
    gw = gateways("gw1")
    narrow = "sipd-narrow"  # another user, with only what a node needs
    admin = redis.Redis(port=acl_redis.port, username=USER, password=PASSWORD)
    assert admin.acl_setuser(narrow, enabled=True, passwords=[f"+{PASSWORD}"], reset=True)
    admin.execute_command("ACL", "SETUSER", narrow, *narrow_rights(namespace))
    url = f"redis://{narrow}:{PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    cluster = Cluster(tmp_path, proxy_factory, [gw], namespace, redis_url=url, algorithm=10,
                      attrs="maxload=1")  # fmt: skip
    a = cluster.start("lb-a")
    assert metric(a, "sipdispatch_cluster_redis_up") == 1
    assert redis_in_use(a) == {"MASTER": acl_redis.address, "UP": True, "SENTINEL_MASTER": "",
                               "TLS": False}  # fmt: skip
    # What a node does with its Redis, each with the narrow rights: events, the state
    # hash, the heartbeats, the ledger's scripts.
    assert result(a, "dispatcher.set_state", "ip", 1, gw.uri)
    wait_for(lambda: admin.hexists(f"{namespace}:state", f"1 {gw.uri}"), 20, "the state")
    assert result(a, "dispatcher.set_state", "ax", 1, gw.uri)
    outcome = cluster.call("lb-a", sipp, 2, tmp_path / "sipp")
    assert outcome.ok and outcome.successful == 2, outcome.report()
    assert metric(a, "sipdispatch_cluster_load_reserved_total") >= 2
    assert metric(a, "sipdispatch_cluster_load_released_total") >= 2
    assert metric(a, "sipdispatch_cluster_redis_errors_total") == 0
    assert "NOPERM" not in a.log_text()
    assert f"through redis://{narrow}:***@127.0.0.1:{acl_redis.port}/0" in a.log_text()
    assert PASSWORD not in shown_by(a)
    admin.close()


def test_a_wrong_password_is_logged_clearly_at_the_start_and_the_node_routes_alone(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    acl_redis: PrivateRedis,
) -> None:
    gw = gateways("gw1")
    url = f"redis://{USER}:{WRONG}@127.0.0.1:{acl_redis.port}/0"
    a = Cluster(tmp_path, proxy_factory, [gw], namespace, redis_url=url).start("lb-a")
    said = (
        f"cluster: Redis refused this node's login (redis://{USER}:***@127.0.0.1:"
        f"{acl_redis.port}/0, user '{USER}': "
    )
    assert logged_before_ready(a, said), a.log_text()
    assert "Check the user and password of cluster.redis_url)" in a.log_text()
    assert metric(a, "sipdispatch_cluster_redis_up") == 0
    assert redis_in_use(a)["UP"] is False
    assert result(a, "dispatcher.list")  # serving, on its own
    assert a.log_text().count("cluster: Redis refused this node's login") == 1
    assert WRONG not in shown_by(a)


def test_a_wrong_sentinel_password_is_logged_clearly_at_the_start(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    acl_redis: PrivateRedis,
) -> None:
    sentinel = private_sentinel(tmp_path / "sentinel", acl_redis, quorum=1, user=USER,
                                password=PASSWORD, requirepass=SENTINEL_PASSWORD)  # fmt: skip
    sentinel.start()
    try:
        gw = gateways("gw1")
        extra = (
            f"sentinels = [{toml_str(sentinel.address)}]\n"
            f"sentinel_master = {toml_str(SENTINEL_MASTER)}\n"
            f"sentinel_password = {toml_str(WRONG)}\n"
            f"redis_username = {toml_str(USER)}\n"
            f"redis_password = {toml_str(PASSWORD)}\n"
        )
        a = Cluster(
            tmp_path, proxy_factory, [gw], namespace, redis_url="", cluster_extra=extra
        ).start("lb-a")
        said = (
            f"cluster: Redis unreachable (no sentinel names master '{SENTINEL_MASTER}' "
            f"(sentinels {sentinel.address}), and one refused our login ({sentinel.address} "
            "refused our login: "
        )
        assert logged_before_ready(a, said), a.log_text()
        assert "check cluster.sentinel_username and cluster.sentinel_password" in a.log_text()
        assert metric(a, "sipdispatch_cluster_redis_up") == 0
        shown = shown_by(a)
        assert WRONG not in shown and PASSWORD not in shown
    finally:
        sentinel.kill()


@dataclass
class Certificates:
    """A CA, the servers' certificate (for 127.0.0.1) and a client's, as PEM files."""

    ca: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path
    other_ca: Path
    """A CA that signed none of them."""


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("sipdispatch-node")
    names = ("ca.pem", "server.pem", "server.key", "client.pem", "client.key", "other-ca.pem")
    files = Certificates(*(tmp_path / name for name in names))
    ca.cert_pem.write_to_path(files.ca)
    other.cert_pem.write_to_path(files.other_ca)
    server.cert_chain_pems[0].write_to_path(files.server)
    server.private_key_pem.write_to_path(files.server_key)
    client.cert_chain_pems[0].write_to_path(files.client)
    client.private_key_pem.write_to_path(files.client_key)
    return files


@pytest.fixture
def tls_redis(tmp_path: Path, certs: Certificates) -> Iterator[PrivateRedis]:
    """A private redis-server speaking TLS only, asking for a client certificate, whose
    only user is ``USER`` with ``PASSWORD``."""
    port = free_port("tcp")
    tls = tls_args(port, certs.server, certs.server_key, certs.ca)
    server = PrivateRedis(port, tmp_path / "redis-tls", args=[*tls, *acl_args(USER, PASSWORD)])
    server.start()
    yield server
    server.kill()


def tls_keys(certs: Certificates, ca: Path | None = None) -> str:
    return (
        f"tls_ca = {toml_str(str(ca or certs.ca))}\n"
        f"tls_cert = {toml_str(str(certs.client))}\n"
        f"tls_key = {toml_str(str(certs.client_key))}\n"
    )


def test_rediss_with_a_client_certificate_and_an_acl_user_joins(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    tls_redis: PrivateRedis,
    certs: Certificates,
) -> None:
    gw = gateways("gw1")
    url = f"rediss://{USER}:{PASSWORD}@127.0.0.1:{tls_redis.port}/0"
    a = Cluster(
        tmp_path, proxy_factory, [gw], namespace, redis_url=url, cluster_extra=tls_keys(certs)
    ).start("lb-a")
    assert metric(a, "sipdispatch_cluster_redis_up") == 1
    assert redis_in_use(a) == {"MASTER": tls_redis.address, "UP": True, "SENTINEL_MASTER": "",
                               "TLS": True}  # fmt: skip
    assert PASSWORD not in shown_by(a)


def test_rediss_with_a_ca_that_did_not_sign_the_servers_certificate_says_so(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    tls_redis: PrivateRedis,
    certs: Certificates,
) -> None:
    gw = gateways("gw1")
    url = f"rediss://{USER}:{PASSWORD}@127.0.0.1:{tls_redis.port}/0"
    extra = tls_keys(certs, ca=certs.other_ca)
    a = Cluster(tmp_path, proxy_factory, [gw], namespace, redis_url=url,
                cluster_extra=extra).start("lb-a")  # fmt: skip
    assert logged_before_ready(a, "cluster: Redis unreachable (rediss://"), a.log_text()
    assert "CERTIFICATE_VERIFY_FAILED" in a.log_text()
    assert metric(a, "sipdispatch_cluster_redis_up") == 0
    assert PASSWORD not in shown_by(a)


def test_redis_tls_speaks_tls_to_the_sentinel_and_to_the_master_it_names(
    tmp_path: Path,
    proxy_factory: ProxyFactory,
    gateways: GatewayFactory,
    namespace: str,
    tls_redis: PrivateRedis,
    certs: Certificates,
) -> None:
    tls = tls_args(0, certs.server, certs.server_key, certs.ca)
    tls[tls.index("--tls-port") + 1] = "{port}"
    sentinel = private_sentinel(tmp_path / "sentinel", tls_redis, quorum=1, user=USER,
                                password=PASSWORD, args=tls)  # fmt: skip
    sentinel.start()
    try:
        gw = gateways("gw1")
        extra = (
            f"sentinels = [{toml_str(sentinel.address)}]\n"
            f"sentinel_master = {toml_str(SENTINEL_MASTER)}\n"
            f"redis_username = {toml_str(USER)}\n"
            f"redis_password = {toml_str(PASSWORD)}\n"
            "redis_tls = true\n" + tls_keys(certs)
        )
        a = Cluster(
            tmp_path, proxy_factory, [gw], namespace, redis_url="", cluster_extra=extra
        ).start("lb-a")
        wait_for(lambda: metric(a, "sipdispatch_cluster_redis_up") == 1, 20, "joined")
        assert redis_in_use(a) == {"MASTER": tls_redis.address, "UP": True,
                                   "SENTINEL_MASTER": SENTINEL_MASTER, "TLS": True}  # fmt: skip
        assert PASSWORD not in shown_by(a)
    finally:
        sentinel.kill()
