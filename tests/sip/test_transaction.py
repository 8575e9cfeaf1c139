"""The RFC 3261 §17 transaction state machines (with RFC 6026) on a virtual clock.

Every test drives a transaction through a TimerQueue with explicit ``now`` values,
a fake ``send`` that records what would go on the wire and a fake user recording
the callbacks. No sockets, no sleeps.

The timer values are deliberately not the defaults and all differ, so each
assertion shows which value drives which timer:
T1 = 0.25 s (64*T1 = 16 s, which is not timer D's 32 s), T2 = 2 s, T4 = 3 s,
fr_timer = 7 s (timers B/F), fr_inv_timer = 20 s (timer C after a provisional).
Powers of two keep the float arithmetic exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from sipdispatch.sip.addr import Addr
from sipdispatch.sip.message import Request, Response, make_response, parse_datagram
from sipdispatch.sip.timers import TimerQueue, Timers
from sipdispatch.sip.transaction import (
    ClientTransaction,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    State,
    build_ack,
    server_key,
)

T1, T2, T4 = 0.25, 2.0, 3.0
FR, FR_INV = 7.0, 20.0
TIMERS = Timers(t1=T1, t2=T2, t4=T4, fr_timer=FR, fr_inv_timer=FR_INV)
T64 = 64 * T1  # 16 s
TIMER_D = 32.0

UDP = Addr("udp", "192.0.2.10", 5060)
TCP = Addr("tcp", "192.0.2.10", 5060, conn=7)

INVITE = """\
INVITE sip:bob@gw.example.net SIP/2.0
Via: SIP/2.0/UDP lb.example.com:5060;branch=z9hG4bKlb1
Via: SIP/2.0/UDP alice.example.org:5062;branch=z9hG4bKua1;received=198.51.100.7
Route: <sip:edge1.example.net;lr>
Route: <sip:edge2.example.net;lr>
Max-Forwards: 69
From: "Alice" <sip:alice@example.org>;tag=a73kszlfl
To: <sip:bob@example.net>
Call-ID: 3848276298220188511@alice.example.org
CSeq: 314159 INVITE
Contact: <sip:alice@alice.example.org:5062>
Content-Type: application/sdp
Content-Length: 4

v=0
"""

OPTIONS = """\
OPTIONS sip:gw.example.net SIP/2.0
Via: SIP/2.0/UDP lb.example.com:5060;branch=z9hG4bKlb2
Max-Forwards: 70
From: <sip:lb@example.com>;tag=o1
To: <sip:gw.example.net>
Call-ID: opt-1@lb.example.com
CSeq: 7 OPTIONS
Content-Length: 0
"""


def wire(text: str) -> bytes:
    """SIP text written with LF line ends, as CRLF bytes."""
    head, _, body = text.partition("\n\n")
    return ("\r\n".join(head.splitlines()) + "\r\n\r\n" + body).encode("latin-1")


def request(text: str) -> Request:
    msg = parse_datagram(wire(text))
    assert isinstance(msg, Request)
    return msg


def reply(req: Request, status: int, to_tag: str | None = "gw1") -> Response:
    reasons = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK"}
    tag = None if status == 100 else to_tag
    return make_response(req, status, reasons.get(status), to_tag=tag)


@dataclass(frozen=True)
class Sent:
    at: float
    addr: Addr
    data: bytes
    owner: Any

    @property
    def msg(self) -> Request | Response:
        return parse_datagram(self.data)


class Net:
    """The virtual clock, the timer queue and a fake transport."""

    def __init__(self) -> None:
        self.tq = TimerQueue()
        self.now = 0.0
        self.sent: list[Sent] = []

    def send(self, addr: Addr, data: bytes, owner: Any) -> None:
        self.sent.append(Sent(self.now, addr, data, owner))

    def run_until(self, t: float) -> None:
        """Fire every timer due up to ``t`` (at its own deadline), then set now = t."""
        assert t >= self.now
        while (deadline := self.tq.next_deadline()) is not None and deadline <= t:
            self.now = deadline
            self.tq.run_due(deadline)
        self.now = t

    def at(self, t: float) -> float:
        """Move the clock to ``t`` (firing timers due by then) and return it."""
        self.run_until(t)
        return t

    def times(self) -> list[float]:
        return [s.at for s in self.sent]

    def take(self) -> list[Sent]:
        out, self.sent = self.sent, []
        return out


class ClientRecorder:
    """A fake client user (the proxy core) recording every callback."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.events: list[tuple[Any, ...]] = []

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        self.events.append(("response", response.status, now))

    def on_timeout(self, tx: ClientTransaction, now: float, replied: bool) -> None:
        self.events.append(("timeout", now, replied))

    def on_terminated(self, tx: ClientTransaction) -> None:
        self.events.append(("terminated", self.net.now))


class ServerRecorder:
    """A fake server user recording the end of the transaction."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_server_terminated(self, tx: ServerTransaction, now: float, ack_timeout: bool) -> None:
        self.events.append(("terminated", now, ack_timeout))


def invite_client(
    addr: Addr = UDP, text: str = INVITE
) -> tuple[Net, ClientRecorder, InviteClientTransaction, Request]:
    net = Net()
    user = ClientRecorder(net)
    req = request(text)
    branch = req.top_via.branch
    assert branch is not None
    tx = InviteClientTransaction(req, branch, addr, TIMERS, net.tq, net.send, user)
    tx.start(req.to_bytes(), net.now)
    return net, user, tx, req


def non_invite_client(
    addr: Addr = UDP,
) -> tuple[Net, ClientRecorder, NonInviteClientTransaction, Request]:
    net = Net()
    user = ClientRecorder(net)
    req = request(OPTIONS)
    tx = NonInviteClientTransaction(req, "z9hG4bKlb2", addr, TIMERS, net.tq, net.send, user)
    tx.start(req.to_bytes(), net.now)
    return net, user, tx, req


def invite_server(addr: Addr = UDP) -> tuple[Net, ServerRecorder, InviteServerTransaction, Request]:
    net = Net()
    user = ServerRecorder()
    req = request(INVITE)
    tx = InviteServerTransaction(req, server_key(req), addr, TIMERS, net.tq, net.send, user)
    return net, user, tx, req


def non_invite_server(
    addr: Addr = UDP,
) -> tuple[Net, ServerRecorder, NonInviteServerTransaction, Request]:
    net = Net()
    user = ServerRecorder()
    req = request(OPTIONS)
    tx = NonInviteServerTransaction(req, server_key(req), addr, TIMERS, net.tq, net.send, user)
    return net, user, tx, req


def ack_for(req: Request, to_tag: str = "gw1") -> Request:
    """The ACK a UAC sends for a non-2xx final (same branch, CSeq n ACK)."""
    text = INVITE.replace("INVITE sip:", "ACK sip:").replace(" INVITE\n", " ACK\n")
    text = text.replace("To: <sip:bob@example.net>", f"To: <sip:bob@example.net>;tag={to_tag}")
    text = text.replace("Content-Length: 4\n\nv=0\n", "Content-Length: 0\n\n")
    ack = request(text)
    assert ack.top_via.branch == req.top_via.branch
    return ack


# == INVITE client transaction (§17.1.1, RFC 6026 §7.2) ==============================


def test_17_1_1_2_invite_client_sends_the_request_and_enters_calling() -> None:
    net, user, tx, req = invite_client()
    assert tx.state is State.CALLING
    [sent] = net.sent
    assert (sent.at, sent.addr, sent.owner) == (0.0, UDP, tx)
    assert sent.data == req.to_bytes()
    assert tx.key == ("z9hG4bKlb1", "INVITE")
    assert user.events == []


def test_17_1_1_2_timer_a_doubles_each_retransmission() -> None:
    net, user, tx, req = invite_client()
    net.run_until(FR - 0.01)
    # Timer A: T1, then 2*T1, 4*T1, 8*T1 (no T2 cap for INVITE); the next one
    # (16*T1 later, at 7.75) would fall after fr_timer.
    assert net.times() == [0.0, 0.25, 0.75, 1.75, 3.75]
    gaps = [b - a for a, b in zip(net.times(), net.times()[1:], strict=False)]
    assert gaps == [T1, 2 * T1, 4 * T1, 8 * T1]
    assert all(s.data == req.to_bytes() and s.addr == UDP and s.owner is tx for s in net.sent)
    assert tx.state is State.CALLING
    assert user.events == []


def test_17_1_1_2_timer_a_not_started_over_a_reliable_transport() -> None:
    net, _user, _tx, _ = invite_client(TCP)
    net.run_until(FR - 0.01)
    assert net.times() == [0.0]
    assert [s.addr for s in net.sent] == [TCP]


def test_17_1_1_2_fr_timer_replaces_timer_b_without_any_response() -> None:
    net, user, tx, _ = invite_client()
    net.run_until(FR - 0.01)
    assert user.events == []
    net.run_until(FR)
    # Timer B (here fr_timer, not 64*T1): the user is told, then it ends.
    assert user.events == [("timeout", FR, False), ("terminated", FR)]
    assert tx.state is State.TERMINATED
    assert net.tq.next_deadline() is None
    sent = len(net.sent)
    net.run_until(100.0)
    assert len(net.sent) == sent


def test_17_1_1_2_fr_timer_also_bounds_calling_over_tcp() -> None:
    net, user, _tx, _ = invite_client(TCP)
    net.run_until(FR)
    assert user.events == [("timeout", FR, False), ("terminated", FR)]


def test_17_1_1_2_provisional_enters_proceeding_stops_timer_a_and_is_passed_up() -> None:
    net, user, tx, req = invite_client()
    net.run_until(0.5)  # one retransmission at 0.25
    tx.receive(reply(req, 100), net.now)
    assert tx.state is State.PROCEEDING
    assert tx.replied
    assert user.events == [("response", 100, 0.5)]
    net.run_until(FR + 1)
    assert net.times() == [0.0, 0.25]  # no more timer A


def test_17_1_1_2_every_provisional_in_proceeding_is_passed_up() -> None:
    net, user, tx, req = invite_client()
    tx.receive(reply(req, 100), net.at(0.0))
    tx.receive(reply(req, 180), net.at(0.0))
    tx.receive(reply(req, 183), net.at(0.0))
    assert [e[1] for e in user.events] == [100, 180, 183]
    assert tx.state is State.PROCEEDING


def test_16_8_fr_inv_timer_replaces_fr_timer_after_a_provisional() -> None:
    net, user, tx, req = invite_client()
    net.run_until(1.0)
    tx.receive(reply(req, 180), net.now)
    net.run_until(1.0 + FR_INV - 0.01)
    assert user.events == [("response", 180, 1.0)]  # fr_timer (7 s) no longer applies
    net.run_until(1.0 + FR_INV)
    assert user.events[-1] == ("timeout", 1.0 + FR_INV, True)


def test_16_7_provisional_101_to_199_resets_fr_inv_timer() -> None:
    net, user, tx, req = invite_client()
    tx.receive(reply(req, 180), net.at(0.0))
    net.run_until(15.0)
    tx.receive(reply(req, 183), net.now)  # §16.7 step 2: reset timer C
    net.run_until(15.0 + FR_INV - 0.01)
    assert [e[0] for e in user.events] == ["response", "response"]
    net.run_until(15.0 + FR_INV)
    assert user.events[-1] == ("timeout", 15.0 + FR_INV, True)


def test_16_7_a_later_100_trying_does_not_reset_fr_inv_timer() -> None:
    net, user, tx, req = invite_client()
    tx.receive(reply(req, 180), net.at(0.0))
    net.run_until(15.0)
    tx.receive(reply(req, 100), net.now)  # "anything but 100"
    net.run_until(FR_INV)
    assert user.events[-1] == ("timeout", FR_INV, True)


def test_16_8_after_fr_inv_timeout_the_487_to_our_cancel_is_acked_not_passed_up() -> None:
    net, user, tx, req = invite_client()
    tx.receive(reply(req, 180), net.at(0.0))
    net.run_until(FR_INV)
    assert user.events[-1] == ("timeout", FR_INV, True)
    # The user CANCELs; the transaction stays to ACK the 487 (§17.1.1.2).
    assert tx.state is State.PROCEEDING
    net.take()
    net.run_until(FR_INV + 1)
    tx.receive(reply(req, 487), net.now)
    [ack] = net.take()
    assert isinstance(ack.msg, Request) and ack.msg.method == "ACK"
    assert tx.state is State.COMPLETED
    assert [e[0] for e in user.events] == ["response", "timeout"]  # 487 absorbed
    net.run_until(FR_INV + 1 + TIMER_D)
    assert user.events[-1] == ("terminated", FR_INV + 1 + TIMER_D)


def test_9_1_after_fr_inv_timeout_the_transaction_ends_after_64_t1_without_final() -> None:
    net, user, tx, req = invite_client()
    tx.receive(reply(req, 180), net.at(0.0))
    net.run_until(FR_INV + T64 - 0.01)
    tx.receive(reply(req, 180), net.now)  # neither passed up nor re-arming fr_inv
    assert [e[0] for e in user.events] == ["response", "timeout"]
    net.run_until(FR_INV + T64)
    assert user.events == [
        ("response", 180, 0.0),
        ("timeout", FR_INV, True),
        ("terminated", FR_INV + T64),
    ]
    assert net.tq.next_deadline() is None


def test_16_7_a_2xx_after_fr_inv_timeout_is_still_passed_up() -> None:
    net, user, tx, req = invite_client()
    tx.receive(reply(req, 180), net.at(0.0))
    net.run_until(FR_INV + 1)
    tx.receive(reply(req, 200), net.now)
    assert user.events[-1] == ("response", 200, FR_INV + 1)
    assert tx.state is State.ACCEPTED


def test_rfc6026_invite_client_2xx_enters_accepted_and_is_passed_up() -> None:
    net, user, tx, req = invite_client()
    net.run_until(0.5)
    tx.receive(reply(req, 200), net.now)
    assert tx.state is State.ACCEPTED
    assert user.events == [("response", 200, 0.5)]
    net.run_until(10.0)
    assert net.times() == [0.0, 0.25]  # timer A stopped, and no ACK: the TU ACKs a 2xx
    assert all(isinstance(s.msg, Request) and s.msg.method == "INVITE" for s in net.sent)


def test_rfc6026_invite_client_accepted_passes_2xx_retransmissions_up() -> None:
    net, user, tx, req = invite_client()
    tx.receive(reply(req, 180), net.at(0.0))
    tx.receive(reply(req, 200), net.at(1.0))
    tx.receive(reply(req, 200), net.at(2.0))
    tx.receive(reply(req, 200, to_tag="fork2"), net.at(3.0))  # a 2xx from another fork too
    assert [e[:2] for e in user.events] == [
        ("response", 180),
        ("response", 200),
        ("response", 200),
        ("response", 200),
    ]
    # Provisionals and non-2xx finals are not passed up in Accepted.
    tx.receive(reply(req, 183), net.at(4.0))
    tx.receive(reply(req, 486), net.at(4.0))
    assert len(user.events) == 4
    assert tx.state is State.ACCEPTED
    assert len(net.sent) == 1  # no ACK for anything in Accepted


def test_rfc6026_timer_m_64_t1_terminates_accepted() -> None:
    net, user, tx, req = invite_client()
    net.run_until(1.0)
    tx.receive(reply(req, 200), net.now)
    net.run_until(1.0 + T64 - 0.01)
    assert tx.state is State.ACCEPTED
    net.run_until(1.0 + T64)
    assert tx.state is State.TERMINATED
    assert user.events[-1] == ("terminated", 1.0 + T64)
    assert not any(e[0] == "timeout" for e in user.events)


def test_rfc6026_timer_m_also_runs_over_tcp() -> None:
    net, _user, tx, req = invite_client(TCP)
    tx.receive(reply(req, 200), net.at(0.0))
    net.run_until(T64 - 0.01)
    assert tx.state is State.ACCEPTED
    net.run_until(T64)
    assert tx.state is State.TERMINATED


@pytest.mark.parametrize("status", [300, 404, 486, 503, 603])
def test_17_1_1_2_non_2xx_final_enters_completed_sends_ack_and_is_passed_up(status: int) -> None:
    net, user, tx, req = invite_client()
    net.run_until(0.5)
    net.take()
    tx.receive(reply(req, status), net.now)
    assert tx.state is State.COMPLETED
    assert user.events == [("response", status, 0.5)]
    [ack] = net.take()
    assert (ack.addr, ack.owner) == (UDP, tx)
    assert isinstance(ack.msg, Request) and ack.msg.method == "ACK"
    net.run_until(10.0)
    assert net.sent == []  # timer A stopped


def test_17_1_1_3_ack_construction() -> None:
    net, _user, tx, req = invite_client()
    tx.receive(reply(req, 180), net.at(0.0))
    net.take()
    tx.receive(reply(req, 486, to_tag="busy1"), net.at(1.0))
    [sent] = net.take()
    assert sent.data.startswith(b"ACK sip:bob@gw.example.net SIP/2.0\r\n")
    ack = sent.msg
    assert isinstance(ack, Request)
    # Request-URI of the original request.
    assert ack.uri_text == req.uri_text
    # "a single Via header field ... equal to the top Via header field of the
    # original request" -- so with the same branch.
    assert ack.get_all("via") == ["SIP/2.0/UDP lb.example.com:5060;branch=z9hG4bKlb1"]
    assert ack.top_via.branch == "z9hG4bKlb1"
    # To from the response, with its tag; From, Call-ID as in the request.
    assert ack.get("to") == "<sip:bob@example.net>;tag=busy1"
    assert ack.to_tag == "busy1"
    assert ack.get("from") == req.get("from")
    assert ack.call_id == req.call_id
    # CSeq: same number, method ACK.
    assert ack.cseq == (314159, "ACK")
    # "If the INVITE request ... had Route header fields, those header fields MUST
    # appear in the ACK", in order.
    assert ack.get_all("route") == ["<sip:edge1.example.net;lr>", "<sip:edge2.example.net;lr>"]
    assert ack.body == b""
    assert ack.get("content-length") == "0"


def test_17_1_1_3_ack_has_one_via_when_the_top_via_line_has_several_values() -> None:
    text = INVITE.replace(
        "Via: SIP/2.0/UDP lb.example.com:5060;branch=z9hG4bKlb1\nVia: ",
        "Via: SIP/2.0/UDP lb.example.com:5060;branch=z9hG4bKlb1, ",
    )
    req = request(text)
    assert len(req.get_all("via")) == 1 and len(req.vias()) == 2
    ack = parse_datagram(build_ack(req, reply(req, 404)))
    assert isinstance(ack, Request)
    assert ack.get_all("via") == ["SIP/2.0/UDP lb.example.com:5060;branch=z9hG4bKlb1"]
    assert len(ack.vias()) == 1


def test_17_1_1_3_ack_without_route_set_has_no_route() -> None:
    text = INVITE.replace("Route: <sip:edge1.example.net;lr>\n", "").replace(
        "Route: <sip:edge2.example.net;lr>\n", ""
    )
    req = request(text)
    ack = parse_datagram(build_ack(req, reply(req, 404)))
    assert isinstance(ack, Request)
    assert not ack.has("route")


def test_17_1_1_2_retransmitted_final_in_completed_resends_ack_and_is_not_passed_up() -> None:
    net, user, tx, req = invite_client()
    tx.receive(reply(req, 486), net.at(0.0))
    first = net.take()[-1]
    net.run_until(1.0)
    tx.receive(reply(req, 486), net.now)
    net.run_until(3.0)
    tx.receive(reply(req, 486), net.now)
    acks = net.take()
    assert [s.at for s in acks] == [1.0, 3.0]
    assert all(s.data == first.data for s in acks)
    assert user.events == [("response", 486, 0.0)]
    # Provisionals and 2xx in Completed are ignored entirely.
    tx.receive(reply(req, 180), net.at(3.0))
    tx.receive(reply(req, 200), net.at(3.0))
    assert net.sent == [] and len(user.events) == 1
    assert tx.state is State.COMPLETED


def test_17_1_1_2_timer_d_is_32_seconds_over_udp() -> None:
    net, user, tx, req = invite_client()
    net.run_until(2.0)
    tx.receive(reply(req, 486), net.now)
    # 32 s, not 64*T1 (16 s).
    net.run_until(2.0 + TIMER_D - 0.01)
    assert tx.state is State.COMPLETED
    net.run_until(2.0 + TIMER_D)
    assert tx.state is State.TERMINATED
    assert user.events == [("response", 486, 2.0), ("terminated", 2.0 + TIMER_D)]


def test_17_1_1_2_timer_d_is_zero_over_tcp() -> None:
    net, user, tx, req = invite_client(TCP)
    net.run_until(2.0)
    tx.receive(reply(req, 486), net.now)
    assert [s.msg.method for s in net.sent[1:] if isinstance(s.msg, Request)] == ["ACK"]
    net.run_until(2.0)  # the next timer pass at the same instant ends it
    assert tx.state is State.TERMINATED
    assert user.events == [("response", 486, 2.0), ("terminated", 2.0)]


def test_17_1_4_transport_error_in_calling_is_a_timeout_without_reply() -> None:
    net, user, tx, _ = invite_client()
    net.run_until(0.3)
    tx.transport_error(net.now)
    assert user.events == [("timeout", 0.3, False), ("terminated", 0.3)]
    assert net.tq.next_deadline() is None  # timers A and fr_timer cancelled
    net.run_until(FR + 1)
    assert net.times() == [0.0, 0.25]


def test_17_1_4_transport_error_in_proceeding_is_a_timeout_with_reply() -> None:
    net, user, tx, req = invite_client()
    tx.receive(reply(req, 180), net.at(0.0))
    tx.transport_error(net.at(1.0))
    assert user.events[1:] == [("timeout", 1.0, True), ("terminated", 1.0)]
    assert tx.state is State.TERMINATED


def test_17_1_4_transport_error_after_a_final_is_ignored() -> None:
    net, user, tx, req = invite_client()
    tx.receive(reply(req, 486), net.at(0.0))
    tx.transport_error(net.at(1.0))  # e.g. sending the ACK failed
    assert tx.state is State.COMPLETED
    assert user.events == [("response", 486, 0.0)]


def test_17_1_4_transport_error_after_fr_inv_timeout_does_not_report_twice() -> None:
    net, user, tx, req = invite_client()
    tx.receive(reply(req, 180), net.at(0.0))
    net.run_until(FR_INV)
    tx.transport_error(net.at(FR_INV + 1))
    assert [e[0] for e in user.events] == ["response", "timeout", "terminated"]


def test_17_1_1_2_responses_after_termination_are_ignored() -> None:
    net, user, tx, req = invite_client()
    net.run_until(FR)
    events, sent = list(user.events), len(net.sent)
    tx.receive(reply(req, 180), net.at(FR + 1))
    tx.receive(reply(req, 486), net.at(FR + 1))
    tx.receive(reply(req, 200), net.at(FR + 1))
    assert user.events == events and len(net.sent) == sent


# == non-INVITE client transaction (§17.1.2) ==========================================


def test_17_1_2_2_non_invite_client_sends_the_request_and_enters_trying() -> None:
    net, _user, tx, req = non_invite_client()
    assert tx.state is State.TRYING
    [sent] = net.sent
    assert (sent.at, sent.addr, sent.owner, sent.data) == (0.0, UDP, tx, req.to_bytes())
    assert tx.key == ("z9hG4bKlb2", "OPTIONS")


def test_17_1_2_2_timer_e_doubles_up_to_t2_in_trying() -> None:
    net, _user, tx, _ = non_invite_client()
    net.run_until(FR - 0.01)
    # E: T1, 2*T1, 4*T1, then capped at T2 = 2 s.
    assert net.times() == [0.0, 0.25, 0.75, 1.75, 3.75, 5.75]
    gaps = [b - a for a, b in zip(net.times(), net.times()[1:], strict=False)]
    assert gaps == [T1, 2 * T1, 4 * T1, T2, T2]
    assert tx.state is State.TRYING


def test_17_1_2_2_timer_e_fires_every_t2_in_proceeding() -> None:
    net, _user, tx, req = non_invite_client()
    net.run_until(0.3)  # E fired at 0.25 and is due next at 0.75
    tx.receive(reply(req, 100), net.now)
    assert tx.state is State.PROCEEDING
    net.run_until(FR - 0.01)
    # The pending E still fires at 0.75, then every T2.
    assert net.times() == [0.0, 0.25, 0.75, 2.75, 4.75, 6.75]


def test_a_transactions_timers_run_in_order_with_others_and_let_go_of_it_once_done() -> None:
    # A transaction's timers call it back by kind (no bound method per timer): they
    # run in deadline order among the queue's other timers, and a timer that ran or
    # was cancelled no longer holds the transaction.
    net, _user, tx, req = non_invite_client()
    retrans, timeout = tx._retrans, tx._timeout
    assert retrans is not None and timeout is not None
    assert retrans.target is tx and timeout.target is tx and retrans.kind != timeout.kind
    seen: list[tuple[float, int]] = []  # (now, requests sent by then) of another timer
    net.tq.call_at(T1, lambda now: seen.append((now, len(net.sent))))
    net.run_until(T1)
    # Timer E, due at T1 too and scheduled first, ran first: the retransmission is out.
    assert net.times() == [0.0, T1] and seen == [(T1, 2)]
    assert retrans.cancelled and retrans.target is None
    assert tx._retrans is not None and tx._retrans.target is tx
    tx.receive(reply(req, 200), net.now)
    assert timeout.cancelled and timeout.target is None
    assert tx._timeout is not None and tx._timeout.target is tx  # timer K


def test_17_1_2_2_timer_e_not_started_over_a_reliable_transport() -> None:
    net, _user, _tx, _ = non_invite_client(TCP)
    net.run_until(FR - 0.01)
    assert net.times() == [0.0]


def test_17_1_2_2_fr_timer_replaces_timer_f_in_trying() -> None:
    net, user, tx, _ = non_invite_client()
    net.run_until(FR - 0.01)
    assert user.events == []
    net.run_until(FR)
    assert user.events == [("timeout", FR, False), ("terminated", FR)]
    assert tx.state is State.TERMINATED
    assert net.tq.next_deadline() is None


def test_17_1_2_2_fr_timer_still_runs_in_proceeding_and_reports_the_reply() -> None:
    net, user, tx, req = non_invite_client(TCP)
    tx.receive(reply(req, 100), net.at(1.0))
    net.run_until(FR)  # a provisional does not restart F
    assert user.events == [("response", 100, 1.0), ("timeout", FR, True), ("terminated", FR)]


def test_17_1_2_2_provisionals_are_passed_up_in_trying_and_proceeding() -> None:
    net, user, tx, req = non_invite_client()
    tx.receive(reply(req, 100), net.at(0.1))
    tx.receive(reply(req, 180), net.at(0.2))
    assert user.events == [("response", 100, 0.1), ("response", 180, 0.2)]
    assert tx.replied


@pytest.mark.parametrize("status", [200, 404])
def test_17_1_2_2_final_enters_completed_and_is_passed_up(status: int) -> None:
    net, user, tx, req = non_invite_client()
    net.run_until(0.5)
    tx.receive(reply(req, status), net.now)
    assert tx.state is State.COMPLETED
    assert user.events == [("response", status, 0.5)]
    net.run_until(T4 - 0.01)
    assert net.times() == [0.0, 0.25]  # E stopped; no ACK for non-INVITE


def test_17_1_2_2_final_in_proceeding_enters_completed() -> None:
    net, _user, tx, req = non_invite_client()
    tx.receive(reply(req, 100), net.at(0.1))
    tx.receive(reply(req, 200), net.at(0.2))
    assert tx.state is State.COMPLETED


def test_17_1_2_2_timer_k_is_t4_over_udp() -> None:
    net, user, tx, req = non_invite_client()
    net.run_until(1.0)
    tx.receive(reply(req, 200), net.now)
    net.run_until(1.0 + T4 - 0.01)
    assert tx.state is State.COMPLETED
    net.run_until(1.0 + T4)
    assert tx.state is State.TERMINATED
    assert user.events == [("response", 200, 1.0), ("terminated", 1.0 + T4)]


def test_17_1_2_2_timer_k_is_zero_over_tcp() -> None:
    net, user, tx, req = non_invite_client(TCP)
    net.run_until(1.0)
    tx.receive(reply(req, 200), net.now)
    net.run_until(1.0)
    assert tx.state is State.TERMINATED
    assert user.events == [("response", 200, 1.0), ("terminated", 1.0)]


def test_17_1_2_2_responses_in_completed_are_absorbed() -> None:
    net, user, tx, req = non_invite_client()
    tx.receive(reply(req, 200), net.at(0.0))
    tx.receive(reply(req, 200), net.at(0.5))
    tx.receive(reply(req, 404), net.at(0.6))
    tx.receive(reply(req, 100), net.at(0.7))
    assert user.events == [("response", 200, 0.0)]
    assert len(net.sent) == 1
    assert tx.state is State.COMPLETED


def test_17_1_4_non_invite_transport_error_is_a_timeout() -> None:
    net, user, tx, _ = non_invite_client()
    tx.transport_error(net.at(0.1))
    assert user.events == [("timeout", 0.1, False), ("terminated", 0.1)]
    assert net.tq.next_deadline() is None


# == INVITE server transaction (§17.2.1, RFC 6026 §7.1) ================================


def test_17_2_1_invite_server_starts_in_proceeding() -> None:
    net, _user, tx, _req = invite_server()
    assert tx.state is State.PROCEEDING
    assert not tx.final_sent
    assert net.sent == [] and net.tq.next_deadline() is None


def test_17_2_1_provisional_from_tu_is_sent_and_stays_proceeding() -> None:
    net, user, tx, req = invite_server()
    tx.respond(reply(req, 100), net.at(0.0))
    tx.respond(reply(req, 180, "uas1"), net.at(0.5))
    assert tx.state is State.PROCEEDING
    assert [(s.at, s.addr, s.owner) for s in net.sent] == [(0.0, UDP, None), (0.5, UDP, None)]
    assert [s.msg.status for s in net.sent if isinstance(s.msg, Response)] == [100, 180]
    net.run_until(100.0)
    assert len(net.sent) == 2  # provisionals are never retransmitted on a timer
    assert user.events == []


def test_17_2_1_invite_retransmission_in_proceeding_resends_the_last_provisional() -> None:
    net, _user, tx, req = invite_server()
    assert tx.receive_request(req, net.at(0.0)) is True  # nothing sent yet: absorbed silently
    assert net.sent == []
    tx.respond(reply(req, 100), net.at(0.0))
    tx.respond(reply(req, 180, "uas1"), net.at(0.1))
    ringing = net.sent[-1].data
    net.take()
    assert tx.receive_request(req, net.at(1.0)) is True
    [again] = net.take()
    assert again.data == ringing and again.addr == UDP


def test_rfc6026_invite_server_2xx_enters_accepted() -> None:
    net, _user, tx, req = invite_server()
    tx.respond(reply(req, 100), net.at(0.0))
    tx.respond(reply(req, 200, "uas1"), net.at(1.0))
    assert tx.state is State.ACCEPTED
    assert tx.final_sent
    assert net.sent[-1].msg.status == 200  # type: ignore[union-attr]


def test_rfc6026_invite_server_accepted_absorbs_invite_retransmissions() -> None:
    net, _user, tx, req = invite_server()
    tx.respond(reply(req, 200, "uas1"), net.at(0.0))
    net.take()
    assert tx.receive_request(req, net.at(0.5)) is True
    assert net.sent == []  # the TU (UAS core) retransmits the 2xx, not the transaction


def test_rfc6026_invite_server_accepted_sends_2xx_from_tu() -> None:
    net, _user, tx, req = invite_server()
    tx.respond(reply(req, 200, "uas1"), net.at(0.0))
    tx.respond(reply(req, 200, "uas1"), net.at(0.5))  # 2xx retransmission by the TU
    tx.respond(reply(req, 200, "fork2"), net.at(0.6))  # a 2xx from another fork
    assert [(s.at, s.msg.status) for s in net.sent] == [(0.0, 200), (0.5, 200), (0.6, 200)]  # type: ignore[union-attr]
    # Anything else from the TU in Accepted is dropped.
    tx.respond(reply(req, 180), net.at(0.7))
    tx.respond(reply(req, 486), net.at(0.7))
    assert len(net.sent) == 3
    assert tx.state is State.ACCEPTED


def test_rfc6026_invite_server_ack_in_accepted_is_passed_to_the_tu() -> None:
    net, _user, tx, req = invite_server()
    tx.respond(reply(req, 200, "uas1"), net.at(0.0))
    assert tx.receive_request(ack_for(req, "uas1"), net.at(0.5)) is False
    assert tx.state is State.ACCEPTED


def test_rfc6026_timer_l_64_t1_terminates_accepted() -> None:
    net, user, tx, req = invite_server()
    net.run_until(1.0)
    tx.respond(reply(req, 200, "uas1"), net.now)
    net.run_until(1.0 + T64 - 0.01)
    assert tx.state is State.ACCEPTED
    assert len(net.sent) == 1  # no timer G for a 2xx
    net.run_until(1.0 + T64)
    assert tx.state is State.TERMINATED
    assert user.events == [("terminated", 1.0 + T64, False)]


@pytest.mark.parametrize("status", [302, 404, 486, 603])
def test_17_2_1_non_2xx_final_enters_completed(status: int) -> None:
    net, _user, tx, req = invite_server()
    tx.respond(reply(req, status, "uas1"), net.at(0.0))
    assert tx.state is State.COMPLETED
    assert tx.final_sent
    assert net.sent[-1].msg.status == status  # type: ignore[union-attr]


def test_17_2_1_timer_g_retransmits_the_final_doubling_up_to_t2() -> None:
    net, user, tx, req = invite_server()
    tx.respond(reply(req, 100), net.at(0.0))
    net.take()
    net.run_until(1.0)
    tx.respond(reply(req, 486, "uas1"), net.now)
    final = net.sent[0].data
    net.run_until(1.0 + T64 - 0.01)
    # G: T1, 2*T1, 4*T1, then T2 each time until timer H.
    offsets = [s.at - 1.0 for s in net.sent]
    assert offsets == [0.0, 0.25, 0.75, 1.75, 3.75, 5.75, 7.75, 9.75, 11.75, 13.75, 15.75]
    assert all(s.data == final and s.addr == UDP for s in net.sent)
    assert user.events == []


def test_17_2_1_timer_g_not_started_over_a_reliable_transport() -> None:
    net, _user, tx, req = invite_server(TCP)
    tx.respond(reply(req, 486, "uas1"), net.at(0.0))
    net.run_until(T64 - 0.01)
    assert net.times() == [0.0]
    assert tx.state is State.COMPLETED


@pytest.mark.parametrize("addr", [UDP, TCP], ids=["udp", "tcp"])
def test_17_2_1_timer_h_64_t1_without_ack_terminates_with_ack_timeout(addr: Addr) -> None:
    net, user, tx, req = invite_server(addr)
    net.run_until(1.0)
    tx.respond(reply(req, 486, "uas1"), net.now)
    net.run_until(1.0 + T64 - 0.01)
    assert user.events == []
    net.run_until(1.0 + T64)
    assert tx.state is State.TERMINATED
    assert user.events == [("terminated", 1.0 + T64, True)]
    sent = len(net.sent)
    net.run_until(100.0)
    assert len(net.sent) == sent  # G stopped with H
    assert net.tq.next_deadline() is None


def test_17_2_1_invite_retransmission_in_completed_resends_the_final() -> None:
    net, _user, tx, req = invite_server(TCP)
    tx.respond(reply(req, 486, "uas1"), net.at(0.0))
    final = net.take()[0].data
    assert tx.receive_request(req, net.at(2.0)) is True
    [again] = net.take()
    assert (again.at, again.data) == (2.0, final)


def test_17_2_1_tu_responses_after_a_non_2xx_final_are_dropped() -> None:
    net, _user, tx, req = invite_server(TCP)
    tx.respond(reply(req, 486, "uas1"), net.at(0.0))
    tx.respond(reply(req, 180), net.at(0.1))
    tx.respond(reply(req, 200), net.at(0.1))
    tx.respond(reply(req, 500), net.at(0.1))
    assert len(net.sent) == 1
    assert tx.state is State.COMPLETED


def test_17_2_1_ack_in_completed_enters_confirmed_and_stops_g_and_h() -> None:
    net, user, tx, req = invite_server()
    tx.respond(reply(req, 486, "uas1"), net.at(0.0))
    net.run_until(1.0)  # G fired at 0.25 and 0.75
    assert net.times() == [0.0, 0.25, 0.75]
    assert tx.receive_request(ack_for(req, "uas1"), net.now) is True
    assert tx.state is State.CONFIRMED
    net.run_until(1.0 + T4 - 0.01)
    assert net.times() == [0.0, 0.25, 0.75]  # no more G
    assert user.events == []


def test_17_2_1_confirmed_absorbs_acks_and_invite_retransmissions() -> None:
    net, _user, tx, req = invite_server()
    tx.respond(reply(req, 486, "uas1"), net.at(0.0))
    tx.receive_request(ack_for(req, "uas1"), net.at(0.1))
    net.take()
    assert tx.receive_request(ack_for(req, "uas1"), net.at(0.2)) is True
    assert tx.receive_request(req, net.at(0.3)) is True
    assert net.sent == []
    assert tx.state is State.CONFIRMED


def test_17_2_1_timer_i_is_t4_over_udp() -> None:
    net, user, tx, req = invite_server()
    tx.respond(reply(req, 486, "uas1"), net.at(0.0))
    net.run_until(1.0)
    tx.receive_request(ack_for(req, "uas1"), net.now)
    net.run_until(1.0 + T4 - 0.01)
    assert tx.state is State.CONFIRMED
    net.run_until(1.0 + T4)
    assert tx.state is State.TERMINATED
    assert user.events == [("terminated", 1.0 + T4, False)]  # not an ACK timeout
    assert net.tq.next_deadline() is None  # H was cancelled


def test_17_2_1_timer_i_is_zero_over_tcp() -> None:
    net, user, tx, req = invite_server(TCP)
    tx.respond(reply(req, 486, "uas1"), net.at(0.0))
    net.run_until(1.0)
    tx.receive_request(ack_for(req, "uas1"), net.now)
    net.run_until(1.0)
    assert tx.state is State.TERMINATED
    assert user.events == [("terminated", 1.0, False)]


def test_17_2_1_ack_before_any_final_is_not_absorbed() -> None:
    net, _user, tx, req = invite_server()
    tx.respond(reply(req, 180, "uas1"), net.at(0.0))
    assert tx.receive_request(ack_for(req, "uas1"), net.at(0.1)) is False
    assert tx.state is State.PROCEEDING


# == non-INVITE server transaction (§17.2.2) ==========================================


def test_17_2_2_non_invite_server_starts_in_trying_and_absorbs_retransmissions() -> None:
    net, _user, tx, req = non_invite_server()
    assert tx.state is State.TRYING
    assert not tx.final_sent
    assert tx.receive_request(req, net.at(0.5)) is True
    assert tx.receive_request(req, net.at(1.0)) is True
    assert net.sent == []
    assert tx.state is State.TRYING


def test_17_2_2_provisional_enters_proceeding_and_retransmission_resends_it() -> None:
    net, _user, tx, req = non_invite_server()
    tx.respond(reply(req, 100), net.at(0.0))
    assert tx.state is State.PROCEEDING
    tx.respond(reply(req, 180, "uas1"), net.at(0.1))  # later provisionals go out too
    last = net.take()[-1].data
    assert tx.receive_request(req, net.at(0.5)) is True
    [again] = net.take()
    assert (again.at, again.data, again.addr) == (0.5, last, UDP)


@pytest.mark.parametrize("first", [None, 100], ids=["from-trying", "from-proceeding"])
def test_17_2_2_final_enters_completed_and_retransmission_resends_it(first: int | None) -> None:
    net, _user, tx, req = non_invite_server()
    if first is not None:
        tx.respond(reply(req, first), net.at(0.0))
    tx.respond(reply(req, 200, "uas1"), net.at(0.1))
    assert tx.state is State.COMPLETED
    assert tx.final_sent
    final = net.take()[-1].data
    assert tx.receive_request(req, net.at(0.5)) is True
    assert tx.receive_request(req, net.at(0.9)) is True
    assert [(s.at, s.data) for s in net.take()] == [(0.5, final), (0.9, final)]


def test_17_2_2_final_is_not_retransmitted_on_a_timer() -> None:
    net, _user, tx, req = non_invite_server()
    tx.respond(reply(req, 200, "uas1"), net.at(0.0))
    net.run_until(T64 - 0.01)
    assert net.times() == [0.0]


def test_17_2_2_tu_responses_in_completed_are_discarded() -> None:
    net, _user, tx, req = non_invite_server()
    tx.respond(reply(req, 200, "uas1"), net.at(0.0))
    tx.respond(reply(req, 500), net.at(0.1))
    tx.respond(reply(req, 180), net.at(0.1))
    assert len(net.sent) == 1
    # Retransmissions still get the first final.
    tx.receive_request(req, net.at(0.2))
    assert net.sent[-1].msg.status == 200  # type: ignore[union-attr]


def test_17_2_2_timer_j_is_64_t1_over_udp() -> None:
    net, user, tx, req = non_invite_server()
    net.run_until(1.0)
    tx.respond(reply(req, 200, "uas1"), net.now)
    net.run_until(1.0 + T64 - 0.01)
    assert tx.state is State.COMPLETED
    net.run_until(1.0 + T64)
    assert tx.state is State.TERMINATED
    assert user.events == [("terminated", 1.0 + T64, False)]


def test_17_2_2_timer_j_is_zero_over_tcp() -> None:
    net, user, tx, req = non_invite_server(TCP)
    net.run_until(1.0)
    tx.respond(reply(req, 200, "uas1"), net.now)
    net.run_until(1.0)
    assert tx.state is State.TERMINATED
    assert user.events == [("terminated", 1.0, False)]


def test_17_2_2_no_timer_runs_before_the_final() -> None:
    net, user, tx, req = non_invite_server()
    tx.respond(reply(req, 100), net.at(0.0))
    assert net.tq.next_deadline() is None
    net.run_until(1000.0)
    assert user.events == [] and tx.state is State.PROCEEDING


# == matching requests to server transactions (§17.2.3) =============================


def test_17_2_3_key_is_branch_sent_by_and_method() -> None:
    req = request(INVITE)
    assert server_key(req) == ("z9hG4bKlb1", "lb.example.com", "5060", "INVITE")


def test_17_2_3_retransmission_matches() -> None:
    assert server_key(request(INVITE)) == server_key(request(INVITE))


def test_17_2_3_ack_matches_the_invite_transaction() -> None:
    # "the method of the request matches the one that created the transaction,
    # except for ACK, where the method of the request that created the
    # transaction is INVITE" -- even though the ACK's To has the tag.
    req = request(INVITE)
    assert server_key(ack_for(req)) == server_key(req)


def test_17_2_3_cancel_does_not_match_the_invite_transaction() -> None:
    text = INVITE.replace("INVITE sip:", "CANCEL sip:").replace(" INVITE\n", " CANCEL\n")
    cancel = request(text)
    invite = request(INVITE)
    assert server_key(cancel) != server_key(invite)
    # ... but differs only in the method, so the INVITE can be found from it (§9.2).
    assert server_key(cancel)[:-1] == server_key(invite)[:-1]
    assert server_key(cancel)[-1] == "CANCEL"


def test_17_2_3_other_branch_does_not_match() -> None:
    other = request(INVITE.replace("branch=z9hG4bKlb1", "branch=z9hG4bKlb9"))
    assert server_key(other) != server_key(request(INVITE))


@pytest.mark.parametrize(
    "sent_by", ["lb2.example.com:5060", "lb.example.com:5070", "lb.example.com"]
)
def test_17_2_3_same_branch_from_another_sent_by_does_not_match(sent_by: str) -> None:
    other = request(INVITE.replace("lb.example.com:5060;", f"{sent_by};"))
    assert other.top_via.branch == "z9hG4bKlb1"
    assert server_key(other) != server_key(request(INVITE))


def test_17_2_3_lower_vias_do_not_take_part() -> None:
    other = request(INVITE.replace("alice.example.org:5062", "elsewhere.example.org:5099"))
    assert server_key(other) == server_key(request(INVITE))


RFC2543_INVITE = INVITE.replace(
    "Via: SIP/2.0/UDP lb.example.com:5060;branch=z9hG4bKlb1\n"
    "Via: SIP/2.0/UDP alice.example.org:5062;branch=z9hG4bKua1;received=198.51.100.7\n",
    "Via: SIP/2.0/UDP old.example.org:5060;branch=1a2b3c\n",
)


def test_17_2_3_rfc2543_fallback_without_magic_cookie() -> None:
    req = request(RFC2543_INVITE)
    key = server_key(req)
    assert key[0] == "2543"
    assert key[-1] == "INVITE"
    assert server_key(request(RFC2543_INVITE)) == key  # a retransmission matches


def test_17_2_3_rfc2543_fallback_ack_matches_the_invite() -> None:
    req = request(RFC2543_INVITE)
    text = RFC2543_INVITE.replace("INVITE sip:", "ACK sip:").replace(" INVITE\n", " ACK\n")
    text = text.replace("To: <sip:bob@example.net>", "To: <sip:bob@example.net>;tag=uas1")
    ack = request(text.replace("Content-Length: 4\n\nv=0\n", "Content-Length: 0\n\n"))
    assert server_key(ack) == server_key(req)


def test_17_2_3_rfc2543_fallback_without_branch_at_all() -> None:
    text = RFC2543_INVITE.replace(";branch=1a2b3c", "")
    assert server_key(request(text)) == server_key(request(text))
    assert server_key(request(text))[0] == "2543"
    assert server_key(request(text)) != server_key(request(RFC2543_INVITE))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("CSeq: 314159 INVITE", "CSeq: 314160 INVITE"),
        ("Call-ID: 3848276298220188511@", "Call-ID: other@"),
        ("tag=a73kszlfl", "tag=zzz"),
        ("old.example.org:5060", "old.example.org:5070"),
    ],
    ids=["cseq", "call-id", "from-tag", "top-via"],
)
def test_17_2_3_rfc2543_fallback_distinguishes_other_requests(old: str, new: str) -> None:
    other = request(RFC2543_INVITE.replace(old, new))
    assert server_key(other) != server_key(request(RFC2543_INVITE))


def test_17_2_3_rfc2543_fallback_cancel_differs_from_the_invite() -> None:
    text = RFC2543_INVITE.replace("INVITE sip:", "CANCEL sip:").replace(" INVITE\n", " CANCEL\n")
    cancel = request(text.replace("Content-Length: 4\n\nv=0\n", "Content-Length: 0\n\n"))
    key, invite_key = server_key(cancel), server_key(request(RFC2543_INVITE))
    assert key != invite_key
    assert key[:-1] == invite_key[:-1]


# -- wait_timer (Kamailio tm wt_timer): finished transactions kept a shorter time -----

WAIT = 1.5
SHORT = Timers(t1=T1, t2=T2, t4=T4, fr_timer=FR, fr_inv_timer=FR_INV, wait_timer=WAIT)


def _ended_at(net: Net, tx: ClientTransaction | ServerTransaction, start: float) -> float:
    """Run the clock in small steps from ``start`` until ``tx`` terminates."""
    t = start
    while tx.state is not State.TERMINATED:
        t += 0.25
        assert t < start + 100, "never terminated"
        net.run_until(t)
    return t - start


def test_wait_timer_replaces_timers_l_and_j_on_the_server_side() -> None:
    net, user = Net(), ServerRecorder()
    inv, opt = request(INVITE), request(OPTIONS)
    stx = InviteServerTransaction(inv, server_key(inv), UDP, SHORT, net.tq, net.send, user)
    ntx = NonInviteServerTransaction(opt, server_key(opt), UDP, SHORT, net.tq, net.send, user)
    stx.respond(reply(inv, 200), net.at(0.0))  # Accepted: timer L
    ntx.respond(reply(opt, 200), net.at(0.0))  # Completed: timer J
    assert _ended_at(net, stx, 0.0) == WAIT
    assert ntx.state is State.TERMINATED


def test_wait_timer_replaces_timers_m_and_d_on_the_client_side() -> None:
    for status in (200, 486):  # Accepted (timer M), Completed (timer D)
        net, user = Net(), ClientRecorder(Net())
        req = request(INVITE)
        tx = InviteClientTransaction(req, "z9hG4bKlb1", UDP, SHORT, net.tq, net.send, user)
        tx.start(req.to_bytes(), net.now)
        tx.receive(reply(req, status), net.at(0.0))
        assert _ended_at(net, tx, 0.0) == WAIT, status


def test_wait_timer_leaves_timer_h_at_64_t1() -> None:
    # Timer H is how long a non-2xx final is retransmitted waiting for the ACK: not a
    # wait for stray retransmissions, so wt_timer does not shorten it.
    net, user = Net(), ServerRecorder()
    inv = request(INVITE)
    stx = InviteServerTransaction(inv, server_key(inv), UDP, SHORT, net.tq, net.send, user)
    stx.respond(reply(inv, 486), net.at(0.0))
    assert _ended_at(net, stx, 0.0) == T64
    assert user.events == [("terminated", T64, True)]


def test_wait_timer_none_keeps_the_rfc_values() -> None:
    assert Timers(t1=T1).timer_wait == T64
    assert Timers(t1=T1).timer_d == TIMER_D
    assert SHORT.timer_wait == SHORT.timer_d == WAIT
