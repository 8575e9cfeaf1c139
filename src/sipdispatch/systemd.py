"""systemd's readiness protocol (``sd_notify``), without libsystemd.

With ``Type=notify`` systemd passes ``NOTIFY_SOCKET``, a Unix datagram socket (a path, or
an abstract name written with a leading ``@``); the service writes ``READY=1`` there once
it serves and ``STOPPING=1`` when it begins to stop. Without the variable nothing is sent.
"""

from __future__ import annotations

import os
import socket

NOTIFY_ENV = "NOTIFY_SOCKET"


def notify(state: str) -> bool:
    """Send ``state`` (``READY=1``, ``STOPPING=1``, ``STATUS=...``) to systemd; True when
    it was sent, False when not run by systemd or the socket is gone."""
    address = os.environ.get(NOTIFY_ENV, "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True
