"""How a node reaches the cluster's Redis: the server of ``redis_url``, or the master
that the Sentinels of ``sentinels`` name, with TLS and an ACL user or a password as
``[cluster]`` says.

With Sentinel, the client's connection pool asks the sentinels for the master's
address each time it opens a connection, and drops its connections to a previous
master once they name a new one (redis-py's ``redis.asyncio.sentinel``); a master
demoted to a replica answers writes with ``READONLY``, which ends the connection the
same way. The node's session (:mod:`.node`) ends on any error and starts again, so
its commands, its Lua scripts (loaded again when the new master answers ``NOSCRIPT``)
and its subscription all move to the new master with the next session.

Passwords stay here: :attr:`RedisTarget.where` names the Redis without them and
:meth:`RedisTarget.scrub` takes them out of any text (an error from redis-py or the
server) before a message shows it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoPermissionError,
    ResponseError,
    TimeoutError,
)

from sipdispatch.config import ClusterConfig
from sipdispatch.config.values import show_db_url

SCRUB_MIN: Final = 4
"""Shorter secrets are not searched for in messages (they would mask ordinary words)."""


@dataclass(slots=True)
class RedisTarget:
    """The client of the cluster's Redis, and how to speak of it."""

    client: Redis
    """Every command, script and subscription of the node goes through it."""
    where: str
    """The Redis as messages name it, no password in it."""
    sentinel: Sentinel | None
    """The sentinels asked for the master (None: ``redis_url``)."""
    user: str
    """The ACL user logged in on the master ("" = the default user)."""
    secrets: tuple[str, ...]
    """Every password given, to take out of messages."""

    def master(self) -> str:
        """``host:port`` of the Redis this client talks to: with Sentinel, the master
        the sentinels last named ("" before they named one)."""
        pool = self.client.connection_pool
        if self.sentinel is not None:
            address = getattr(pool, "master_address", None)
            return _host_port(str(address[0]), int(address[1])) if address else ""
        kwargs = pool.connection_kwargs
        return _host_port(str(kwargs.get("host", "")), int(kwargs.get("port", 0)))

    async def follow(self) -> None:
        """With Sentinel: ask the sentinels which master is current, and point the
        client there (redis-py asks only when it opens a connection; after a switchover
        the old master takes writes until the sentinels turn it into a replica, which
        may take them 10 s). Sentinels that do not answer leave the client where it
        is: the master may well be up without them."""
        pool = self.client.connection_pool
        if self.sentinel is None or not isinstance(pool, SentinelConnectionPool):
            return
        with contextlib.suppress(MasterNotFoundError):
            await pool.get_master_address()  # type: ignore[no-untyped-call]

    def scrub(self, text: str) -> str:
        """``text`` without any of the passwords."""
        for secret in self.secrets:
            if len(secret) >= SCRUB_MIN:
                text = text.replace(secret, "***")
        return text

    def explain(self, exc: BaseException) -> str:
        """What went wrong with Redis, on one line, for the log: a refused login says
        which keys to check; never a password."""
        text = self.scrub(" ".join(str(exc).split()) or type(exc).__name__)
        sentinel = self.sentinel is not None
        if isinstance(exc, AuthenticationError | NoPermissionError):
            who = f"user {self.user!r}" if self.user else "the default user"
            keys = (
                "cluster.redis_username and cluster.redis_password"
                if sentinel
                else "the user and password of cluster.redis_url"
            )
            return f"{self.where}, {who}: {text.rstrip('.')}. Check {keys}"
        if isinstance(exc, NoMaster) and exc.login_refused:
            return (
                f"no sentinel names {self.where}, and one refused our login ({text}): "
                "check cluster.sentinel_username and cluster.sentinel_password"
            )
        if isinstance(exc, MasterNotFoundError):
            return f"no sentinel names {self.where} ({text})"
        return f"{self.where}: {text}"

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.sentinel is not None:
            await self.sentinel.aclose()


class NoMaster(MasterNotFoundError):
    """No sentinel named the master: what each one said, on one line."""

    def __init__(self, reasons: list[str], login_refused: bool) -> None:
        super().__init__("; ".join(reasons) or "no sentinel given")
        self.login_refused = login_refused
        """A sentinel refused our login (its password or user is wrong or missing)."""


class Sentinels(Sentinel):
    """redis-py's Sentinel client, asking the sentinels for the master in the same way
    (the first that names it, up and not seen down, is asked first next time); when
    none does, the error says in a few words what each one answered (redis-py's own
    names every client with all its settings)."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        reasons: list[str] = []
        refused = False
        for i, client in enumerate(self.sentinels):
            kwargs = client.connection_pool.connection_kwargs
            at = _host_port(str(kwargs.get("host", "")), int(kwargs.get("port", 0)))
            try:
                masters = await client.sentinel_masters()
            except (ConnectionError, ResponseError, TimeoutError) as exc:
                login = isinstance(exc, AuthenticationError) or "AUTH" in str(exc)
                refused = refused or login
                why = f"refused our login: {exc}" if login else str(exc) or type(exc).__name__
                reasons.append(f"{at} {why}")
                continue
            if isinstance(masters, list):
                masters = {str(m.get("name")): m for m in masters}
            state = masters.get(service_name)
            if state is None:
                reasons.append(f"{at} monitors no master {service_name!r}")
            elif not self.check_master_state(state, service_name):
                reasons.append(f"{at} sees the master {state['ip']}:{state['port']} down")
            else:
                self.sentinels[0], self.sentinels[i] = client, self.sentinels[0]
                return str(state["ip"]), int(state["port"])
        raise NoMaster(reasons, refused)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _login(username: str, password: str, tls: dict[str, Any] | None) -> dict[str, Any]:
    """The connection keywords of one Redis login: user, password, TLS when given."""
    out: dict[str, Any] = {}
    if username:
        out["username"] = username
    if password:
        out["password"] = password
    if tls is not None:
        out.update(ssl=True, **tls)
    return out


def _split(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) as config validation left it."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def tls_options(settings: ClusterConfig) -> dict[str, Any]:
    """redis-py's ``ssl_*`` arguments for ``tls_ca``, ``tls_cert``, ``tls_key`` and
    ``tls_check_hostname`` (redis-py reads none of these from a URL's query)."""
    options: dict[str, Any] = {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": settings.tls_check_hostname,
    }
    if settings.tls_ca:
        options["ssl_ca_certs"] = settings.tls_ca
    if settings.tls_cert:
        options["ssl_certfile"] = settings.tls_cert
        options["ssl_keyfile"] = settings.tls_key or None
    return options


def connect(settings: ClusterConfig, timeout: float) -> RedisTarget:
    """The client for ``settings`` (nothing is sent yet); ``timeout``: seconds a
    connection or a reply may take."""
    sockets: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    tls = tls_options(settings) if settings.tls else {}
    if not settings.sentinels:
        url = settings.redis_url
        parts = urlsplit(url)
        secrets = tuple(s for s in {parts.password or "", unquote(parts.password or "")} if s)
        client = Redis.from_url(url, **sockets, **tls)
        return RedisTarget(client, show_db_url(url), None, unquote(parts.username or ""), secrets)
    tls_on = tls if settings.redis_tls else None
    logins = _login(settings.sentinel_username, settings.sentinel_password, tls_on)
    sentinel = Sentinels(
        [_split(a) for a in settings.sentinels], sentinel_kwargs={**sockets, **logins}
    )
    master = _login(settings.redis_username, settings.redis_password, tls_on)
    client = sentinel.master_for(
        settings.sentinel_master, **sockets, db=settings.redis_db, **master
    )
    where = f"master {settings.sentinel_master!r} (sentinels {', '.join(settings.sentinels)})"
    secrets = tuple(s for s in (settings.redis_password, settings.sentinel_password) if s)
    return RedisTarget(client, where, sentinel, settings.redis_username, secrets)
