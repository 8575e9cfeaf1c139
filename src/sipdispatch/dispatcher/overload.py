"""Overload control of one destination (RFC 7339, Kamailio's algorithm 64).

A destination under overload control is left out of algorithm 64's choice ``rate``
times in 100 while the control is valid. Which selections skip it is a shuffled list
of 100 (``rate`` skips, the rest uses), walked one entry per time the destination comes
up, as Kamailio's ``ds_oc_skip`` does. The control comes from the destination itself
(the ``oc``, ``oc-validity`` and ``oc-seq`` parameters it puts in our Via of a response,
RFC 7339 section 5.2), or from an operator (``dispatcher.oc_set``, Kamailio's
``ds_oc_set_attrs``); a control with an older or equal sequence number than the one in
force is ignored. ``ocmin``/``ocmax`` attrs bound the rate, ``ocrate`` is the rate a
control without one (an operator's) starts from.

Pure: time is passed in (the core's monotonic seconds).
"""

from __future__ import annotations

import random
from typing import Final

DEFAULT_VALIDITY: Final = 0.5
"""Seconds a control holds when it gives no ``oc-validity`` (Kamailio: 500 ms)."""
MAX_VALIDITY: Final = 86400.0
"""The longest a control may hold, whatever it says (a day)."""


class OverloadControl:
    """The control in force on one destination."""

    __slots__ = ("dist", "index", "rate", "seq", "until")

    def __init__(self) -> None:
        self.rate = 0
        """Selections in 100 that skip the destination (0..100)."""
        self.until = 0.0
        """Monotonic seconds until which it holds; past it, nothing is skipped."""
        self.seq = -1.0
        """Sequence number of the control in force (``oc-seq``)."""
        self.index = 0
        """The next entry of :attr:`dist` to use."""
        self.dist = b""
        """100 entries: 0 = skip, 1 = use."""

    def set(
        self,
        rate: int,
        validity: float,
        seq: float,
        now: float,
        rng: random.Random,
        *,
        low: int = 0,
        high: int = 100,
    ) -> bool:
        """A new control: ``rate`` skips in 100 (bounded by ``low``..``high``) for
        ``validity`` seconds (0 ends the control at once, negative = the default) from
        ``now``. False, and nothing changes, when ``seq`` is not newer than the one in
        force."""
        if seq <= self.seq:
            return False
        self.seq = seq
        rate = min(max(rate, low, 0), high, 100)
        if validity < 0:
            validity = DEFAULT_VALIDITY
        self.until = now + min(validity, MAX_VALIDITY)
        if rate != self.rate or not self.dist:
            self.rate = rate
            dist = bytearray(rate * b"\x00" + (100 - rate) * b"\x01")
            rng.shuffle(dist)
            self.dist = bytes(dist)
            self.index = 0
        return True

    def skip(self, now: float) -> bool:
        """Whether this selection leaves the destination out (and the walk moves on);
        never once the control has expired."""
        if now >= self.until or self.rate <= 0:
            return False
        i = self.index
        self.index = (i + 1) % 100
        return self.dist[i] == 0

    def active(self, now: float) -> bool:
        return now < self.until and self.rate > 0


def parse_via_control(
    params: dict[str, str | None],
) -> tuple[int, float, float] | None:
    """``(rate, validity seconds, seq)`` from the Via parameters of a response (RFC 7339
    section 5.2): ``oc`` = the percentage of requests to drop, ``oc-validity`` in
    milliseconds (absent: the default, -1 here), ``oc-seq`` a number that grows with each
    new control (absent: 0). None when ``oc`` has no value (our own announcement coming
    back) or a value is not a number."""
    rate_text = params.get("oc")
    if not rate_text:
        return None
    try:
        rate = int(rate_text)
        validity_text = params.get("oc-validity")
        validity = int(validity_text) / 1000 if validity_text else -1.0
        seq = float(params.get("oc-seq") or 0)
    except ValueError:
        return None
    if rate < 0 or rate > 100 or validity < -1.0 or seq != seq:  # NaN
        return None
    return rate, validity, seq
