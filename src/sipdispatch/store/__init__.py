"""Destination stores: a Kamailio ``dispatcher.list`` file or the Kamailio
``dispatcher`` SQL table (SQLite, MySQL/MariaDB, PostgreSQL).

Typical use::

    store = open_store(list_file=cfg.list_file, db_url=cfg.db_url,
                       table_name=cfg.table_name)
    dests = load_and_resolve(store)          # reload: all or nothing
    store.add(1, "sip:10.0.0.1:5060", 0, 0, "weight=50", "gw one")

See ``docs/store.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sipdispatch.store.base import Row, Store, StoreError, host_matches
from sipdispatch.store.listfile import ListFileStore
from sipdispatch.store.resolve import load_and_resolve, resolve_each, resolve_host
from sipdispatch.store.sql import SqlStore, make_engine_url, mask_url

__all__ = [
    "ListFileStore",
    "Row",
    "SqlStore",
    "Store",
    "StoreError",
    "host_matches",
    "load_and_resolve",
    "make_engine_url",
    "mask_url",
    "open_store",
    "resolve_each",
    "resolve_host",
]


def open_store(
    list_file: str = "",
    db_url: str = "",
    table_name: str = "dispatcher",
    columns: Mapping[str, str] | None = None,
    extra_attrs: Sequence[tuple[str, str]] = (),
) -> Store:
    """The store a ``[dispatcher]`` configuration names.

    ``list_file`` set: a :class:`ListFileStore` (``db_url`` is then ignored; the
    configuration refuses both at once). Otherwise ``db_url``: a :class:`SqlStore`
    on ``table_name`` (``columns``: renamed columns, by their usual name). Nothing is
    read yet; the SQL schema is
    checked/created on first use. Raises :class:`StoreError` when neither is set,
    or for an unsupported URL, bad table name or missing database driver.
    """
    if list_file:
        return ListFileStore(list_file)
    if db_url:
        return SqlStore(db_url, table_name, columns, extra_attrs)
    raise StoreError("no destination store: set dispatcher.list_file or dispatcher.db_url")
