"""Drive sipp from the tests and from the bench: run a scenario as a subprocess and
read its verdict.

The integration tests run sipp callers (:func:`run_sipp`, :func:`start_sipp`) against
the proxy and scripted gateways. The bench (``bench/run.sh``) also runs sipp
gateways (:func:`start_sipp_uas`) and needs more of what sipp reports: every column
of the stat CSV (:func:`read_stats`, :attr:`SippResult.stats`, read while sipp runs
too) and the response time of each call (``trace_rtt``,
:attr:`SippResult.response_times_ms`).

sipp exit codes (sipp(1)): 0 every call succeeded, 1 at least one call failed,
97 stopped by an internal command, 99 normal exit without any call processed,
255 (-1) fatal error, 254 (-2) fatal error binding a socket.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

Kind = Literal["udp", "tcp", "both"]
SippTransport = Literal["udp", "tcp"]

#: sipp -t values: one socket for all calls, so a gateway sees one source address.
SIPP_TRANSPORT_FLAG = {"udp": "u1", "tcp": "t1"}

EXIT_ALL_OK = 0
EXIT_SOME_FAILED = 1

#: Seconds past sipp's own -timeout before we SIGTERM it: sipp's -timeout is only a
#: soft stop (no new calls; calls in progress, e.g. retransmitting an unanswered
#: INVITE for 32 s, keep it alive), so it is not a bound on the run by itself.
TERM_GRACE = 5.0
#: Seconds after SIGTERM before SIGKILL.
KILL_GRACE = 5.0


def sipp_path() -> str | None:
    """Path of the sipp binary, or None when it is not installed."""
    return shutil.which("sipp")


def scenario_path(scenario: str | os.PathLike[str]) -> Path:
    """Resolve a scenario given as a path or as a name in ``scenarios/`` (.xml optional)."""
    path = Path(scenario)
    if path.is_file():
        return path.resolve()
    name = path.name if path.suffix == ".xml" else f"{path.name}.xml"
    candidate = SCENARIO_DIR / name
    if not candidate.is_file():
        raise FileNotFoundError(f"no sipp scenario {scenario!r} (looked in {SCENARIO_DIR})")
    return candidate


# -- ports -------------------------------------------------------------------


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _can_bind(port: int, kind: Kind, host: str) -> bool:
    kinds = ("udp", "tcp") if kind == "both" else (kind,)
    socks: list[socket.socket] = []
    try:
        for k in kinds:
            sock = socket.socket(
                socket.AF_INET, socket.SOCK_DGRAM if k == "udp" else socket.SOCK_STREAM
            )
            socks.append(sock)
            # No SO_REUSEADDR: a TCP port still in TIME_WAIT counts as taken, which is
            # stricter than the servers that will bind it later.
            sock.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        for sock in socks:
            sock.close()


_handed_out: set[int] = set()


def free_port(kind: Kind = "both", host: str = "127.0.0.1") -> int:
    """A port on ``host`` that is free for UDP and TCP (or just ``kind``) right now.

    Ports come from below the kernel's ephemeral range so that outgoing connections
    (sipp, the proxy's TCP client side) cannot grab them between this call and the
    bind; ports already handed out by this process are not reused.
    """
    low_eph, _ = _ephemeral_range()
    low, high = 20000, min(low_eph, 32768) - 1
    rng = random.Random()
    for _ in range(500):
        port = rng.randint(low, high)
        if port in _handed_out:
            continue
        if _can_bind(port, kind, host):
            _handed_out.add(port)
            return port
    # Fall back on the kernel's choice, checking the other protocol too.
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out and _can_bind(port, kind, host):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free {kind} port on {host}")


def free_ports(n: int, kind: Kind = "both", host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports (see :func:`free_port`)."""
    return [free_port(kind, host) for _ in range(n)]


# -- running sipp --------------------------------------------------------------


@dataclass
class SippResult:
    """What one sipp run did."""

    returncode: int
    """sipp's exit status (0 all calls ok, 1 some failed, others: errors).

    Beware: sipp exits 0 on SIGTERM/SIGINT even with calls unfinished.
    """
    successful: int
    """Successful calls (cumulative), -1 when sipp reported nothing."""
    failed: int
    """Failed calls (cumulative), -1 when sipp reported nothing."""
    stdout: str
    stderr: str
    command: list[str]
    screen: str = ""
    """Final screen dump (-trace_screen), the most readable account of the run."""
    errors: str = ""
    """Unexpected-message log (-trace_err)."""
    messages: str = ""
    """Every message sent and received (-trace_msg), when enabled."""
    timed_out: bool = False
    """The subprocess outlived ``timeout`` + its grace and was terminated."""
    stats: dict[str, str] = field(default_factory=dict)
    """The last row of the stat CSV by column name (see :func:`read_stats`)."""
    response_times_ms: list[float] = field(default_factory=list)
    """Response times (ms) of response-time measure 1 (``rtd="1"`` in the scenario),
    one per call, when sipp ran with ``trace_rtt``."""

    @property
    def ok(self) -> bool:
        """Exit 0, not cut short, at least one successful call and no failed one."""
        return (
            self.returncode == EXIT_ALL_OK
            and not self.timed_out
            and self.failed == 0
            and self.successful > 0
        )

    def report(self, tail: int = 6000) -> str:
        """A failure message: command, counts and the tail of sipp's own logs."""
        parts = [
            f"sipp exit={self.returncode} successful={self.successful} failed={self.failed}"
            f"{' (killed after timeout)' if self.timed_out else ''}",
            "command: " + " ".join(self.command),
        ]
        for title, text in (
            ("screen", self.screen or self.stdout),
            ("stderr", self.stderr),
            ("errors", self.errors),
            ("messages", self.messages),
        ):
            if text.strip():
                parts.append(f"--- {title} ---\n{text[-tail:]}")
        return "\n".join(parts)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


_SCREEN_COUNTER = re.compile(r"^\s*(Successful call|Failed call)\s*\|[^|]*\|\s*(\d+)", re.M)


def parse_counts(stat_csv: str, screen: str) -> tuple[int, int]:
    """(successful, failed) from sipp's stat CSV (last row), else from a screen dump."""
    rows = list(csv.reader(stat_csv.splitlines(), delimiter=";"))
    if len(rows) >= 2:
        header, last = rows[0], rows[-1]
        try:
            ok = int(last[header.index("SuccessfulCall(C)")])
            failed = int(last[header.index("FailedCall(C)")])
            return ok, failed
        except (ValueError, IndexError):
            pass
    found: dict[str, int] = {}
    for name, value in _SCREEN_COUNTER.findall(screen):
        found[name] = int(value)  # the last screen wins
    return found.get("Successful call", -1), found.get("Failed call", -1)


def last_stats(stat_csv: str) -> dict[str, str]:
    """The last row of sipp's stat CSV (``-trace_stat``) by column name; {} before the
    first row. A row sipp is still writing may lack its last columns."""
    lines = [line for line in stat_csv.splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))


def read_stats(path: Path) -> dict[str, str]:
    """:func:`last_stats` of a stat file, which may be read while sipp writes it."""
    return last_stats(_read(path))


def stat_int(stats: dict[str, str], name: str) -> int:
    """A counter of :func:`last_stats` (``SuccessfulCall(C)``...), 0 when absent."""
    try:
        return int(float(stats.get(name, "0") or 0))
    except ValueError:
        return 0


def parse_response_times(rtt_csv: str, rtd: int = 1) -> list[float]:
    """Response times (ms) of measure ``rtd`` from a ``-trace_rtt`` file
    (``date_ms;response_time_ms;rtd_no`` lines under a header)."""
    times: list[float] = []
    for line in rtt_csv.splitlines()[1:]:
        parts = line.split(";")
        if len(parts) >= 3 and parts[2].strip() == str(rtd):
            with contextlib.suppress(ValueError):
                times.append(float(parts[1]))
    return times


class SippProcess:
    """A running sipp; :meth:`wait` turns it into a :class:`SippResult`.

    With a ``timeout``, :meth:`wait` terminates sipp once it has outlived it by
    ``grace`` seconds; without one (a gateway), :meth:`wait` waits until sipp ends.
    """

    def __init__(
        self,
        command: list[str],
        workdir: Path,
        timeout: float | None,
        cleanup: tempfile.TemporaryDirectory[str] | None,
        grace: float = TERM_GRACE,
    ) -> None:
        self.command = command
        self.workdir = workdir
        self.timeout = timeout
        self._cleanup = cleanup
        self._stdout = open(workdir / "stdout.txt", "wb")  # noqa: SIM115 - closed in wait()
        self._stderr = open(workdir / "stderr.txt", "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            start_new_session=True,
        )
        self._deadline = None if timeout is None else time.monotonic() + timeout + grace
        self._result: SippResult | None = None

    @property
    def stat_path(self) -> Path:
        """sipp's stat CSV, rewritten every ``stat_interval`` seconds while it runs."""
        return self.workdir / "stat.csv"

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        """Ask sipp to finish now (SIGUSR1 makes it quit like the 'q' key)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGUSR1)

    def wait(self) -> SippResult:
        if self._result is not None:
            return self._result
        timed_out = False
        try:
            deadline = self._deadline
            self.proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            # SIGTERM makes sipp exit at once -- with status 0 and no final screen, so
            # the exit status alone never proves success (see SippResult.ok).
            self.proc.terminate()
            try:
                self.proc.wait(KILL_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stdout.close()
        self._stderr.close()
        wd = self.workdir
        stdout = _read(wd / "stdout.txt")
        screen = _read(wd / "screen.log")
        stat_csv = _read(wd / "stat.csv")
        successful, failed = parse_counts(stat_csv, screen or stdout)
        response_times: list[float] = []
        for rtt in sorted(wd.glob("*_rtt.csv")):
            response_times += parse_response_times(_read(rtt))
        self._result = SippResult(
            returncode=self.proc.returncode,
            successful=successful,
            failed=failed,
            stdout=stdout,
            stderr=_read(wd / "stderr.txt"),
            command=self.command,
            screen=screen,
            errors=_read(wd / "errors.log"),
            messages=_read(wd / "messages.log"),
            timed_out=timed_out,
            stats=last_stats(stat_csv),
            response_times_ms=response_times,
        )
        if self._cleanup is not None:
            self._cleanup.cleanup()
        return self._result

    def __enter__(self) -> SippProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


def start_sipp(
    scenario: str | os.PathLike[str],
    target_host: str,
    target_port: int,
    *,
    transport: SippTransport = "udp",
    calls: int = 1,
    rate: float = 10,
    timeout: float = 60,
    service: str = "1111111",
    local_port: int | None = None,
    local_host: str = "127.0.0.1",
    trace_msg: bool = True,
    workdir: Path | None = None,
    extra_args: Sequence[str] = (),
    binary: str | None = None,
    limit: int | None = None,
    stat_interval: int = 1,
    trace_rtt: bool = False,
    grace: float = TERM_GRACE,
) -> SippProcess:
    """Start sipp as a UAC in the background; see :func:`run_sipp`."""
    binary, workdir, cleanup, local_scenario = _prepare(binary, transport, scenario, workdir)
    if local_port is None:
        # sipp's '-p 0' means "5060 if free", not "any port": always pass a real one.
        local_port = free_port("both")
    command = [
        binary,
        "-sf",
        str(local_scenario),
        f"{target_host}:{target_port}",
        "-i",
        local_host,
        "-p",
        str(local_port),
        "-t",
        SIPP_TRANSPORT_FLAG[transport],
        "-s",
        service,
        "-m",
        str(calls),
        "-r",
        f"{rate:g}",
        "-nostdin",
        "-timeout",
        f"{int(max(1, timeout))}s",
        "-trace_stat",
        "-stf",
        "stat.csv",
        # Stats every second by default, so a run cut short still reports its counts.
        "-fd",
        str(stat_interval),
        "-trace_screen",
        "-screen_file",
        "screen.log",
        "-trace_err",
        "-error_file",
        "errors.log",
    ]
    if limit is not None:
        command += ["-l", str(limit)]
    if trace_msg:
        command += ["-trace_msg", "-message_file", "messages.log"]
    if trace_rtt:
        # Every call's response times (-rtt_freq 1), in <scenario>_<pid>_rtt.csv.
        for old in workdir.glob("*_rtt.csv"):
            old.unlink()
        command += ["-trace_rtt", "-rtt_freq", "1"]
    command += list(extra_args)
    return SippProcess(command, workdir, timeout, cleanup, grace)


def start_sipp_uas(
    scenario: str | os.PathLike[str],
    port: int,
    *,
    host: str = "127.0.0.1",
    transport: SippTransport = "udp",
    workdir: Path | None = None,
    extra_args: Sequence[str] = (),
    binary: str | None = None,
) -> SippProcess:
    """Start sipp as a UAS (a gateway) listening on ``host``:``port`` until stopped.

    It logs unexpected messages to ``errors.log`` in ``workdir``; :meth:`SippProcess.wait`
    waits for it to end (:meth:`SippProcess.stop` asks it to), with no deadline.
    """
    binary, workdir, cleanup, local_scenario = _prepare(binary, transport, scenario, workdir)
    command = [
        binary,
        "-sf",
        str(local_scenario),
        "-i",
        host,
        "-p",
        str(port),
        "-t",
        SIPP_TRANSPORT_FLAG[transport],
        "-nostdin",
        "-trace_err",
        "-error_file",
        "errors.log",
        *extra_args,
    ]
    return SippProcess(command, workdir, None, cleanup)


def _prepare(
    binary: str | None,
    transport: SippTransport,
    scenario: str | os.PathLike[str],
    workdir: Path | None,
) -> tuple[str, Path, tempfile.TemporaryDirectory[str] | None, Path]:
    """The sipp binary, the work directory (a temporary one when None, with what
    cleans it up) and the scenario copied into it."""
    binary = binary or sipp_path()
    if binary is None:
        raise FileNotFoundError("sipp is not on PATH")
    if transport not in SIPP_TRANSPORT_FLAG:
        raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
    cleanup: tempfile.TemporaryDirectory[str] | None = None
    if workdir is None:
        cleanup = tempfile.TemporaryDirectory(prefix="sipp-")
        workdir = Path(cleanup.name)
    workdir.mkdir(parents=True, exist_ok=True)
    # sipp names its log files after the scenario path; a private copy keeps every
    # file it writes inside workdir, never next to the scenarios in the repo.
    source = scenario_path(scenario)
    local_scenario = workdir / source.name
    shutil.copyfile(source, local_scenario)
    return binary, workdir, cleanup, local_scenario


def run_sipp(
    scenario: str | os.PathLike[str],
    target_host: str,
    target_port: int,
    *,
    transport: SippTransport = "udp",
    calls: int = 1,
    rate: float = 10,
    timeout: float = 60,
    service: str = "1111111",
    local_port: int | None = None,
    local_host: str = "127.0.0.1",
    trace_msg: bool = True,
    workdir: Path | None = None,
    extra_args: Sequence[str] = (),
    binary: str | None = None,
    limit: int | None = None,
    stat_interval: int = 1,
    trace_rtt: bool = False,
    grace: float = TERM_GRACE,
) -> SippResult:
    """Run a sipp UAC scenario to completion and return what it reported.

    ``scenario`` is a path or a name in ``scenarios/`` ("uac_call"). sipp runs with
    ``-nostdin -m calls -r rate -timeout {timeout}s``, local IP 127.0.0.1 and a free
    local port, with its stat, screen, error (and message) logs in ``workdir`` (a
    temporary directory by default, removed after the logs are read into the result).
    sipp's -timeout only stops new calls, so the subprocess is terminated if it
    outlives ``timeout`` by ``grace`` seconds (``result.timed_out``).

    For the bench: ``binary`` (default: sipp on PATH), ``limit`` (sipp -l: calls in
    progress at most), ``stat_interval`` (sipp -fd, seconds between two stat rows)
    and ``trace_rtt`` (every call's response times in ``result.response_times_ms``).
    """
    return start_sipp(
        scenario,
        target_host,
        target_port,
        transport=transport,
        calls=calls,
        rate=rate,
        timeout=timeout,
        service=service,
        local_port=local_port,
        local_host=local_host,
        trace_msg=trace_msg,
        workdir=workdir,
        extra_args=extra_args,
        binary=binary,
        limit=limit,
        stat_interval=stat_interval,
        trace_rtt=trace_rtt,
        grace=grace,
    ).wait()
