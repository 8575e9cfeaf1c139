"""bench/run.sh starts the bench package from any directory and keeps its options.

BENCHMARKS.md records each run by its bench/run.sh command line, so the options
stay as they were; a bad option fails before anything is started.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

RUN_SH = Path(__file__).resolve().parent.parent / "bench" / "run.sh"
OPTIONS = {
    "--all",
    "--caller-sockets",
    "--calls",
    "--compare",
    "--floor",
    "--gc-stats",
    "--hep",
    "--help",
    "--kamailio",
    "--kamailio-modules",
    "--keep",
    "--ladder",
    "--max-rate",
    "--memory",
    "--memory-calls",
    "--memory-rate",
    "--memory-settle",
    "--no-capture",
    "--only",
    "--port-base",
    "--profile",
    "--python",
    "--rate",
    "--redis-url",
    "--repeat",
    "--search-cap",
    "--search-seconds",
    "--search-start",
    "--settle",
    "--sipp",
    "--workers",
    "--cluster",
    "--algorithm",
    "--write",
}


def _run_sh(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(RUN_SH), *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_sh_help_lists_every_option_from_any_directory(tmp_path: Path) -> None:
    done = _run_sh("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: bench/run.sh ")
    assert set(re.findall(r"--[a-z][a-z-]*", done.stdout)) == OPTIONS
    assert list(tmp_path.iterdir()) == []


def test_run_sh_rejects_an_unknown_option(tmp_path: Path) -> None:
    done = _run_sh("--nope", cwd=tmp_path)
    assert done.returncode == 2
    assert "unrecognized arguments: --nope" in done.stderr
