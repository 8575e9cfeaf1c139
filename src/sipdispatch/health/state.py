"""Destination health state machine, as Kamailio's dispatcher runs it (pure).

Nothing here reads a clock or does I/O: the prober (:mod:`.prober`) sends the
pings and feeds their outcome in; ``now`` is only stamped on the events.

The rules are those of Kamailio's ``src/modules/dispatcher/dispatch.c``
(read, not copied):

* which destinations a ping round visits -- ``ds_ping_set`` and
  ``ds_ping_result_helper`` (:meth:`ProbingPolicy.should_ping`);
* which state a ping result asks for -- ``ds_options_callback``
  (:meth:`ProbingPolicy.requested_state`);
* how a requested state is applied with the two thresholds --
  ``ds_update_state`` (:func:`update_state`), also what ``ds_mark_dst`` uses.

``docs/health.md`` walks through every transition with the letters Kamailio's
``dispatcher.list`` shows.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from sipdispatch.dispatcher.states import (
    DS_DISABLED_DST,
    DS_INACTIVE_DST,
    DS_NODNSARES_DST,
    DS_NOPING_DST,
    DS_PROBING_DST,
    DS_SKIP_MASK,
    DS_STATES_ALL,
    DS_TRYING_DST,
    flags_text,
)

ORIGIN_PROBE = "probe"
"""A state change made by a ping's result."""
ORIGIN_CALL: Final = "call"
"""A state change made by a failed call (``mark_failed``, Kamailio's ``ds_mark_dst``)."""
ORIGIN_ADMIN: Final = "admin"
"""A state change an operator made (``dispatcher.set_state``, ``set_duid_state``)."""
ORIGIN_DNS = "dns"
"""A state change made by resolving the destination's host (or failing to) at start."""
ORIGIN_CLUSTER: Final = "cluster"
"""A state change made on another node of the cluster, applied here (never sent back)."""
ORIGIN_WORKER: Final = "worker"
"""A state change made by another worker process of this proxy, applied here (never
sent back; logged at debug level: the worker that made it logged it)."""

PROBE_NONE: Final = 0
"""``ds_probing_mode`` 0 (Kamailio ``DS_PROBE_NONE``): ping only destinations with
the probing bit; a ping result clears the bit (one probe, then stop)."""
PROBE_ALL: Final = 1
"""``ds_probing_mode`` 1 (``DS_PROBE_ALL``): ping every destination that is not
disabled; results keep (or set) the probing bit."""
PROBE_INACTIVE: Final = 2
"""``ds_probing_mode`` 2 (``DS_PROBE_INACTIVE``): ping only inactive destinations
with the probing bit, until they are back."""
PROBE_ONLYFLAGGED: Final = 3
"""``ds_probing_mode`` 3 (``DS_PROBE_ONLYFLAGGED``): ping destinations with the
probing bit, continually; results never add or remove the bit."""

PROBING_MODES: Final = (PROBE_NONE, PROBE_ALL, PROBE_INACTIVE, PROBE_ONLYFLAGGED)


def is_ping_reply_alive(code: int, codes: Collection[int], classes: Collection[int]) -> bool:
    """A ping answered with ``code`` shows the destination alive: any 2xx, or one of the
    extra ``codes`` or ``classes`` (4 = 4xx) of ``dispatcher.ping_reply_codes``."""
    return 200 <= code <= 299 or code in codes or code // 100 in classes


_NEVER_PINGED: Final = DS_DISABLED_DST | DS_NOPING_DST | DS_NODNSARES_DST
"""``ds_ping_set`` skips disabled, no-ping and no-DNS destinations in every mode."""


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of applying a state: new state bits and probing counter."""

    state: int
    """New state bits (``DS_*_DST``, within ``DS_STATES_ALL``)."""
    probing_count: int
    """New consecutive-miss (or, while inactive, consecutive-answer) counter."""


def update_state(
    state: int,
    probing_count: int,
    requested: int,
    *,
    probing_threshold: int,
    inactive_threshold: int,
    ignore_thresholds: bool = False,
) -> Transition:
    """Apply ``requested`` state bits to a destination, as Kamailio's ``ds_update_state``.

    ``state``/``probing_count`` are the destination's current values. The rules:

    * every state bit is replaced (``DS_STATES_ALL`` is cleared first);
    * asking for *trying* while *inactive* keeps it inactive (it must become
      active before it can be trying again), and that counts as a miss that
      resets the answer counter;
    * a disabled request sets only the disabled bit;
    * *trying* counts one miss; at ``probing_threshold`` misses in a row the
      destination becomes *inactive* (probing bit as requested) and the
      counter restarts;
    * anything else while *inactive* counts one answer; below
      ``inactive_threshold`` answers in a row it stays inactive (keeping its
      probing bit); at the threshold it takes the requested state;
    * anything else resets the counter.

    ``ignore_thresholds`` is Kamailio's update mode 1 (``ds_mark_dst`` with
    mode 1): trying becomes inactive at once and answers activate at once.
    """
    requested &= DS_STATES_ALL
    asked = requested
    if requested & DS_TRYING_DST and state & DS_INACTIVE_DST:
        requested = (requested & ~DS_TRYING_DST) | DS_INACTIVE_DST
    new = DS_DISABLED_DST if requested & DS_DISABLED_DST else requested
    count = probing_count
    if requested & DS_TRYING_DST:
        count += 1
        if ignore_thresholds or count >= probing_threshold:
            new = (new & ~DS_TRYING_DST) | DS_INACTIVE_DST
            count = 0
    elif not asked & DS_TRYING_DST and state & DS_INACTIVE_DST:
        count += 1
        if not ignore_thresholds and count < inactive_threshold:
            new |= DS_INACTIVE_DST
            if state & DS_PROBING_DST:
                new |= DS_PROBING_DST
        else:
            count = 0
    else:
        count = 0
    return Transition(new, count)


@dataclass(frozen=True, slots=True)
class ProbingPolicy:
    """Which destinations are pinged and what a ping result does to them.

    Kamailio's ``ds_probing_mode`` 0..3, ``ds_probing_threshold`` and
    ``ds_inactive_threshold`` (``[dispatcher]`` ``probing_mode``, ...).
    """

    mode: int = PROBE_NONE
    """Kamailio ``ds_probing_mode``, 0..3."""
    probing_threshold: int = 1
    """Missed pings in a row before a destination is inactive (``ds_probing_threshold``)."""
    inactive_threshold: int = 1
    """Answered pings in a row before an inactive one is active (``ds_inactive_threshold``)."""

    def __post_init__(self) -> None:
        if self.mode not in PROBING_MODES:
            raise ValueError(f"probing mode {self.mode}: must be 0..3")
        if self.probing_threshold < 1 or self.inactive_threshold < 1:
            raise ValueError("thresholds must be >= 1")

    def should_ping(self, state: int) -> bool:
        """Whether a ping round sends a ping to a destination in ``state``.

        Kamailio's ``ds_ping_set``: never disabled (4), no-ping (32) or no-DNS
        (16) destinations; then ``ds_ping_result_helper``: mode 1 pings all,
        modes 0 and 3 those with the probing bit, mode 2 those that are both
        probing and inactive.
        """
        if state & _NEVER_PINGED:
            return False
        if self.mode == PROBE_ALL:
            return True
        if self.mode != PROBE_INACTIVE:
            return bool(state & DS_PROBING_DST)
        return bool(state & DS_PROBING_DST) and bool(state & DS_INACTIVE_DST)

    def requested_state(self, state: int, alive: bool) -> int | None:
        """The state a finished ping asks for, given the destination's state now.

        Kamailio's ``ds_options_callback``. None means "leave it alone": the
        destination was disabled meanwhile, or (mode 3) its probing bit was
        removed meanwhile.

        * answered (2xx or a ``ping_reply_codes`` code/class): active; probing
          in mode 1, and in mode 3 when still probing (modes 0 and 2 clear it);
        * not answered (timeout or another code): trying; probing in every mode
          but 0.
        """
        if self.mode == PROBE_ONLYFLAGGED and not state & DS_PROBING_DST:
            return None
        if state & DS_DISABLED_DST:
            return None
        if alive:
            if self.mode == PROBE_ALL or self.mode == PROBE_ONLYFLAGGED:
                return DS_PROBING_DST
            return 0
        if self.mode == PROBE_NONE:
            return DS_TRYING_DST
        return DS_TRYING_DST | DS_PROBING_DST

    def after_ping(self, state: int, probing_count: int, alive: bool) -> Transition | None:
        """New state and counter after a finished ping, or None to leave it alone."""
        requested = self.requested_state(state, alive)
        if requested is None:
            return None
        return update_state(
            state,
            probing_count,
            requested,
            probing_threshold=self.probing_threshold,
            inactive_threshold=self.inactive_threshold,
        )

    def send_failed_state(self) -> int:
        """State Kamailio asks for when a ping cannot even be sent (``ds_ping_set``):
        trying, probing unless mode 0."""
        return DS_TRYING_DST if self.mode == PROBE_NONE else DS_TRYING_DST | DS_PROBING_DST


@dataclass(frozen=True, slots=True)
class StateChange:
    """A destination changed state (an event of the state log)."""

    setid: int
    """Set (group) id."""
    uri: str
    """Destination URI."""
    old_state: int
    """State bits before."""
    new_state: int
    """State bits after."""
    reason: str
    """Why, for people: e.g. ``"no reply to OPTIONS (408), 2/2 missed"``."""
    at: float
    """When (the ``now`` of the event, monotonic seconds)."""
    code: int | None = None
    """The ping's status code when a ping caused it (408 for no reply)."""
    origin: str = "probe"
    """What made it: one of the ``ORIGIN_*`` names."""

    @property
    def old(self) -> str:
        """Kamailio's letters before (``AP``, ``TP``, ``IP``, ``DX`` ...)."""
        return flags_text(self.old_state)

    @property
    def new(self) -> str:
        """Kamailio's letters after."""
        return flags_text(self.new_state)

    @property
    def went_down(self) -> bool:
        """It stopped getting calls (Kamailio's ``dispatcher:dst-down`` event)."""
        return not self.old_state & DS_SKIP_MASK and bool(self.new_state & DS_SKIP_MASK)

    @property
    def went_up(self) -> bool:
        """It gets calls again (Kamailio's ``dispatcher:dst-up`` event)."""
        return bool(self.old_state & DS_SKIP_MASK) and not self.new_state & DS_SKIP_MASK

    def describe(self) -> str:
        """One log line, e.g.
        ``set 1 sip:mg1:5060: AP -> TP (no reply to OPTIONS (408), 1/2 missed)``."""
        return f"set {self.setid} {self.uri}: {self.old} -> {self.new} ({self.reason})"
