"""bench drives sipp through the helper the integration tests use (tests/integration/sippctl.py).

A bench caller straight to a bench gateway (the latency baseline's path) reports
every call, its response time, its rate and its own CPU, and can watch sipp's stat
file while the calls run; sipp's reasons for failed calls are counted by kind.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from bench.processes import Processes
from bench.traffic import Sipp, error_kinds, failure_kinds

from tests.integration import sippctl

pytestmark = pytest.mark.timeout(90)


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")
def test_bench_caller_and_gateway_run_through_the_shared_sipp_helper(tmp_path: Path) -> None:
    binary = shutil.which("sipp")
    assert binary is not None
    gw_port, caller_port = sippctl.free_ports(2, "udp")
    procs = Processes()
    sipp = Sipp(binary, procs, caller_port)
    created_while_running: list[int] = []

    def watch(stat: Path) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not created_while_running:
            created = sippctl.stat_int(sippctl.read_stats(stat), "TotalCallCreated")
            if created:
                created_while_running.append(created)
            time.sleep(0.2)

    try:
        gateway = sipp.gateway(gw_port, tmp_path)
        result = sipp.call(gw_port, 10, 20, tmp_path / "run", stat_every=1, while_running=watch)
        assert gateway.poll() is None  # the gateway stays up for the next run
    finally:
        procs.stop_all()
    assert (result.ok, result.failed, result.retrans, result.exit_code) == (20, 0, 0, 0), result
    assert len(result.rtd_ms) == 20 and all(ms >= 0 for ms in result.rtd_ms)
    assert 5 <= result.achieved <= 20
    assert result.caller_cpu_s >= 0 and result.elapsed >= 1.5
    assert result.errors == []
    assert created_while_running, "the stat file was not readable while sipp ran"
    # Each sipp keeps its logs in its own directory.
    assert (tmp_path / f"gateway-{gw_port}" / "uas.xml").exists()
    assert list((tmp_path / "run").glob("uac_*_rtt.csv"))


def test_failed_calls_are_counted_by_kind() -> None:
    stats = {
        "CurrentTime": "2025-01-01 10:00:00",
        "FailedCall(C)": "4",
        "FailedTimeoutOnRecv(C)": "3",
        "FailedUnexpectedMessage(C)": "1",
        "FailedRegexpDoesntMatch(C)": "0",
    }
    assert failure_kinds(stats) == [("TimeoutOnRecv", 3), ("UnexpectedMessage", 1)]
    log = (
        "2025-01-01\t10:00:01.000001\t1735725601.000001: Aborting call on unexpected "
        "message for Call-Id '1-99@127.0.0.1': while expecting '200' (index 3), "
        "received 'SIP/2.0 503 Service Unavailable'\n"
        "2025-01-01\t10:00:02.000001\t1735725602.000001: Aborting call on unexpected "
        "message for Call-Id '2-99@127.0.0.1': while expecting '200' (index 3), "
        "received 'SIP/2.0 503 Service Unavailable'\n"
        "not a line of sipp's\n"
    )
    [(kind, count)] = error_kinds(log)
    assert count == 2
    assert kind.startswith("Aborting call on unexpected message for Call-Id N")


def test_the_stat_row_and_response_times_are_read_from_sipps_files() -> None:
    stat_csv = "A;B;SuccessfulCall(C);\n1;2;3;\n4;5;6;\n7;8\n"
    stats = sippctl.last_stats(stat_csv)
    assert stats == {"A": "7", "B": "8"}  # a row sipp is still writing
    assert sippctl.stat_int(stats, "SuccessfulCall(C)") == 0
    assert sippctl.stat_int(sippctl.last_stats(stat_csv[: stat_csv.index("7")]), "B") == 5
    assert sippctl.last_stats("A;B;\n") == {}
    rtt = "Date_ms;response_time_ms;rtd_no\n8.001;4;1\n9.5;2;2\n10.0;0;1\nbad\n"
    assert sippctl.parse_response_times(rtt) == [4.0, 0.0]
    assert sippctl.parse_response_times(rtt, rtd=2) == [2.0]
