"""bench/soakwatch.py tells, second by second during a soak, which socket's reader fell
behind: the bytes waiting in each watched UDP socket and the datagrams the kernel
dropped there, read from /proc/net/udp as the kernel writes it and from a real socket
that nobody reads until its buffer overflows.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from bench.procstat import udp_sockets
from bench.soakwatch import Watch

TABLE = (
    "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode ref pointer drops\n"
    "  12: 0100007F:3EBC 00000000:0000 07 00000000:00000A00 00:00000000 00000000     0"
    "        0 1234 2 0000000000000000 41\n"
    "  13: 0100007F:3EBC 00000000:0000 07 00000000:00000100 00:00000000 00000000     0"
    "        0 1235 2 0000000000000000 1\n"
    "  14: 00000000:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
    "        0 1236 2 0000000000000000 0\n"
)


def test_udp_table_gives_queued_bytes_and_drops_per_port_summed_over_sockets() -> None:
    assert udp_sockets(TABLE) == {0x3EBC: (0xA00 + 0x100, 42), 5060: (0, 0)}


def test_a_socket_nobody_reads_shows_its_queue_then_the_datagrams_dropped() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"soakwatch-{os.getpid()}.log"
    watch = Watch(path, lambda: {"me": os.getpid()}, {"sink": port})
    try:
        watch.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for _ in range(200):
                sender.sendto(b"x" * 200, ("127.0.0.1", port))
            if sum(s.dropped.get("sink", 0) for s in watch.samples) > 0:
                break
            time.sleep(0.2)
        watch.stop()
        assert any(s.queued["sink"] > 0 for s in watch.samples)
        assert sum(s.dropped["sink"] for s in watch.samples) > 0
        around = watch.around_drops()
        assert any("sink:q" in line and "/d0" not in line for line in around)
        assert "datagrams dropped: sink " in watch.summary()
        assert path.read_text().count("\n") == len(watch.samples)
    finally:
        watch.stop()
        sink.close()
        sender.close()
        path.unlink(missing_ok=True)
