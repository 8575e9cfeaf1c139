"""The command line as people type it: options after the action, ``| head``, help texts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sipdispatch.cli import EXIT_BROKEN_PIPE, build_parser, main
from tests.integration.proxyctl import proxy_env


def test_store_options_are_taken_after_the_action(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    listing = tmp_path / "d.list"
    assert main(["dispatcher", "add", "1", "sip:127.0.0.1:5071", "--list-file", str(listing)]) == 0
    config = tmp_path / "sd.toml"
    config.write_text(f'[dispatcher]\nlist_file = "{listing}"\n')
    capsys.readouterr()
    assert main(["dispatcher", "show", "--config", str(config)]) == 0
    assert "sip:127.0.0.1:5071" in capsys.readouterr().out
    # Before the action works as it always did; the value given before is kept.
    assert main(["dispatcher", "--list-file", str(listing), "show", "--json"]) == 0
    assert '"destination": "sip:127.0.0.1:5071"' in capsys.readouterr().out


def test_two_stores_are_refused_wherever_they_are_given(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dispatcher", "--list-file", "a.list", "show", "--db-url", "sqlite:///b.db"])
    assert exited.value.code == 2


def test_admin_options_are_taken_after_the_method_and_the_action(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["rpc", "core.version", "--admin", "http://127.0.0.1:1", "--timeout", "2"]) == 1
    assert "admin URL http://127.0.0.1:1 given with --admin" in capsys.readouterr().err
    assert main(["dispatcher", "reload", "--admin", "http://127.0.0.1:1"]) == 1
    assert "admin URL http://127.0.0.1:1 given with --admin" in capsys.readouterr().err


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    listing = tmp_path / "d.list"
    listing.write_text("".join(f"1 sip:127.0.0.1:{6000 + i} 0 0\n" for i in range(5000)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipdispatch", "dispatcher", "show", "--list-file", str(listing)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=proxy_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does once it has its line
    err = proc.stderr.read().decode()
    assert proc.wait(60) == EXIT_BROKEN_PIPE
    assert err == ""


def test_every_action_has_a_description_and_every_argument_a_help() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    parsers = dict(commands)
    dispatcher = commands["dispatcher"]
    actions = dispatcher._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    parsers.update({f"dispatcher {name}": p for name, p in actions.items()})
    for name, sub in parsers.items():
        assert sub.description, f"{name} has no description"
        for action in sub._actions:
            if action.dest not in ("help", "action", "command") and action.help != "==SUPPRESS==":
                assert action.help, f"{name} {action.dest} has no help"
