"""Finding what the bench needs: sipp, Kamailio with its dispatcher module and a Python
that can import sipdispatch. It installs nothing; a missing tool is named with the
command that installs it."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .common import REPO, BenchError, log


def default_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def check_tools(args: argparse.Namespace) -> None:
    """Find sipp, kamailio and a Python that can import sipdispatch; install nothing."""
    sipp = shutil.which(args.sipp)
    if sipp is None:
        raise BenchError(
            "sipp is not installed; install it with: apt-get install sip-tester "
            "(or pass its path with --sipp)"
        )
    args.sipp = sipp
    kam = shutil.which(args.kamailio) if args.kamailio else None
    args.kamailio_bin = kam
    if kam is None:
        msg = "kamailio is not installed; install it with: apt-get install kamailio"
        if args.only == "kamailio":
            raise BenchError(msg)
        log(msg + " (skipping Kamailio)")
    elif not Path(args.kamailio_modules, "dispatcher.so").exists():
        raise BenchError(
            f"no dispatcher.so in {args.kamailio_modules}; pass the module directory "
            "with --kamailio-modules"
        )
    if args.only == "kamailio":
        return
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}

    def imports(module: str) -> str | None:
        """None if ``module`` imports with --python, else the last line of the error."""
        try:
            done = subprocess.run(
                [args.python, "-c", f"import {module}"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        if done.returncode == 0:
            return None
        return (done.stderr.strip().splitlines() or ["failed"])[-1]

    why = imports("sipdispatch.server")
    if why is not None:
        raise BenchError(
            f"{args.python} cannot import sipdispatch ({why}); run ./run.sh --help once "
            "(it creates .venv), or pip install -e ., or pass --python"
        )
    if imports("uvloop") is not None:
        log(f"warning: no uvloop for {args.python}; sipdispatch runs on the default asyncio loop")
