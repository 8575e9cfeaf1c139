"""A Kamailio ``dispatcher.list`` file as a store: reading, and edits that keep
comments and other lines intact."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from sipdispatch.dispatcher.errors import DispatcherLoadError
from sipdispatch.store import ListFileStore, Row, StoreError

LIST = """\
# dispatcher.list for the media gateways
# setid uri flags priority attrs

1 sip:10.0.0.1:5060 0 10 weight=75;duid=mg1 new gateway
1 sip:10.0.0.2:5060 8 0 weight=25   # old gateway, probing

# carriers
2 sip:carrier.example.com;transport=tcp 0x8 5
2   10.0.0.1:5070
"""


@pytest.fixture
def list_file(tmp_path: Path) -> Path:
    path = tmp_path / "dispatcher.list"
    path.write_text(LIST)
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_load_reads_destinations_with_file_and_line(list_file: Path) -> None:
    dests = ListFileStore(list_file).load()
    assert [(d.setid, d.uri, d.flags, d.priority) for d in dests] == [
        (1, "sip:10.0.0.1:5060", 0, 10),
        (1, "sip:10.0.0.2:5060", 8, 0),
        (2, "sip:carrier.example.com;transport=tcp", 8, 5),
        (2, "sip:10.0.0.1:5070", 0, 0),
    ]
    assert [d.where for d in dests] == [f"{list_file}:{n}" for n in (4, 5, 8, 9)]
    assert dests[0].description == "new gateway"


def test_rows_ids_are_line_numbers(list_file: Path) -> None:
    assert ListFileStore(list_file).rows() == [
        Row(4, 1, "sip:10.0.0.1:5060", 0, 10, "weight=75;duid=mg1", "new gateway"),
        Row(5, 1, "sip:10.0.0.2:5060", 8, 0, "weight=25"),
        Row(8, 2, "sip:carrier.example.com;transport=tcp", 8, 5),
        Row(9, 2, "sip:10.0.0.1:5070"),
    ]


def test_bad_line_error_names_file_and_line(list_file: Path) -> None:
    list_file.write_text(LIST + "3 sip:10.0.0.9 0 0 weight=500\n")
    with pytest.raises(DispatcherLoadError) as info:
        ListFileStore(list_file).load()
    assert info.value.where == f"{list_file}:10"


def test_add_appends_a_line_and_keeps_everything_else(list_file: Path) -> None:
    store = ListFileStore(list_file)
    number = store.add(3, "sip:10.0.0.7:5060", 0, 0, "", "spare  gw")
    number2 = store.add(3, "sip:10.0.0.8", 8, 1, "weight=10")
    assert (number, number2) == (10, 11)
    assert list_file.read_text() == LIST + '3 sip:10.0.0.7:5060 0 0 "" spare gw\n' + (
        "3 sip:10.0.0.8 8 1 weight=10\n"
    )
    added = [d for d in store.load() if d.setid == 3]
    assert [(d.uri, d.description, d.where) for d in added] == [
        ("sip:10.0.0.7:5060", "spare gw", f"{list_file}:10"),
        ("sip:10.0.0.8", "", f"{list_file}:11"),
    ]


def test_add_to_file_without_final_newline_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "d.list"
    path.write_text("# only a comment")
    assert ListFileStore(path).add(1, "sip:10.0.0.1") == 2
    assert path.read_text() == "# only a comment\n1 sip:10.0.0.1 0 0\n"


def test_add_creates_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "new.list"
    assert ListFileStore(path).add(1, "sip:10.0.0.1") == 1
    assert path.read_text() == "1 sip:10.0.0.1 0 0\n"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((1, "sip:"), "bad URI"),
        ((1, "sip:10.0.0.1", 0, 0, "weight=abc"), "bad attrs"),
        ((1, "sip:10.0.0.1", 0, 0, 'x="a b"'), "cannot contain spaces"),
        ((1, "sip:10.0.0.1", 0, 0, "", "#1 gateway"), "cannot be written as a list-file line"),
        ((1, "sip:10.0.0.1", 0, 0, "", "gw\nx"), "one line"),
    ],
)
def test_add_refuses_bad_values_and_leaves_file_untouched(
    list_file: Path, args: tuple[Any, ...], reason: str
) -> None:
    before = list_file.stat().st_mtime_ns, list_file.read_text()
    with pytest.raises(DispatcherLoadError, match=reason):
        ListFileStore(list_file).add(*args)
    assert (list_file.stat().st_mtime_ns, list_file.read_text()) == before


def test_remove_deletes_that_line_only(list_file: Path) -> None:
    store = ListFileStore(list_file)
    assert store.remove(5) == 1
    expected = LIST.splitlines()
    del expected[4]
    assert lines(list_file) == expected
    # A comment, a blank line or a line past the end is not a destination.
    assert store.remove(1) == 0
    assert store.remove(3) == 0
    assert store.remove(99) == 0
    assert lines(list_file) == expected


def test_remove_can_delete_a_line_that_does_not_parse(list_file: Path) -> None:
    list_file.write_text(LIST + "x sip:broken\n")
    assert ListFileStore(list_file).remove(10) == 1
    assert list_file.read_text() == LIST


def test_rmset_deletes_the_set_and_keeps_comments(list_file: Path) -> None:
    assert ListFileStore(list_file).remove_set(2) == 2
    assert lines(list_file) == LIST.splitlines()[:7]
    assert ListFileStore(list_file).remove_set(9) == 0


def test_rmip_deletes_that_host_in_that_set_and_keeps_comments(list_file: Path) -> None:
    store = ListFileStore(list_file)
    assert store.remove_ip("10.0.0.1", 1) == 1  # 10.0.0.1 of set 2 stays
    expected = LIST.splitlines()
    del expected[3]
    assert lines(list_file) == expected
    assert store.remove_ip("10.0.0.1", 2) == 1
    assert [d.host for d in store.load()] == ["10.0.0.2", "carrier.example.com"]


def test_edit_replaces_the_file_atomically_and_keeps_its_mode(list_file: Path) -> None:
    os.chmod(list_file, 0o640)
    inode = list_file.stat().st_ino
    ListFileStore(list_file).remove_set(1)
    assert list_file.stat().st_ino != inode  # a new file renamed over the old one
    assert stat.S_IMODE(list_file.stat().st_mode) == 0o640
    assert sorted(p.name for p in list_file.parent.iterdir()) == ["dispatcher.list"]


def test_edit_with_nothing_to_remove_does_not_rewrite(list_file: Path) -> None:
    inode = list_file.stat().st_ino
    assert ListFileStore(list_file).remove_ip("192.0.2.1", 1) == 0
    assert list_file.stat().st_ino == inode


def test_crlf_line_endings_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "d.list"
    path.write_bytes(b"# gw\r\n1 sip:10.0.0.1\r\n1 sip:10.0.0.2\r\n")
    store = ListFileStore(path)
    store.remove_ip("10.0.0.1", 1)
    store.add(2, "sip:10.0.0.3")
    assert path.read_bytes() == b"# gw\r\n1 sip:10.0.0.2\r\n2 sip:10.0.0.3 0 0\r\n"


def test_missing_file_is_a_store_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.list"
    store = ListFileStore(path)
    for call in (store.load, store.rows, lambda: store.remove_set(1)):
        with pytest.raises(StoreError, match=f"cannot read list file {path}: no such file"):
            call()
    assert not path.exists()


def test_file_that_is_not_utf8_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.list"
    path.write_bytes(b"1 sip:10.0.0.1 0 0 '' caf\xe9\n")
    with pytest.raises(StoreError, match="not utf-8 text"):
        ListFileStore(path).load()
