"""``bench/run.sh`` runs this file (``python bench/__main__.py ARGS``); ``python -m
bench ARGS`` from the repo root does the same."""

import sys
from pathlib import Path

if not __package__:
    # Run as a file: bench/ is first on the path; the repo root has to be instead, for
    # the package itself and for the sipp helper in tests/integration.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.cli import main

sys.exit(main())
