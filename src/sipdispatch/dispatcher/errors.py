"""Errors of the dispatcher core."""

from __future__ import annotations


class DispatcherError(Exception):
    """Base class of every error raised by :mod:`sipdispatch.dispatcher`."""


class AttrsError(DispatcherError, ValueError):
    """A destination ``attrs`` string holds a value that cannot be used.

    The message names the attribute, the value and what is allowed, e.g.
    ``weight=150: must be an integer 0..100``.
    """


class DispatcherLoadError(DispatcherError):
    """A destination list (file or table) cannot be loaded.

    ``where`` names the place (``dispatcher.list:12`` or ``dispatcher row id=7``)
    and ``reason`` says what is wrong; ``str(err)`` is ``"<where>: <reason>"``.
    A load is all-or-nothing: whoever catches this keeps the running list.
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.where = where
        self.reason = reason


class UnknownAlgorithmError(DispatcherError, ValueError):
    """An algorithm number or name that the registry does not know."""
