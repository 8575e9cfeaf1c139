"""Hooks for ``bench/corecost.py --hook``: the cost of a Python routing hook on the hot path.

``route`` decides nothing (the rule's set and algorithm), like a ``[[route]]`` rule with
no match; ``by_prefix`` reads the Request-URI user and compares a prefix, like
``match = { user_prefix = "serv" }``. Both return a Route made once, at import.
"""

from __future__ import annotations

from sipdispatch.hooks import RequestView, Route

DISPATCH = Route()


def route(request: RequestView) -> Route:
    """The trivial hook: dispatch by the rule's own set and algorithm."""
    return DISPATCH


def by_prefix(request: RequestView) -> Route | None:
    """The Request-URI user starts with ``serv`` (the bench dials ``service``)."""
    return DISPATCH if request.ruri_user.startswith("serv") else None
