"""Reading a configuration: TOML text -> validated `Config`, or one `ConfigError`.

The schema (`.schema`) does the validating; this module decodes the file, runs the schema on
it and turns the first problem pydantic reports into the one line an operator reads::

    config: transaction.fr_timer = -5: must be an integer >= 1 (milliseconds)

An unknown key is reported before any other problem (a misspelt key often explains the
rest). Nothing is resolved, opened or bound while a configuration is read.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from sipdispatch.config.reference import file_keys, key_text, render, table_at
from sipdispatch.config.schema import FILE_CONTEXT, Config
from sipdispatch.config.values import Invalid

__all__ = [
    "ConfigError",
    "default_config",
    "load_config",
    "parse_config",
]

_SHOW_MAX: Final = 60
"""Values longer than this are cut in error messages to keep them on one readable line."""

_UNKNOWN_KEY: Final = ("unexpected_keyword_argument", "extra_forbidden")
"""pydantic's error types for a key no field takes."""

_ADAPTER: Final = TypeAdapter(Config)


class ConfigError(Exception):
    """The configuration cannot be used; ``str(error)`` is a one-line message for the operator.

    ``key`` is the dotted key at fault (``transaction.fr_timer``, ``route[2].algorithm``), or
    None when the file itself cannot be read or parsed. ``source`` names the file.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str = "<config>") -> None:
        super().__init__(message)
        self.key = key
        self.source = source


class _Missing:
    """Marker for a required key that is absent."""


_MISSING: Final = _Missing()


def _show(value: object) -> str:
    """A value as written in the file, on one short line."""
    text = render(value)
    if len(text) > _SHOW_MAX:
        text = text[: _SHOW_MAX - 3] + "..."
    return text


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{key_text(part)}" if out else key_text(part)
    return out


def _unknown_key(path: tuple[str | int, ...]) -> str:
    table, where = table_at(path[:-1])
    allowed = list(file_keys(table, where)) if table is not None else []
    hint = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    guess = f" (did you mean {hint[0]}?)" if hint else ""
    return f"unknown key{guess}; allowed: {', '.join(allowed)}"


def _allowed(path: tuple[str | int, ...]) -> str:
    while path and isinstance(path[-1], int):
        path = path[:-1]
    if not path:
        return "must be a table"
    table, where = table_at(path[:-1])
    key = file_keys(table, where).get(str(path[-1])) if table is not None else None
    return key.allowed if key is not None else "is not allowed here"


def _explain(error: ErrorDetails) -> tuple[str, object, str]:
    """(dotted key, value given, what is allowed) for one pydantic error."""
    path: tuple[str | int, ...] = tuple(error["loc"])
    value: object = error.get("input", _MISSING)
    reason = (error.get("ctx") or {}).get("error")
    if isinstance(reason, Invalid):
        path += reason.at
        if reason.value is not None:
            value = reason.value
        return _dotted(path), value, reason.allowed
    if error["type"] in _UNKNOWN_KEY:
        return _dotted(path), value, _unknown_key(path)
    if error["type"] == "missing":
        value = _MISSING
    # A value of the wrong type inside a list the schema takes whole is the list's error.
    while path and isinstance(path[-1], int) and table_at(path)[0] is None:
        path = path[:-1]
    return _dotted(path), value, _allowed(path)


def _first(errors: list[ErrorDetails]) -> ErrorDetails:
    unknown = [e for e in errors if e["type"] in _UNKNOWN_KEY]
    return (unknown or errors)[0]


def _message(key: str, value: object, allowed: str, source: str) -> str:
    where = "" if source == "<config>" else f"{source}: "
    if isinstance(value, _Missing):
        return f"config: {where}{key} is missing: {allowed}"
    return f"config: {where}{key} = {_show(value)}: {allowed}"


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate a decoded TOML document and build a `Config`.

    `source` names the origin (the file path) in error messages.
    Raises `ConfigError` for the first problem found.
    """
    try:
        return _ADAPTER.validate_python(data, context=dict(FILE_CONTEXT), by_name=False)
    except ValidationError as exc:
        key, value, allowed = _explain(_first(exc.errors()))
        if not key:
            raise ConfigError(
                f"config: {'' if source == '<config>' else f'{source}: '}"
                f"the document must be a table of tables",
                key=None,
                source=source,
            ) from None
        raise ConfigError(_message(key, value, allowed, source), key=key, source=source) from None


def _toml_message(exc: tomllib.TOMLDecodeError) -> str:
    """``line 3, column 10: Invalid value`` from tomllib's ``Invalid value (at line 3,
    column 10)``: the position first, where a reader looks for it."""
    message = str(exc)
    start = message.rfind(" (at ")
    if start < 0 or not message.endswith(")"):
        return message
    where = message[start + len(" (at ") : -1]
    if where == "end of document":
        where = "at end of document"
    return f"{where}: {message[:start]}"


DEFAULT_CONFIG_FILE = "sipdispatch.toml"
"""The file ``sipdispatch run`` (and the other commands) read when given no ``--config``,
in the current directory."""


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML configuration file. Raises `ConfigError`."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"config: {source}: cannot read: {reason}", source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config: {source}: not valid UTF-8 (byte {exc.start})", source=source
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config: {source}: invalid TOML: {_toml_message(exc)}", source=source
        ) from None
    return parse_config(data, source)


def default_config() -> Config:
    """The built-in configuration used when there is no file."""
    return Config()
