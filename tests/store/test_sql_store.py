"""The Kamailio ``dispatcher`` table on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sipdispatch.dispatcher.errors import DispatcherLoadError
from sipdispatch.store import Row, SqlStore, StoreError, open_store

from .conftest import Db
from .kamailio_schema import dispatcher_table, kamctl_add, version_table


def schema_snapshot(db: Db, table: str) -> dict[str, Any]:
    """Columns (name, type, nullable, default) of the table and of ``version``, and
    the version rows: what "unchanged" means for an existing database."""
    with db.engine.connect() as conn:
        insp = sa.inspect(conn)
        snap: dict[str, Any] = {}
        for name in (table, "version"):
            snap[name] = [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in insp.get_columns(name)
            ]
        snap["version rows"] = sorted(
            tuple(r) for r in conn.execute(sa.text("SELECT table_name, table_version FROM version"))
        )
    return snap


# -- round trips --------------------------------------------------------------------------


def test_add_load_rows_remove_round_trip(db: Db) -> None:
    store = db.store()
    first = store.add(1, "sip:10.0.0.1:5060", 8, 5, "weight=50;duid=gw1", "gw one")
    second = store.add(2, "sip:gw2.example.com;transport=tcp")
    third = store.add(1, "10.0.0.3")  # no scheme: kept as written, loaded with sip:
    assert first < second < third

    dests = store.load()
    assert [d.uri for d in dests] == [
        "sip:10.0.0.1:5060",
        "sip:gw2.example.com;transport=tcp",
        "sip:10.0.0.3",
    ]
    assert [d.where for d in dests] == [
        f"table {db.table} row id={first}",
        f"table {db.table} row id={second}",
        f"table {db.table} row id={third}",
    ]
    gw1 = dests[0]
    assert (gw1.setid, gw1.flags, gw1.priority) == (1, 8, 5)
    assert gw1.attrs.weight == 50 and gw1.attrs.duid == "gw1"
    assert gw1.description == "gw one"

    # show: ordered by setid then id, values as stored
    assert store.rows() == [
        Row(first, 1, "sip:10.0.0.1:5060", 8, 5, "weight=50;duid=gw1", "gw one"),
        Row(third, 1, "10.0.0.3"),
        Row(second, 2, "sip:gw2.example.com;transport=tcp"),
    ]

    assert store.remove(second) == 1
    assert store.remove(second) == 0
    assert [r.id for r in store.rows()] == [first, third]


def test_rmset_removes_only_that_set(db: Db) -> None:
    store = db.store()
    store.add(1, "sip:10.0.0.1")
    store.add(2, "sip:10.0.0.2")
    store.add(1, "sip:10.0.0.3")
    assert store.remove_set(1) == 2
    assert [(r.setid, r.destination) for r in store.rows()] == [(2, "sip:10.0.0.2")]
    assert store.remove_set(7) == 0


def test_rmip_removes_that_host_in_that_set_only(db: Db) -> None:
    store = db.store()
    store.add(1, "sip:10.0.0.1:5060")
    store.add(1, "sip:10.0.0.1:5080;transport=tcp")
    store.add(1, "sip:alice@10.0.0.1")
    store.add(1, "sip:10.0.0.10")  # a longer address with the same prefix stays
    store.add(2, "sip:10.0.0.1")  # another set stays
    store.add(1, "sip:[2001:db8::1]:5060")

    assert store.remove_ip("10.0.0.1", 1) == 3
    assert [(r.setid, r.destination) for r in store.rows()] == [
        (1, "sip:10.0.0.10"),
        (1, "sip:[2001:db8::1]:5060"),
        (2, "sip:10.0.0.1"),
    ]
    # IPv6 compared as an address: another spelling of the same one matches.
    assert store.remove_ip("2001:db8:0::1", 1) == 1
    assert store.remove_ip("10.0.0.99", 1) == 0


# -- schema -------------------------------------------------------------------------------


def test_first_use_creates_table_and_version_row_4(db: Db) -> None:
    store = db.store()
    assert db.tables() == set()
    assert store.rows() == []
    assert {db.table, "version"} <= db.tables()
    assert db.scalar(f"SELECT table_version FROM version WHERE table_name = '{db.table}'") == 4
    with db.engine.connect() as conn:
        columns = {c["name"]: c for c in sa.inspect(conn).get_columns(db.table)}
    assert list(columns) == [
        "id",
        "setid",
        "destination",
        "flags",
        "priority",
        "attrs",
        "description",
    ]
    assert all(not c["nullable"] for c in columns.values())
    text_columns = ("destination", "attrs", "description")
    assert [getattr(columns[n]["type"], "length", None) for n in text_columns] == [192, 128, 64]
    # Defaults as Kamailio's: rows inserted with only a destination get 0 and ''.
    db.execute(f"INSERT INTO {db.table} (destination) VALUES ('sip:10.9.9.9')")
    (row,) = store.rows()
    assert (row.setid, row.flags, row.priority, row.attrs, row.description) == (0, 0, 0, "", "")


def test_sqlite_file_is_created_on_first_use_with_version_row(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "sipdispatch.db"
    path.parent.mkdir()
    store = open_store(db_url=f"sqlite:///{path}")
    assert not path.exists()
    assert store.load() == []
    assert path.exists()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        version = conn.execute(
            sa.text("SELECT table_version FROM version WHERE table_name = 'dispatcher'")
        ).scalar()
    engine.dispose()
    store.close()
    assert version == 4


@pytest.mark.parametrize("version_id", [True, False], ids=["kamailio-5.4+", "kamailio-pre-5.4"])
def test_database_created_by_kamailio_is_used_unchanged(db: Db, version_id: bool) -> None:
    db.execute(
        *version_table(db.backend, version_id=version_id),
        *dispatcher_table(db.backend, db.table),
        kamctl_add(db.table, 1, "sip:10.0.0.1:5060", 0, 10, "weight=75", "new gw"),
        kamctl_add(db.table, 1, "sip:10.0.0.2:5060", 8, 0, "weight=25", "old gw"),
    )
    before = schema_snapshot(db, db.table)

    store = db.store()
    dests = store.load()
    assert [(d.uri, d.priority, d.attrs.weight) for d in dests] == [
        ("sip:10.0.0.1:5060", 10, 75),
        ("sip:10.0.0.2:5060", 0, 25),
    ]
    new_id = store.add(2, "sip:10.0.0.3")
    assert new_id > max(r.id for r in store.rows() if r.setid == 1)
    assert store.remove(new_id) == 1

    assert schema_snapshot(db, db.table) == before


def test_table_with_other_version_is_refused(db: Db) -> None:
    db.execute(*version_table(db.backend), *dispatcher_table(db.backend, db.table, version=3))
    store = db.store()
    with pytest.raises(StoreError) as info:
        store.load()
    message = str(info.value)
    assert "table version 3" in message and "version 4 required" in message
    assert db.table in message


def test_existing_table_without_version_row_is_refused(db: Db) -> None:
    db.execute(*version_table(db.backend), dispatcher_table(db.backend, db.table)[0])
    with pytest.raises(StoreError, match="has no row in table version"):
        db.store().rows()


def test_existing_table_missing_columns_is_refused(db: Db) -> None:
    db.execute(
        *version_table(db.backend),
        f"CREATE TABLE {db.table} (id INTEGER PRIMARY KEY, setid INTEGER, "
        "destination VARCHAR(192))",
        f"INSERT INTO version (table_name, table_version) VALUES ('{db.table}', 4)",
    )
    with pytest.raises(StoreError, match="lacks column"):
        db.store().load()


def test_two_stores_creating_the_schema_agree(db: Db) -> None:
    one, two = db.store(), db.store()
    one.ensure_schema()
    two.ensure_schema()  # finds what the first created: no error, no second version row
    assert db.scalar(f"SELECT COUNT(*) FROM version WHERE table_name = '{db.table}'") == 1


# -- bad content --------------------------------------------------------------------------


def test_bad_row_error_names_the_row_id(db: Db) -> None:
    store = db.store()
    store.add(1, "sip:10.0.0.1")
    db.execute(kamctl_add(db.table, 1, "sip:10.0.0.2", attrs="weight=500"))
    bad_id = max(r.id for r in store.rows())
    with pytest.raises(DispatcherLoadError) as info:
        store.load()
    assert info.value.where == f"table {db.table} row id={bad_id}"
    assert f"row id={bad_id}" in str(info.value)
    assert "weight=500" in str(info.value)


def test_bad_uri_row_error_names_the_row_id(db: Db) -> None:
    store = db.store()
    store.ensure_schema()
    db.execute(kamctl_add(db.table, 3, "sip:"))
    with pytest.raises(DispatcherLoadError, match=r"row id=\d+: bad URI"):
        store.load()


BAD_NEW_ROWS: list[tuple[tuple[Any, ...], str]] = [
    ((1, "sip:"), "bad URI"),
    ((1, "sip:10.0.0.1", 0, 0, "weight=abc"), "bad attrs"),
    ((-1, "sip:10.0.0.1"), "bad setid"),
    ((1, "sip:10.0.0.1", -8), "bad flags"),
    ((1, "sip:10.0.0.1", 0, 2**31), "bad priority"),
    ((1, "sip:10.0.0.1\n2 sip:10.0.0.2"), "must be one line"),
    ((1, "sip:10.0.0.1", 0, 0, "x=" + "a" * 127), "attrs column holds at most 128"),
    ((1, "sip:10.0.0.1", 0, 0, "", "d" * 65), "description column holds at most 64"),
    ((1, "sip:" + "h" * 189), "destination column holds at most 192"),
]


def test_add_refuses_bad_values_and_writes_nothing(db: Db) -> None:
    store = db.store()
    for args, reason in BAD_NEW_ROWS:
        with pytest.raises(DispatcherLoadError, match=reason) as info:
            store.add(*args)
        assert info.value.where == f"table {db.table} new row"
    assert store.rows() == []


# -- URLs and unreachable databases -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mysql://sipd:s3cret-pw@127.0.0.1:1/kamailio",
        "postgresql://sipd:s3cret-pw@127.0.0.1:1/kamailio",
    ],
)
def test_unreachable_database_error_names_url_with_password_masked(url: str) -> None:
    store = SqlStore(url)
    with pytest.raises(StoreError) as info:
        store.load()
    message = str(info.value)
    assert "s3cret-pw" not in message
    assert url.replace("s3cret-pw", "***") in message
    assert "\n" not in message
    assert "refused" in message.lower()  # the driver's reason


def test_sqlite_file_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}"
    with pytest.raises(StoreError, match="unable to open database file") as info:
        SqlStore(url).add(1, "sip:10.0.0.1")
    assert url in str(info.value)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///x.db", "sqlite"),
        ("mysql://u:p@h:3306/db", "mysql+pymysql"),
        ("mariadb://u:p@h/db", "mariadb+pymysql"),
        ("postgresql://u:p@h/db", "postgresql+psycopg"),
        ("postgres://u:p@h/db", "postgresql+psycopg"),
        ("mysql+pymysql://u:p@h/db", "mysql+pymysql"),
    ],
)
def test_url_forms_map_to_installed_drivers(url: str, driver: str) -> None:
    from sipdispatch.store import make_engine_url

    assert make_engine_url(url).drivername == driver


@pytest.mark.parametrize("url", ["oracle://u:topsecret@h/db", "not a url", "redis://h:6379"])
def test_unsupported_url_is_refused_without_showing_password(url: str) -> None:
    with pytest.raises(StoreError, match="bad db_url") as info:
        SqlStore(url)
    assert "topsecret" not in str(info.value)


@pytest.mark.parametrize("name", ["1dispatcher", "disp-atcher", "x;drop table version", "a" * 33])
def test_table_name_must_be_a_short_sql_identifier(name: str) -> None:
    with pytest.raises(StoreError, match="bad table name"):
        SqlStore("sqlite:///x.db", name)


RENAMED = {"setid": "grp", "destination": "uri", "flags": "st", "priority": "prio", "attrs": "xa"}
"""Kamailio's setid_col, destination_col, flags_col, priority_col and attrs_col."""


def test_a_table_whose_columns_kamailio_was_told_to_name_otherwise_is_used_as_it_is(
    db: Db,
) -> None:
    statements = dispatcher_table(db.backend, db.table)
    create = statements[0]
    for usual, named in RENAMED.items():
        quote = "`" if db.backend == "mysql" else ""
        create = create.replace(f"{quote}{usual}{quote} ", f"{quote}{named}{quote} ", 1)
    db.execute(*version_table(db.backend), create, statements[1])
    db.execute(
        f"INSERT INTO {db.table} (grp, uri, st, prio, xa, description) "
        "VALUES (1, 'sip:10.0.0.1:5060', 0, 10, 'weight=75', 'gw1')"
    )
    store = SqlStore(db.url, db.table, RENAMED)
    db.stores.append(store)
    [dest] = store.load()
    assert (dest.setid, dest.uri, dest.priority, dest.attrs.weight) == (
        1, "sip:10.0.0.1:5060", 10, 75,
    )  # fmt: skip
    new_id = store.add(2, "sip:10.0.0.2:5060", 0, 5, "duid=b")
    assert [(r.setid, r.destination, r.priority) for r in store.rows()] == [
        (1, "sip:10.0.0.1:5060", 10),
        (2, "sip:10.0.0.2:5060", 5),
    ]
    assert store.remove_ip("10.0.0.2", 2) == 1 and store.remove(new_id) == 0
    # The usual names are not there: a store that expects them says which it lacks.
    plain = db.store()
    with pytest.raises(StoreError, match="lacks column\\(s\\) setid, destination, flags"):
        plain.load()


def test_a_renamed_column_must_be_an_sql_identifier(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="bad column name 'a b' for attrs"):
        SqlStore(f"sqlite:///{tmp_path / 'x.db'}", "dispatcher", {"attrs": "a b"})


def test_extra_columns_are_added_to_the_attrs_as_kamailios_ds_db_extra_attrs(db: Db) -> None:
    store = SqlStore(db.url, db.table, extra_attrs=(("socket", "sock"), ("pref", "prefix")))
    db.stores.append(store)
    store.add(1, "sip:10.0.0.1:5060", 0, 0, "weight=75")
    store.add(1, "sip:10.0.0.2:5060")
    # The extra columns are the operator's: added to the table Kamailio's way.
    db.execute(
        f"ALTER TABLE {db.table} ADD sock VARCHAR(64)",
        f"ALTER TABLE {db.table} ADD prefix INTEGER",
        f"UPDATE {db.table} SET sock = 'udp:10.0.0.9:5060', prefix = 44 "
        "WHERE destination = 'sip:10.0.0.1:5060'",
    )
    by_uri = {d.uri: d for d in store.load()}
    assert by_uri["sip:10.0.0.1:5060"].attrs.body == "weight=75;socket=udp:10.0.0.9:5060;pref=44"
    assert by_uri["sip:10.0.0.1:5060"].attrs.weight == 75
    assert by_uri["sip:10.0.0.2:5060"].attrs.body == ""  # NULLs add nothing
    missing = SqlStore(db.url, db.table, extra_attrs=(("x", "nosuchcolumn"),))
    db.stores.append(missing)
    with pytest.raises(StoreError, match="nosuchcolumn"):
        missing.load()
