"""Choosing the store from the configuration, and loading with every host resolved
(all or nothing)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from sipdispatch.dispatcher.errors import DispatcherLoadError
from sipdispatch.store import (
    ListFileStore,
    SqlStore,
    Store,
    StoreError,
    load_and_resolve,
    open_store,
    resolve_host,
)


def fake_dns(table: dict[str, str]) -> Callable[[str, int, str], tuple[str, int]]:
    """A resolver answering from ``table`` (and IP literals); other names fail like
    getaddrinfo."""

    def resolve(host: str, port: int, transport: str) -> tuple[str, int]:
        if host[:1].isdigit():
            return host, port
        try:
            return table[host], port
        except KeyError:
            raise OSError(f"[Errno -2] Name or service not known: {host}") from None

    return resolve


def test_list_file_setting_opens_the_list_file(tmp_path: Path) -> None:
    store = open_store(list_file=str(tmp_path / "d.list"), db_url="sqlite:///ignored.db")
    assert isinstance(store, ListFileStore)
    assert isinstance(store, Store)
    assert store.location == str(tmp_path / "d.list")


def test_db_url_setting_opens_the_table(tmp_path: Path) -> None:
    store = open_store(db_url=f"sqlite:///{tmp_path / 'x.db'}", table_name="gateways")
    assert isinstance(store, SqlStore)
    assert isinstance(store, Store)
    assert store.location == f"sqlite:///{tmp_path / 'x.db'} table gateways"
    assert not (tmp_path / "x.db").exists()  # nothing is opened before first use


def test_no_store_configured_is_an_error() -> None:
    with pytest.raises(StoreError, match=r"set dispatcher\.list_file or dispatcher\.db_url"):
        open_store()


def test_resolve_failure_names_the_line_and_the_host(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.list"
    path.write_text("1 sip:mg1.example.com\n# spare\n1 sip:mg2.example.com:5080\n")
    with pytest.raises(DispatcherLoadError) as info:
        load_and_resolve(ListFileStore(path), fake_dns({"mg1.example.com": "10.0.0.1"}))
    assert info.value.where == f"{path}:3"
    assert "could not resolve mg2.example.com" in str(info.value)


def test_resolve_failure_names_the_row(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'x.db'}")
    store.add(1, "sip:mg1.example.com")
    bad = store.add(1, "sip:nowhere.example.com")
    with pytest.raises(DispatcherLoadError) as info:
        load_and_resolve(store, fake_dns({"mg1.example.com": "10.0.0.1"}))
    assert info.value.where == f"table dispatcher row id={bad}"
    assert "nowhere.example.com" in str(info.value)
    store.close()


def test_every_host_is_resolved_except_flag_16(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.list"
    path.write_text(
        "1 sip:mg1.example.com\n1 sip:10.0.0.2:5080;transport=tcp\n2 sip:lazy.example.com 16\n"
    )
    dests = load_and_resolve(ListFileStore(path), fake_dns({"mg1.example.com": "10.0.0.1"}))
    assert [d.addr for d in dests] == [("10.0.0.1", 5060), ("10.0.0.2", 5080), None]


def test_store_errors_pass_through_load_and_resolve(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such file"):
        load_and_resolve(ListFileStore(tmp_path / "missing.list"), fake_dns({}))


def test_default_resolver_returns_ip_literals_and_resolves_localhost() -> None:
    assert resolve_host("10.0.0.1", 5060, "udp") == ("10.0.0.1", 5060)
    assert resolve_host("2001:db8:0::1", 5061, "tls") == ("2001:db8::1", 5061)
    ip, port = resolve_host("localhost", 5070, "tcp")
    assert ip in ("127.0.0.1", "::1") and port == 5070


def test_default_resolver_failure_is_reported_with_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[object, ...]] = []

    def no_dns(*args: object, **kwargs: object) -> list[object]:
        asked.append(args)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # No real DNS in unit tests: getaddrinfo fails as it does for an unknown name.
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    path = tmp_path / "dispatcher.list"
    path.write_text("1 sip:127.0.0.1\n1 sip:gw.invalid:5070;transport=tcp\n")
    with pytest.raises(DispatcherLoadError) as info:
        load_and_resolve(ListFileStore(path))
    assert info.value.where == f"{path}:2"
    assert "could not resolve gw.invalid" in str(info.value)
    assert "Name or service not known" in str(info.value)
    assert asked == [("gw.invalid", 5070)]  # the IP literal needed no lookup


def test_concurrent_list_file_adds_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.list"
    path.write_text("# gateways\n")
    store = ListFileStore(path)

    def add(n: int) -> None:
        store.add(1, f"sip:10.0.1.{n}")

    threads = [threading.Thread(target=add, args=(n,)) for n in range(1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(d.host for d in store.load()) == sorted(f"10.0.1.{n}" for n in range(1, 21))
    assert path.read_text().startswith("# gateways\n")
