"""bench's report keeps the format of the results BENCHMARKS.md already holds.

Figures are the median with the range over the repeated runs, percentiles are
nearest-rank, a table prints as aligned text and as a Markdown table under a
``####`` title with its notes as a list, and ``--write`` appends one ``###`` block
(date, command, machine lines, sections) to the file.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from bench import common, report
from bench.fixedrate import CpuRun, Options, describe_run
from bench.spread import Spread, percentile
from bench.traffic import UacResult


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7
    assert math.isnan(percentile([], 50))


def test_spread_shows_the_median_and_the_range_without_nan() -> None:
    assert Spread([3.0, 1.0, 2.0]).show() == "2 (1..3)"
    assert Spread([1.25]).show("{:.1f}") == "1.2"
    assert Spread([float("nan"), 4.0]).show() == "4"
    assert Spread([float("nan")]).show() == "-"
    assert math.isnan(Spread([]).median)


def test_a_table_prints_aligned_and_as_markdown() -> None:
    table = (["proxy", "CPU µs/call"], [["sipdispatch", "380"], ["floor", "140"]])
    assert report.render_text(table).splitlines() == [
        "proxy        CPU µs/call",
        "-----------  -----------",
        "sipdispatch  380",
        "floor        140",
    ]
    assert report.render_md(table).splitlines() == [
        "| proxy | CPU µs/call |",
        "|---|---|",
        "| sipdispatch | 380 |",
        "| floor | 140 |",
    ]
    out = io.StringIO()
    md = report.emit(out, "Fixed rate: CPU per call", table, ["a note"])
    assert out.getvalue().startswith("\nFixed rate: CPU per call\n\nproxy ")
    assert out.getvalue().endswith("\n  a note\n")
    assert md.startswith("#### Fixed rate: CPU per call\n\n| proxy | CPU µs/call |\n")
    assert md.endswith("\n\n- a note\n")


def _run(proxy: str, cpu_s: float, ok: int, sys_s: float = 0.0) -> CpuRun:
    uac = UacResult(rate=500, calls=500, ok=ok, failed=500 - ok, elapsed=1.0)
    return CpuRun(proxy, uac, cpu_s=cpu_s, sys_s=sys_s, pressure=0.1)


def test_the_cpu_row_has_the_ratio_to_kamailio_and_the_failures() -> None:
    runs = [
        _run("sipdispatch", 0.40, 500, 0.1),
        _run("sipdispatch", 0.50, 498, 0.1),
        _run("kamailio", 0.45, 500, 0.2),
        _run("direct", float("nan"), 500),
    ]
    head, rows = report.cpu_table(runs, Options(500, 500, 2, 0.0, False))
    assert head == [
        "proxy",
        "CPU µs/call",
        "ratio to Kamailio",
        "kernel share",
        "failed/calls",
        "machine CPU pressure",
    ]
    assert rows[0] == [
        "sipdispatch",
        "902 (800..1004)",
        "1.00",
        "22 (20..25) %",
        "2/1000",
        "10 (10..10) %",
    ]
    assert rows[1][:3] == ["kamailio", "900", "1.00"]
    assert len(rows) == 2  # the direct calls have no CPU row
    assert describe_run(runs[0]).startswith("ok=500 failed=0 retrans=0 achieved=0/s cpu=0.40s")


def test_workers_runs_have_a_row_each_in_order_with_each_workers_share_of_the_calls() -> None:
    one = _run("sipdispatch-1w", 0.40, 500)
    two = _run("sipdispatch-2w", 0.44, 500)
    two.split = {"0": 240.0, "1": 260.0}
    again = _run("sipdispatch-2w", 0.46, 500)
    again.split = {"0": 260.0, "1": 240.0}
    runs = [two, _run("kamailio", 0.45, 500), one, again]
    head, rows = report.cpu_table(runs, Options(500, 500, 2, 0.0, False))
    assert head[-1] == "calls per worker"
    assert [r[0] for r in rows] == ["sipdispatch-1w", "sipdispatch-2w", "kamailio"]
    assert rows[1][-1] == "50 / 50 %"
    assert rows[0][-1] == "-"  # one worker: no split
    assert (common.workers_of("sipdispatch-2w"), common.base_of("sipdispatch-2w")) == (
        2,
        "sipdispatch",
    )
    assert common.workers_of("kamailio") == 1


def test_write_appends_one_block_to_benchmarks_md(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\nearlier results\n")
    monkeypatch.setattr(report, "BENCHMARKS_MD", target)
    report.write_benchmarks(["- machine: `x`"], ["--only", "sipdispatch"], ["#### T\n\nrow\n"])
    text = target.read_text()
    assert text.startswith("# Benchmarks\n\nearlier results\n\n### ")
    block = text.split("\n### ", 1)[1].splitlines()
    assert block[1:] == [
        "",
        "`bench/run.sh --only sipdispatch`",
        "",
        "- machine: `x`",
        "",
        "#### T",
        "",
        "row",
    ]
