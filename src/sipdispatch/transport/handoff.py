"""Worker processes as one proxy: every message of one Call-ID is handled by one worker.

The kernel spreads UDP datagrams over the workers' ``SO_REUSEPORT`` sockets by a hash
of their source, and TCP connections by theirs: one SBC sending every call from one
address and port reaches one worker. So each worker looks at what it receives, finds
its Call-ID (:func:`call_id_of`: a search in the head, no parse) and, when the Call-ID
is another worker's (:func:`owner_of`: CRC-32 modulo the number of workers), hands the
message to that worker (:class:`Handoff`) instead of handling it. The owner handles it
as if it had received it itself, and answers from its own socket on the same listening
address and port (every worker's UDP socket is bound to it): to the network the workers
are one proxy, and the messages of one dialog are handled in the order they came.

Between two workers the messages travel over an ``AF_UNIX`` ``SOCK_SEQPACKET`` pair
(reliable, ordered, one message a packet) that the supervisor made before starting
them and keeps open: a worker that is restarted takes its ends again, with whatever
was queued for it meanwhile. A frame is one header line and the message:

- ``M<transport> <host> <port> <conn>\\n`` + the message as received from that peer
  (``conn``: the stream connection it came over, ``-`` for UDP);
- ``W<transport> <host> <port> <conn>\\n`` + bytes to write on that connection, which
  the receiving worker holds (the owner answers a peer over a TCP or TLS connection
  that another worker accepted).

A connection id says which worker holds it: ``id % workers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import zlib
from collections import deque
from collections.abc import Callable
from typing import Final

from sipdispatch.sip.addr import Addr

MESSAGE: Final = 77  # ord("M")
"""Frame kind: a message received from a peer, for its owner to handle."""
WRITE: Final = 87  # ord("W")
"""Frame kind: bytes to write on a stream connection the receiver holds."""
BUFFER_BYTES: Final = 4 << 20
"""Send and receive buffer of each end (the kernel caps it at ``wmem_max``)."""
QUEUE_MAX: Final = 20000
"""Frames kept while a peer's socket is full (it is busy or being restarted); more
are dropped and counted (UDP retransmissions recover them)."""
READ_BATCH: Final = 64
"""Frames read from one peer per wake-up of the event loop."""
FRAME_MAX: Final = 128 * 1024
"""Largest frame read (a message is at most 64 KiB, plus its header line)."""
_NO_CONN: Final = b"-"


def call_id_of(data: bytes) -> bytes | None:
    """The Call-ID of a SIP message's bytes (stripped), None when its head has none.

    Found by search, not by parse: ``Call-ID:`` as written by nearly everyone, else any
    spelling of the name or the compact ``i`` with any case and spaces before the colon
    (RFC 3261 §7.3.1, §20.8). Only the head is searched (a body may quote a message)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = len(data)
    at = data.find(b"\nCall-ID:", 0, end)
    start = at + 9 if at >= 0 else _value_start(data, end)
    if start < 0:
        return None
    stop = data.find(b"\n", start)
    if stop < 0 or stop > end + 2:
        stop = end
    value = data[start:stop].strip()
    return value or None


def _value_start(data: bytes, end: int) -> int:
    """Where the Call-ID's value starts for a name written otherwise; -1 for none."""
    head = data[:end].lower()
    for name in (b"\ncall-id", b"\ni"):
        at = head.find(name)
        while at >= 0:
            j = at + len(name)
            while j < end and (head[j] == 32 or head[j] == 9):
                j += 1
            if j < end and head[j] == 58:  # ":"
                return j + 1
            at = head.find(name, at + 1)
    return -1


def owner_of(call_id: bytes, workers: int) -> int:
    """The worker that handles every message of ``call_id``."""
    return zlib.crc32(call_id) % workers


def holder_of(conn: int, workers: int) -> int:
    """The worker that holds stream connection ``conn``."""
    return conn % workers


def frame(kind: int, addr: Addr, data: bytes) -> bytes:
    """A frame of ``kind`` for ``data`` from or to ``addr``."""
    conn = _NO_CONN if addr.conn is None else str(addr.conn).encode()
    head = b"%c%s %s %d %s\n" % (kind, addr.transport.encode(), addr.host.encode(), addr.port, conn)
    return head + data


def unframe(packet: bytes) -> tuple[int, Addr, bytes]:
    """``(kind, addr, data)`` of a frame. Raises ValueError for a malformed one."""
    nl = packet.find(b"\n")
    if nl < 0 or not packet:
        raise ValueError("no header line")
    parts = packet[1:nl].split(b" ")
    if len(parts) != 4:
        raise ValueError("bad header line")
    transport, host, port, conn = parts
    addr = Addr(
        transport.decode(),
        host.decode(),
        int(port),
        None if conn == _NO_CONN else int(conn),
    )
    return packet[0], addr, packet[nl + 1 :]


class HandoffStats:
    """What the hand-off counts."""

    __slots__ = ("dropped", "handed", "queued_max", "taken")

    def __init__(self) -> None:
        self.handed = 0
        """Messages and writes sent to another worker."""
        self.taken = 0
        """Messages and writes received from another worker."""
        self.dropped = 0
        """Frames not sent: the peer's queue was full (:data:`QUEUE_MAX`)."""
        self.queued_max = 0
        """The longest queue towards one peer seen."""


Taker = Callable[[int, Addr, bytes], None]
"""``take(kind, addr, data)``: a frame another worker handed over."""


class Handoff:
    """This worker's ends of the pairs to every other worker.

    ``peers[k]`` is the socket to worker ``k`` (None for this worker's own index).
    ``take`` is told of every frame received; :meth:`send` hands one to a worker."""

    def __init__(
        self,
        index: int,
        peers: list[socket.socket | None],
        loop: asyncio.AbstractEventLoop,
        take: Taker,
    ) -> None:
        self.index = index
        self.workers = len(peers)
        self.peers = peers
        self.loop = loop
        self.take = take
        self.stats = HandoffStats()
        self._queues: dict[int, deque[bytes]] = {}
        for sock in peers:
            if sock is None:
                continue
            sock.setblocking(False)
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, BUFFER_BYTES)

    def start(self) -> None:
        """Start reading what the other workers hand over."""
        for k, sock in enumerate(self.peers):
            if sock is not None:
                self.loop.add_reader(sock.fileno(), self._readable, k)

    def close(self) -> None:
        """Stop reading and writing (the sockets stay the supervisor's)."""
        for k, sock in enumerate(self.peers):
            if sock is None:
                continue
            self.loop.remove_reader(sock.fileno())
            if k in self._queues:
                self.loop.remove_writer(sock.fileno())
            sock.close()
        self._queues.clear()

    def owner(self, data: bytes) -> int:
        """The worker whose message ``data`` is (this one for a message without a
        Call-ID: it is answered or dropped where it came in)."""
        call_id = call_id_of(data)
        if call_id is None:
            return self.index
        return zlib.crc32(call_id) % self.workers

    def owner_of_call(self, call_id: str) -> int:
        """The worker of a Call-ID already parsed."""
        return zlib.crc32(call_id.encode("latin-1", "replace")) % self.workers

    def holder(self, conn: int) -> int:
        """The worker that holds stream connection ``conn``."""
        return conn % self.workers

    def send(self, worker: int, packet: bytes) -> None:
        """Hand ``packet`` (a :func:`frame`) to ``worker``, in order with the others."""
        sock = self.peers[worker]
        if sock is None:
            return
        queue = self._queues.get(worker)
        if queue is None:
            try:
                sock.send(packet)
                self.stats.handed += 1
                return
            except BlockingIOError:
                queue = self._queues[worker] = deque()
                self.loop.add_writer(sock.fileno(), self._writable, worker)
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    self.stats.dropped += 1
                    return
                queue = self._queues[worker] = deque()
                self.loop.add_writer(sock.fileno(), self._writable, worker)
        if len(queue) >= QUEUE_MAX:
            self.stats.dropped += 1
            return
        queue.append(packet)
        if len(queue) > self.stats.queued_max:
            self.stats.queued_max = len(queue)

    def _writable(self, worker: int) -> None:
        sock = self.peers[worker]
        queue = self._queues.get(worker)
        if sock is None or queue is None:
            return
        while queue:
            try:
                sock.send(queue[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                queue.popleft()
                self.stats.dropped += 1
                continue
            queue.popleft()
            self.stats.handed += 1
        del self._queues[worker]
        self.loop.remove_writer(sock.fileno())

    def _readable(self, worker: int) -> None:
        sock = self.peers[worker]
        if sock is None:
            return
        take = self.take
        for _ in range(READ_BATCH):
            try:
                packet = sock.recv(FRAME_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not packet:
                return
            try:
                kind, addr, data = unframe(packet)
            except (ValueError, UnicodeDecodeError):
                continue
            self.stats.taken += 1
            take(kind, addr, data)


def socket_pairs(workers: int) -> dict[tuple[int, int], tuple[socket.socket, socket.socket]]:
    """The pairs between every two of ``workers`` workers, by ``(i, j)`` with ``i < j``:
    the first end is worker ``i``'s, the second worker ``j``'s."""
    pairs: dict[tuple[int, int], tuple[socket.socket, socket.socket]] = {}
    for i in range(workers):
        for j in range(i + 1, workers):
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            for sock in (a, b):
                for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, opt, BUFFER_BYTES)
            pairs[(i, j)] = (a, b)
    return pairs


def ends_of(
    index: int, pairs: dict[tuple[int, int], tuple[socket.socket, socket.socket]]
) -> dict[int, socket.socket]:
    """Worker ``index``'s end of each of its pairs, by the other worker's index."""
    out: dict[int, socket.socket] = {}
    for (i, j), (a, b) in pairs.items():
        if i == index:
            out[j] = a
        elif j == index:
            out[i] = b
    return out
