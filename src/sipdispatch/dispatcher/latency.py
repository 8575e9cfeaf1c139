"""Latency statistics and congestion control, as Kamailio's dispatcher computes them.

Pure functions over plain data: the prober (I/O) measures the time between an
OPTIONS ping and its reply and feeds it here; algorithms 11 (``cc=1``) and 13 read
the result.

Reference: Kamailio ``src/modules/dispatcher/dispatch.c`` functions
``latency_stats_init``, ``latency_stats_update``, ``ds_update_latency`` and
``ds_update_weighted_congestion_control``; module parameter
``ds_latency_estimator_alpha`` in ``dispatcher.c``. The formulas are re-written
here, not copied.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sipdispatch.dispatcher.states import DS_PROBING_DST

if TYPE_CHECKING:
    from sipdispatch.dispatcher.destination import Destination

DEFAULT_ALPHA_PERMILLE = 900
"""Kamailio ``ds_latency_estimator_alpha`` default (per mille)."""

TRAINING_COUNT = 10000
"""Kamailio: sample count at which the estimator counts as trained; also the
count given to stats seeded from a ``latency=`` attribute."""

WEIGHTED_AVERAGE_COUNT = 2097152
"""Kamailio: after 2^21 samples (about 24 days at one ping a second) the mean
turns into a weighted average (the count stops growing, M2 decays)."""

TIMEOUT_CODE = 408
"""A ping that timed out: counted in ``timeout``, not used as a sample."""

_INT32_MAX = 2**32 - 1


def alpha_from_permille(permille: int) -> float:
    """EWMA weight of the previous estimate, from the per-mille module parameter.

    As Kamailio: values outside 1..999 are refused and the default (0.9) is used.
    """
    if 0 < permille < 1000:
        return permille / 1000.0
    return DEFAULT_ALPHA_PERMILLE / 1000.0


@dataclass(slots=True)
class LatencyStats:
    """Kamailio's ``ds_latency_stats_t``: milliseconds, over OPTIONS pings."""

    min: int = 0
    """Smallest sample seen."""
    max: int = 0
    """Largest sample seen (``MAX`` in ``dispatcher.list``)."""
    average: float = 0.0
    """Running mean (``AVG``); a weighted average after 2^21 samples."""
    stdev: float = 0.0
    """Standard deviation (``STD``), Welford's online algorithm."""
    estimate: float = 0.0
    """Short-term EWMA estimate (``EST``)."""
    m2: float = 0.0
    """Sum of squared differences used by Welford's algorithm."""
    count: int = 0
    """Samples taken (jumps to 10000 once the estimator is trained)."""
    timeout: int = 0
    """Pings that got no answer (``TIMEOUT``)."""

    def seed(self, latency: int, count: int) -> None:
        """Reset to a single value, as ``latency_stats_init`` (timeouts kept)."""
        self.stdev = 0.0
        self.m2 = 0.0
        self.max = latency
        self.min = latency
        self.average = float(latency)
        self.estimate = float(latency)
        self.count = count

    def add_sample(self, latency: int, alpha: float) -> None:
        """Add one measured latency (ms); ``alpha`` from :func:`alpha_from_permille`.

        Kamailio's ``latency_stats_update``: Welford mean/deviation, the estimator
        "trains" (count jumps to 10000) once the deviation is below 0.5 ms after
        more than 10 samples, and the EWMA ``est = est*alpha + x*(1-alpha)`` takes
        over from the mean after 10 samples.
        """
        if self.count < WEIGHTED_AVERAGE_COUNT:
            self.count += 1
        else:
            self.m2 -= self.m2 / (self.count or 1)
        if self.count == 1:
            self.seed(latency, 1)
        if 10 < self.count < TRAINING_COUNT and self.stdev < 0.5:
            self.count = TRAINING_COUNT
        if self.min > latency:
            self.min = latency
        if self.max < latency:
            self.max = latency
        if self.count > 1:
            delta = latency - self.average
            self.average += delta / (self.count or 1)
            delta2 = latency - self.average
            self.m2 += delta * delta2
            self.stdev = math.sqrt(self.m2 / ((self.count - 1) or 1))
        if self.count < 10:
            self.estimate = self.average
        else:
            self.estimate = self.estimate * alpha + latency * (1.0 - alpha)

    def add_timeout(self) -> None:
        """Count a ping that timed out (saturating, as Kamailio's uint32)."""
        if self.timeout < _INT32_MAX:
            self.timeout += 1

    @property
    def congestion_ms(self) -> int:
        """``estimate - average`` truncated toward zero (C float to int)."""
        return int(self.estimate - self.average)


def _c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _weighted_active(weight: int, stats: LatencyStats, acc: list[int]) -> int:
    """``ds_update_weighted_congestion_control``: weight minus congestion ms.

    ``acc`` is ``[congested_count, normal_count, total_congestion_ms]``.
    """
    if weight <= 0:
        return 0
    congestion = max(stats.congestion_ms, 0)
    acc[2] += congestion
    active = max(weight - congestion, 0)
    if active == 0:
        acc[0] += 1
    else:
        acc[1] += 1
    return active


def record_ping(
    dests: Sequence[Destination],
    pinged: Destination,
    code: int,
    latency_ms: int | None,
    alpha: float,
) -> bool:
    """Feed one finished ping of ``pinged`` (a member of ``dests``) into the stats.

    Mirrors Kamailio's ``ds_update_latency``, called before the state update:

    * only a destination with the probing bit set is measured;
    * a 408 (timeout) counts in ``timeout`` and adds no sample;
    * ``latency_ms=None`` means no start time was recorded: no sample;
    * with ``cc=1`` and a ``weight``, the runtime ``rweight`` becomes
      ``weight - congestion_ms`` (not below 0), congestion being ``EST - AVG``;
    * when every destination of the set has ``cc=1`` and more than one is fully
      congested while none is normal, rweights become
      ``(total_congestion_ms << 4) / congestion_ms`` of each.

    Returns True when rweights changed and congestion control is on for the whole
    set: the caller must rebuild the set's rweight table
    (:meth:`DispatcherSets.rebuild_rweights`).
    """
    acc = [0, 0, 0]
    enabled = True
    apply = False
    for dest in dests:
        attrs = dest.attrs
        if dest is pinged:
            if not dest.state & DS_PROBING_DST:  # Kamailio skips the rest of the loop body
                continue
            stats = dest.latency
            if code == TIMEOUT_CODE:
                stats.add_timeout()
            if latency_ms is None:
                continue
            if code != TIMEOUT_CODE:
                stats.add_sample(latency_ms, alpha)
            if attrs.cc and attrs.weight > 0:
                active = _weighted_active(attrs.weight, stats, acc)
                if dest.rweight != active:
                    apply = True
                    dest.rweight = active
        elif attrs.cc and attrs.weight > 0:
            _weighted_active(attrs.weight, dest.latency, acc)
        if not attrs.cc:
            enabled = False
    if enabled and acc[0] > 1 and acc[1] == 0:
        total = acc[2]
        for dest in dests:
            congestion = dest.latency.congestion_ms
            active = _c_div(total << 4, congestion or 1)
            if dest.rweight != active:
                apply = True
                dest.rweight = active
    return enabled and apply


def latency_priority(dest: Destination) -> int:
    """Algorithm 13's run-time priority of a usable destination.

    Kamailio ``ds_manage_route_algo13``: the latency (EST, or EST-AVG with
    ``cc=1``, truncated to int) handicaps the priority by ``latency // priority``
    when it exceeds a positive priority; a positive priority never drops below 1.
    """
    priority = dest.priority
    stats = dest.latency
    latency = stats.congestion_ms if dest.attrs.cc else int(stats.estimate)
    handicap = 0
    if latency > priority > 0:
        handicap = _c_div(latency, priority)
    rpriority = priority - handicap
    if rpriority < 1 and priority > 0:
        rpriority = 1
    return rpriority
