"""6: random destination."""

from __future__ import annotations

from typing import Final

from sipdispatch.dispatcher.algorithms.base import (
    Algorithm,
    SelectContext,
    Selection,
    SelectOptions,
    finish,
    register,
)
from sipdispatch.dispatcher.sets import DestinationSet

RAND_BITS: Final = 31
"""Kamailio uses its ``rand()`` (0..RAND_MAX = 2**31-1 on glibc); we draw as many bits."""


class RandomDestination(Algorithm):
    """6: a random number modulo the set size (then the usual step over unusable
    ones, so an inactive destination's share goes to the next one)."""

    number = 6
    name = "random"

    def select(self, dset: DestinationSet, ctx: SelectContext, opts: SelectOptions) -> Selection:
        return finish(dset, opts.rng.getrandbits(RAND_BITS), opts)


register(RandomDestination)
