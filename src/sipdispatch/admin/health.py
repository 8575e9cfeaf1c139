"""``GET /health``: is this proxy serving, and can every routed set take a call?

For a keepalived check script or a Kubernetes probe: HTTP 200 with a one-line JSON
summary while the proxy serves and every set a ``[[route]]`` rule names has at least
one usable destination (not inactive, not disabled), 503 with the same summary
otherwise, saying what is wrong.
"""

from __future__ import annotations

import time
from typing import Any, Final

from sipdispatch.admin.protocol import AdminTarget

HEALTHY: Final = 200
UNHEALTHY: Final = 503


def health(target: AdminTarget) -> tuple[int, dict[str, Any]]:
    """The HTTP status and the summary."""
    problems: list[str] = []
    started = target.started
    serving = started is not None and target.traffic() is not None
    if not serving:
        problems.append("not serving yet")
    elif target.draining:
        problems.append("stopping: new calls get 503")
    router = target.dispatcher.router
    sets: dict[str, dict[str, int]] = {}
    for set_id in sorted({rule.set_id for rule in router.routes}):
        dset = router.sets.get(set_id)
        dests = dset.dests if dset is not None else ()
        usable = sum(1 for d in dests if d.is_usable())
        sets[str(set_id)] = {"destinations": len(dests), "usable": usable}
        if not dests:
            problems.append(f"set {set_id} has no destination")
        elif not usable:
            problems.append(f"set {set_id} has no usable destination")
    summary: dict[str, Any] = {
        "status": "ok" if not problems else "unavailable",
        "uptime": round(time.time() - started, 1) if started is not None else 0,
        "sets": sets,
        "calls_in_progress": sum(d.dlg_load for d in router.sets.destinations()),
    }
    if problems:
        summary["problems"] = problems
    return (HEALTHY if not problems else UNHEALTHY), summary
