"""Frames between the workers and their supervisor's hub: one JSON object each, after
its length (4 bytes, big-endian), over a local stream socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

LENGTH: Final = 4
"""Bytes of a frame's length."""
FRAME_MAX: Final = 64 << 20
"""Largest frame accepted (a whole proxy's metrics text fits many times)."""


class WireError(Exception):
    """The other end sent something that is not a frame."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame for ``message``."""
    data = json.dumps(message, separators=(",", ":")).encode()
    return len(data).to_bytes(LENGTH, "big") + data


async def read(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message; None at the end of the stream."""
    try:
        head = await reader.readexactly(LENGTH)
    except asyncio.IncompleteReadError:
        return None
    size = int.from_bytes(head, "big")
    if size > FRAME_MAX:
        raise WireError(f"frame of {size} bytes")
    try:
        data = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None
    try:
        message = json.loads(data)
    except ValueError as exc:
        raise WireError(f"unreadable frame: {exc}") from None
    if not isinstance(message, dict):
        raise WireError("a frame that is not an object")
    return message
