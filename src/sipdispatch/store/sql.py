"""Kamailio's ``dispatcher`` table through SQLAlchemy Core (SQLite, MySQL/MariaDB,
PostgreSQL).

The table is Kamailio's version 4 (``src/lib/srdb1/schema/dispatcher.xml``;
generated DDL in ``utils/kamctl/{mysql,postgres,db_sqlite}/dispatcher-create.sql``)::

    id           integer, primary key, auto-increment (MySQL: INT UNSIGNED)
    setid        integer      NOT NULL DEFAULT 0
    destination  varchar(192) NOT NULL DEFAULT ''
    flags        integer      NOT NULL DEFAULT 0
    priority     integer      NOT NULL DEFAULT 0
    attrs        varchar(128) NOT NULL DEFAULT ''
    description  varchar(64)  NOT NULL DEFAULT ''

and its row in Kamailio's ``version`` table (``standard-create.sql``; the ``id``
column exists since Kamailio 5.4)::

    id            integer, primary key, auto-increment
    table_name    varchar(32) NOT NULL, UNIQUE
    table_version integer     NOT NULL DEFAULT 0   (MySQL: INT UNSIGNED)

with ``(table_name, table_version) = ('<table>', 4)``. A database created by
Kamailio's ``kamdbctl`` is therefore used as it is; a database without the table
gets both (SQLite is the embedded default and is created on first use).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError

from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.listfile import make_destination
from sipdispatch.store.base import Row, StoreError, host_matches
from sipdispatch.store.validate import check_column_sizes, check_new_destination

TABLE_VERSION: Final = 4
"""Kamailio's dispatcher table version (``DS_TABLE_VERSION4``; ``dispatcher.xml``)."""
VERSION_TABLE: Final = "version"
"""Kamailio's table of table versions."""
VERSION_TABLE_NAME_SIZE: Final = 32
"""``version.table_name`` is ``varchar(32)`` in Kamailio's schema (``version.xml``)."""
DESTINATION_SIZE: Final = 192
"""``dispatcher.destination`` is ``varchar(192)`` (``dispatcher.xml``)."""
ATTRS_SIZE: Final = 128
"""``dispatcher.attrs`` is ``varchar(128)`` (``dispatcher.xml``)."""
DESCRIPTION_SIZE: Final = 64
"""``dispatcher.description`` is ``varchar(64)`` (``dispatcher.xml``)."""
CONNECT_TIMEOUT_S: Final = 5
"""Seconds to wait for a MySQL/PostgreSQL server before reporting it unreachable."""

COLUMNS: Final = ("id", "setid", "destination", "flags", "priority", "attrs", "description")
"""The version 4 columns, in Kamailio's order."""

_COLUMN_SIZES: Final = {
    "destination": DESTINATION_SIZE,
    "attrs": ATTRS_SIZE,
    "description": DESCRIPTION_SIZE,
}

_DRIVERS: Final = {
    "sqlite": "sqlite",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
}
"""URL scheme as written (Kamailio style) -> SQLAlchemy dialect+driver."""

_DRIVER_PACKAGES: Final = {
    "pymysql": "PyMySQL (pip install 'sipdispatch[mysql]')",
    "psycopg": "psycopg (pip install 'sipdispatch[postgresql]')",
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PASSWORD_IN_URL = re.compile(r"(://[^/@:]*:)[^@/]*@")

URL_FORMS: Final = "sqlite:///PATH, mysql://USER:PW@HOST:PORT/DB or postgresql://USER:PW@HOST/DB"


def mask_url(db_url: str) -> str:
    """``db_url`` as written with its password replaced by ``***``, for messages."""
    try:
        return sa.make_url(db_url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD_IN_URL.sub(r"\1***@", db_url)


def make_engine_url(db_url: str) -> URL:
    """The SQLAlchemy URL for a sipdispatch/Kamailio ``db_url``.

    ``mysql://`` becomes ``mysql+pymysql://``, ``mariadb://`` ``mariadb+pymysql://``,
    ``postgresql://`` and ``postgres://`` ``postgresql+psycopg://``; ``sqlite:///PATH``
    is kept. A URL naming its driver (``mysql+mysqldb://``) is kept as written.
    Raises :class:`StoreError` for anything else.
    """
    try:
        url = sa.make_url(db_url)
    except (ArgumentError, ValueError):
        raise StoreError(f"bad db_url {mask_url(db_url)!r}: expected {URL_FORMS}") from None
    backend, plus, _driver = url.drivername.partition("+")
    if backend not in _DRIVERS:
        raise StoreError(
            f"bad db_url {mask_url(db_url)!r}: unsupported database {backend!r}; use {URL_FORMS}"
        )
    if not plus:
        url = url.set(drivername=_DRIVERS[backend])
    return url


def _one_line(text: str) -> str:
    return " ".join(text.split())


RENAMABLE: Final = ("setid", "destination", "flags", "priority", "attrs")
"""The columns Kamailio lets an operator rename (``setid_col``, ``destination_col``,
``flags_col``, ``priority_col``, ``attrs_col``)."""


def _dispatcher_table(
    name: str, metadata: sa.MetaData, columns: Mapping[str, str] | None = None
) -> sa.Table:
    """The version 4 ``dispatcher`` table (see the module docstring); ``columns`` gives
    a column's name in the database by its usual name (the code keeps using the usual
    ones: they are the columns' keys)."""
    named = dict(columns or {})

    def col(key: str, kind: Any, default: sa.TextClause | str) -> sa.Column[Any]:
        return sa.Column(named.get(key, key), kind, key=key, nullable=False, server_default=default)

    return sa.Table(
        name,
        metadata,
        sa.Column(
            "id",
            sa.Integer().with_variant(mysql.INTEGER(unsigned=True), "mysql", "mariadb"),
            primary_key=True,
            autoincrement=True,
        ),
        col("setid", sa.Integer, sa.text("0")),
        col("destination", sa.String(DESTINATION_SIZE), ""),
        col("flags", sa.Integer, sa.text("0")),
        col("priority", sa.Integer, sa.text("0")),
        col("attrs", sa.String(ATTRS_SIZE), ""),
        sa.Column("description", sa.String(DESCRIPTION_SIZE), nullable=False, server_default=""),
    )


def _version_table(dialect: str, metadata: sa.MetaData) -> sa.Table:
    """Kamailio's ``version`` table as ``standard-create.sql`` (5.4+) creates it."""
    is_mysql = dialect in ("mysql", "mariadb")
    unsigned = sa.Integer().with_variant(mysql.INTEGER(unsigned=True), "mysql", "mariadb")
    return sa.Table(
        VERSION_TABLE,
        metadata,
        sa.Column("id", unsigned, primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(VERSION_TABLE_NAME_SIZE), nullable=False),
        sa.Column(
            "table_version",
            unsigned if is_mysql else sa.Integer,
            nullable=False,
            server_default=sa.text("0"),
        ),
        # Kamailio names the constraint table_name_idx on MySQL and
        # version_table_name_idx on PostgreSQL/SQLite (constraint names are
        # per-schema there).
        sa.UniqueConstraint(
            "table_name", name="table_name_idx" if is_mysql else "version_table_name_idx"
        ),
    )


# Only the two columns every Kamailio version table has (the id column was added
# in 5.4): used for reading and inserting, so older databases work too.
_VERSION_ROWS = sa.table(
    VERSION_TABLE,
    sa.column("table_name", sa.String),
    sa.column("table_version", sa.Integer),
)


def _int(value: Any) -> int:
    """A NULL integer column reads as 0."""
    return 0 if value is None else int(value)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class SqlStore:
    """The Kamailio ``dispatcher`` table in an SQL database.

    ``db_url`` is ``sqlite:///PATH``, ``mysql://USER:PW@HOST:PORT/DB`` or
    ``postgresql://USER:PW@HOST/DB`` (see :func:`make_engine_url`). The schema is
    checked (and created when missing) on first use, see :meth:`ensure_schema`.
    """

    def __init__(
        self,
        db_url: str,
        table_name: str = "dispatcher",
        columns: Mapping[str, str] | None = None,
        extra_attrs: Sequence[tuple[str, str]] = (),
    ) -> None:
        named = {k: v for k, v in (columns or {}).items() if v and v != k}
        for key, column in named.items():
            if key not in RENAMABLE:
                raise StoreError(f"column {key!r} cannot be renamed (only {', '.join(RENAMABLE)})")
            if not _IDENTIFIER.fullmatch(column):
                raise StoreError(
                    f"bad column name {column!r} for {key}: must be an SQL identifier "
                    "(letters, digits, _; not starting with a digit)"
                )
        self.columns = {key: named.get(key, key) for key in COLUMNS}
        """Each column's name in the database, by its usual name."""
        for attr, column in extra_attrs:
            if not _IDENTIFIER.fullmatch(column):
                raise StoreError(f"bad column name {column!r} for the attr {attr}")
        self.extra_attrs = tuple(extra_attrs)
        """``(attr, column)``: columns whose value is added to each row's attrs as
        ``attr=value`` (Kamailio's ``ds_db_extra_attrs``)."""
        if not _IDENTIFIER.fullmatch(table_name):
            raise StoreError(
                f"bad table name {table_name!r}: must be an SQL identifier "
                "(letters, digits, _; not starting with a digit)"
            )
        if len(table_name) > VERSION_TABLE_NAME_SIZE:
            raise StoreError(
                f"bad table name {table_name!r}: at most {VERSION_TABLE_NAME_SIZE} characters, "
                "the size of Kamailio's version.table_name column"
            )
        self.db_url = db_url
        """The URL as given (may hold a password: do not print it, use :attr:`location`)."""
        self.table_name = table_name
        """Name of the dispatcher table."""
        self._url = make_engine_url(db_url)
        self._masked = mask_url(db_url)
        self._password = self._url.password if isinstance(self._url.password, str) else None
        self._metadata = sa.MetaData()
        self._table = _dispatcher_table(table_name, self._metadata, named)
        self._engine = self._create_engine()
        self._ready = False

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def location(self) -> str:
        """``<url with password masked> table <name>``."""
        return f"{self._masked} table {self.table_name}"

    @property
    def dialect(self) -> str:
        """SQLAlchemy dialect name: ``sqlite``, ``mysql``, ``mariadb`` or ``postgresql``."""
        return self._url.get_backend_name()

    def _create_engine(self) -> Engine:
        connect_args: dict[str, Any] = {}
        backend = self._url.get_backend_name()
        if backend != "sqlite" and "connect_timeout" not in self._url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        try:
            return sa.create_engine(self._url, pool_pre_ping=True, connect_args=connect_args)
        except ImportError as exc:
            driver = self._url.get_driver_name()
            package = _DRIVER_PACKAGES.get(driver, driver)
            raise StoreError(
                f"cannot open {self.location}: the {driver} driver is not installed: "
                f"install {package} ({exc})"
            ) from None
        except (ArgumentError, ValueError, TypeError) as exc:
            raise StoreError(f"bad db_url {self._masked!r}: {_one_line(str(exc))}") from None

    def _reason(self, exc: BaseException) -> str:
        """The driver's reason for ``exc`` on one line, password removed."""
        orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        text = _one_line(str(orig)) or type(orig).__name__
        # Drivers do not echo passwords, but be sure; a very short password would
        # only mangle the message (and could not be told from ordinary text).
        if self._password and len(self._password) >= 4:
            text = text.replace(self._password, "***")
        return text

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn database errors into :class:`StoreError` naming the store."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {action} {self.location}: {self._reason(exc)}") from exc

    def _inspector(self, conn: Connection) -> sa.Inspector:
        return sa.inspect(conn)

    def _has_table(self, name: str) -> bool:
        with self._engine.connect() as conn:
            return self._inspector(conn).has_table(name)

    def _create(self, table: sa.Table) -> None:
        """Create ``table`` unless it exists; tolerate another process doing the same."""
        try:
            with self._engine.begin() as conn:
                table.create(conn, checkfirst=True)
        except DBAPIError:
            if not self._has_table(table.name):
                raise

    def _read_version(self) -> int | None:
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(_VERSION_ROWS.c.table_version).where(
                    _VERSION_ROWS.c.table_name == self.table_name
                )
            ).scalar()
        return None if value is None else int(value)

    # -- schema -----------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Check the table, creating it first when missing.

        * No ``version`` table: create it as Kamailio does.
        * No dispatcher table: insert its ``version`` row (4) if missing, then
          create the table (SQLite, MySQL and PostgreSQL alike).
        * The table exists: its ``version`` row must be 4 and the seven columns
          must be there; otherwise :class:`StoreError` says what is wrong. (Kamailio
          5.x also reads the older layouts 1-3; sipdispatch reads version 4 only.)

        Safe to run from several processes at once. Runs once per store object.
        """
        if self._ready:
            return
        with self._guard("open"):
            has_table = self._has_table(self.table_name)
            if not self._has_table(VERSION_TABLE):
                self._create(_version_table(self.dialect, sa.MetaData()))
            version = self._read_version()
            if version is None:
                if has_table:
                    raise StoreError(
                        f"cannot use {self.location}: the table has no row in table "
                        f"{VERSION_TABLE}; a Kamailio dispatcher table has table_version "
                        f"{TABLE_VERSION} (INSERT INTO {VERSION_TABLE} (table_name, "
                        f"table_version) VALUES ('{self.table_name}', {TABLE_VERSION}))"
                    )
                version = self._insert_version()
            if version != TABLE_VERSION:
                raise StoreError(
                    f"cannot use {self.location}: table version {version} found in table "
                    f"{VERSION_TABLE}, version {TABLE_VERSION} required (upgrade the table "
                    "as Kamailio's upgrade notes describe)"
                )
            if has_table:
                self._check_columns()
            else:
                self._create(self._table)
        self._ready = True

    def _insert_version(self) -> int:
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    sa.insert(_VERSION_ROWS).values(
                        table_name=self.table_name, table_version=TABLE_VERSION
                    )
                )
        except IntegrityError:
            pass  # another process inserted it first: read what it wrote
        version = self._read_version()
        if version is None:  # pragma: no cover - only if someone deletes it meanwhile
            raise StoreError(f"cannot use {self.location}: version row vanished while creating it")
        return version

    def _check_columns(self) -> None:
        with self._engine.connect() as conn:
            present = {
                c["name"].lower() for c in self._inspector(conn).get_columns(self.table_name)
            }
        missing = [self.columns[c] for c in COLUMNS if self.columns[c].lower() not in present]
        if missing:
            raise StoreError(
                f"cannot use {self.location}: the table lacks column(s) {', '.join(missing)} "
                f"of Kamailio's version {TABLE_VERSION} dispatcher table"
            )

    # -- reading ----------------------------------------------------------------------------

    def _select_all(self, *order: sa.ColumnElement[Any]) -> list[Mapping[str, Any]]:
        t = self._table
        with self._engine.connect() as conn:
            result = conn.execute(
                sa.select(*(t.c[name].label(name) for name in COLUMNS)).order_by(*order)
            )
            return [dict(row._mapping) for row in result]

    def where(self, row_id: int) -> str:
        """How a row is named in messages: ``table <name> row id=<id>``."""
        return f"table {self.table_name} row id={row_id}"

    def load(self) -> list[Destination]:
        """Every row as a :class:`Destination`, ordered by ``id``.

        A NULL integer reads as 0 and a NULL string as empty (Kamailio's columns are
        NOT NULL; this only matters for hand-made tables).
        The first row that cannot be used raises :class:`DispatcherLoadError` naming
        ``table <name> row id=N`` and the reason.
        """
        self.ensure_schema()
        with self._guard("load destinations from"):
            records = self._select_all(self._table.c.id)
            extra = self._extra_attrs() if self.extra_attrs else {}
        dests: list[Destination] = []
        for rec in records:
            row_id = _int(rec["id"])
            attrs = _text(rec["attrs"])
            added = extra.get(row_id)
            if added:
                attrs = f"{attrs};{added}" if attrs else added
            dests.append(
                make_destination(
                    _int(rec["setid"]),
                    _text(rec["destination"]),
                    _int(rec["flags"]),
                    _int(rec["priority"]),
                    attrs,
                    _text(rec["description"]),
                    where=self.where(row_id),
                )
            )
        return dests

    def _extra_attrs(self) -> dict[int, str]:
        """``attr=value;...`` of the extra columns, by row id (a NULL or empty value
        adds nothing)."""
        t = self._table
        columns: list[sa.ColumnClause[Any]] = [sa.column(c) for _, c in self.extra_attrs]
        with self._engine.connect() as conn:
            result = conn.execute(sa.select(t.c.id, *columns).select_from(t))
            out: dict[int, str] = {}
            for row in result:
                parts = [
                    f"{attr}={value}"
                    for (attr, _), value in zip(self.extra_attrs, row[1:], strict=True)
                    if value is not None and str(value) != ""
                ]
                if parts:
                    out[int(row[0])] = ";".join(parts)
            return out

    def rows(self) -> list[Row]:
        """The table's rows ordered by ``setid`` then ``id`` (kamctl ``dispatcher show``
        orders by setid). Values are shown as stored, without validation."""
        self.ensure_schema()
        t = self._table
        with self._guard("read"):
            records = self._select_all(t.c.setid, t.c.id)
        return [
            Row(
                id=_int(rec["id"]),
                setid=_int(rec["setid"]),
                destination=_text(rec["destination"]),
                flags=_int(rec["flags"]),
                priority=_int(rec["priority"]),
                attrs=_text(rec["attrs"]),
                description=_text(rec["description"]),
            )
            for rec in records
        ]

    # -- writing ----------------------------------------------------------------------------

    def add(
        self,
        setid: int,
        uri: str,
        flags: int = 0,
        priority: int = 0,
        attrs: str = "",
        description: str = "",
    ) -> int:
        """Insert a row after checking it as a load would; return its ``id``.

        The URI and attrs are parsed first and text longer than its column is
        refused (kamctl checks neither); :class:`DispatcherLoadError` names
        ``table <name> new row`` and the problem, and nothing is written.
        """
        where = f"table {self.table_name} new row"
        uri = uri.strip()
        check_new_destination(setid, uri, flags, priority, attrs, description, where=where)
        check_column_sizes(
            _COLUMN_SIZES,
            {"destination": uri, "attrs": attrs, "description": description},
            where=where,
        )
        self.ensure_schema()
        with self._guard("add a destination to"), self._engine.begin() as conn:
            result = conn.execute(
                sa.insert(self._table).values(
                    setid=setid,
                    destination=uri,
                    flags=flags,
                    priority=priority,
                    attrs=attrs,
                    description=description,
                )
            )
            key = result.inserted_primary_key
        if key is None or key[0] is None:  # pragma: no cover - every supported dialect returns it
            raise StoreError(f"cannot add a destination to {self.location}: no id returned")
        return int(key[0])

    def _delete(self, action: str, condition: sa.ColumnElement[bool]) -> int:
        self.ensure_schema()
        with self._guard(action), self._engine.begin() as conn:
            return int(conn.execute(sa.delete(self._table).where(condition)).rowcount)

    def remove(self, id: int) -> int:
        """Delete the row ``id`` (kamctl ``dispatcher rm``); return 0 or 1."""
        return self._delete("remove a destination from", self._table.c.id == id)

    def remove_set(self, setid: int) -> int:
        """Delete every row of ``setid`` (kamctl ``dispatcher rmset``); return the count."""
        return self._delete("remove a set from", self._table.c.setid == setid)

    def remove_ip(self, ip: str, setid: int) -> int:
        """Delete the rows of ``setid`` whose destination host is ``ip`` (kamctl
        ``dispatcher rmip``, matching as :func:`~sipdispatch.store.base.host_matches`);
        return the count. The rows are chosen and deleted in one transaction."""
        self.ensure_schema()
        t = self._table
        with self._guard("remove destinations from"), self._engine.begin() as conn:
            found = conn.execute(
                sa.select(t.c.id, t.c.destination.label("destination")).where(t.c.setid == setid)
            )
            ids = [int(r.id) for r in found if host_matches(_text(r.destination), ip)]
            if not ids:
                return 0
            return int(conn.execute(sa.delete(t).where(t.c.id.in_(ids))).rowcount)

    def close(self) -> None:
        """Close the pooled connections (the store reconnects when used again)."""
        self._engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SqlStore {self.location}>"
