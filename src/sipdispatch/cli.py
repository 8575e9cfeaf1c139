"""The ``sipdispatch`` command line (SPEC §1)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from sipdispatch import __version__
from sipdispatch.config import Config, ConfigError, default_config, load_config
from sipdispatch.dispatcher.errors import DispatcherError
from sipdispatch.store import StoreError

DEFAULT_CONFIG_FILE = "sipdispatch.toml"
"""Read from the working directory by ``run`` when no ``--config`` is given."""


def _load(path: str | None) -> Config:
    if path is not None:
        return load_config(path)
    if os.path.exists(DEFAULT_CONFIG_FILE):
        return load_config(DEFAULT_CONFIG_FILE)
    return default_config()


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from sipdispatch.server import run

    config = _load(args.config)
    _setup_logging(config.server.log_level)
    return run(config)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests)."""
    parser = argparse.ArgumentParser(
        prog="sipdispatch", description="SIP load balancer with Kamailio dispatcher semantics"
    )
    parser.add_argument("--version", action="version", version=f"sipdispatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the proxy in the foreground")
    run.add_argument("--config", help=f"TOML config file (default ./{DEFAULT_CONFIG_FILE})")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sipdispatch`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except ConfigError as e:
        print(f"sipdispatch: {e}", file=sys.stderr)
        return 2
    except (DispatcherError, StoreError) as e:
        print(f"sipdispatch: destinations: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        # Most often a listen address already in use or not on this host.
        print(f"sipdispatch: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status
