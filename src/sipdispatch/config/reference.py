"""The keys of the configuration file, read from the schema.

`file_keys` lists the TOML keys of one schema class with what the file says about each:
type, default, what is allowed, description, Kamailio counterpart. The loader's messages
and the key reference in ``docs/configuration.md`` both come from here, so they say the same.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Final, Literal

import annotated_types
from pydantic import AliasPath
from pydantic.fields import FieldInfo

from sipdispatch.config.schema import Config, Key

__all__ = ["FileKey", "file_keys", "key_text", "render", "sections", "table_at"]

_BARE_KEY_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
)


@dataclasses.dataclass(frozen=True, slots=True)
class FileKey:
    """One key of a TOML table, as the schema defines it."""

    name: str
    """The key as written in the file."""
    fields: tuple[str, ...]
    """The attributes it gives (usually one)."""
    toml_type: str
    """``integer``, ``string``, ``array of strings``, ``table``..."""
    default: str | None
    """The default as written in the file (or a phrase such as ``any method``); None when the
    key is required."""
    allowed: str
    """What is allowed, as a message says it: ``must be an integer >= 1 (milliseconds)``."""
    description: str
    """What the key does, on one line."""
    kamailio: str
    """The Kamailio counterpart; "" = none."""
    table: type | None
    """The schema class of the table (or of each table of an array) the key holds."""


def key_text(name: str) -> str:
    """A key as TOML would spell it: bare when possible, quoted otherwise."""
    return name if name and _BARE_KEY_CHARS.issuperset(name) else json.dumps(name)


def render(value: object) -> str:
    """A value the way it would be written in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = ", ".join(f"{key_text(str(k))} = {render(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render(v) for v in value) + "]"
    return str(value)


def _strip(tp: Any) -> Any:
    """The type without ``Annotated`` and ``None``: ``Optional[Annotated[int, ...]]`` -> int."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _table_of(tp: Any) -> tuple[type | None, bool]:
    """(schema class, is an array of them) for a table-typed field, else (None, False)."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp, False
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        item = _strip(args[0]) if args else None
        if dataclasses.is_dataclass(item) and isinstance(item, type):
            return item, True
    return None, False


def _type_name(tp: Any) -> str:
    if tp is bool:
        return "boolean"
    if tp is int:
        return "integer"
    if tp is str or typing.get_origin(tp) is Literal:
        return "string"
    table, array = _table_of(tp)
    if table is not None:
        return "array of tables" if array else "table"
    return "value"


def _nested_metadata(tp: Any) -> list[object]:
    """The ``Annotated`` metadata inside a type (``Annotated[int, Ge(0)] | None``)."""
    found: list[object] = []
    if typing.get_origin(tp) is typing.Annotated:
        found.extend(tp.__metadata__)
    for arg in typing.get_args(tp):
        found.extend(_nested_metadata(arg))
    return found


def _metadata(info: FieldInfo) -> tuple[Key, int | None, int | None]:
    key = Key()
    lo: int | None = None
    hi: int | None = None
    items = [*_nested_metadata(info.annotation), *info.metadata]
    items += [m for item in items if isinstance(item, FieldInfo) for m in item.metadata]
    for item in items:
        if isinstance(item, Key):
            key = item
        elif isinstance(item, annotated_types.Ge) and isinstance(item.ge, int):
            lo = item.ge
        elif isinstance(item, annotated_types.Le) and isinstance(item.le, int):
            hi = item.le
    return key, lo, hi


def _allowed(tp: Any, key: Key, lo: int | None, hi: int | None, where: str) -> str:
    if key.allowed:
        return key.allowed
    if tp is int:
        if lo is not None and hi is not None:
            text = f"must be an integer {lo}..{hi}"
        elif lo is not None:
            text = f"must be an integer >= {lo}"
        else:
            text = "must be an integer"
        return f"{text} ({key.unit})" if key.unit else text
    if tp is bool:
        return "must be true or false"
    if typing.get_origin(tp) is Literal:
        return "must be one of " + ", ".join(json.dumps(c) for c in typing.get_args(tp))
    if tp is str:
        return "must be a string"
    return f"must be a table, e.g. [{where}]"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _toml_name(name: str, info: FieldInfo) -> str:
    alias = info.validation_alias
    if isinstance(alias, AliasPath) and isinstance(alias.path[0], str):
        return alias.path[0]
    return alias if isinstance(alias, str) else name


@functools.cache
def file_keys(cls: type, where: str = "") -> dict[str, FileKey]:
    """The TOML keys of schema class `cls`, in the order of its fields.

    `where` is the table's dotted name (``server``, ``route.match``), for messages.
    """
    fields: dict[str, FieldInfo] = cls.__pydantic_fields__  # type: ignore[attr-defined]
    names: dict[str, list[str]] = {}
    for name, info in fields.items():
        names.setdefault(_toml_name(name, info), []).append(name)
    keys: dict[str, FileKey] = {}
    for toml_name, attrs in names.items():
        info = fields[attrs[0]]
        key, lo, hi = _metadata(info)
        tp = _strip(info.annotation)
        table, _array = _table_of(tp)
        if key.toml_type and key.toml_type not in ("table", "inline table", "array of tables"):
            table = None
        dotted = f"{where}.{toml_name}" if where else toml_name
        if key.toml_default:
            default: str | None = key.toml_default
        elif info.is_required():
            default = None
        elif table is not None:
            default = "{}"
        else:
            default = render(info.get_default(call_default_factory=True))
        keys[toml_name] = FileKey(
            name=toml_name,
            fields=tuple(attrs),
            toml_type=key.toml_type or _type_name(tp),
            default=default,
            allowed=_allowed(tp, key, lo, hi, dotted),
            description=_one_line(key.doc or info.description),
            kamailio=key.kamailio,
            table=table,
        )
    return keys


def table_at(path: tuple[str | int, ...]) -> tuple[type | None, str]:
    """The schema class of the table at `path` (``("route", 0, "match")``) and its dotted
    name (``route.match``); (None, name) when the path leads to no table."""
    cls: type | None = Config
    where = ""
    for part in path:
        if isinstance(part, int):
            continue
        if cls is None:
            return None, where
        found = file_keys(cls, where).get(part)
        where = f"{where}.{part}" if where else part
        if found is None:
            return None, where
        cls = found.table
    return cls, where


def sections() -> list[tuple[str, type]]:
    """Every table of the file with its dotted name, top-level ones first, in schema order:
    ``[("", Config), ("server", ServerConfig), ..., ("route", RouteRule), ("route.match",
    RouteMatch)]``."""
    found: list[tuple[str, type]] = [("", Config)]
    for where, cls in found:
        for key in file_keys(cls, where).values():
            if key.table is not None:
                found.append((f"{where}.{key.name}" if where else key.name, key.table))
    return found
