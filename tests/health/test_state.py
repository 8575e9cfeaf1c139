"""The pure state machine against Kamailio's rules (ds_ping_set, ds_options_callback,
ds_update_state), for every probing mode and threshold combination."""

from __future__ import annotations

import itertools

import pytest

from sipdispatch.dispatcher.states import (
    DS_DISABLED_DST,
    DS_INACTIVE_DST,
    DS_NODNSARES_DST,
    DS_NOPING_DST,
    DS_PROBING_DST,
    DS_TRYING_DST,
    flags_text,
    parse_state_letters,
)
from sipdispatch.health.state import ProbingPolicy, StateChange, Transition, update_state

AX, AP = 0, DS_PROBING_DST
TX, TP = DS_TRYING_DST, DS_TRYING_DST | DS_PROBING_DST
IX, IP = DS_INACTIVE_DST, DS_INACTIVE_DST | DS_PROBING_DST
DX = DS_DISABLED_DST

THRESHOLDS = list(itertools.product((1, 2, 3), (1, 2, 3)))


def rounds(policy: ProbingPolicy, state: int, outcomes: str) -> list[str]:
    """Letters after each round; ``outcomes`` is a string of ``+`` (answered) and
    ``-`` (missed). A round whose destination the mode does not ping changes nothing."""
    count = 0
    seen = []
    for outcome in outcomes:
        if policy.should_ping(state):
            t = policy.after_ping(state, count, outcome == "+")
            if t is not None:
                state, count = t.state, t.probing_count
        seen.append(flags_text(state))
    return seen


# -- which destinations a round pings (ds_ping_set + ds_ping_result_helper) -----------

PINGED = {
    # state: (mode 0, mode 1, mode 2, mode 3)
    AX: (False, True, False, False),
    AP: (True, True, False, True),
    TX: (False, True, False, False),
    TP: (True, True, False, True),
    IX: (False, True, False, False),
    IP: (True, True, True, True),
    DX: (False, False, False, False),
    DX | DS_PROBING_DST: (False, False, False, False),
    AP | DS_NOPING_DST: (False, False, False, False),
    IP | DS_NODNSARES_DST: (False, False, False, False),
}


@pytest.mark.parametrize("state", list(PINGED), ids=lambda s: f"state{s}")
@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_which_destinations_each_probing_mode_pings(mode: int, state: int) -> None:
    assert ProbingPolicy(mode).should_ping(state) is PINGED[state][mode]


# -- what a ping result asks for (ds_options_callback) ----------------------------------


@pytest.mark.parametrize(
    ("mode", "state", "alive", "requested"),
    [
        (0, AP, True, AX),  # mode 0: the probing flag is cleared by the probe
        (0, AP, False, TX),
        (1, AX, True, AP),  # mode 1: answered -> active + probing
        (1, AP, False, TP),
        (2, IP, True, AX),
        (2, IP, False, TP),
        (3, AP, True, AP),  # mode 3: keeps the probing flag
        (3, IP, False, TP),
        (3, AX, True, None),  # mode 3: probing removed meanwhile -> left alone
        (1, DX, True, None),  # disabled meanwhile -> left alone, every mode
        (0, DX, False, None),
    ],
)
def test_requested_state_follows_ds_options_callback(
    mode: int, state: int, alive: bool, requested: int | None
) -> None:
    assert ProbingPolicy(mode).requested_state(state, alive) == requested


# -- mode 1 (and 3): probe everything, keep probing ------------------------------------


@pytest.mark.parametrize(("pthr", "ithr"), THRESHOLDS)
@pytest.mark.parametrize("mode", [1, 3])
def test_misses_go_trying_then_inactive_and_answers_come_back(
    mode: int, pthr: int, ithr: int
) -> None:
    policy = ProbingPolicy(mode, pthr, ithr)
    seen = rounds(policy, AP, "-" * (pthr + 2) + "+" * (ithr + 1))
    down = ["TP"] * (pthr - 1) + ["IP"] * 3
    up = ["IP"] * (ithr - 1) + ["AP"] * 2
    assert seen == down + up


@pytest.mark.parametrize(("pthr", "ithr"), THRESHOLDS)
@pytest.mark.parametrize("mode", [1, 3])
def test_a_miss_while_coming_back_restarts_the_answer_count(
    mode: int, pthr: int, ithr: int
) -> None:
    policy = ProbingPolicy(mode, pthr, ithr)
    # Inactive, then ithr-1 answers, a miss, then ithr answers again.
    seen = rounds(policy, IP, "+" * (ithr - 1) + "-" + "+" * ithr)
    assert seen == ["IP"] * (ithr - 1) + ["IP"] + ["IP"] * (ithr - 1) + ["AP"]


@pytest.mark.parametrize(("pthr", "ithr"), THRESHOLDS)
def test_an_answer_while_trying_resets_the_miss_count(pthr: int, ithr: int) -> None:
    policy = ProbingPolicy(1, pthr, ithr)
    seen = rounds(policy, AP, "-" * (pthr - 1) + "+" + "-" * pthr)
    assert seen == ["TP"] * (pthr - 1) + ["AP"] + ["TP"] * (pthr - 1) + ["IP"]


@pytest.mark.parametrize(("pthr", "ithr"), THRESHOLDS)
def test_mode_1_after_load_ax_turns_ap_on_the_first_answer(pthr: int, ithr: int) -> None:
    # flags 0 in the list: AX; the inactive threshold only applies to inactive ones.
    assert rounds(ProbingPolicy(1, pthr, ithr), AX, "+")[0] == "AP"
    assert rounds(ProbingPolicy(1, pthr, ithr), AX, "-")[0] == ("TP" if pthr > 1 else "IP")


def test_mode_3_does_not_probe_destinations_without_the_probing_flag() -> None:
    assert rounds(ProbingPolicy(3, 2, 2), AX, "---") == ["AX"] * 3


# -- mode 0: probe only flagged ones, once ------------------------------------------------


@pytest.mark.parametrize(("pthr", "ithr"), THRESHOLDS)
def test_mode_0_one_probe_clears_the_probing_flag(pthr: int, ithr: int) -> None:
    policy = ProbingPolicy(0, pthr, ithr)
    assert rounds(policy, AP, "+++") == ["AX"] * 3
    # A miss: trying without the probing flag (TX), then no more pings at all.
    first = "TX" if pthr > 1 else "IX"
    assert rounds(policy, AP, "---") == [first] * 3


@pytest.mark.parametrize(("pthr", "ithr"), THRESHOLDS)
def test_mode_0_inactive_probing_comes_back_after_the_threshold(pthr: int, ithr: int) -> None:
    policy = ProbingPolicy(0, pthr, ithr)
    # kamailio#2100 fix: IP stays IP (still probing) until ithr answers, then AX.
    assert rounds(policy, IP, "+" * (ithr + 1)) == ["IP"] * (ithr - 1) + ["AX"] * 2
    # A miss while IP drops the probing flag: IX, and nobody pings it again.
    assert rounds(policy, IP, "-+++") == ["IX"] * 4


# -- mode 2: probe only inactive ones ---------------------------------------------------


@pytest.mark.parametrize(("pthr", "ithr"), THRESHOLDS)
def test_mode_2_probes_inactive_until_active_then_stops(pthr: int, ithr: int) -> None:
    policy = ProbingPolicy(2, pthr, ithr)
    seen = rounds(policy, IP, "-" + "+" * ithr + "--")
    assert seen == ["IP"] + ["IP"] * (ithr - 1) + ["AX"] + ["AX", "AX"]
    assert rounds(policy, AP, "---") == ["AP"] * 3


# -- ds_update_state directly (what ds_mark_dst uses) -----------------------------------


def test_trying_requested_while_inactive_stays_inactive_and_resets_the_count() -> None:
    t = update_state(IP, 1, TP, probing_threshold=3, inactive_threshold=3)
    assert t == Transition(IP, 0)


def test_disabled_request_sets_only_the_disabled_bit() -> None:
    t = update_state(AP, 2, DX | DS_PROBING_DST, probing_threshold=3, inactive_threshold=3)
    assert t == Transition(DX, 0)


def mark(state: int, count: int, requested: int, probing: int, inactive: int) -> Transition:
    """``ds_mark_dst(requested)`` (update mode 0): the thresholds apply."""
    return update_state(
        state, count, requested, probing_threshold=probing, inactive_threshold=inactive
    )


def test_mark_tp_counts_a_miss_and_inactivates_at_the_threshold() -> None:
    first = mark(AP, 0, parse_state_letters("tp"), 2, 1)
    assert first == Transition(TP, 1)
    assert mark(first.state, first.probing_count, TP, 2, 1) == Transition(IP, 0)


def test_mark_ip_restarts_the_counter() -> None:
    assert mark(TP, 2, IP, 3, 3) == Transition(IP, 0)


def test_mark_ap_of_an_inactive_destination_counts_as_an_answer() -> None:
    # ds_update_state treats any non-trying request on an inactive destination alike.
    assert mark(IP, 0, AP, 1, 2) == Transition(IP, 1)
    assert mark(IP, 1, AP, 1, 2) == Transition(AP, 0)


def test_ignore_thresholds_is_kamailio_update_mode_1() -> None:
    kw = {"probing_threshold": 5, "inactive_threshold": 5, "ignore_thresholds": True}
    assert update_state(AP, 0, TP, **kw) == Transition(IP, 0)  # type: ignore[arg-type]
    assert update_state(IP, 0, AP, **kw) == Transition(AP, 0)  # type: ignore[arg-type]


def test_send_failure_asks_for_trying_probing_except_in_mode_0() -> None:
    assert ProbingPolicy(0).send_failed_state() == TX
    assert ProbingPolicy(1).send_failed_state() == TP


def test_policy_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        ProbingPolicy(4)
    with pytest.raises(ValueError):
        ProbingPolicy(1, 0, 1)


# -- the event record -------------------------------------------------------------------


def test_state_change_letters_direction_and_log_line() -> None:
    down = StateChange(1, "sip:mg1:5060", TP, IP, "no reply to OPTIONS (408)", 12.5, 408)
    assert (down.old, down.new, down.went_down, down.went_up) == ("TP", "IP", True, False)
    assert down.describe() == "set 1 sip:mg1:5060: TP -> IP (no reply to OPTIONS (408))"
    up = StateChange(1, "sip:mg1:5060", IP, AP, "OPTIONS answered 200", 20.0, 200)
    assert (up.went_down, up.went_up) == (False, True)
    trying = StateChange(1, "sip:mg1:5060", AP, TP, "x", 1.0)
    assert not trying.went_down and not trying.went_up  # trying still gets calls
