"""A bounded coverage-guided fuzz run of the parser and the proxy core (fuzz/sip_core.py
says what must hold for every input). About a minute; the 10^6-input run and its figures
are in docs/proxy.md."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(300)


def test_a_hundred_thousand_fuzzed_inputs_find_no_exception_no_bad_output_and_no_leftover(
    tmp_path: Path,
) -> None:
    env = dict(os.environ, FUZZ_CORPUS=str(tmp_path / "corpus"), FUZZ_ARTIFACTS=f"{tmp_path}/")
    done = subprocess.run(
        [str(REPO / "fuzz" / "run.sh"), "-runs=100000", "-seed=1", "-max_len=8192",
         "-max_total_time=120", "-rss_limit_mb=2048"],
        capture_output=True, text=True, env=env, timeout=280, check=False,
    )  # fmt: skip
    tail = done.stderr[-4000:]
    assert done.returncode == 0, tail
    assert "Done" in done.stderr and "cov:" in done.stderr, tail
    assert not list(tmp_path.glob("crash-*")), tail
