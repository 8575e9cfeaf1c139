"""Destination state bits, with Kamailio's values and letters.

The values are those of ``DS_*_DST`` in Kamailio's
``src/modules/dispatcher/dispatch.h``. The same integer is the ``flags`` column
of ``dispatcher.list`` / the ``dispatcher`` table: it is the destination's
initial state. The two letters are those ``dispatcher.list`` (RPC) prints.
"""

from __future__ import annotations

from typing import Final

DS_INACTIVE_DST: Final = 1
"""Inactive: gets no calls (letter ``I``); set by probing after the threshold."""
DS_TRYING_DST: Final = 2
"""Trying: missed pings, not yet at the probing threshold (letter ``T``); still usable."""
DS_DISABLED_DST: Final = 4
"""Administratively disabled (letter ``D``); gets no calls and no pings."""
DS_PROBING_DST: Final = 8
"""Probing: OPTIONS keepalives are sent (second letter ``P``, else ``X``)."""
DS_NODNSARES_DST: Final = 16
"""Do not resolve the host at load time (no address; not pinged)."""
DS_NOPING_DST: Final = 32
"""Never ping this destination."""
DS_STATES_ALL: Final = 63
"""Every state bit; Kamailio clears these before setting a new state."""

DS_SKIP_MASK: Final = DS_INACTIVE_DST | DS_DISABLED_DST
"""Kamailio's ``ds_skip_dst()``: a destination with one of these bits gets no calls."""


def flags_text(state: int) -> str:
    """The two letters Kamailio's RPC ``dispatcher.list`` prints for ``state``.

    First letter: ``I`` inactive, else ``D`` disabled, else ``T`` trying, else
    ``A`` active (Kamailio tests inactive before disabled, so a state with both
    bits prints ``I``). Second: ``P`` probing, else ``X``.
    """
    if state & DS_INACTIVE_DST:
        first = "I"
    elif state & DS_DISABLED_DST:
        first = "D"
    elif state & DS_TRYING_DST:
        first = "T"
    else:
        first = "A"
    return first + ("P" if state & DS_PROBING_DST else "X")


_FIRST_LETTER_BITS: Final = {
    "0": DS_INACTIVE_DST,
    "i": DS_INACTIVE_DST,
    "1": 0,
    "a": 0,
    "2": DS_DISABLED_DST,
    "d": DS_DISABLED_DST,
    "3": DS_TRYING_DST,
    "t": DS_TRYING_DST,
}


def parse_state_letters(text: str) -> int:
    """State bits from the STATE argument of ``dispatcher.set_state`` (``ap``, ``ip``, ``dx``).

    As Kamailio's RPC: the first character picks the state (``0``/``i`` inactive,
    ``1``/``a`` active, ``2``/``d`` disabled, ``3``/``t`` trying, any case); a second
    character ``p`` adds the probing bit, except for disabled. Anything after is
    ignored. Raises ValueError for an empty string or an unknown first character.
    """
    if not text:
        raise ValueError("empty state")
    try:
        bits = _FIRST_LETTER_BITS[text[0].lower()]
    except KeyError:
        raise ValueError(f"unknown state {text!r}") from None
    if bits != DS_DISABLED_DST and len(text) > 1 and text[1] in "pP":
        bits |= DS_PROBING_DST
    return bits


_MARK_BITS: Final = {"i": DS_INACTIVE_DST, "d": DS_DISABLED_DST, "t": DS_TRYING_DST,
                     "p": DS_PROBING_DST}  # fmt: skip
MARK_LETTERS_ALLOWED: Final = (
    "letters of a (active), i (inactive), d (disabled), t (trying), p (probing), any case, "
    'as Kamailio\'s ds_mark_dst: "ip", "tp", "i", "t", "a", "ap"...; "" = leave the state alone'
)


def parse_mark_letters(text: str) -> int:
    """State bits from the argument of Kamailio's ``ds_mark_dst("...")``.

    Read left to right, any case: ``a`` clears every state bit (active), ``i``, ``d``,
    ``t`` and ``p`` add inactive, disabled, trying and probing. So ``"ip"`` is inactive
    and probing, ``"tp"`` trying and probing, ``"ap"`` active and probing, ``"pa"`` active.
    Raises ValueError naming the first other character (``x`` included: it is the
    RPC's "not probing", not a ``ds_mark_dst`` letter) or for an empty string.
    """
    if not text:
        raise ValueError("empty state")
    bits = 0
    for ch in text.lower():
        if ch == "a":
            bits &= ~DS_STATES_ALL
        else:
            bit = _MARK_BITS.get(ch)
            if bit is None:
                raise ValueError(f"{ch!r} in {text!r} is not a ds_mark_dst letter")
            bits |= bit
    return bits
