"""What the parts of a migration share: the Kamailio version, the warnings, and `Base`,
the state of one migration (the configuration read, the sections being written, the
module parameters by module) with the helpers every part uses to read a parameter, quote
a kamailio.cfg line and say what is not carried over."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from sipdispatch.dispatcher.destination import Destination
from sipdispatch.migrate.cfgtext import CfgError, CfgText, Where
from sipdispatch.migrate.emit import Section
from sipdispatch.migrate.script import ScriptFacts
from sipdispatch.migrate.syntax import (
    CoreParam,
    ModParam,
    Script,
)

__all__ = ["DEFAULT_VERSION", "Base", "Listener", "MigrationWarning", "parse_version", "release"]

DEFAULT_VERSION: Final = (6, 1)
"""The Kamailio release whose meaning is taken when none is given: the current one."""
OLDEST_VERSION: Final = (4, 0)


NEWEST_VERSION: Final = (6, 2)
"""6.2 is Kamailio's development branch (master)."""
KAMAILIO_LIST_FILE: Final = "/etc/kamailio/dispatcher.list"
"""Kamailio's ``list_file`` default (``CFG_DIR``, as Debian and the packages build it)."""
SIP_PORT: Final = 5060


SIPS_PORT: Final = 5061
ADMIN_PORT: Final = 5080


def parse_version(text: str) -> tuple[int, int]:
    """``X.Y`` (or ``X.Y.Z``) -> (X, Y); ValueError saying what is allowed."""
    m = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.\d+)?\s*", text)
    allowed = (
        f"must be a Kamailio version X.Y from {OLDEST_VERSION[0]}.{OLDEST_VERSION[1]} to "
        f"{NEWEST_VERSION[0]}.{NEWEST_VERSION[1]}, e.g. 5.6"
    )
    if m is None:
        raise ValueError(allowed)
    version = (int(m.group(1)), int(m.group(2)))
    if not OLDEST_VERSION <= version <= NEWEST_VERSION:
        raise ValueError(allowed)
    return version


def release(version: tuple[int, int]) -> str:
    """(5, 6) -> ``5.6``."""
    return f"{version[0]}.{version[1]}"


@dataclass(frozen=True, slots=True)
class MigrationWarning:
    """Behaviour that differs from Kamailio's, at a place of the configuration."""

    where: Where | None
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}" if self.where is not None else self.text


@dataclass(slots=True)
class Listener:
    """A SIP socket of kamailio.cfg (``listen=`` or ``socket = {...}``)."""

    proto: str
    host: str
    """IPv4, host name, or IPv6 without brackets."""
    port: int
    where: Where
    advertise: str = ""
    name: str = ""

    def text(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.proto}:{host}:{self.port}"

    def matches(self, proto: str | None, host: str, port: int | None) -> bool:
        return (
            (proto is None or proto == self.proto)
            and same_host(host, self.host)
            and (port is None or port == self.port)
        )


class Base:
    """One migration's state; the parts (`core`, `params`, `rules`) are its mixins."""

    def __init__(
        self,
        path: str,
        cfg: CfgText,
        script: Script,
        facts: ScriptFacts,
        version: tuple[int, int],
        version_given: bool,
        defines: dict[str, str | None],
    ) -> None:
        self.path = path
        self.cfg = cfg
        self.script = script
        self.facts = facts
        self.version = version
        self.version_given = version_given
        self.defines = defines
        self.warnings: list[MigrationWarning] = []
        self.server = Section("server")
        self.transaction = Section("transaction")
        self.admin = Section("admin")
        self.dispatcher = Section("dispatcher")
        self.security = Section("security")
        self.tls = Section("tls")
        self.routes: list[Section] = []
        self.script_notes = Section("the routing script", title="the routing script")
        self.modules: dict[str, int] = {}
        self.params: dict[tuple[str, str], ModParam] = {}
        self.other_params: list[ModParam] = []
        self.listeners: list[Listener] = []
        self.flags = 0
        self.failover_possible = False
        self.sets: dict[int, list[Destination]] | None = None
        self.hash_header = ""

    # -- helpers ----------------------------------------------------------------------------

    def warn(self, where: Where | None, text: str) -> None:
        warning = MigrationWarning(where, text)
        if warning not in self.warnings:
            self.warnings.append(warning)

    def origin(self, where: Where) -> str:
        line = self.cfg.line_text(where)
        if len(line) > 100:
            line = line[:97] + "..."
        return f"{where}: {line}" if line else str(where)

    def not_carried(self, section: Section, where: Where | None, why: str) -> None:
        head = (
            f"not carried over: {self.origin(where)}" if where is not None else "not carried over:"
        )
        section.note(f"{head}\n  {why}")

    def param(self, name: str, module: str = "dispatcher") -> ModParam | None:
        return self.params.get((module, name))

    def loaded(self, module: str) -> bool:
        return module in self.modules

    def dp(self, name: str) -> tuple[str | int | None, Where | None]:
        mp = self.param(name)
        return (mp.value, mp.where) if mp is not None else (None, None)

    def put(self, key: str, value: object, where: Where | None, default_note: str = "") -> None:
        """A [dispatcher] key from a parameter, or Kamailio's default."""
        if where is not None:
            self.dispatcher.add(key, value, self.origin(where))
        else:
            self.dispatcher.add(
                key, value, f"Kamailio default{': ' + default_note if default_note else ''}"
            )

    def core(self, name: str) -> CoreParam | None:
        found = None
        for param in self.script.core:
            if param.name == name:
                found = param
        return found

    def core_int(self, name: str) -> tuple[int, Where] | None:
        param = self.core(name)
        if param is None:
            return None
        value = int_word(param.value)
        if value is None:
            raise CfgError(param.where, f"{name} = {param.value}: must be a number")
        return value, param.where

    def called(self) -> dict[str, list[Where]]:
        """The functions request_route calls, with where."""
        return self.facts.calls


def same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return a.strip("[]").lower() == b.strip("[]").lower()


def int_word(text: str) -> int | None:
    value = text.strip().strip('"').lower()
    if value in ("yes", "true", "on", "enable"):
        return 1
    if value in ("no", "false", "off", "disable"):
        return 0
    try:
        return int(value, 0)
    except ValueError:
        return None


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def overlaps(host: str, other: str) -> bool:
    return host in ("0.0.0.0", "::") or same_host(host, other)


def by_place(where: Where) -> tuple[str, int]:
    return (where.file, where.line)
