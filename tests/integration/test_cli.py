"""The operator's commands as a shell runs them: ``sipdispatch dispatcher ...`` against
list files, SQLite, MariaDB and PostgreSQL, and ``sipdispatch rpc`` against a
running proxy (the seed article's kamctl/kamcmd steps).

The databases are the development machine's servers; each test gets a throw-away
database/schema from ``tests/store/conftest.py`` (its ``db`` fixture, reused).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sipdispatch.cli import main

from ..store.conftest import Db, db  # noqa: F401 - the fixture, reused
from .conftest import GatewayFactory, ProxyFactory
from .proxyctl import ProxyProcess, basic_config, proxy_env, toml_str
from .sippctl import free_port, run_sipp

pytestmark = pytest.mark.timeout(240)

SIPP_TIMEOUT = 60


def sd(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``sipdispatch ARGS`` (``python -m sipdispatch``) as a shell would."""
    return subprocess.run(
        [sys.executable, "-m", "sipdispatch", *args],
        cwd=cwd,
        env={**proxy_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.stderr == "" or "Traceback" not in done.stderr, done.stderr
    return done.stdout


def failed(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed command."""
    assert done.returncode == 1, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def show_json(store: list[str], cwd: Path) -> list[dict[str, object]]:
    rows = json.loads(ok(sd("dispatcher", *store, "show", "--json", cwd=cwd)))
    assert isinstance(rows, list)
    return rows


def store_options(kind: str, tmp_path: Path, database: Db | None) -> list[str]:
    if kind == "list":
        return ["--list-file", str(tmp_path / "dispatcher.list")]
    assert database is not None
    return ["--db-url", database.url, "--table", database.table]


# -- dispatcher add/show/rm/rmset/rmip on every store -------------------------------------------
#
# In-process through cli.main (the same entry point as the console script): a
# subprocess per command would spend most of its time importing.


class InProcess:
    """``sipdispatch ARGS`` through ``cli.main``, output captured."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        status = main(list(args))
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(["sipdispatch", *args], status, out, err)


def _store_round_trip(run: InProcess, store: list[str], id_key: str) -> None:
    d = ["dispatcher", *store]

    def rows() -> list[dict[str, object]]:
        found = json.loads(ok(run(*d, "show", "--json")))
        assert isinstance(found, list)
        return found

    # The seed article's lines, as an operator types them.
    out = ok(run(*d, "add", "1", "sip:mg1:5060", "0", "0", "", "Media Gateway 1"))
    assert "sip:mg1:5060" in out and "Media Gateway 1" in out
    ok(run(*d, "add", "1", "sip:mg2:5060", "0", "0", "", "Media Gateway 2"))
    ok(run(*d, "add", "2", "sip:10.0.0.7:5060"))
    ok(run(*d, "add", "2", "sip:10.0.0.7:5070;transport=tcp", "8", "3", "weight=50"))
    table = ok(run(*d, "show")).splitlines()
    assert table[0].split() == [
        id_key, "setid", "destination", "flags", "priority", "attrs", "description",
    ]  # fmt: skip
    assert any(
        line.split()[2:4] == ["sip:mg1:5060", "0"] and line.endswith("Media Gateway 1")
        for line in table[1:]
    )
    found = rows()
    assert [(r["setid"], r["destination"]) for r in found] == [
        (1, "sip:mg1:5060"), (1, "sip:mg2:5060"), (2, "sip:10.0.0.7:5060"),
        (2, "sip:10.0.0.7:5070;transport=tcp"),
    ]  # fmt: skip
    assert found[3]["flags"] == 8 and found[3]["priority"] == 3
    assert found[3]["attrs"] == "weight=50"
    assert found[0]["description"] == "Media Gateway 1"

    line = failed(run(*d, "add", "1", "sip:[bad"))
    assert line.startswith("sipdispatch: dispatcher add: ") and "bad URI" in line
    assert len(rows()) == 4  # nothing written

    ok(run(*d, "rm", str(found[1][id_key])))
    assert "no destination with id 9999" in failed(run(*d, "rm", "9999"))
    out = ok(run(*d, "rmip", "10.0.0.7", "2"))
    assert "removed 2 destination(s) with host 10.0.0.7 of set 2" in out
    assert [r["destination"] for r in rows()] == ["sip:mg1:5060"]
    ok(run(*d, "rmset", "1"))
    assert rows() == []
    assert "no destination in set 1" in failed(run(*d, "rmset", "1"))


def test_dispatcher_commands_on_a_list_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_round_trip(InProcess(capsys), store_options("list", tmp_path, None), "line")


def test_dispatcher_commands_on_a_database(
    db: Db,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _store_round_trip(InProcess(capsys), store_options("db", tmp_path, db), "id")
    # The rows lived in Kamailio's table, which the last rmset emptied.
    assert db.scalar(f"SELECT COUNT(*) FROM {db.table}") == 0


def test_dispatcher_add_as_a_shell_runs_it(tmp_path: Path) -> None:
    store = store_options("list", tmp_path, None)
    ok(sd("dispatcher", *store, "add", "1", "sip:mg1:5060", "0", "0", "", "Media Gateway 1",
          cwd=tmp_path))  # fmt: skip
    assert (tmp_path / "dispatcher.list").read_text() == ('1 sip:mg1:5060 0 0 "" Media Gateway 1\n')
    line = failed(sd("dispatcher", *store, "add", "1", "sip:[bad", cwd=tmp_path))
    assert line.startswith("sipdispatch: dispatcher add: ") and "bad URI" in line


def test_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    run = InProcess(capsys)
    closed = free_port("tcp")
    for url in (f"mysql://root@127.0.0.1:{closed}/test", f"postgresql://u:pw@127.0.0.1:{closed}/t"):
        line = failed(run("dispatcher", "--db-url", url, "show"))
        assert line.startswith("sipdispatch: dispatcher show: cannot open ")
        assert f"127.0.0.1:{closed}" in line
        assert ":pw@" not in line  # the password is never shown


# -- add, reload and dump against a running proxy, for every store ---------------------------------


def _proxy_config(tmp_path: Path, port: int, admin: int, store: list[str]) -> Path:
    """A config for the store; the list-file variant is basic_config's."""
    if store[0] == "--list-file":
        list_file = Path(store[1])
        list_file.touch()
        text = basic_config(port, admin, list_file)
    else:
        url, table = store[1], store[3]
        text = basic_config(port, admin, tmp_path / "unused.list").replace(
            f"list_file = {toml_str(str(tmp_path / 'unused.list'))}",
            f"db_url = {toml_str(url)}\ntable_name = {toml_str(table)}",
        )
    config = tmp_path / "sipdispatch.toml"
    config.write_text(text)
    return config


def _story(
    tmp_path: Path,
    store: list[str],
    gateways: GatewayFactory,
    proxy_factory: ProxyFactory,
) -> None:
    mg1, mg2 = gateways("mg1"), gateways("mg2")
    port, admin = free_port(), free_port("tcp")
    config = _proxy_config(tmp_path, port, admin, store)
    cfg = ["dispatcher", "--config", str(config)]
    ok(sd(*cfg, "add", "1", mg1.uri, "0", "0", "", "Media Gateway 1", cwd=tmp_path))
    proxy = proxy_factory(config.read_text(), port=port, admin_port=admin, name="story")

    # The story's operator step: add a gateway, reload without restart, see it.
    ok(sd(*cfg, "add", "1", mg2.uri, "0", "0", "", "Media Gateway 2", cwd=tmp_path))
    assert ok(sd(*cfg, "reload", cwd=tmp_path)).strip() == "Ok. Dispatcher successfully reloaded."
    dump = ok(sd(*cfg, "dump", cwd=tmp_path))
    assert dump.startswith("{\n\tNRSETS: 1\n\tRECORDS: {\n\t\tSET: {\n\t\t\tID: 1\n")
    assert f"URI: {mg1.uri}" in dump and f"URI: {mg2.uri}" in dump
    res = run_sipp(
        "uac_call",
        "127.0.0.1",
        port,
        calls=4,
        rate=20,
        timeout=SIPP_TIMEOUT,
        workdir=tmp_path / "sipp",
    )
    assert res.ok, res.report()
    assert mg1.invites == 2 and mg2.invites == 2

    # Remove the first one from the store; the proxy follows after a reload.
    rows = show_json(["--config", str(config)], tmp_path)
    key = "line" if store[0] == "--list-file" else "id"
    first = next(r for r in rows if r["destination"] == mg1.uri)
    ok(sd(*cfg, "rm", str(first[key]), cwd=tmp_path))
    ok(sd(*cfg, "reload", cwd=tmp_path))
    listing = json.loads(ok(sd(*cfg, "dump", "--json", cwd=tmp_path)))["result"]
    targets = listing["RECORDS"][0]["SET"]["TARGETS"]
    assert [t["DEST"]["URI"] for t in targets] == [mg2.uri]
    assert proxy.alive()


def test_story_with_a_list_file(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory, sipp: str
) -> None:
    _story(tmp_path, store_options("list", tmp_path, None), gateways, proxy_factory)


def test_story_with_a_database(
    db: Db,  # noqa: F811
    tmp_path: Path,
    gateways: GatewayFactory,
    proxy_factory: ProxyFactory,
    sipp: str,
) -> None:
    _story(tmp_path, store_options("db", tmp_path, db), gateways, proxy_factory)


# -- sipdispatch rpc ----------------------------------------------------------------------------


def _proxy_with(
    tmp_path: Path, proxy_factory: ProxyFactory, uris: list[str], token: str = ""
) -> ProxyProcess:
    port, admin = free_port(), free_port("tcp")
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text("".join(f"1 {u}\n" for u in uris))
    text = basic_config(port, admin, list_file)
    if token:
        text = text.replace("[admin]\n", f"[admin]\ntoken = {toml_str(token)}\n")
    return proxy_factory(text, port=port, admin_port=admin)


def test_rpc_prints_like_kamcmd(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1 = gateways("mg1")
    proxy = _proxy_with(tmp_path, proxy_factory, [mg1.uri])
    url = ["rpc", "--admin", proxy.admin_url]
    listing = ok(sd(*url, "dispatcher.list", cwd=tmp_path))
    # Kamailio 6.1's fields and order: IDX, URI, FLAGS, PRIORITY, IUID (dspt-...).
    iuid = re.search(r"\tIUID: (dspt-\S+)\n", listing)
    assert iuid, listing
    assert listing == (
        "{\n\tNRSETS: 1\n\tRECORDS: {\n\t\tSET: {\n\t\t\tID: 1\n\t\t\tTARGETS: {\n"
        f"\t\t\t\tDEST: {{\n\t\t\t\t\tIDX: 0\n\t\t\t\t\tURI: {mg1.uri}\n"
        "\t\t\t\t\tFLAGS: AX\n\t\t\t\t\tPRIORITY: 0\n"
        f"\t\t\t\t\tIUID: {iuid[1]}\n\t\t\t\t}}\n\t\t\t}}\n\t\t}}\n\t}}\n}}\n"
    )
    # Numbers are sent as numbers: NSLOTS must arrive as an integer.
    assert ok(sd(*url, "dispatcher.hash", "4", "bob", "server.com", cwd=tmp_path)) == (
        "{\n\thashid: 3883463682\n\tslot: 2\n}\n"
    )
    out = ok(sd(*url, "dispatcher.set_state", "dx", "1", mg1.uri, cwd=tmp_path))
    assert out == "Ok. Dispatcher state updated.\n"
    response = json.loads(ok(sd(*url, "--json", "dispatcher.list", "short", cwd=tmp_path)))
    assert response["result"]["RECORDS"][0]["SET"]["TARGETS"][0]["DEST"]["FLAGS"] == "DX"
    assert "core.uptime" in ok(sd(*url, "system.listMethods", cwd=tmp_path)).splitlines()
    line = failed(sd(*url, "dispatcher.set_state", "dx", "7", "all", cwd=tmp_path))
    assert line == (
        "sipdispatch: rpc: error: 500 - State Update Failed: destination set 7 not found"
    )
    # Through the config file, as an operator would: ./sipdispatch.toml is read.
    (tmp_path / "sipdispatch.toml").write_text(proxy.config_path.read_text())
    assert "Ok. Dispatcher state updated." in ok(
        sd("rpc", "dispatcher.set_state", "ap", "1", "all", cwd=tmp_path)
    )


def test_rpc_reload_error_names_line_and_host(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1 = gateways("mg1")
    proxy = _proxy_with(tmp_path, proxy_factory, [mg1.uri])
    list_file = tmp_path / "dispatcher.list"
    list_file.write_text(list_file.read_text() + "1 sip:mg7.nosuch.invalid\n")
    line = failed(sd("dispatcher", "--config", str(proxy.config_path), "reload", cwd=tmp_path))
    assert line.startswith(
        f"sipdispatch: dispatcher reload: error: 500 - Reload Failed: {list_file}:2: "
        "could not resolve mg7.nosuch.invalid"
    )


def test_rpc_with_a_token(
    tmp_path: Path, gateways: GatewayFactory, proxy_factory: ProxyFactory
) -> None:
    mg1 = gateways("mg1")
    proxy = _proxy_with(tmp_path, proxy_factory, [mg1.uri], token="t0ken")
    url = ["rpc", "--admin", proxy.admin_url]
    line = failed(sd(*url, "core.version", cwd=tmp_path))
    assert line.startswith("sipdispatch: rpc: error: 401 - Unauthorized")
    assert "--token or SIPDISPATCH_TOKEN" in line
    assert ok(sd(*url, "--token", "t0ken", "core.version", cwd=tmp_path)).startswith("sipdispatch")
    env = {"SIPDISPATCH_TOKEN": "t0ken"}
    assert ok(sd(*url, "core.version", cwd=tmp_path, env=env)).startswith("sipdispatch")
    # The config's token is used when none is given.
    assert ok(sd("rpc", "--config", str(proxy.config_path), "core.version", cwd=tmp_path))


def test_rpc_proxy_not_running(tmp_path: Path) -> None:
    closed = free_port("tcp")
    line = failed(
        sd("rpc", "--admin", f"http://127.0.0.1:{closed}", "dispatcher.list", cwd=tmp_path)
    )
    assert (
        line == f"sipdispatch: rpc: proxy not running at http://127.0.0.1:{closed} "
        f"(connection refused); admin URL http://127.0.0.1:{closed} given with --admin"
    )
