"""The floor: the cheapest Python proxy the bench's calls can pass through (bench only).

A stateless forwarder on uvloop, written for this harness and nothing else: no
transactions, no retransmission handling, no probing, no parsing beyond finding the
lines it edits. Its CPU per call is what the kernel, the event loop and the
interpreter cost for the 6 datagrams a call brings in and the 6 it sends out, before
any SIP work: the part of sipdispatch's cost that no change to sipdispatch's own code
can remove. ``bench/run.sh --floor`` measures it beside the two proxies.

- A request gets our Via on top (branch derived from the caller's) and, if it is an
  INVITE, our Record-Route; a Route naming us is removed. It goes to one of the
  gateways, chosen by a hash of the Call-ID so that a dialog's ACK and BYE reach the
  gateway that answered the INVITE.
- A response loses our Via (sipp writes the Via set back as one comma-separated line)
  and goes to the sent-by of the Via under it.

Not a SIP proxy: it relies on the bench's scenarios and loopback addresses.

    python bench/floor.py --port 35062 --gateways 35071,35072
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import zlib

READY = "floor ready"


class Forwarder(asyncio.DatagramProtocol):
    def __init__(self, host: str, port: int, gateways: list[tuple[str, int]]) -> None:
        self.gateways = gateways
        me = f"{host}:{port}".encode()
        self.via = b"Via: SIP/2.0/UDP " + me + b";branch=z9hG4bKfl"
        self.rr = b"Record-Route: <sip:" + me + b";lr>\r\n"
        self.route_prefix = b"Route: <sip:" + me
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        line_end = data.find(b"\r\n")
        if data.startswith(b"SIP/2.0 "):
            self.response(data, line_end)
        else:
            self.request(data, line_end)

    def request(self, data: bytes, line_end: int) -> None:
        assert self.transport is not None
        start = data.find(b"\r\nCall-ID:") + 10
        call_id = data[start : data.find(b"\r\n", start)].strip()
        branch_at = data.find(b";branch=z9hG4bK") + 15
        branch = data[branch_at : data.find(b"\r\n", branch_at)]
        head = data[: line_end + 2] + self.via + branch + b"\r\n"
        if data.startswith(b"INVITE "):
            head += self.rr
        rest = data[line_end + 2 :]
        route = rest.find(self.route_prefix)
        if route >= 0:
            rest = rest[:route] + rest[rest.find(b"\r\n", route) + 2 :]
        gateway = self.gateways[zlib.crc32(call_id) % len(self.gateways)]
        self.transport.sendto(head + rest, gateway)

    def response(self, data: bytes, line_end: int) -> None:
        assert self.transport is not None
        via = data.find(b"\r\nVia: ") + 7
        via_end = data.find(b"\r\n", via)
        comma = data.find(b",", via, via_end)
        if comma < 0:  # our Via on a line of its own: drop the line
            out = data[: via - 7] + data[via_end:]
            nxt = data.find(b"\r\nVia: ", via_end) + 7
            value = data[nxt : data.find(b"\r\n", nxt)]
        else:  # "Via: ours, theirs": drop ours
            out = data[:via] + data[comma + 1 : via_end].lstrip() + data[via_end:]
            value = data[comma + 1 : via_end].strip()
        sent_by = value.split(b" ", 1)[1].split(b";", 1)[0]
        host, _, port = sent_by.partition(b":")
        self.transport.sendto(out, (host.decode(), int(port or b"5060")))


async def serve(host: str, port: int, gateways: list[tuple[str, int]]) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(
        lambda: Forwarder(host, port, gateways), local_addr=(host, port)
    )
    print(READY, file=sys.stderr, flush=True)
    await asyncio.Event().wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--gateways", required=True, help="comma-separated UDP ports on --host")
    args = p.parse_args()
    gateways = [(args.host, int(g)) for g in args.gateways.split(",")]
    try:
        import uvloop
    except ImportError:
        print("floor: uvloop is required", file=sys.stderr)
        raise SystemExit(2) from None
    uvloop.run(serve(args.host, args.port, gateways))


if __name__ == "__main__":
    main()
