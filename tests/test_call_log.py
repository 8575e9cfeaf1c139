"""The call log: the records the core and the router make for each call, and their lines.

The proxy core and the dispatcher's router run together on a virtual clock (the
``tests/test_routing.py`` seam); the records go to a list, and the lines are checked
through the real formatters.
"""

from __future__ import annotations

import io
import json
import logging

from sipdispatch.logs import CallLog, JsonFormatter, call_text, setup_logging
from sipdispatch.routing import DispatchRouter
from sipdispatch.sip.addr import Addr
from sipdispatch.sip.calls import Attempt, CallRecord
from sipdispatch.sip.message import Request
from tests.test_routing import (
    CALLER,
    GW1,
    GW2,
    MG1,
    MG2,
    TIMERS,
    Core,
    answer,
    caller_invite,
    dest,
    requests_to,
    responses_to_caller,
    router,
)

SERIAL2 = f"1 {MG1} 0 10\n1 {MG2} 0 5\n"


def logged(r: DispatchRouter, core: Core, *, every: bool = False) -> list[CallRecord]:
    records: list[CallRecord] = []
    r.call_log = records.append
    r.log_all = every
    core.core.call_log = records.append
    return records


def cancel_for(invite: bytes) -> bytes:
    text = invite.decode()
    head, _, _ = text.partition("\r\n\r\n")
    lines = [
        line.replace("INVITE", "CANCEL") if line.startswith(("INVITE", "CSeq")) else line
        for line in head.split("\r\n")
        if not line.startswith("Contact")
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def finals(out: list[tuple[Addr, object]]) -> list[int]:
    return [s for s in responses_to_caller(out) if s >= 200]


def test_a_call_answered_by_the_first_destination_makes_no_record() -> None:
    r = router(SERIAL2, [{"set": 1, "algorithm": 8}])
    c = Core(r)
    records = logged(r, c)
    out = c.send(caller_invite(), CALLER)
    [inv] = requests_to(out, GW1, "INVITE")
    c.pump.now = 0.3
    assert responses_to_caller(c.send(answer(inv, 200, "mg1"), GW1)) == [200]
    assert records == []
    assert r.setup_times.count == 1  # still counted in the set-up time histogram
    assert dest(r, MG1).calls_answered == 1


def test_calls_all_records_a_simple_success_too() -> None:
    r = router(SERIAL2, [{"set": 1, "algorithm": 8}])
    c = Core(r)
    records = logged(r, c, every=True)
    [inv] = requests_to(c.send(caller_invite(), CALLER), GW1, "INVITE")
    c.send(answer(inv, 200, "mg1"), GW1)
    [rec] = records
    assert rec.outcome == "answered" and rec.attempts == (Attempt(MG1, 200),)


def test_a_failed_over_call_records_each_destination_with_its_answer_and_the_time() -> None:
    r = router(SERIAL2, [{"set": 1, "algorithm": 8}])
    c = Core(r)
    records = logged(r, c)
    [inv1] = requests_to(c.send(caller_invite("a84b4c76e66710"), CALLER), GW1, "INVITE")
    c.pump.now = 0.05
    [inv2] = requests_to(c.send(answer(inv1, 404, "mg1"), GW1), GW2, "INVITE")
    c.pump.now = 0.21
    c.send(answer(inv2, 200, "mg2"), GW2)
    [rec] = records
    assert rec.call_id == "a84b4c76e66710" and rec.source == CALLER
    assert rec.ruri == "sip:1111111@127.0.0.1:5060" and rec.set_id == 1
    assert rec.attempts == (Attempt(MG1, 404), Attempt(MG2, 200))
    assert rec.outcome == "failed_over" and rec.status == 200
    assert abs(rec.duration - 0.21) < 1e-9
    assert call_text(rec) == (
        "call a84b4c76e66710 from 192.0.2.1:5060 sip:1111111@127.0.0.1:5060: "
        "10.0.0.1:5060 404 -> 10.0.0.2:5060 200 (0.21 s)"
    )
    assert dest(r, MG1).calls_rejected == [0, 1, 0, 0]
    assert dest(r, MG2).calls_answered == 1


def test_every_destination_timing_out_is_recorded_as_timeout() -> None:
    r = router(SERIAL2, [{"set": 1, "algorithm": 8, "mark_failed": ""}])
    c = Core(r)
    records = logged(r, c)
    c.send(caller_invite(), CALLER)
    out = c.advance(2 * TIMERS.fr_timer + 1)
    assert set(responses_to_caller(out)) == {408}  # retransmitted: no ACK here
    [rec] = records
    assert rec.outcome == "timeout" and rec.status == 408
    assert [(a.destination, a.timeout) for a in rec.attempts] == [(MG1, True), (MG2, True)]
    assert "10.0.0.1:5060 timeout -> 10.0.0.2:5060 timeout" in call_text(rec)
    assert dest(r, MG1).calls_timeout == dest(r, MG2).calls_timeout == 1


def test_a_rejection_that_does_not_fail_over_is_recorded_as_rejected() -> None:
    r = router(SERIAL2, [{"set": 1, "algorithm": 8, "failover_on": ["5xx"]}])
    c = Core(r)
    records = logged(r, c)
    [inv] = requests_to(c.send(caller_invite(), CALLER), GW1, "INVITE")
    assert responses_to_caller(c.send(answer(inv, 486, "mg1"), GW1)) == [486]
    [rec] = records
    assert rec.outcome == "rejected" and rec.attempts == (Attempt(MG1, 486),)
    assert call_text(rec).endswith(": 10.0.0.1:5060 486 (0.00 s)")


def test_a_cancelled_call_is_recorded_as_cancelled_on_its_destination() -> None:
    r = router(SERIAL2, [{"set": 1, "algorithm": 8}])
    c = Core(r)
    records = logged(r, c)
    invite = caller_invite()
    [inv] = requests_to(c.send(invite, CALLER), GW1, "INVITE")
    c.send(answer(inv, 180, "mg1"), GW1)
    out = c.send(cancel_for(invite), CALLER)
    [cancel] = requests_to(out, GW1, "CANCEL")
    assert isinstance(cancel, Request)
    c.pump.now = 2.5
    assert responses_to_caller(c.send(answer(inv, 487, "mg1"), GW1)) == [487]
    [rec] = records
    assert rec.outcome == "cancelled" and rec.attempts == (Attempt(MG1, 487),)
    assert call_text(rec).endswith(": 10.0.0.1:5060 487, cancelled (2.50 s)")
    assert dest(r, MG1).calls_cancelled == 1


def test_no_usable_destination_is_recorded_and_counted_per_set() -> None:
    r = router(f"1 {MG1} 1 0\n", [{"set": 1}])  # flags 1: inactive
    c = Core(r)
    records = logged(r, c)
    assert finals(c.send(caller_invite(), CALLER)) == [503]
    [rec] = records
    assert (rec.status, rec.outcome, rec.attempts) == (503, "no_destination", ())
    assert call_text(rec).endswith("sip:1111111@127.0.0.1:5060: 503 No destination (0.00 s)")
    assert r.no_destination == {1: 1}


def test_no_matching_route_is_recorded_as_no_route() -> None:
    r = router(SERIAL2, [{"set": 1, "match": {"domain": "elsewhere.example"}}])
    c = Core(r)
    records = logged(r, c)
    assert finals(c.send(caller_invite(), CALLER)) == [404]
    [rec] = records
    assert (rec.status, rec.reason, rec.outcome) == (404, "No route", "no_route")


def test_an_in_dialog_invite_not_routed_through_us_is_recorded_as_not_here() -> None:
    r = router(SERIAL2, [{"set": 1}])
    c = Core(r)
    records = logged(r, c)
    reinvite = caller_invite().replace(
        b"To: <sip:1111111@127.0.0.1>", b"To: <sip:1111111@127.0.0.1>;tag=x"
    )
    assert finals(c.send(reinvite, CALLER)) == [404]
    [rec] = records
    assert (rec.reason, rec.outcome) == ("Not here", "not_here")


def test_requests_other_than_invite_make_no_record() -> None:
    r = router(SERIAL2, [{"set": 1, "match": {"domain": "elsewhere.example"}}])
    c = Core(r)
    records = logged(r, c)
    options = caller_invite().replace(b"INVITE", b"OPTIONS")
    assert responses_to_caller(c.send(options, CALLER)) == [404]
    assert records == []


def test_without_a_sink_nothing_is_recorded_but_outcomes_are_counted() -> None:
    r = router(SERIAL2, [{"set": 1, "algorithm": 8}])
    c = Core(r)
    assert r.call_log is None and c.core.call_log is None
    [inv1] = requests_to(c.send(caller_invite(), CALLER), GW1, "INVITE")
    [inv2] = requests_to(c.send(answer(inv1, 503, "mg1"), GW1), GW2, "INVITE")
    c.send(answer(inv2, 200, "mg2"), GW2)
    assert dest(r, MG1).calls_rejected == [0, 0, 1, 0]
    assert dest(r, MG2).calls_answered == 1


# -- the lines -------------------------------------------------------------------------------

RECORD = CallRecord(
    "c1",
    Addr("udp", "192.0.2.4", 5060),
    "sip:1111111@proxy",
    200,
    "failed_over",
    (Attempt("sip:mg1:5060", 404), Attempt("sip:mg2:5060", 200)),
    0.21,
    set_id=1,
)


def test_the_call_log_writes_one_info_line_on_sipdispatch_calls() -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream)
    try:
        CallLog()(RECORD)
    finally:
        setup_logging("warning", "text")
    line = stream.getvalue().strip()
    assert line.endswith(
        "INFO sipdispatch.calls: call c1 from 192.0.2.4:5060 sip:1111111@proxy: "
        "mg1:5060 404 -> mg2:5060 200 (0.21 s)"
    )
    assert line[:4].isdigit() and line[4] == "-"  # starts with a timestamp


def test_json_format_writes_one_object_per_line_with_the_calls_fields() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream)
    try:
        CallLog()(RECORD)
        logging.getLogger("sipdispatch.server").warning("something else")
    finally:
        setup_logging("warning", "text")
    call, other = (json.loads(line) for line in stream.getvalue().splitlines())
    assert call["event"] == "call" and call["level"] == "info"
    assert call["logger"] == "sipdispatch.calls" and call["time"].endswith("Z")
    assert call["call_id"] == "c1" and call["source"] == "192.0.2.4:5060"
    assert call["attempts"] == [
        {"destination": "sip:mg1:5060", "status": 404, "timeout": False},
        {"destination": "sip:mg2:5060", "status": 200, "timeout": False},
    ]
    assert call["duration"] == 0.21 and call["outcome"] == "failed_over"
    assert other["message"] == "something else" and "event" not in other
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)


def test_the_call_log_writes_nothing_when_info_is_off() -> None:
    stream = io.StringIO()
    setup_logging("warning", "text", stream)
    sink = CallLog()
    sink(RECORD)
    assert stream.getvalue() == "" and sink.written == 0
