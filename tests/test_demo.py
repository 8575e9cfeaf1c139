"""``sipdispatch demo``: the story runs end to end and says what happened; Ctrl-C stops it.

The demo is run as a separate Python process (as the command line runs it) for the
full story and for SIGINT, and in-process for the terminal (``\\r``) rendering and
for a step whose expectation fails. Every wait is a poll with a generous deadline.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sipdispatch import demo
from sipdispatch.demo import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, DemoOptions, run_demo

pytestmark = pytest.mark.timeout(180)

SRC = Path(__file__).resolve().parent.parent / "src"
RUNNER = "import sys; from sipdispatch.demo import main; raise SystemExit(main(sys.argv[1:]))"
RUN_DEADLINE = 120.0
"""Seconds a whole --fast run may take on a loaded machine (it takes about 8)."""
PROGRESS = re.compile(r"^\s+\[[#.]+\]\s+\d+/\d+\s+MG1 \d+\s+MG2 \d+\s+failed \d+", re.M)
ROW = re.compile(r"^\s+(\d) (.+?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)(?:\s+.*)?$")


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["TMPDIR"] = str(tmp)  # the demo's temporary directory goes here: checked empty after
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _start(tmp: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(tmp),
        text=True,
    )


class _Reader:
    """Collects a pipe's lines in a thread so the test can poll them."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: io.TextIOBase) -> None:
        for line in stream:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _section(output: str, start: str, end: str | None) -> str:
    """The output from the line starting with ``start`` up to the one starting with ``end``."""
    begin = output.index(start)
    stop = output.index(end, begin) if end is not None else len(output)
    return output[begin:stop]


def _rows(output: str) -> dict[int, tuple[int, int, int, int]]:
    """The final table: step number -> (calls, MG1, MG2, failed)."""
    table = _section(output, "Where the calls went", "Destinations at the end")
    rows: dict[int, tuple[int, int, int, int]] = {}
    for line in table.splitlines():
        m = ROW.match(line)
        if m:
            rows[int(m[1])] = (int(m[3]), int(m[4]), int(m[5]), int(m[6]))
    return rows


def test_fast_run_tells_every_step_with_plausible_numbers(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--fast")
    try:
        out, err = proc.communicate(timeout=RUN_DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_OK, f"stdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in out + err
    assert err == "", err
    assert list(tmp_path.iterdir()) == [], "the temporary directory was not removed"

    # The start: both gateways get AP from their first answered ping.
    start = _section(out, "Start", "Step 1/4")
    assert re.search(r"MG1\s+AX -> AP", start) and re.search(r"MG2\s+AX -> AP", start), start

    # Step 1: 100 calls split 75/25 (the weight table makes it exact; allow a little).
    step1 = _section(out, "Step 1/4", "Step 2/4")
    assert PROGRESS.search(step1), step1
    rows = _rows(out)
    assert sorted(rows) == [1, 2, 3, 4], out
    calls, mg1, mg2, failed = rows[1]
    assert (calls, failed) == (100, 0) and mg1 + mg2 == 100
    assert 65 <= mg1 <= 85, rows[1]

    # Step 2: MG1 misses pings, goes TP then IP; every call goes to MG2.
    step2 = _section(out, "Step 2/4", "Step 3/4")
    assert re.search(r"MG1\s+AP -> TP\s+\(no reply to OPTIONS \(408\), 1/2 missed\)", step2), step2
    assert re.search(r"MG1\s+TP -> IP\s+\(no reply to OPTIONS \(408\), 2 missed in a row\)", step2)
    calls, mg1, mg2, failed = rows[2]
    assert calls >= 10 and (mg1, mg2, failed) == (0, calls, 0), rows[2]

    # Step 3: MG1 answers pings again, back to AP, and the split resumes.
    step3 = _section(out, "Step 3/4", "Step 4/4")
    assert re.search(r"MG1\s+IP -> AP\s+\(OPTIONS answered 200, 2 answered in a row\)", step3)
    calls, mg1, mg2, failed = rows[3]
    assert (calls, failed) == (100, 0) and mg1 + mg2 == 100
    assert 65 <= mg1 <= 85, rows[3]

    # Step 4: MG1's 404s are retried on MG2 (the caller never fails), MG1 marked IP.
    step4 = _section(out, "Step 4/4", "Where the calls went")
    assert re.search(r"MG1\s+AP -> IP\s+\(call failed with 404\)", step4), step4
    assert "the caller saw no 404" in step4
    calls, mg1, mg2, failed = rows[4]
    assert calls >= 30 and (mg1, mg2, failed) == (0, calls, 0), rows[4]
    # ... and it is brought back: AP at the end.
    assert re.search(r"MG1\s+IP -> AP", _section(step4, "End", None)), step4

    # The final destinations, both AP, with latency columns.
    dests = _section(out, "Destinations at the end", "demo completed")
    assert "AVG" in dests and "TIMEOUT" in dests
    for label, weight in (("MG1", 75), ("MG2", 25)):
        assert re.search(rf"{label} sip:127\.0\.0\.1:\d+\s+AP\s+0\s+weight={weight}", dests), dests
    assert re.search(r"^demo completed in [\d.]+ s: every step as expected$", out, re.M), out


def test_ctrl_c_stops_cleanly_with_status_130(tmp_path: Path) -> None:
    proc = _start(tmp_path)  # paced: still running well after the first progress line
    reader = _Reader(proc.stdout)  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 60
        while not PROGRESS.search(reader.text()):
            assert proc.poll() is None, f"exited early:\n{reader.text()}"
            assert time.monotonic() < deadline, f"no progress line:\n{reader.text()}"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    assert proc.stderr is not None
    err = proc.stderr.read()
    out = reader.text()
    assert status == EXIT_INTERRUPTED, f"stdout:\n{out}\nstderr:\n{err}"
    assert err == "demo interrupted\n", err
    assert "Traceback" not in out
    assert "demo completed" not in out
    assert list(tmp_path.iterdir()) == [], "the temporary directory was not removed"


def test_terminal_progress_is_one_redrawn_line() -> None:
    out = io.StringIO()
    status = asyncio.run(run_demo(DemoOptions(calls=20, fast=True), out, tty=True))
    text = out.getvalue()
    assert status == EXIT_OK, text
    assert "\r  [" in text  # the progress line is redrawn in place
    assert re.search(r"\r  \[#+\] 20/20\s+MG1 \d+\s+MG2 \d+\s+failed 0\s*\n", text), text
    assert "demo completed" in text


def test_a_failed_expectation_exits_1_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    original = demo.Demo.step_both_up

    async def both_reject(self: demo.Demo) -> None:
        for gateway in self.gateways.values():
            gateway.mode = "reject404"
        await original(self)

    monkeypatch.setattr(demo.Demo, "step_both_up", both_reject)
    out, err = io.StringIO(), io.StringIO()
    status = asyncio.run(run_demo(DemoOptions(calls=8, fast=True), out, tty=False, err=err))
    assert status == EXIT_FAILED, out.getvalue()
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("demo failed: step 1 (both up): "), lines
    assert "of 8 calls failed" in lines[0]
    assert "Where the calls went" in out.getvalue()  # the table of what was done so far


def test_options_and_arguments() -> None:
    assert DemoOptions().step_calls == 200
    assert DemoOptions(fast=True).step_calls == 100
    assert (DemoOptions(calls=40).outage_calls, DemoOptions(calls=40).reject_calls) == (10, 30)
    assert (DemoOptions(calls=400).outage_calls, DemoOptions(calls=400).reject_calls) == (100, 100)
    for bad in (["--calls", "0"], ["--calls", "x"], ["--nope"]):
        with pytest.raises(SystemExit) as exc:
            demo.main(bad)
        assert exc.value.code == 2


def test_demo_is_a_subcommand_of_the_sipdispatch_command() -> None:
    from sipdispatch import demo as demo_module
    from sipdispatch.cli import build_parser

    args = build_parser().parse_args(["demo", "--fast", "--calls", "8"])
    assert args.func is demo_module.main_from_args
    assert (args.fast, args.calls, args.verbose) == (True, 8, False)
