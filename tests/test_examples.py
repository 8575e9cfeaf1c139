"""The shipped examples stay valid."""

from __future__ import annotations

from pathlib import Path

from sipdispatch.config import load_config
from sipdispatch.dispatcher.listfile import parse_list

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_config_loads_with_two_routes() -> None:
    config = load_config(EXAMPLES / "sipdispatch.toml")
    assert [r.set_id for r in config.routes] == [2, 1]
    assert config.routes[1].algorithm == 9
    assert config.dispatcher.probing_threshold == 10


def test_example_dispatcher_list_parses_with_prefixes_and_weights() -> None:
    path = EXAMPLES / "dispatcher.list"
    dests = parse_list(path.read_text(), str(path))
    assert [d.setid for d in dests] == [1, 1, 2, 2]
    assert [d.attrs.weight for d in dests[:2]] == [75, 25]
    assert dests[2].attrs.prefix == "011" and dests[2].transport == "tcp"


def test_the_sipp_scenarios_of_the_readme_are_the_ones_the_tests_and_the_bench_run() -> None:
    root = EXAMPLES.parent
    pairs = {
        "uac_call.xml": root / "tests" / "integration" / "scenarios" / "uac_call.xml",
        "uas.xml": root / "bench" / "sipp" / "uas.xml",
    }
    for name, tested in pairs.items():
        assert (EXAMPLES / "sipp" / name).read_bytes() == tested.read_bytes(), name


def test_run_and_test_share_one_install_step() -> None:
    root = EXAMPLES.parent
    for script in ("run.sh", "test.sh"):
        text = (root / script).read_text()
        assert "scripts/venv.sh" in text and "pip install" not in text, script
