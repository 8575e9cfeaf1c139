"""Configuration for ``sipdispatch run``: a TOML file turned into a frozen, validated `Config`.

`schema` defines every table and key (types, constraints, defaults, descriptions), `loader`
reads a file against it and reports a problem as one `ConfigError` naming the dotted key,
the value given and what is allowed::

    config: transaction.fr_timer = -5: must be an integer >= 1 (milliseconds)

`docs` writes the key reference of ``docs/configuration.md`` from the schema. Reading a
configuration resolves no host name, opens no store and binds no socket.
"""

from __future__ import annotations

from sipdispatch.config.loader import (
    DEFAULT_CONFIG_FILE,
    ConfigError,
    default_config,
    load_config,
    parse_config,
)
from sipdispatch.config.schema import (
    AdminConfig,
    CaptureConfig,
    ClusterConfig,
    Config,
    DispatcherConfig,
    DnsConfig,
    EventsConfig,
    FallbackSet,
    ListenAddr,
    LogConfig,
    RouteMatch,
    RouteMode,
    RouteRule,
    ServerConfig,
    StoreKind,
    TransactionConfig,
)
from sipdispatch.config.values import ALGORITHM_NAMES

__all__ = [
    "ALGORITHM_NAMES",
    "DEFAULT_CONFIG_FILE",
    "AdminConfig",
    "CaptureConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DispatcherConfig",
    "DnsConfig",
    "EventsConfig",
    "FallbackSet",
    "ListenAddr",
    "LogConfig",
    "RouteMatch",
    "RouteMode",
    "RouteRule",
    "ServerConfig",
    "StoreKind",
    "TransactionConfig",
    "default_config",
    "load_config",
    "parse_config",
]
