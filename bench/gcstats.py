"""Run sipdispatch and record how long its garbage collections take (``--gc-stats``).

    python bench/gcstats.py OUT.json run --config FILE

is ``python -m sipdispatch run --config FILE`` with a ``gc.callbacks`` hook that times
every collection; at exit (SIGTERM stops sipdispatch cleanly) OUT.json gets the list
of collections as ``[generation, start, seconds, objects freed]``, ``start`` on the system-wide
monotonic clock (``time.monotonic()``) so that the bench can keep those that fell
into its measurement window. A full (generation 2) collection walks
every live object, so with many transactions in flight it stops the event loop for a
long time: this shows how much of the CPU per call and of the p99 latency that is.
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
import time
from typing import Any


def main() -> int:
    out_path, argv = sys.argv[1], sys.argv[2:]
    events: list[tuple[int, float, float]] = []
    started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.monotonic()
        else:
            took = time.monotonic() - started[0]
            events.append((int(info["generation"]), started[0], took, int(info["collected"])))

    def dump() -> None:
        with open(out_path, "w") as f:
            json.dump({"collections": events}, f)

    gc.callbacks.append(on_gc)
    atexit.register(dump)
    from sipdispatch.cli import main as sipdispatch_main

    status: int = sipdispatch_main(argv)
    return status


if __name__ == "__main__":
    sys.exit(main())
