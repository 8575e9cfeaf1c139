"""The event loop sipdispatch runs on: uvloop when it is installed.

Kept out of ``sipdispatch.transport`` (which setup.py compiles in a build environment
that has only the standard library and mypy, not uvloop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def install_uvloop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when uvloop is installed, else None."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
