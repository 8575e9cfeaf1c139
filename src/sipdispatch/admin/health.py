"""``GET /health``: is this proxy serving, and can every routed set take a call?

For a keepalived check script or a Kubernetes probe: HTTP 200 with a one-line JSON
summary while the proxy serves and every ``[[route]]`` rule has at least one usable
destination (not inactive, not disabled) in its set or in one of its fallback sets,
503 with the same summary otherwise, saying what is wrong. A cluster node adds the
Redis it uses and whether it is connected (``cluster``), which does not change the
status: routing goes on without Redis.
"""

from __future__ import annotations

import time
from typing import Any, Final

from sipdispatch.admin.protocol import AdminTarget, cluster_of

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

    def usable_in(set_id: int) -> int:
        dset = router.sets.get(set_id)
        dests = dset.dests if dset is not None else ()
        usable = sum(1 for d in dests if d.is_usable())
        sets[str(set_id)] = {"destinations": len(dests), "usable": usable}
        return usable

    for rule in sorted(router.routes, key=lambda r: r.set_id):
        own = usable_in(rule.set_id)
        others = [set_id for set_id, _ in rule.fallback]  # (set, algorithm) pairs
        usable = [usable_in(f) for f in others]  # every set summarised
        if own or any(usable):
            continue  # the rule's calls have somewhere to go (its set or a fallback set)
        told = sets[str(rule.set_id)]
        why = "no destination" if not told["destinations"] else "no usable destination"
        if others:
            why += f", nor its fallback sets ({', '.join(str(f) for f in others)})"
        problem = f"set {rule.set_id} has {why}"
        if problem not in problems:
            problems.append(problem)
    summary: dict[str, Any] = {
        "status": "ok" if not problems else "unavailable",
        "uptime": round(time.time() - started, 1) if started is not None else 0,
        "sets": sets,
        "calls_in_progress": sum(d.dlg_load for d in router.sets.destinations()),
    }
    cluster = cluster_of(target)
    if cluster is not None:
        # Informative only: a node routes on the state it knows while Redis is away.
        redis = cluster.redis_info()
        summary["cluster"] = {"redis_up": cluster.up, "redis": redis["MASTER"]}
    if problems:
        summary["problems"] = problems
    return (HEALTHY if not problems else UNHEALTHY), summary
