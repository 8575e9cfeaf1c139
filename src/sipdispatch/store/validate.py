"""Checks applied to a destination before a store writes it (``dispatcher add``).

kamctl inserts whatever it is given and lets Kamailio complain at the next
reload; sipdispatch checks first, with the same parser the loader uses, so a
bad URI or attrs never reaches the store.
"""

from __future__ import annotations

from sipdispatch.dispatcher.destination import Destination
from sipdispatch.dispatcher.errors import DispatcherLoadError
from sipdispatch.dispatcher.listfile import make_destination

INT_MIN = -(2**31)
"""Smallest value of the table's ``INT``/``INTEGER`` columns (MySQL, PostgreSQL)."""
INT_MAX = 2**31 - 1
"""Largest value of the table's ``INT``/``INTEGER`` columns (MySQL, PostgreSQL)."""


def check_new_destination(
    setid: int,
    uri: str,
    flags: int,
    priority: int,
    attrs: str,
    description: str,
    *,
    where: str,
) -> Destination:
    """Validate the values of a new record as a load would; return the parsed
    destination.

    Raises :class:`DispatcherLoadError` naming ``where`` and the first problem.
    """
    for name, value, low in (
        ("setid", setid, 0),
        ("flags", flags, 0),
        ("priority", priority, INT_MIN),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DispatcherLoadError(where, f"bad {name} {value!r}: must be an integer")
        if not low <= value <= INT_MAX:
            raise DispatcherLoadError(where, f"bad {name} {value}: must be {low}..{INT_MAX}")
    for name, text in (("destination", uri), ("attrs", attrs), ("description", description)):
        if any(c in text for c in "\r\n\x00"):
            raise DispatcherLoadError(where, f"bad {name} {text!r}: must be one line of text")
    return make_destination(setid, uri, flags, priority, attrs, description, where=where)


def check_column_sizes(sizes: dict[str, int], values: dict[str, str], *, where: str) -> None:
    """Refuse a text value longer than its column (``varchar(N)``) instead of letting
    the database cut it or fail with a driver message."""
    for name, limit in sizes.items():
        value = values[name]
        if len(value) > limit:
            raise DispatcherLoadError(
                where,
                f"{name} is {len(value)} characters long; the {name} column holds at most "
                f"{limit} (Kamailio schema)",
            )
