"""The copies the shell hands out: pcap captures an operator starts (filters, caps,
names, files) and the ladder of the last failed calls (what it keeps, what it
forgets, its bounds). Time is passed in."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipdispatch.sip.addr import Addr
from sipdispatch.sip.calls import (
    OUTCOME_ANSWERED,
    OUTCOME_FAILED_OVER,
    OUTCOME_REJECTED,
    Attempt,
    CallRecord,
)
from sipdispatch.transport.capture import (
    FILTER_ALL,
    FILTER_CALL,
    FILTER_SOURCE,
    LADDER_MESSAGES,
    SCAN_BURST,
    Capture,
    CaptureError,
    Ladder,
    call_ladder,
    list_captures,
    parse_filter,
    read_capture,
)
from sipdispatch.transport.pcap import read_records

CALLER, PROXY, MG1, MG2 = ("10.0.0.9", 5070), ("10.0.0.1", 5060), ("10.0.0.2", 5060), (
    "10.0.0.3", 5060)  # fmt: skip


def msg(first: str, call_id: str = "c1@test", method: str = "INVITE") -> bytes:
    return (
        f"{first}\r\nVia: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKx\r\nCall-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("", (FILTER_ALL, "", 0)),
        ("ALL", (FILTER_ALL, "", 0)),
        ("10.0.0.2", (FILTER_SOURCE, "10.0.0.2", 0)),
        ("10.0.0.2:5060", (FILTER_SOURCE, "10.0.0.2", 5060)),
        ("[2001:db8::1]:5062", (FILTER_SOURCE, "2001:db8::1", 5062)),
        ("2001:db8::1", (FILTER_SOURCE, "2001:db8::1", 0)),
        ("a84b4c76e66710@pc33.atlanta.com", (FILTER_CALL, "a84b4c76e66710@pc33.atlanta.com", 0)),
        ("abc:123", (FILTER_CALL, "abc:123", 0)),
    ],
)
def test_a_filter_is_all_a_source_address_or_a_call_id(
    text: str, parsed: tuple[str, str, int]
) -> None:
    assert parse_filter(text) == parsed


def make(tmp_path: Path, clock: list[float], **kw: object) -> Capture:
    taps: list[object] = []
    cap = Capture(tmp_path / "caps", 100_000, 600, on_change=taps.append,
                  clock=lambda: clock[0], **kw)  # type: ignore[arg-type]  # fmt: skip
    return cap


def test_nothing_to_copy_means_no_tap_and_a_capture_makes_one(tmp_path: Path) -> None:
    clock = [1000.0]
    cap = make(tmp_path, clock)
    assert cap.tap is None
    cap.start("all", 10, "x")
    assert cap.tap is cap
    cap.stop("x")
    assert cap.tap is None


def test_a_capture_of_one_call_id_writes_only_that_calls_messages(tmp_path: Path) -> None:
    clock = [1000.0]
    cap = make(tmp_path, clock)
    rec = cap.start("c1@test", 10, None)
    assert rec.path.name.startswith("sipdispatch-19700101-001640-") and rec.path.suffix == ".pcap"
    cap.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0"), 1000.1)
    cap.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0", "other"), 1000.2)
    cap.copy("udp", PROXY, MG1, msg("INVITE sip:1@x SIP/2.0"), 1000.3)
    cap.stop(None)
    packets = read_records(rec.path.read_bytes())
    assert len(packets) == 2 and all(b"Call-ID: c1@test" in p for _, _, p in packets)


def test_a_capture_of_an_address_takes_both_directions_and_a_port_narrows_it(
    tmp_path: Path,
) -> None:
    clock = [0.0]
    cap = make(tmp_path, clock)
    host = cap.start("10.0.0.2", 10, "host")
    port = cap.start("10.0.0.2:5999", 10, "port")
    cap.copy("udp", PROXY, MG1, msg("INVITE sip:1@x SIP/2.0"), 1.0)
    cap.copy("udp", MG1, PROXY, msg("SIP/2.0 404 Not Found"), 1.1)
    cap.copy("udp", PROXY, MG2, msg("INVITE sip:1@x SIP/2.0"), 1.2)
    cap.stop("all")
    assert host.writer.packets == 2 and port.writer.packets == 0


def test_a_capture_ends_at_its_time_even_with_no_traffic_and_at_its_size(
    tmp_path: Path,
) -> None:
    clock = [0.0]
    cap = make(tmp_path, clock)
    timed = cap.start("all", 5, "timed")
    cap.expire(4.9)
    assert timed.stopped == ""
    cap.expire(5.0)
    assert timed.stopped == "time" and "timed" in cap.ended and cap.tap is None
    sized = cap.start("all", 60, "sized")
    while not sized.stopped:
        cap.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0"), 1.0)
    assert sized.stopped == "size" and 100_000 <= sized.path.stat().st_size < 100_500


def test_capture_start_refuses_bad_seconds_names_and_duplicates(tmp_path: Path) -> None:
    clock = [0.0]
    cap = make(tmp_path, clock)
    with pytest.raises(CaptureError, match=r"SECONDS must be 1\.\.600"):
        cap.start("all", 601, None)
    with pytest.raises(CaptureError, match="NAME must be"):
        cap.start("all", 10, "../../etc/passwd")
    cap.start("all", 10, "one")
    with pytest.raises(CaptureError, match="running already"):
        cap.start("all", 10, "one")
    cap.stop("one")
    with pytest.raises(CaptureError, match="exists already"):
        cap.start("all", 10, "one")  # the file is kept: a new name is needed
    with pytest.raises(CaptureError, match="no running capture named two"):
        cap.stop("two")


def test_capture_start_in_a_directory_it_cannot_write_says_so(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cap = Capture(tmp_path / "file" / "sub", 100_000, 600)
    with pytest.raises(CaptureError, match="cannot write"):
        cap.start("all", 10, "x")


def test_the_list_groups_workers_files_and_the_download_merges_them(tmp_path: Path) -> None:
    clock = [0.0]
    w0 = make(tmp_path, clock, suffix=".w0")
    w1 = make(tmp_path, clock, suffix=".w1")
    for cap in (w0, w1):
        cap.start("all", 10, "both")
    w1.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0"), 1.0)
    w0.copy("udp", PROXY, MG1, msg("INVITE sip:1@x SIP/2.0"), 1.5)
    w1.copy("udp", PROXY, CALLER, msg("SIP/2.0 100 Trying"), 1.2)
    w0.stop(None)
    w1.stop(None)
    [listed] = list_captures(w0)
    assert listed["NAME"] == "both" and len(listed["FILES"]) == 2
    assert listed["STATE"] == "stopped" and listed["FILTER"] == "all"
    merged = read_capture(tmp_path / "caps", "both")
    assert merged is not None
    assert [s + u / 1e6 for s, u, _ in read_records(merged)] == [1.0, 1.2, 1.5]
    assert read_capture(tmp_path / "caps", "../x") is None
    assert read_capture(tmp_path / "caps", "none") is None


def record_at(call_id: str, outcome: str, status: int, duration: float = 0.5) -> CallRecord:
    return CallRecord(call_id, Addr("udp", *CALLER), "sip:100@x", status, outcome,
                      (Attempt("sip:mg1", 404), Attempt("sip:mg2", status)),
                      duration)  # fmt: skip


def test_the_ladder_keeps_a_failed_over_calls_messages_and_the_ack_after_it() -> None:
    ladder = Ladder(10)
    ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0", "other"), 1.9)
    ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0"), 2.0)
    ladder.copy("udp", PROXY, MG1, msg("INVITE sip:1@x SIP/2.0"), 2.0)
    ladder.copy("udp", MG1, PROXY, msg("SIP/2.0 404 Not Found"), 2.1)
    ladder.copy("udp", PROXY, MG2, msg("INVITE sip:1@x SIP/2.0"), 2.1)
    ladder.copy("udp", MG2, PROXY, msg("SIP/2.0 200 OK"), 2.2)
    ladder.copy("udp", PROXY, CALLER, msg("SIP/2.0 200 OK"), 2.2)
    ladder.record(record_at("c1@test", OUTCOME_FAILED_OVER, 200), 2.2)
    ladder.copy("udp", CALLER, PROXY, msg("ACK sip:1@x SIP/2.0", method="ACK"), 2.3)
    ladder.copy("udp", CALLER, PROXY, msg("ACK sip:1@x SIP/2.0", "other", "ACK"), 2.3)
    kept = ladder.find("c1@test")
    assert kept is not None
    shown = call_ladder(kept)
    assert [m["first"].split()[1] if m["first"].startswith("SIP") else m["first"].split()[0]
            for m in shown["messages"]] == [
        "INVITE", "INVITE", "404", "INVITE", "200", "200", "ACK"]  # fmt: skip
    assert shown["messages"][2]["src"] == "10.0.0.2:5060" and shown["outcome"] == "failed_over"
    assert len(call_ladder(ladder.find("c1@test") or kept)["messages"]) == 7  # not twice


def test_the_ladder_keeps_nothing_of_an_answered_call_and_a_rejection_from_the_proxy() -> None:
    ladder = Ladder(10)
    ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0", "ok"), 0.5)
    ladder.record(record_at("ok", OUTCOME_ANSWERED, 200), 0.6)
    assert ladder.calls() == []
    ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0"), 1.0)
    ladder.copy("udp", PROXY, CALLER, msg("SIP/2.0 503 Service Unavailable"), 1.0)
    ladder.record(record_at("c1@test", OUTCOME_REJECTED, 503, 0.0), 1.0)
    assert [k.record.status for k in ladder.calls()] == [503]
    assert len(ladder.calls()[0].messages) == 2


def test_a_call_id_inside_another_message_or_another_call_id_is_not_taken() -> None:
    ladder = Ladder(10)
    ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0", "c1@test.more"), 1.0)
    refer = msg("REFER sip:1@x SIP/2.0", "c2", "REFER").replace(
        b"Content-Length: 0", b"Replaces: c1@test;to-tag=1\r\nContent-Length: 0")  # fmt: skip
    ladder.copy("udp", CALLER, PROXY, refer, 1.0)
    ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0"), 1.0)
    ladder.record(record_at("c1@test", OUTCOME_REJECTED, 404), 1.1)
    [kept] = ladder.calls()
    assert len(kept.messages) == 1 and b"Call-ID: c1@test\r\n" in kept.messages[0][4]


def test_the_ladder_looks_back_over_the_calls_duration_only() -> None:
    ladder = Ladder(10)
    ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0"), 1.0)  # an earlier call
    ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0"), 20.0)
    ladder.record(record_at("c1@test", OUTCOME_REJECTED, 404, duration=0.2), 20.2)
    assert [m[0] for m in ladder.calls()[0].messages] == [20.0]


def test_the_ladder_is_a_ring_of_the_newest_failed_calls() -> None:
    ladder = Ladder(3)
    for k in range(5):
        ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0", f"c{k}"), k)
        ladder.record(record_at(f"c{k}", OUTCOME_REJECTED, 404), k)
    assert [k.record.call_id for k in ladder.calls()] == ["c4", "c3", "c2"]
    assert ladder.find("c0") is None and ladder.find("c4") is not None
    assert all(len(k.messages) == 1 for k in ladder.calls())


def test_the_ladder_holds_a_bounded_number_of_messages_and_of_each_call() -> None:
    ladder = Ladder(3, ring=100)
    for _k in range(250):
        ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0", "long"), 1.0)
    assert len(ladder.ring) == 100
    ladder.record(record_at("long", OUTCOME_REJECTED, 408, duration=5.0), 2.0)
    assert len(ladder.calls()[0].messages) == LADDER_MESSAGES


def test_a_storm_of_failures_is_kept_without_messages_past_the_looking_budget() -> None:
    ladder = Ladder(1000)
    for k in range(SCAN_BURST + 10):  # all at one instant
        ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0", f"s{k}"), 100.0)
        ladder.record(record_at(f"s{k}", OUTCOME_REJECTED, 503), 100.0)
    calls = ladder.calls()
    assert len(calls) == SCAN_BURST + 10 and ladder.skipped == 10
    assert [c.complete for c in calls[:10]] == [False] * 10 and all(c.complete for c in calls[10:])
    ladder.copy("udp", CALLER, PROXY, msg("INVITE sip:1@x SIP/2.0", "later"), 101.0)
    ladder.record(record_at("later", OUTCOME_REJECTED, 503), 101.0)  # a second later: again
    assert ladder.calls()[0].complete and len(ladder.calls()[0].messages) == 1
