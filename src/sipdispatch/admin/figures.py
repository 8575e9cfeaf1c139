"""The figures of calls and traffic, per process, and the whole proxy's from them.

Each process counts what it handles: per destination the calls it sent there and how
they ended (:class:`CallFigures` samples them once a second for the console's recent
window), and its SIP counters (the metrics). With several worker processes the admin
worker serves one view of them all: it asks the others for theirs (``gather``) and
adds them up here -- :func:`merge_rows` for the console, :func:`merge_metrics` for
``/metrics`` (a family of the shared state, the same on every worker, is the admin
worker's own; every other is summed, sample by sample: the ``sipdispatch_worker_*``
families carry a ``worker`` label, so each worker's stays its own).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from sipdispatch.admin.protocol import AdminTarget
from sipdispatch.dispatcher.destination import SETUP_RING, Destination

TICK: Final = 1.0
"""Seconds between two samples at most."""
HISTORY: Final = 120
"""Latency samples kept per destination (one per second at most)."""
WINDOW: Final = 60.0
"""Seconds of "recent" call outcomes and set-up times."""
CPS_WINDOW: Final = 10.0
"""Seconds over which calls per second are averaged."""


@dataclass(frozen=True, slots=True)
class _Count:
    """A destination's counters at one moment (the console's window of recent calls)."""

    at: float
    dispatched: int
    answered: int
    rejected: int
    timeout: int
    setups: int


@dataclass
class _Sample:
    """What is remembered of one destination between two samples."""

    history: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    counts: deque[_Count] = field(default_factory=deque)
    """One a second, the oldest at most :data:`WINDOW` old."""
    cps: float = 0.0


def _count(dest: Destination, now: float) -> _Count:
    return _Count(
        now,
        dest.dispatched,
        dest.calls_answered,
        sum(dest.calls_rejected),
        dest.calls_timeout,
        dest.setup_count,
    )


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def setup_summary(times: list[float]) -> dict[str, Any] | None:
    """``{"n", "p50", "p90"}`` (ms) of set-up times (seconds); None for none."""
    if not times:
        return None
    ordered = sorted(times)
    return {
        "n": len(ordered),
        "p50": round(_percentile(ordered, 0.5) * 1000, 1),
        "p90": round(_percentile(ordered, 0.9) * 1000, 1),
    }


def _window_setups(dest: Destination, counts: deque[_Count]) -> list[float]:
    """The set-up times of the calls answered or rejected over the window (the newest
    :data:`SETUP_RING` at most)."""
    now = dest.setup_count
    base = counts[0].setups if counts else now
    setups = min(now - base, SETUP_RING)
    ring = dest.setup_times
    return [ring[(now - 1 - i) % SETUP_RING] for i in range(setups)]


def recent(dest: Destination, counts: deque[_Count]) -> dict[str, Any]:
    """Calls answered, rejected and timed out over the window, and the median and 90th
    percentile set-up time (ms) of those answered or rejected (the newest
    :data:`SETUP_RING` at most)."""
    now = _count(dest, 0.0)
    base = counts[0] if counts else now
    return {
        "answered": now.answered - base.answered,
        "rejected": now.rejected - base.rejected,
        "timeout": now.timeout - base.timeout,
        "setup": setup_summary(_window_setups(dest, counts)),
    }


def dest_key(dest: Destination) -> str:
    """A destination's key in the rows one worker hands another: ``"set uri"``."""
    return f"{dest.setid} {dest.uri}"


class CallFigures:
    """Each destination's recent calls and latency, sampled once a second at most."""

    def __init__(self) -> None:
        self._samples: dict[tuple[int, str], _Sample] = {}
        self._sampled_at: float | None = None
        self.seq = 0
        """Samples taken so far (a stream sends each page only the newest points)."""

    def sample(self, dests: Iterable[Destination], now: float) -> None:
        """Once a second at most: each destination's latency estimate and calls per
        second since the last sample."""
        last = self._sampled_at
        if last is not None and now - last < TICK * 0.9:
            return
        self._sampled_at = now
        self.seq += 1
        seen: set[tuple[int, str]] = set()
        for dest in dests:
            key = (dest.setid, dest.uri)
            if key in seen:
                continue
            seen.add(key)
            sample = self._samples.get(key)
            if sample is None:
                sample = self._samples[key] = _Sample()
            counts = sample.counts
            counts.append(_count(dest, now))
            while len(counts) > 1 and counts[1].at <= now - WINDOW:
                counts.popleft()
            # calls per second: from the newest count at least CPS_WINDOW old
            base = counts[0]
            for old in reversed(counts):
                if old.at <= now - CPS_WINDOW:
                    base = old
                    break
            if now > base.at:
                sample.cps = max(0, dest.dispatched - base.dispatched) / (now - base.at)
            stats = dest.latency
            sample.history.append(round(stats.estimate, 1) if stats.count else None)
        for key in [k for k in self._samples if k not in seen]:
            del self._samples[key]

    def of(self, dest: Destination) -> _Sample:
        """What was sampled of ``dest`` (empty before its first sample)."""
        return self._samples.get((dest.setid, dest.uri)) or _Sample()

    def row(self, dest: Destination, in_progress: int) -> dict[str, Any]:
        """``dest``'s calls as this process saw them: what :func:`merge_rows` adds up."""
        sample = self.of(dest)
        counts = sample.counts
        figures = recent(dest, counts)
        return {
            "dispatched": dest.dispatched,
            "cps": sample.cps,
            "in_progress": in_progress,
            "answered": figures["answered"],
            "rejected": figures["rejected"],
            "timeout": figures["timeout"],
            "setups": _window_setups(dest, counts),
        }

    def rows(self, dests: Iterable[Destination], in_progress: dict[int, int]) -> dict[str, Any]:
        """Every destination's :meth:`row` by :func:`dest_key`."""
        return {dest_key(d): self.row(d, in_progress.get(id(d), 0)) for d in dests}


ROW_SUMS: Final = ("dispatched", "cps", "in_progress", "answered", "rejected", "timeout")


def merge_rows(own: dict[str, Any], others: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The whole proxy's rows: every worker's counts added up, their set-up times
    together."""
    merged = {key: {**row, "setups": list(row["setups"])} for key, row in own.items()}
    for rows in others:
        for key, row in rows.items():
            mine = merged.get(key)
            if mine is None:
                continue  # a destination the admin worker does not have (a reload between)
            for name in ROW_SUMS:
                mine[name] += row.get(name, 0)
            mine["setups"].extend(row.get("setups", ()))
    return merged


def in_progress_of(target: AdminTarget) -> dict[int, int]:
    """Branches still waiting for their final response, by ``id()`` of their
    destination."""
    counts: dict[int, int] = {}
    traffic = target.traffic()
    for handle in traffic.pending_branch_handles if traffic is not None else ():
        if isinstance(handle, Destination):
            counts[id(handle)] = counts.get(id(handle), 0) + 1
    return counts


# -- metrics ----------------------------------------------------------------------------

SHARED_FAMILIES: Final = frozenset(
    {
        "sipdispatch_build",
        "sipdispatch_workers",
        "sipdispatch_start_time_seconds",
        "sipdispatch_uptime_seconds",
        "sipdispatch_destination_state",
        "sipdispatch_destination_probing",
        "sipdispatch_destination_usable",
        "sipdispatch_destination_latency_average_seconds",
        "sipdispatch_destination_latency_stdev_seconds",
        "sipdispatch_destination_latency_estimate_seconds",
        "sipdispatch_destination_latency_max_seconds",
        "sipdispatch_destination_ping_timeouts",
        "sipdispatch_destination_calls_active",
        "sipdispatch_sets",
        "sipdispatch_set_destinations",
        "sipdispatch_set_destinations_usable",
        "sipdispatch_destination_state_changes",
        "sipdispatch_ping_active",
        "sipdispatch_reloads",
        "sipdispatch_rpc_calls",
        "sipdispatch_console_logins",
        "sipdispatch_cluster_redis_up",
        "sipdispatch_cluster_nodes",
        "sipdispatch_cluster_redis_master",
        "process_max_fds",
        "process_start_time_seconds",
    }
)
"""Families of what every worker has the same of (shared state, or what only the
admin worker does): the admin worker's own are shown."""


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _families(text: str) -> list[Metric]:
    return list(text_string_to_metric_families(text))


def merge_metrics(own: str, others: Sequence[str]) -> bytes:
    """The exposition of the whole proxy from each worker's: the admin worker's own
    ``own`` first (its families in its order), the others' ``others``."""
    merged = _families(own)
    by_name = {family.name: family for family in merged}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], int]] = {}
    for family in merged:
        sums[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(family.samples)
        }
    for text in others:
        for family in _families(text):
            mine = by_name.get(family.name)
            if mine is None:
                mine = Metric(family.name, family.documentation, family.type)
                by_name[family.name] = mine
                merged.append(mine)
                sums[family.name] = {}
            elif family.name in SHARED_FAMILIES:
                continue
            index = sums[family.name]
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                at = index.get(key)
                if at is None:
                    index[key] = len(mine.samples)
                    mine.samples.append(s)
                else:
                    old = mine.samples[at]
                    mine.samples[at] = old._replace(value=old.value + s.value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged))
    return generate_latest(registry)


class OwnFigures:
    """One worker's figures, handed to the admin worker when it asks."""

    def __init__(self, target: AdminTarget) -> None:
        self.target = target
        self.calls = CallFigures()
        self._registry: CollectorRegistry | None = None

    def collect(self, kind: str) -> object:
        """``metrics`` (this process's exposition text) or ``console``
        (:meth:`CallFigures.rows` of every destination)."""
        target = self.target
        if kind == "metrics":
            registry = self._registry
            if registry is None:
                from sipdispatch.admin.metrics import build_registry
                from sipdispatch.admin.rpc import Rpc

                registry = self._registry = build_registry(target, Rpc(target))
            return generate_latest(registry).decode()
        if kind == "console":
            dests = list(target.dispatcher.router.sets.destinations())
            self.calls.sample(dests, target.now())
            return self.calls.rows(dests, in_progress_of(target))
        raise ValueError(f"unknown figures {kind!r}")
