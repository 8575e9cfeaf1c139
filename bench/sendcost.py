"""What one UDP datagram costs to send, through uvloop's transport and through the
socket module, on loopback: the thread's CPU time per datagram, the kernel's part
(the receiver's side of the stack runs in the sender's system call) included.

    .venv/bin/python bench/sendcost.py
    .venv/bin/python bench/sendcost.py --datagrams 500000 --size 900

Each way sends batches of 100 datagrams of ``--size`` bytes to a socket of this
process, which is emptied between batches; the best of three rounds is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections.abc import Callable

import uvloop

BATCH = 100


def _drain(sink: socket.socket) -> None:
    try:
        while True:
            sink.recv(65536)
    except BlockingIOError:
        pass


def _per_datagram(send: Callable[[], None], sink: socket.socket, count: int) -> float:
    """Best of three rounds: µs of this thread's CPU per datagram sent."""
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        for _ in range(count // BATCH):
            for _ in range(BATCH):
                send()
            _drain(sink)
        best = min(best, (time.thread_time() - started) / count * 1e6)
    return best


async def _measure(count: int, size: int) -> list[tuple[str, float]]:
    loop = asyncio.get_running_loop()
    data = b"x" * size
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
    sink.setblocking(False)
    host, port = sink.getsockname()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    raw.setblocking(False)
    try:
        return [
            (
                "uvloop transport.sendto",
                _per_datagram(lambda: transport.sendto(data, (host, port)), sink, count),
            ),
            ("socket.sendto", _per_datagram(lambda: raw.sendto(data, (host, port)), sink, count)),
        ]
    finally:
        transport.close()
        raw.close()
        sink.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--datagrams", type=int, default=200_000, help="per round (200 000)")
    parser.add_argument("--size", type=int, default=600, help="bytes per datagram (600)")
    args = parser.parse_args(argv)
    for name, cost in uvloop.run(_measure(args.datagrams, args.size)):
        print(f"{name}: {cost:.2f} µs per datagram")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
