"""``sipdispatch dispatcher ...`` and ``sipdispatch rpc`` in-process (``cli.main``):
kamctl's argument order and defaults, output and one-line errors.

Against real MariaDB/PostgreSQL and a running proxy: tests/integration/test_cli.py.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from sipdispatch.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(params=["list", "sqlite"])
def store_args(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    if request.param == "list":
        return ["--list-file", str(tmp_path / "dispatcher.list")]
    return ["--db-url", f"sqlite:///{tmp_path / 'sipdispatch.db'}"]


def test_add_show_and_remove(capsys: pytest.CaptureFixture[str], store_args: list[str]) -> None:
    d = ["dispatcher", *store_args]
    # The seed article's kamctl lines, verbatim.
    status, out, _ = run_cli(
        capsys, *d, "add", "1", "sip:mg1:5060", "0", "0", "", "Media Gateway 1"
    )
    assert status == 0
    assert "set 1 sip:mg1:5060 flags 0 priority 0" in out and "Media Gateway 1" in out
    assert "sipdispatch dispatcher reload" in out
    assert run_cli(capsys, *d, "add", "1", "sip:mg2:5060", "0", "0", "", "Media Gateway 2")[0] == 0
    assert run_cli(capsys, *d, "add", "2", "sip:10.0.0.7:5060")[0] == 0  # defaults 0 0 '' ''
    assert run_cli(capsys, *d, "add", "2", "sip:10.0.0.8", "0x8", "7", "weight=50")[0] == 0
    status, out, _ = run_cli(capsys, *d, "show")
    lines = out.splitlines()
    assert lines[0].split() == [
        lines[0].split()[0],
        "setid",
        "destination",
        "flags",
        "priority",
        "attrs",
        "description",
    ]
    assert any("sip:mg1:5060" in line and line.endswith("Media Gateway 1") for line in lines)
    status, out, _ = run_cli(capsys, *d, "show", "--json")
    rows = json.loads(out)
    by_dest = {r["destination"]: r for r in rows}
    assert by_dest["sip:10.0.0.8"]["flags"] == 8 and by_dest["sip:10.0.0.8"]["priority"] == 7
    assert by_dest["sip:10.0.0.8"]["attrs"] == "weight=50"
    id_key = "line" if "--list-file" in store_args else "id"
    mg2 = by_dest["sip:mg2:5060"][id_key]

    assert run_cli(capsys, *d, "rmip", "10.0.0.7", "2")[0] == 0
    status, out, _ = run_cli(capsys, *d, "rm", str(mg2))
    assert status == 0 and f"removed destination {mg2}" in out
    status, _, err = run_cli(capsys, *d, "rm", "999")
    assert status == 1 and err.startswith("sipdispatch: dispatcher rm: no destination with id 999")
    status, out, _ = run_cli(capsys, *d, "rmset", "2")
    assert status == 0 and "removed 1 destination(s) of set 2" in out
    rows = json.loads(run_cli(capsys, *d, "show", "--json")[1])
    assert [r["destination"] for r in rows] == ["sip:mg1:5060"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "1", "sip:"], "bad URI"),
        (["add", "x", "sip:mg1"], "bad SETID 'x'"),
        (["add", "1", "sip:mg1", "ab"], "bad FLAGS 'ab'"),
        (["add", "1", "sip:mg1", "0", "0", "weight=500"], "weight=500"),
        (["rmset", "-1"], "bad SETID -1"),
    ],
)
def test_bad_values_are_one_clear_line(
    capsys: pytest.CaptureFixture[str], store_args: list[str], args: list[str], message: str
) -> None:
    status, out, err = run_cli(capsys, "dispatcher", *store_args, *args)
    assert status == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("sipdispatch: dispatcher ")
    assert message in err


def test_database_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, _, err = run_cli(
        capsys, "dispatcher", "--db-url", f"mysql://root@127.0.0.1:{port}/x", "show"
    )
    assert status == 1 and len(err.splitlines()) == 1
    assert f"cannot open mysql://root@127.0.0.1:{port}/x table dispatcher" in err


def test_store_from_the_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "sd.toml"
    config.write_text(f'[dispatcher]\nlist_file = "{tmp_path / "gw.list"}"\n')
    assert run_cli(capsys, "dispatcher", "--config", str(config), "add", "3", "sip:gw3")[0] == 0
    assert (tmp_path / "gw.list").read_text() == "3 sip:gw3 0 0\n"


def test_rpc_and_reload_without_a_proxy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, _, err = run_cli(capsys, "rpc", "--admin", f"127.0.0.1:{port}", "dispatcher.list")
    assert status == 1
    assert (
        err == f"sipdispatch: rpc: proxy not running at http://127.0.0.1:{port} "
        f"(connection refused); admin URL 127.0.0.1:{port} given with --admin\n"
    )
    config = tmp_path / "sd.toml"
    config.write_text(f'[admin]\nlisten = "127.0.0.1:{port}"\n[dispatcher]\nlist_file = "x"\n')
    status, _, err = run_cli(capsys, "dispatcher", "--config", str(config), "reload")
    assert status == 1
    assert err.startswith(
        f"sipdispatch: dispatcher reload: proxy not running at http://127.0.0.1:{port}"
    )
    assert err.endswith(
        f"; admin URL http://127.0.0.1:{port} from [admin] listen in {config}, "
        "choose another with --admin URL\n"
    )
