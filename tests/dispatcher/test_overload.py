"""Overload control (RFC 7339) and algorithm 64, Kamailio's round-robin with overload
control: a destination under control is left out of ``rate`` choices in 100 while the
control holds."""

from __future__ import annotations

import random

import pytest

from sipdispatch.dispatcher.overload import DEFAULT_VALIDITY, OverloadControl, parse_via_control


def test_a_control_skips_exactly_rate_choices_in_100_while_it_holds() -> None:
    oc = OverloadControl()
    assert oc.set(30, 10.0, 1, now=0.0, rng=random.Random(1))
    assert sum(oc.skip(1.0) for _ in range(100)) == 30
    assert sum(oc.skip(2.0) for _ in range(200)) == 60  # the same shuffled 100, again
    assert not any(oc.skip(10.0) for _ in range(100))  # expired: never skips


def test_a_control_with_an_older_or_equal_sequence_changes_nothing() -> None:
    oc = OverloadControl()
    assert oc.set(50, 10.0, 5, now=0.0, rng=random.Random(1))
    assert not oc.set(10, 10.0, 5, now=1.0, rng=random.Random(1))
    assert not oc.set(10, 10.0, 4, now=1.0, rng=random.Random(1))
    assert oc.rate == 50
    assert oc.set(10, 10.0, 6, now=1.0, rng=random.Random(1)) and oc.rate == 10


def test_the_ocmin_and_ocmax_attrs_bound_the_rate_and_no_validity_is_500_ms() -> None:
    oc = OverloadControl()
    oc.set(90, -1.0, 1, now=0.0, rng=random.Random(1), low=0, high=40)
    assert oc.rate == 40 and oc.until == DEFAULT_VALIDITY
    oc.set(5, 1.0, 2, now=0.0, rng=random.Random(1), low=20, high=40)
    assert oc.rate == 20


@pytest.mark.parametrize(
    ("params", "control"),
    [
        ({"oc": "20", "oc-validity": "2000", "oc-seq": "1282321615.781"},
         (20, 2.0, 1282321615.781)),
        ({"oc": "100"}, (100, -1.0, 0.0)),
        ({"oc": "0", "oc-validity": "0", "oc-seq": "7"}, (0, 0.0, 7.0)),  # it ends
        ({"oc": None}, None),  # our own announcement, coming back
        ({"oc": "abc"}, None),
        ({"oc": "101"}, None),
        ({"oc": "20", "oc-validity": "x"}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_rfc_7339_via_parameters_give_rate_validity_and_sequence(
    params: dict[str, str | None], control: tuple[int, float, float] | None
) -> None:
    assert parse_via_control(params) == control
