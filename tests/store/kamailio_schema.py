"""Plain SQL that builds a database the way Kamailio's ``kamdbctl create`` does
(``utils/kamctl/<db>/standard-create.sql`` + ``dispatcher-create.sql``), written
out here so the tests can check that sipdispatch uses such a database as it is.

``version_id=False`` builds the ``version`` table of Kamailio before 5.4, which
had no ``id`` column.
"""

from __future__ import annotations


def version_table(backend: str, *, version_id: bool = True) -> list[str]:
    """``CREATE TABLE version`` and its own row, as Kamailio's standard-create.sql."""
    if backend == "mysql":
        id_col = "`id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL, " if version_id else ""
        create = (
            f"CREATE TABLE `version` ({id_col}`table_name` VARCHAR(32) NOT NULL, "
            "`table_version` INT UNSIGNED DEFAULT 0 NOT NULL, "
            "CONSTRAINT table_name_idx UNIQUE (`table_name`))"
        )
    else:
        id_type = "SERIAL" if backend == "postgresql" else "INTEGER"
        id_col = f"id {id_type} PRIMARY KEY NOT NULL, " if version_id else ""
        create = (
            f"CREATE TABLE version ({id_col}table_name VARCHAR(32) NOT NULL, "
            "table_version INTEGER DEFAULT 0 NOT NULL, "
            "CONSTRAINT version_table_name_idx UNIQUE (table_name))"
        )
    return [create, "INSERT INTO version (table_name, table_version) VALUES ('version', '1')"]


def dispatcher_table(backend: str, table: str, *, version: int = 4) -> list[str]:
    """``CREATE TABLE <table>`` (dispatcher, version 4 columns) and its version row."""
    if backend == "mysql":
        create = (
            f"CREATE TABLE `{table}` ("
            "`id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL, "
            "`setid` INT DEFAULT 0 NOT NULL, "
            "`destination` VARCHAR(192) DEFAULT '' NOT NULL, "
            "`flags` INT DEFAULT 0 NOT NULL, "
            "`priority` INT DEFAULT 0 NOT NULL, "
            "`attrs` VARCHAR(128) DEFAULT '' NOT NULL, "
            "`description` VARCHAR(64) DEFAULT '' NOT NULL)"
        )
    else:
        id_type = "SERIAL" if backend == "postgresql" else "INTEGER"
        create = (
            f"CREATE TABLE {table} ("
            f"id {id_type} PRIMARY KEY NOT NULL, "
            "setid INTEGER DEFAULT 0 NOT NULL, "
            "destination VARCHAR(192) DEFAULT '' NOT NULL, "
            "flags INTEGER DEFAULT 0 NOT NULL, "
            "priority INTEGER DEFAULT 0 NOT NULL, "
            "attrs VARCHAR(128) DEFAULT '' NOT NULL, "
            "description VARCHAR(64) DEFAULT '' NOT NULL)"
        )
    return [
        create,
        f"INSERT INTO version (table_name, table_version) VALUES ('{table}', '{version}')",
    ]


def kamctl_add(table: str, setid: int, uri: str, flags: int = 0, priority: int = 0,
               attrs: str = "", description: str = "") -> str:  # fmt: skip
    """The INSERT ``kamctl dispatcher add`` runs (id left to the database)."""
    return (
        f"INSERT INTO {table} (setid, destination, flags, priority, attrs, description) "
        f"VALUES ({setid}, '{uri}', {flags}, {priority}, '{attrs}', '{description}')"
    )
