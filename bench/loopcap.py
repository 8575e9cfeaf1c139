"""Microsecond timing of INVITE -> 200 on the loopback interface.

sipp's response-time measure (rtd) counts whole milliseconds, and a proxy on
loopback adds well under one, so its p50 says "0 ms" for every proxy. This module
gives the same measure at microsecond resolution from the kernel's own packet
timestamps: a packet socket on ``lo`` with a classic BPF filter that keeps only
outgoing UDP packets to or from one port whose payload starts with ``INVITE`` or
``SIP/2.0 200``. The kernel stamps each packet as it is sent, so the capturing
thread being late does not skew the figures; it only has to keep up (drops are
counted and reported).

For a proxy on port P, per call (matched by Call-ID):

- ``e2e``: INVITE caller->P until 200 P->caller (what the caller sees);
- ``transit``: (INVITE P->gateway - INVITE caller->P) + (200 P->caller - 200 gateway->P),
  the time the proxy itself held the two messages.

For a direct call to a gateway on port G, ``e2e`` is INVITE caller->G until 200
G->caller. Needs CAP_NET_RAW (root); :func:`available` says whether it can run.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
from dataclasses import dataclass, field

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
PACKET_OUTGOING = 4
"""sll_pkttype of a packet as it leaves; on ``lo`` every packet is seen twice (out, in)."""

# Classic BPF opcodes (linux/filter.h).
_LD_W_ABS = 0x20
_LD_H_ABS = 0x28
_LD_B_ABS = 0x30
_JEQ_K = 0x15
_RET_K = 0x06
_SKF_AD_PKTTYPE = 0xFFFFF000 + 4
"""Ancillary load of the packet type (SKF_AD_OFF + SKF_AD_PKTTYPE)."""

# Offsets in a loopback frame: 14-byte Ethernet header, 20-byte IPv4 header (no
# options on loopback UDP), 8-byte UDP header.
_ETHERTYPE_AT = 12
_IP_PROTO_AT = 23
_SPORT_AT = 34
_DPORT_AT = 36
PAYLOAD_AT = 42

_INVI = int.from_bytes(b"INVI", "big")
_SIP_ = int.from_bytes(b"SIP/", "big")
_200_ = int.from_bytes(b"200 ", "big")


def _filter_program(port: int) -> list[tuple[int, int, int, int]]:
    """BPF: outgoing IPv4 UDP from/to ``port`` starting with INVITE or SIP/2.0 200."""
    # Written with labels; jumps are resolved to "instructions to skip" below.
    code: list[tuple[int, str, str, int]] = [
        (_LD_W_ABS, "", "", _SKF_AD_PKTTYPE),
        (_JEQ_K, "", "drop", PACKET_OUTGOING),
        (_LD_H_ABS, "", "", _ETHERTYPE_AT),
        (_JEQ_K, "", "drop", 0x0800),
        (_LD_B_ABS, "", "", _IP_PROTO_AT),
        (_JEQ_K, "", "drop", 17),
        (_LD_H_ABS, "", "", _SPORT_AT),
        (_JEQ_K, "payload", "", port),
        (_LD_H_ABS, "", "", _DPORT_AT),
        (_JEQ_K, "", "drop", port),
        (_LD_W_ABS, "", "", PAYLOAD_AT),  # payload
        (_JEQ_K, "accept", "", _INVI),
        (_JEQ_K, "", "drop", _SIP_),
        (_LD_W_ABS, "", "", PAYLOAD_AT + 8),  # "SIP/2.0 " is 8 bytes
        (_JEQ_K, "accept", "drop", _200_),
        (_RET_K, "", "", 0xFFFF),  # accept
        (_RET_K, "", "", 0),  # drop
    ]
    labels = {"payload": 10, "accept": 15, "drop": 16}

    def skip(at: int, label: str) -> int:
        return labels[label] - at - 1 if label else 0

    return [(op, skip(at, jt), skip(at, jf), k) for at, (op, jt, jf, k) in enumerate(code)]


@dataclass
class Packet:
    """One captured packet, reduced to what the latency figures need."""

    ts_ns: int
    sport: int
    dport: int
    invite: bool
    """True for an INVITE request, False for a 200 response to an INVITE."""
    call_id: bytes


@dataclass
class Timing:
    """Per-call microsecond figures from one capture."""

    e2e_us: list[float] = field(default_factory=list)
    transit_us: list[float] = field(default_factory=list)
    packets: int = 0
    drops: int = 0


def available() -> str | None:
    """None if a packet socket can be opened here, else why not."""
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except (OSError, AttributeError) as e:
        return f"no packet socket ({e}); run as root for microsecond latency"
    s.close()
    return None


def _header(payload: bytes, name: bytes) -> bytes | None:
    at = payload.find(b"\n" + name + b":")
    if at < 0:
        at = payload.lower().find(b"\n" + name.lower() + b":")
        if at < 0:
            return None
    start = at + len(name) + 2
    end = payload.find(b"\r", start)
    return payload[start : end if end >= 0 else None].strip()


class LoopCapture:
    """Capture INVITEs and their 200s to/from one UDP port on ``lo`` in a thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.packets: list[Packet] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        prog = _filter_program(port)
        raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
        self._buf = ctypes.create_string_buffer(raw)
        fprog = struct.pack("HL", len(prog), ctypes.addressof(self._buf))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        # Packets that matched before the filter was attached would be stale.
        self._drain()
        self._thread = threading.Thread(target=self._run, name=f"loopcap:{port}", daemon=True)

    def _drain(self) -> None:
        self._sock.setblocking(False)
        try:
            while True:
                self._sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            pass
        self._sock.settimeout(0.2)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        sock = self._sock
        anc = socket.CMSG_SPACE(16)
        packets = self.packets
        while not self._stop.is_set():
            try:
                data, ancdata, _flags, _addr = sock.recvmsg(65535, anc)
            except TimeoutError:
                continue
            except OSError:
                return
            ts = 0
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    ts = sec * 1_000_000_000 + nsec
            payload = data[PAYLOAD_AT:]
            invite = payload.startswith(b"INVITE ")
            if not invite:
                cseq = _header(payload, b"CSeq")
                if cseq is None or not cseq.endswith(b"INVITE"):
                    continue
            call_id = _header(payload, b"Call-ID") or _header(payload, b"i")
            if call_id is None:
                continue
            sport, dport = struct.unpack_from("!HH", data, _SPORT_AT)
            packets.append(Packet(ts, sport, dport, invite, call_id))

    def stop(self) -> int:
        """Stop capturing; return the number of packets the kernel dropped."""
        self._stop.set()
        self._thread.join(5)
        drops = 0
        try:
            stats = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            _received, drops = struct.unpack("II", stats)
        except OSError:
            pass
        self._sock.close()
        return drops

    def timing(self, via_proxy: bool, drops: int = 0) -> Timing:
        """Per-call figures; ``via_proxy`` False for a direct call to a gateway."""
        port = self.port
        first: dict[tuple[bytes, str], int] = {}
        for p in self.packets:
            if p.invite:
                kind = "inv_in" if p.dport == port else "inv_out"
            else:
                kind = "ok_in" if p.dport == port else "ok_out"
            first.setdefault((p.call_id, kind), p.ts_ns)
        out = Timing(packets=len(self.packets), drops=drops)
        call_ids = {cid for cid, kind in first if kind == "inv_in"}
        for cid in call_ids:
            inv_in = first[(cid, "inv_in")]
            ok_out = first.get((cid, "ok_out"))
            if ok_out is None:
                continue
            out.e2e_us.append((ok_out - inv_in) / 1000)
            if via_proxy:
                inv_out = first.get((cid, "inv_out"))
                ok_in = first.get((cid, "ok_in"))
                if inv_out is not None and ok_in is not None:
                    out.transit_us.append(((inv_out - inv_in) + (ok_out - ok_in)) / 1000)
        return out
