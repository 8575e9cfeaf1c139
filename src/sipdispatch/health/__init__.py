"""Destination health: the pure state machine (:mod:`.state`) and the OPTIONS
prober (:mod:`.prober`). See docs/health.md."""

from sipdispatch.health.prober import Prober
from sipdispatch.health.state import (
    PROBE_ALL,
    PROBE_INACTIVE,
    PROBE_NONE,
    PROBE_ONLYFLAGGED,
    ProbingPolicy,
    StateChange,
    Transition,
    update_state,
)

__all__ = [
    "PROBE_ALL",
    "PROBE_INACTIVE",
    "PROBE_NONE",
    "PROBE_ONLYFLAGGED",
    "Prober",
    "ProbingPolicy",
    "StateChange",
    "Transition",
    "update_state",
]
