"""The proxy core (RFC 3261 §16) driven in memory on a virtual clock."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from sipdispatch.sip.addr import Addr
from sipdispatch.sip.message import Request, Response, parse_datagram
from sipdispatch.sip.proxy import ProxyCore, ProxySettings
from sipdispatch.sip.router import NativePlan, Plan, Reject, StaticPlan, Target
from sipdispatch.sip.timers import Timers
from sipdispatch.sip.transaction import NativeUser
from sipdispatch.sip.uri import MAX_PARAMS
from tests.corepump import CorePump, parsed

PROXY = ("127.0.0.1", 5060)
CALLER = Addr("udp", "127.0.0.1", 5555)
GW1 = Addr("udp", "127.0.0.1", 5071)
GW2 = Addr("udp", "127.0.0.1", 5072)
TIMERS = Timers(t1=0.5, t2=4.0, t4=5.0, fr_timer=3.0, fr_inv_timer=10.0)


class FakeRouter:
    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.in_dialog_seen: list[str] = []

    def route(self, request: Request, source: Addr, now: float) -> Plan | Reject:
        result: Plan | Reject = self.plan() if callable(self.plan) else self.plan
        return result

    def in_dialog(self, request: Request, now: float) -> None:
        self.in_dialog_seen.append(request.method)


class Harness:
    def __init__(self, plan: Any, record_route: bool = True) -> None:
        settings = ProxySettings(local={"udp": PROXY, "tcp": PROXY}, record_route=record_route)
        self.router = FakeRouter(plan)
        self.core = ProxyCore(settings, self.router, TIMERS)
        self.pump = CorePump(self.core)

    @property
    def now(self) -> float:
        return self.pump.now

    def send(self, text: str, src: Addr = CALLER) -> list[tuple[Addr, Request | Response]]:
        return parsed(self.pump.receive(_wire(text), src))

    def drain(self) -> list[tuple[Addr, Request | Response]]:
        return parsed(self.pump.sent())

    def advance(self, seconds: float) -> list[tuple[Addr, Request | Response]]:
        return parsed(self.pump.advance(seconds))


def _wire(text: str) -> bytes:
    head, _, body = text.partition("\n\n")
    lines = [line.strip() for line in head.strip().splitlines()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def invite(branch: str = "z9hG4bKcaller1", call_id: str = "call-1", mf: int = 70) -> str:
    return f"""INVITE sip:1111111@127.0.0.1:5060 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5555;branch={branch}
        From: <sip:alice@127.0.0.1:5555>;tag=a1
        To: <sip:1111111@127.0.0.1:5060>
        Call-ID: {call_id}
        CSeq: 1 INVITE
        Contact: <sip:alice@127.0.0.1:5555>
        Max-Forwards: {mf}
        Content-Length: 0
        """


def routed_bye(branch: str, call_id: str = "call-1") -> str:
    """The caller's BYE in the dialog of invite(), along our Record-Route."""
    return f"""BYE sip:gw@127.0.0.1:5071 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5555;branch={branch}
        Route: <sip:127.0.0.1:5060;lr>
        From: <sip:alice@127.0.0.1:5555>;tag=a1
        To: <sip:1111111@127.0.0.1:5060>;tag=gw1
        Call-ID: {call_id}
        CSeq: 2 BYE
        Max-Forwards: 70
        Content-Length: 0
        """


def as_method(text: str, method: str) -> str:
    """The same request with another method (CANCEL or ACK of an INVITE)."""
    return text.replace("INVITE sip:", f"{method} sip:").replace("1 INVITE", f"1 {method}")


def reply(req: Request, status: int, reason: str, to_tag: str | None = "gw1") -> str:
    lines = [f"SIP/2.0 {status} {reason}"]
    for _key, name, value in req.headers:
        if _key in ("via", "from", "call-id", "cseq", "record-route"):
            lines.append(f"{name}: {value}")
        elif _key == "to":
            lines.append(f"To: {value};tag={to_tag}" if to_tag else f"To: {value}")
    lines.append("Contact: <sip:gw@127.0.0.1:5071>")
    lines.append("Content-Length: 0")
    return "\n".join(lines) + "\n\n"


def only(out: list[tuple[Addr, Any]], kind: type, **match: Any) -> list[tuple[Addr, Any]]:
    found = []
    for addr, msg in out:
        if not isinstance(msg, kind):
            continue
        if all(getattr(msg, k) == v for k, v in match.items()):
            found.append((addr, msg))
    return found


def plan_to(*targets: Addr, codes: tuple[int, ...] = (404, 408, 500, 503)) -> Any:
    return lambda: StaticPlan([Target(a) for a in targets], failover_on=codes)


def test_invite_gets_100_trying_and_is_forwarded_with_via_rr_and_max_forwards() -> None:
    h = Harness(plan_to(GW1))
    out = h.send(invite())
    (addr, trying), (gw_addr, fwd) = out
    assert addr == CALLER and isinstance(trying, Response) and trying.status == 100
    assert gw_addr == GW1 and isinstance(fwd, Request) and fwd.method == "INVITE"
    vias = fwd.vias()
    assert len(vias) == 2
    assert (vias[0].host, vias[0].port) == PROXY and vias[0].branch.startswith("z9hG4bK")
    assert vias[1].branch == "z9hG4bKcaller1"
    assert fwd.get("max-forwards") == "69"
    assert fwd.get_all("record-route") == ["<sip:127.0.0.1:5060;lr>"]
    assert fwd.uri_text == "sip:1111111@127.0.0.1:5060"


def test_16_6_max_forwards_added_when_absent() -> None:
    h = Harness(plan_to(GW1))
    text = invite().replace("Max-Forwards: 70\n", "")
    out = h.send(text)
    fwd = only(out, Request, method="INVITE")[0][1]
    assert fwd.get("max-forwards") == "70"


def test_16_3_max_forwards_zero_gets_483() -> None:
    h = Harness(plan_to(GW1))
    out = h.send(invite(mf=0))
    assert [m.status for _, m in only(out, Response)] == [100, 483]
    assert not only(out, Request)


def test_16_3_step_5_proxy_require_gets_420_listing_the_unsupported_options() -> None:
    # RFC 4475 §3.1.2.17 (bext01): an extension the proxy would have to support.
    h = Harness(plan_to(GW1))
    text = invite().replace("Max-Forwards: 70", "Max-Forwards: 70\nProxy-Require: foo, bar")
    out = h.send(text)
    [(_, trying), (_, rejected)] = only(out, Response)
    assert (trying.status, rejected.status, rejected.reason) == (100, 420, "Bad Extension")
    assert rejected.get("unsupported") == "foo, bar"
    assert not only(out, Request)


def test_responses_relayed_in_order_and_2xx_ends_the_call_setup() -> None:
    h = Harness(plan_to(GW1))
    fwd = only(h.send(invite()), Request)[0][1]
    out = h.send(reply(fwd, 100, "Trying", None), GW1)
    assert out == []  # §16.7: 100 is not forwarded
    out = h.send(reply(fwd, 180, "Ringing") + "", GW1)
    out += h.send(reply(fwd, 200, "OK"), GW1)
    statuses = [m.status for _, m in only(out, Response)]
    assert statuses == [180, 200]
    for addr, m in out:
        assert addr == CALLER
        assert [v.branch for v in m.vias()] == ["z9hG4bKcaller1"]
        assert m.get_all("record-route") == ["<sip:127.0.0.1:5060;lr>"]


class RecordingPlan:
    """A plan written in Python (not derived from the compiled NativePlan): the core
    calls it by name."""

    parallel = False

    def __init__(self, target: Target) -> None:
        self.target = target
        self.calls: list[tuple[str, Any]] = []

    def first(self) -> list[Target]:
        self.calls.append(("first", None))
        return [self.target]

    def next_target(self, failed: Target, status: int, timeout: bool, now: float) -> Target | None:
        return None

    def refused(self, target: Target, now: float) -> Target | None:
        return None

    def answered(self, target: Target, now: float) -> None:
        self.calls.append(("answered", target.addr))

    def finished(self, status: int, now: float) -> None:
        self.calls.append(("finished", status))

    def cancelled(self, now: float) -> None:
        self.calls.append(("cancelled", None))


def test_plans_and_routers_not_compiled_with_the_core_are_called_by_name_alike() -> None:
    """The core calls a router, plan and transaction user derived from the native
    bases directly; any other object with the same methods gets the same calls."""
    assert isinstance(Harness(plan_to(GW1)).core, NativeUser)
    assert isinstance(StaticPlan([]), NativePlan)
    recorded = RecordingPlan(Target(GW1))
    outs = []
    for plan in (plan_to(GW1), lambda: recorded):
        h = Harness(plan)
        fwd = only(h.send(invite()), Request)[0][1]
        out = h.send(reply(fwd, 200, "OK"), GW1)
        h.send(routed_bye("z9hG4bKbye1"))
        outs.append(([(a, m.status) for a, m in only(out, Response)], h.router.in_dialog_seen))
    assert outs[0] == outs[1] == ([(CALLER, 200)], ["BYE"])
    assert recorded.calls == [("first", None), ("answered", GW1), ("finished", 200)]


def test_a_workers_via_names_its_own_port_and_record_route_the_shared_one() -> None:
    """A worker process sends from a port of its own: its Via names it, so responses
    come back to it; its Record-Route names the shared port, where in-dialog requests
    come; a response to its Via is matched, and one sent statelessly is relayed."""
    h = Harness(plan_to(GW1))
    h.core.settings = ProxySettings(
        local={"udp": PROXY, "tcp": PROXY}, via={"udp": ("127.0.0.1", 40001)}
    )
    fwd = only(h.send(invite()), Request)[0][1]
    assert fwd.vias()[0].port == 40001
    assert fwd.get_all("record-route") == ["<sip:127.0.0.1:5060;lr>"]
    out = h.send(reply(fwd, 200, "OK"), GW1)
    assert [(a, m.status) for a, m in out] == [(CALLER, 200)]
    # The BYE along the Record-Route (the shared port) leaves with this worker's Via.
    [(addr, bye)] = h.send(routed_bye("z9hG4bKbye1"))
    assert addr == Addr("udp", "127.0.0.1", 5071)
    assert bye.vias()[0].port == 40001
    late = reply(bye, 200, "OK")
    assert [m.status for _, m in h.send(late, GW1)] == [200]


def test_2xx_retransmission_is_relayed_again_rfc6026() -> None:
    h = Harness(plan_to(GW1))
    fwd = only(h.send(invite()), Request)[0][1]
    h.send(reply(fwd, 200, "OK"), GW1)
    out = h.send(reply(fwd, 200, "OK"), GW1)
    assert [m.status for _, m in out] == [200]


def test_ack_for_2xx_follows_the_record_route() -> None:
    h = Harness(plan_to(GW1))
    h.send(invite())
    ack = """ACK sip:gw@127.0.0.1:5071 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5555;branch=z9hG4bKack1
        Route: <sip:127.0.0.1:5060;lr>
        From: <sip:alice@127.0.0.1:5555>;tag=a1
        To: <sip:1111111@127.0.0.1:5060>;tag=gw1
        Call-ID: call-1
        CSeq: 1 ACK
        Max-Forwards: 70
        Content-Length: 0
        """
    out = h.send(ack)
    [(addr, fwd)] = out
    assert addr == GW1 and fwd.method == "ACK"
    assert not fwd.has("route")
    assert len(fwd.vias()) == 2
    # A retransmitted ACK gets the same branch (§16.11 stateless forwarding).
    [(_, again)] = h.send(ack)
    assert again.top_via.branch == fwd.top_via.branch


def test_bye_with_our_route_is_relayed_statefully_and_200_comes_back() -> None:
    h = Harness(plan_to(GW1))
    [(addr, fwd)] = h.send(routed_bye("z9hG4bKbye1"))
    assert addr == GW1 and fwd.method == "BYE"
    assert h.router.in_dialog_seen == ["BYE"]
    out = h.send(reply(fwd, 200, "OK"), GW1)
    assert [(a, m.status) for a, m in out] == [(CALLER, 200)]


def test_in_dialog_request_without_our_route_gets_404() -> None:
    h = Harness(plan_to(GW1))
    bye = """BYE sip:gw@127.0.0.1:5071 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5555;branch=z9hG4bKbye2
        From: <sip:alice@127.0.0.1:5555>;tag=a1
        To: <sip:1111111@127.0.0.1:5060>;tag=gw1
        Call-ID: call-1
        CSeq: 2 BYE
        Content-Length: 0
        """
    out = h.send(bye)
    assert [m.status for _, m in out] == [404]


def test_failover_on_404_tries_next_and_caller_never_sees_404() -> None:
    h = Harness(plan_to(GW1, GW2))
    fwd1 = only(h.send(invite()), Request)[0][1]
    out = h.send(reply(fwd1, 404, "Not Found"), GW1)
    acks = only(out, Request, method="ACK")
    invites = only(out, Request, method="INVITE")
    assert [a for a, _ in acks] == [GW1]  # §17.1.1.3 hop-by-hop ACK
    assert [a for a, _ in invites] == [GW2]
    assert not only(out, Response)
    fwd2 = invites[0][1]
    assert fwd2.top_via.branch != fwd1.top_via.branch
    out = h.send(reply(fwd2, 200, "OK", "gw2"), GW2)
    assert [(a, m.status) for a, m in out] == [(CALLER, 200)]


def test_non_failover_code_is_relayed() -> None:
    h = Harness(plan_to(GW1, GW2, codes=(404,)))
    fwd1 = only(h.send(invite()), Request)[0][1]
    out = h.send(reply(fwd1, 486, "Busy Here"), GW1)
    assert [m.status for _, m in only(out, Response)] == [486]
    assert not only(out, Request, method="INVITE")


def test_16_7_lone_503_is_relayed_as_500() -> None:
    h = Harness(plan_to(GW1, codes=()))
    fwd1 = only(h.send(invite()), Request)[0][1]
    out = h.send(reply(fwd1, 503, "Service Unavailable"), GW1)
    assert [m.status for _, m in only(out, Response)] == [500]


def test_fr_timer_without_any_reply_gives_408_then_fails_over() -> None:
    h = Harness(plan_to(GW1, GW2))
    h.send(invite())
    out = h.advance(2.9)
    assert [a for a, _ in only(out, Request, method="INVITE")] == [
        GW1
    ] * 2  # timer A at 0.5 s and 1.5 s
    out = h.advance(0.2)
    assert [a for a, _ in only(out, Request, method="INVITE")] == [GW2]
    out = h.advance(3.1)
    finals = [m.status for _, m in only(out, Response)]
    assert finals == [408]


def test_fr_inv_timer_after_ringing_cancels_branch_and_answers_408() -> None:
    h = Harness(plan_to(GW1, codes=()))
    fwd = only(h.send(invite()), Request)[0][1]
    h.send(reply(fwd, 180, "Ringing"), GW1)
    out = h.advance(10.1)
    cancels = only(out, Request, method="CANCEL")
    assert [a for a, _ in cancels] == [GW1]
    assert cancels[0][1].top_via.branch == fwd.top_via.branch
    assert [m.status for _, m in only(out, Response)] == [408]


def test_cancel_gets_200_then_487_and_branch_is_cancelled() -> None:
    h = Harness(plan_to(GW1))
    fwd = only(h.send(invite()), Request)[0][1]
    h.send(reply(fwd, 180, "Ringing"), GW1)
    cancel = (
        invite().replace("INVITE sip:", "CANCEL sip:").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
    )
    out = h.send(cancel)
    assert [(a, m.status) for a, m in only(out, Response)] == [(CALLER, 200)]
    [(addr, fcancel)] = only(out, Request, method="CANCEL")
    assert addr == GW1 and fcancel.top_via.branch == fwd.top_via.branch
    out = h.send(reply(fwd, 487, "Request Terminated"), GW1)
    assert [(a, m.status) for a, m in only(out, Response)] == [(CALLER, 487)]
    assert [a for a, _ in only(out, Request, method="ACK")] == [GW1]
    # The caller's ACK for the 487 is absorbed (hop by hop).
    ack = as_method(invite(), "ACK")
    assert h.send(ack) == []


def test_9_1_cancel_waits_for_a_provisional_before_cancelling_the_branch() -> None:
    h = Harness(plan_to(GW1))
    fwd = only(h.send(invite()), Request)[0][1]
    cancel = (
        invite().replace("INVITE sip:", "CANCEL sip:").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
    )
    out = h.send(cancel)
    assert not only(out, Request, method="CANCEL")
    out = h.send(reply(fwd, 100, "Trying", None), GW1)
    assert [a for a, _ in only(out, Request, method="CANCEL")] == [GW1]


def test_cancel_without_transaction_gets_481() -> None:
    h = Harness(plan_to(GW1))
    cancel = (
        invite().replace("INVITE sip:", "CANCEL sip:").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
    )
    assert [m.status for _, m in h.send(cancel)] == [481]


def test_invite_retransmission_is_absorbed_and_gets_the_last_response_again() -> None:
    h = Harness(plan_to(GW1))
    h.send(invite())
    out = h.send(invite())
    assert [m.status for _, m in out] == [100]
    assert not only(out, Request)


def test_parallel_plan_forks_and_cancels_the_losers_on_2xx() -> None:
    h = Harness(lambda: StaticPlan([Target(GW1), Target(GW2)], parallel=True))
    out = h.send(invite())
    forks = only(out, Request, method="INVITE")
    assert [a for a, _ in forks] == [GW1, GW2]
    h.send(reply(forks[0][1], 180, "Ringing", "g1"), GW1)
    h.send(reply(forks[1][1], 180, "Ringing", "g2"), GW2)
    out = h.send(reply(forks[1][1], 200, "OK", "g2"), GW2)
    assert [m.status for _, m in only(out, Response)] == [200]
    assert [a for a, _ in only(out, Request, method="CANCEL")] == [GW1]


def challenge(req: Request, status: int, header: str, realm: str, tag: str) -> str:
    text = reply(req, status, "Unauthorized" if status == 401 else "Proxy Auth Required", tag)
    return text.replace(
        "Content-Length: 0", f'{header}: Digest realm="{realm}", nonce="n{tag}"\nContent-Length: 0'
    )


def test_16_7_step_7_the_challenges_of_every_branch_go_upstream_in_one_401() -> None:
    h = Harness(lambda: StaticPlan([Target(GW1), Target(GW2)], parallel=True))
    forks = only(h.send(invite()), Request, method="INVITE")
    out = h.send(challenge(forks[0][1], 401, "WWW-Authenticate", "gw1.example", "g1"), GW1)
    assert not only(out, Response)  # a branch is still pending
    out = h.send(challenge(forks[1][1], 407, "Proxy-Authenticate", "gw2.example", "g2"), GW2)
    [(addr, final)] = only(out, Response)
    assert addr == CALLER and final.status == 401  # the lowest class, the earlier of a tie
    assert final.get_all("www-authenticate") == ['Digest realm="gw1.example", nonce="ng1"']
    assert final.get_all("proxy-authenticate") == ['Digest realm="gw2.example", nonce="ng2"']
    # The ACK of each branch's challenge went hop by hop; nothing else was sent.
    assert sorted(a.port for a, _ in only(out, Request, method="ACK")) == [GW2.port]


def test_a_lone_401_goes_upstream_as_it_came() -> None:
    h = Harness(plan_to(GW1))
    fwd = only(h.send(invite()), Request, method="INVITE")[0][1]
    out = h.send(challenge(fwd, 401, "WWW-Authenticate", "gw1.example", "g1"), GW1)
    [(_, final)] = only(out, Response)
    assert final.get_all("www-authenticate") == ['Digest realm="gw1.example", nonce="ng1"']
    assert final.get_all("proxy-authenticate") == []


def test_reject_from_router_is_sent() -> None:
    h = Harness(Reject(503, "No destination"))
    out = h.send(invite())
    assert [(m.status, m.reason) for _, m in out] == [(100, "Trying"), (503, "No destination")]
    assert out[1][1].to_tag is not None


def test_16_3_loop_is_detected_with_482() -> None:
    h = Harness(plan_to(Addr("udp", "127.0.0.1", 5060)))
    fwd = only(h.send(invite()), Request)[0][1]
    # The request comes back to us unchanged (the next hop routed it to us).
    out = h.send(fwd.to_bytes().decode(), Addr("udp", "127.0.0.1", 5060))
    assert 482 in [m.status for _, m in only(out, Response)]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (invite().replace("Call-ID: call-1\n", ""), "Missing Call-ID header"),
        (invite().replace("CSeq: 1 INVITE", "CSeq: 1 BYE"), "CSeq method does not match"),
        (invite().replace("CSeq: 1 INVITE", "CSeq: x INVITE"), "Malformed CSeq header"),
    ],
)
def test_malformed_request_with_usable_via_gets_400_saying_why(text: str, reason: str) -> None:
    h = Harness(plan_to(GW1))
    out = h.send(text)
    [(addr, resp)] = out
    assert addr == CALLER and resp.status == 400 and resp.reason.startswith(reason)
    assert h.core.stats.parse_errors == 1


def test_a_header_of_more_parameters_than_any_peer_sends_gets_400_saying_so() -> None:
    h = Harness(plan_to(GW1))
    to = "To: <sip:1111111@127.0.0.1:5060>"
    out = h.send(invite().replace(to, to + ";tag=b2" + ";p=1" * MAX_PARAMS))
    assert [(a, m.status, m.reason) for a, m in only(out, Response)][-1] == (
        CALLER,
        400,
        f"More than {MAX_PARAMS} parameters in From/To",
    )
    assert not only(out, Request)


def test_garbage_is_dropped_and_counted() -> None:
    h = Harness(plan_to(GW1))
    h.core.receive(b"\x00\xffnot sip at all\r\n\r\n", CALLER, 0.0)
    assert h.drain() == []
    assert h.core.stats.dropped == 1


def test_oversize_request_gets_513() -> None:
    h = Harness(plan_to(GW1))
    big = invite().replace("Content-Length: 0", "X-Pad: " + "a" * 70000 + "\nContent-Length: 0")
    out = h.send(big)
    assert [m.status for _, m in out] == [513]


def test_transaction_tables_are_empty_after_the_call() -> None:
    h = Harness(plan_to(GW1))
    fwd = only(h.send(invite()), Request)[0][1]
    h.send(reply(fwd, 200, "OK"), GW1)
    h.advance(100)
    assert h.core.server_txs == {} and h.core.client_txs == {}
    assert h.core.get_timer() is None


def test_16_7_2xx_arriving_after_timer_c_gave_408_is_still_forwarded() -> None:
    h = Harness(plan_to(GW1, codes=()))
    fwd = only(h.send(invite()), Request)[0][1]
    h.send(reply(fwd, 180, "Ringing"), GW1)
    out = h.advance(10.1)
    assert [m.status for _, m in only(out, Response)] == [408]
    out = h.send(reply(fwd, 200, "OK"), GW1)
    assert [(a, m.status) for a, m in only(out, Response)] == [(CALLER, 200)]


def test_originate_sends_our_own_request_and_reports_the_final() -> None:
    h = Harness(plan_to(GW1))
    seen: list[tuple[int, float]] = []
    ping = parse_datagram(
        b"OPTIONS sip:127.0.0.1:5071 SIP/2.0\r\nFrom: <sip:dispatcher@localhost>;tag=p1\r\n"
        b"To: <sip:127.0.0.1:5071>\r\nCall-ID: ping-1\r\nCSeq: 1 OPTIONS\r\n"
        b"Via: SIP/2.0/UDP 0.0.0.0:1;branch=z9hG4bKdummy\r\nContent-Length: 0\r\n\r\n"
    )
    ping.remove("via")
    h.core.originate(ping, GW1, lambda status, _r, now: seen.append((status, now)), h.now)
    [(addr, sent)] = h.drain()
    assert addr == GW1 and sent.method == "OPTIONS" and len(sent.vias()) == 1
    h.pump.now = 0.25
    assert h.send(reply(sent, 200, "OK"), GW1) == []
    assert seen == [(200, 0.25)]


def test_originate_reports_408_when_nothing_answers() -> None:
    h = Harness(plan_to(GW1))
    seen: list[int] = []
    ping = Request("OPTIONS", "sip:127.0.0.1:5071", [
        ("from", "From", "<sip:d@localhost>;tag=1"), ("to", "To", "<sip:127.0.0.1:5071>"),
        ("call-id", "Call-ID", "p2"), ("cseq", "CSeq", "1 OPTIONS"),
    ])  # fmt: skip
    h.core.originate(ping, GW1, lambda status, _r, _now: seen.append(status), h.now)
    h.advance(TIMERS.fr_timer + 0.1)
    assert seen == [408]


def test_oversize_request_after_leading_crlfs_still_gets_513() -> None:
    h = Harness(plan_to(GW1))
    big = invite().replace("Content-Length: 0", "X-Pad: " + "a" * 70000 + "\nContent-Length: 0")
    h.core.receive(b"\r\n\r\n" + _wire(big), CALLER, h.now)
    assert [m.status for _, m in h.drain()] == [513]


def test_finished_calls_are_freed_by_reference_counting_alone() -> None:
    """No reference cycle outlives a call: the cyclic GC (whose full passes walk
    every call in progress, in long pauses) is not needed to free one."""
    from sipdispatch.sip.proxy import Branch, Context
    from sipdispatch.sip.transaction import ClientTransaction, ServerTransaction

    kinds = (Context, Branch, ClientTransaction, ServerTransaction)
    gc.collect()
    gc.disable()
    try:
        h = Harness(plan_to(GW1, GW2))
        for i in range(3):
            fwd = only(h.send(invite(branch=f"z9hG4bKfree{i}", call_id=f"free-{i}")), Request)[0][1]
            if i == 1:  # one call fails over first
                fwd = only(h.send(reply(fwd, 503, "Busy")), Request, method="INVITE")[0][1]
            h.send(reply(fwd, 180, "Ringing"), GW1)
            h.send(reply(fwd, 200, "OK"), GW1)
            [(_, fbye)] = h.send(routed_bye(f"z9hG4bKfreebye{i}", f"free-{i}"))
            h.send(reply(fbye, 200, "OK"), GW1)
        h.advance(100)
        assert h.core.server_txs == {} and h.core.client_txs == {}
        left = [o for o in gc.get_objects() if isinstance(o, kinds)]
        assert left == []
    finally:
        gc.enable()


def test_answered_call_keeps_no_parsed_request_while_its_transactions_wait() -> None:
    """After the final responses, the transactions wait (wait_timer) holding no parsed
    request: its header list is freed at once, not 5 s later (fewer objects for the
    garbage collector to walk per call in flight)."""
    from sipdispatch.sip.message import RELEASED
    from sipdispatch.sip.proxy import Context

    h = Harness(plan_to(GW1))
    fwd = only(h.send(invite(branch="z9hG4bKrel", call_id="rel-1")), Request)[0][1]
    h.send(reply(fwd, 180, "Ringing"), GW1)
    h.send(reply(fwd, 200, "OK"), GW1)
    [(_, fbye)] = h.send(routed_bye("z9hG4bKrelbye", "rel-1"))
    h.send(reply(fbye, 200, "OK"), GW1)
    servers = list(h.core.server_txs.values())
    clients = list(h.core.client_txs.values())
    assert len(servers) == 2 and len(clients) == 2  # INVITE and BYE, both sides: waiting
    assert all(tx.request is RELEASED for tx in [*servers, *clients])
    contexts = [tx.owner for tx in servers if isinstance(tx.owner, Context)]
    assert contexts and all(ctx.request is RELEASED for ctx in contexts)
    h.advance(100)
    assert h.core.server_txs == {} and h.core.client_txs == {}


def test_a_malformed_to_header_gets_400_through_the_transaction_which_is_then_freed() -> None:
    """Found by fuzzing: the To header is read once the server transaction exists; its
    400 used to go out statelessly, leaving the transaction waiting for ever."""
    h = Harness(StaticPlan([Target(GW1)]))
    bye = """BYE sip:jill@127.0.0.1 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5555;branch=z9hG4bKbadto
        To: <sip:jill@example.com;tag=t1
        From: <sip:kim@example.com>;tag=f1
        Call-ID: bad-to-1
        CSeq: 3 BYE
        Content-Length: 0
        """
    out = h.send(bye)
    assert [(a, m.status) for a, m in out if isinstance(m, Response)] == [(CALLER, 400)]
    assert h.core.transactions_in_flight() == (1, 0)
    again = h.send(bye)  # a retransmission gets the same answer from the transaction
    assert [m.status for _, m in again if isinstance(m, Response)] == [400]
    assert h.core.stats.rx_retransmissions == 1
    h.advance(64 * TIMERS.t1 + 1)
    assert h.core.transactions_in_flight() == (0, 0)
