"""Fixtures for the store tests: a fresh database per test on SQLite, MariaDB and
PostgreSQL.

MariaDB and PostgreSQL are the servers of the development machines (DESIGN.md,
"Real parts"): ``mysql://root@127.0.0.1:3306/test`` and
``postgresql://postgres@127.0.0.1:5432/test`` (user ``root`` tried when
``postgres`` is refused); override with ``SIPDISPATCH_TEST_MYSQL_URL`` /
``SIPDISPATCH_TEST_POSTGRESQL_URL``. Each test gets its own throw-away namespace
``sdt_<hex>`` on the server (a database on MariaDB, a schema on PostgreSQL) and a
unique table name ``dispatcher_t<hex>``, dropped afterwards, so runs can overlap
and leave nothing behind - including Kamailio's shared ``version`` table. A server
that cannot be reached skips its tests, except on CI (``CI`` set) where it fails
them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sipdispatch.store import SqlStore, make_engine_url

BACKENDS = ("sqlite", "mysql", "postgresql")

_SERVER_URLS: dict[str, tuple[str, ...]] = {
    "mysql": (os.environ.get("SIPDISPATCH_TEST_MYSQL_URL") or "mysql://root@127.0.0.1:3306/test",),
    "postgresql": (
        (os.environ["SIPDISPATCH_TEST_POSTGRESQL_URL"],)
        if os.environ.get("SIPDISPATCH_TEST_POSTGRESQL_URL")
        else (
            "postgresql://postgres@127.0.0.1:5432/test",
            "postgresql://root@127.0.0.1:5432/test",
        )
    ),
}

_server_cache: dict[str, str | Exception] = {}


def in_ci() -> bool:
    """True when the CI environment variable is set to anything but a false value."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _admin_url(backend: str) -> str:
    """A URL on which this test run may create databases; skip/fail when none works."""
    if backend not in _server_cache:
        error: Exception | None = None
        for url in _SERVER_URLS[backend]:
            engine = sa.create_engine(make_engine_url(url), connect_args={"connect_timeout": 3})
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                _server_cache[backend] = url
                break
            except Exception as exc:
                error = exc
            finally:
                engine.dispose()
        else:
            assert error is not None
            _server_cache[backend] = error
    found = _server_cache[backend]
    if isinstance(found, Exception):
        reason = f"{backend} server not reachable ({' '.join(str(found).split())[:200]})"
        if in_ci():
            pytest.fail(f"{reason}; CI is set, so this is an error")
        pytest.skip(reason)
    return found


def unique_name(prefix: str) -> str:
    """``prefix`` + 8 random hex digits."""
    return f"{prefix}{secrets.token_hex(4)}"


@dataclass
class Db:
    """A fresh, empty database for one test."""

    backend: str
    """``sqlite``, ``mysql`` or ``postgresql``."""
    url: str
    """Its URL in the form users write (``mysql://...``), for the store."""
    table: str
    """A unique dispatcher table name for this test."""
    engine: Engine
    """A raw engine on the database, for setting up and checking with plain SQL."""
    stores: list[SqlStore] = field(default_factory=list)

    def store(self, table: str | None = None) -> SqlStore:
        """A store on this database (closed at teardown)."""
        store = SqlStore(self.url, table or self.table)
        self.stores.append(store)
        return store

    def execute(self, *statements: str) -> None:
        """Run raw SQL statements in one transaction."""
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))

    def scalar(self, statement: str) -> object:
        """The first column of the first row of a query."""
        with self.engine.connect() as conn:
            return conn.execute(sa.text(statement)).scalar()

    def tables(self) -> set[str]:
        """Table names in the database."""
        with self.engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())


def _server_db(backend: str) -> Generator[tuple[str, Callable[[], None]], None, None]:
    """A throw-away namespace on the server: a database on MariaDB, a schema (made the
    only one on the search path) on PostgreSQL, where CREATE DATABASE is slow."""
    admin_url = _admin_url(backend)
    name = unique_name("sdt_")
    admin = sa.create_engine(make_engine_url(admin_url), isolation_level="AUTOCOMMIT")
    kind = "SCHEMA" if backend == "postgresql" else "DATABASE"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE {kind} {name}"))
        url = sa.make_url(admin_url)
        if backend == "postgresql":
            url = url.update_query_dict({"options": f"-csearch_path={name}"})
        else:
            url = url.set(database=name)

        def drop() -> None:
            with admin.connect() as conn:
                cascade = " CASCADE" if kind == "SCHEMA" else ""
                conn.execute(sa.text(f"DROP {kind} IF EXISTS {name}{cascade}"))

        yield url.render_as_string(hide_password=False), drop
    finally:
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """A fresh empty database on each backend, with a unique table name."""
    backend: str = request.param
    table = unique_name("dispatcher_t")
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'sipdispatch.db'}"
        db = Db(backend, url, table, sa.create_engine(make_engine_url(url)))
        yield db
        for store in db.stores:
            store.close()
        db.engine.dispose()
        return
    gen = _server_db(backend)
    url, drop = next(gen)
    db = Db(backend, url, table, sa.create_engine(make_engine_url(url)))
    try:
        yield db
    finally:
        for store in db.stores:
            store.close()
        db.engine.dispose()
        drop()
        gen.close()
