"""The demo's setup: two gateways in one dispatcher set in front of the proxy, and the
proxy's configuration (the seed article's, with short timers so that changes show
within seconds; docs/demo.md shows it as a file).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Final

from sipdispatch.config import AdminConfig, Config, ListenAddr, parse_config

HOST: Final = "127.0.0.1"
"""Everything runs on loopback: the proxy, the gateways and the caller."""
SET_ID: Final = 1
ALGORITHM_WEIGHT: Final = 9
WEIGHTS: Final = {"MG1": 75, "MG2": 25}
"""The article: 75 % of the calls to the new gateway (MG1), 25 % to the old one."""
DESCRIPTIONS: Final = {"MG1": "Media Gateway 1", "MG2": "Media Gateway 2"}
LABELS: Final = ("MG1", "MG2")

PING_INTERVAL: Final = 1
"""``ds_ping_interval`` (s): the smallest the config allows, so changes show quickly."""
PROBING_THRESHOLD: Final = 2
"""Missed pings in a row before a destination is ``IP``."""
INACTIVE_THRESHOLD: Final = 2
"""Answered pings in a row before an ``IP`` destination is ``AP`` again."""
FR_TIMER_MS: Final = 1000
"""No answer from a gateway within this: the branch (or ping) times out."""
FR_INV_TIMER_MS: Final = 10000
"""An INVITE that got a provisional response but no final one within this times out."""
FAILOVER_ON: Final = ("5xx", "404", "408")
MARK_FAILED: Final = "ip"


def build_config(list_file: Path) -> Config:
    """The proxy's configuration: validated by :func:`parse_config` as a TOML file would
    be, then given port 0 (any free port) for SIP and admin, which a file cannot say."""
    data: dict[str, Any] = {
        "server": {"listen": [f"udp:{HOST}:5060"], "log_level": "info"},
        "transaction": {"fr_timer": FR_TIMER_MS, "fr_inv_timer": FR_INV_TIMER_MS},
        "admin": {"listen": f"{HOST}:5080"},
        "dispatcher": {
            "list_file": str(list_file),
            "ping_interval": PING_INTERVAL,
            "probing_mode": 1,
            "probing_threshold": PROBING_THRESHOLD,
            "inactive_threshold": INACTIVE_THRESHOLD,
            "ping_latency_stats": True,
        },
        "route": [
            {
                "set": SET_ID,
                "algorithm": ALGORITHM_WEIGHT,
                "failover_on": list(FAILOVER_ON),
                "mark_failed": MARK_FAILED,
            }
        ],
    }
    config = parse_config(data, source="<demo>")
    server = dataclasses.replace(config.server, listen=(ListenAddr("udp", HOST, 0),))
    return dataclasses.replace(config, server=server, admin=AdminConfig(HOST, 0))
