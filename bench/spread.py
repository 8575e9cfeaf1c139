"""The statistics of the report: nearest-rank percentiles, and the median and range of
one figure over the repeated runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Spread:
    """Median and range of one figure over the repeated runs."""

    values: list[float]

    @property
    def median(self) -> float:
        vals = [v for v in self.values if v == v]
        return statistics.median(vals) if vals else float("nan")

    def show(self, fmt: str = "{:.0f}") -> str:
        vals = [v for v in self.values if v == v]
        if not vals:
            return "-"
        if len(vals) == 1:
            return fmt.format(vals[0])
        lo, hi = fmt.format(min(vals)), fmt.format(max(vals))
        return f"{fmt.format(self.median)} ({lo}..{hi})"
