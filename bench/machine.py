"""What the results were taken on: the machine, the tools and the measured source."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import re
import shutil
from pathlib import Path

from .common import REPO, run_tool
from .harness import Bench


def machine_info(bench: Bench) -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    py = run_tool([bench.python, "-c", "import platform; print(platform.python_version())"])
    uv = run_tool([bench.python, "-c", "import uvloop; print(uvloop.__version__)"])
    sipp_v = run_tool([bench.args.sipp, "-v"])
    m = re.search(r"SIPp v?(\S+?)\.?(\s|$)", sipp_v)
    kam = "Kamailio not installed"
    if bench.kamailio:
        km = re.search(r"kamailio (\S+)", run_tool([bench.kamailio, "-v"]))
        kam = f"Kamailio {km.group(1) if km else '?'}"
    load = Path("/proc/loadavg").read_text().split()[:3]
    uv_text = uv if re.fullmatch(r"[0-9.]+", uv) else "not installed"
    return [
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: `{run_tool(['uname', '-a']) or ' '.join(platform.uname())}`",
        f"- CPU: {cpu}; nproc {os.cpu_count()}; load average at start {' '.join(load)}",
        f"- python {py or '?'} (`{bench.python}`), uvloop {uv_text}",
        f"- sipp {m.group(1) if m else '?'}; {kam}",
        f"- sipdispatch source: {source_version()}",
    ]


def snapshot_source(workdir: Path) -> Path:
    """Copy src/ so every run of this invocation measures the same code (others edit it)."""
    dest = workdir / "src"
    shutil.copytree(REPO / "src", dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    os.environ["PYTHONPATH"] = str(dest)
    return dest


def source_version() -> str:
    """Commit of the measured tree (read-only git), marked dirty if src/ has changes."""
    head = run_tool(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if not re.fullmatch(r"[0-9a-f]{4,40}", head):
        return "unknown"
    dirty = run_tool(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
    return head + (" + uncommitted changes in src/" if dirty else "")
