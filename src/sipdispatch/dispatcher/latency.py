"""Latency statistics of one destination, as Kamailio's dispatcher computes them.

Pure functions over plain data: the prober (I/O) measures the time between an
OPTIONS ping and its reply and feeds it in (through :mod:`.congestion`, which also
turns it into congestion-controlled weights and algorithm 13's priorities).

Reference: Kamailio ``src/modules/dispatcher/dispatch.c`` functions
``latency_stats_init``, ``latency_stats_update``, ``ds_update_latency`` and
``ds_update_weighted_congestion_control``; module parameter
``ds_latency_estimator_alpha`` in ``dispatcher.c``. The formulas are re-written
here, not copied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

DEFAULT_ALPHA_PERMILLE: Final = 900
"""Kamailio ``ds_latency_estimator_alpha`` default (per mille)."""

TRAINING_COUNT: Final = 10000
"""Kamailio: sample count at which the estimator counts as trained; also the
count given to stats seeded from a ``latency=`` attribute."""

WEIGHTED_AVERAGE_COUNT: Final = 2097152
"""Kamailio: after 2^21 samples (about 24 days at one ping a second) the mean
turns into a weighted average (the count stops growing, M2 decays)."""

TIMEOUT_CODE: Final = 408
"""A ping that timed out: counted in ``timeout``, not used as a sample."""

_INT32_MAX: Final = 2**32 - 1


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
