"""Longest-prefix routing to carriers, from a CSV table read once at import.

    [[route]]
    python = "carriers:route"   # this file next to the config (or on sys.path)
    set = 1                     # not used: every Route here names its set

Each row of ``carriers.csv`` (next to this file, or the file named by
``SIPDISPATCH_CARRIERS``) is ``prefix,set,carrier``. A call to ``+44 20 ...`` goes
to the set of the longest prefix of the dialled number (``4420`` before ``44``),
with an ``X-Carrier`` header naming the carrier; a number no prefix covers falls
through to the next ``[[route]]`` rule. The table is read at import, never per call:
``sipdispatch rpc dispatcher.reload`` reads it again (a broken table refuses the
reload and the running table stays).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from sipdispatch.hooks import RequestView, Route

TABLE_FILE = Path(os.environ.get("SIPDISPATCH_CARRIERS", Path(__file__).with_name("carriers.csv")))


def load_table(path: Path) -> dict[str, Route]:
    """prefix -> the Route for it. Raises ValueError naming the line of a bad row."""
    table: dict[str, Route] = {}
    with path.open(newline="") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            row = next(csv.reader([line]))
            if row == ["prefix", "set", "carrier"]:
                continue
            try:
                prefix, setid, carrier = (cell.strip() for cell in row)
                if not prefix.isdigit():
                    raise ValueError(f"prefix {prefix!r} is not digits")
                table[prefix] = Route(set=int(setid), headers={"X-Carrier": carrier})
            except ValueError as exc:
                raise ValueError(f"{path.name}:{number}: {line.strip()!r}: {exc}") from None
    return table


TABLE = load_table(TABLE_FILE)
LONGEST = max(map(len, TABLE), default=0)


def route(request: RequestView) -> Route | None:
    """The carrier of the longest prefix of the dialled number, or None."""
    number = request.ruri_user.lstrip("+")
    for length in range(min(len(number), LONGEST), 0, -1):
        found = TABLE.get(number[:length])
        if found is not None:
            return found
    return None
