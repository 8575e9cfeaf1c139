"""A soak with faults: calls for an hour through sipdispatch while its world breaks.

    bench/soak.sh                          # 60 minutes at 500 calls/s (see --help)
    bench/soak.sh --minutes 5 --rate 200   # a short one

What runs, all on 127.0.0.1 (ports from --port-base, default 16060, below the ranges
the kernel and the tests hand out):

- sipdispatch (the compiled build from ./.venv) with its destinations in PostgreSQL
  (127.0.0.1:5432, db test, a table of its own), reached through a TCP relay that this
  script owns, so that it can take the database away;
- two sipp gateways (bench/sipp/uas.xml, -aa); one of them is killed every
  --kill-every seconds (300) and started again --down seconds (30) later, the two
  taking turns;
- `dispatcher.reload` over the admin RPC every --reload-every seconds (60); once,
  half-way through, during a database outage (the relay refuses connections for
  20 s): that reload must fail and leave the running list as it was;
- a sipp caller at --rate calls/s for the whole time (bench/sipp/uac_soak.xml: INVITE,
  200, ACK, BYE), failover on 5xx/408 to the other gateway.

It reports calls made, failed and retransmitted, every reload's result, the proxy's
RSS every 30 s, and RSS growth from the end of warm-up (the first --warmup seconds,
600) to the end. Every second it also writes each process's CPU and each UDP socket's
queue and drops to samples.log in the work directory (bench/soakwatch.py), and the
report ends with the seconds around every drop: which side fell behind, and when.

A BYE that was in flight to a gateway at the moment it was killed can
only time out (a BYE is not failed over: the dialog lives on that gateway). The proxy
answers it 408, which ends the dialog (RFC 3261 section 15.1.1): the caller's scenario
takes it as the end of the call, and the report counts those calls apart, as "ended
by a killed gateway", from sipp's -trace_counts file. Every other call that does not
complete is a failed call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tests.integration import sippctl

from bench.common import HOST, SIPP_DIR, BenchError, log, wait_for
from bench.processes import Processes
from bench.procstat import status_kb, udp_port_bound
from bench.soakwatch import Watch

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("SOAK_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")


class DbRelay:
    """A TCP relay to the database that can be switched off (connections refused and
    the open ones cut) and on again."""

    def __init__(self, listen_port: int, target: tuple[str, int]) -> None:
        self.listen_port = listen_port
        self.target = target
        self.up = threading.Event()
        self.up.set()
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._client, HOST, self.listen_port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up.is_set():
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def outage(self, seconds: float) -> None:
        """Refuse and cut every connection for ``seconds`` (blocks meanwhile)."""
        self.up.clear()
        self._loop.call_soon_threadsafe(self._cut)
        time.sleep(seconds)
        self.up.set()

    def _cut(self) -> None:
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()


def rpc(admin_port: int, method: str, *params: object) -> dict[str, object]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    req = urllib.request.Request(
        f"http://{HOST}:{admin_port}/RPC",
        body.encode(),
        {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer: dict[str, object] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # a JSON-RPC error comes with status 500
        answer = json.loads(exc.read())
    return answer


WATCHED = ("sipdispatch_transactions_in_flight", "sipdispatch_gc_objects_pending")
"""Gauges of /metrics reported beside RSS: what the proxy holds, and what the garbage
collector would have to walk (climbing while the calls in flight do not is a leak)."""


def gauges(admin_port: int) -> str:
    """``WATCHED`` as ``name=value`` words ("" when /metrics does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return ""
    found = []
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.partition("{")[0] in WATCHED:  # with its labels, if any
            found.append(f"{name.removeprefix('sipdispatch_')}={float(value):.0f}")
    return " ".join(found)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/soak.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60, help="length of the soak (60)")
    p.add_argument("--rate", type=float, default=500, help="calls/s (500)")
    p.add_argument("--kill-every", type=float, default=300, help="seconds between kills (300)")
    p.add_argument("--down", type=float, default=30, help="seconds a killed gateway stays down")
    p.add_argument("--reload-every", type=float, default=60, help="seconds between reloads")
    p.add_argument("--warmup", type=float, default=600, help="seconds before RSS is the base")
    p.add_argument("--port-base", type=int, default=16060, help="first port (16060)")
    p.add_argument("--sipp", default="sipp", help="sipp binary")
    p.add_argument(
        "--python", default=str(REPO / ".venv" / "bin" / "python"), help="Python of sipdispatch"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def failure_causes(errors_log: Path) -> dict[str, int]:
    """The caller's failed calls by cause, from sipp's error log: what the call was
    waiting for and what came instead (e.g. ``200 to BYE <- 408``)."""
    causes: dict[str, int] = {}
    if not errors_log.exists():
        return causes
    marker = "Aborting call on unexpected message"
    for line in errors_log.read_text(errors="replace").splitlines():
        if marker not in line:
            if "Aborting call" in line:
                what = line.split("Aborting call", 1)[1].split(" for Call-Id")[0].strip(" :")
                causes[what or "aborted"] = causes.get(what or "aborted", 0) + 1
            continue
        expecting = line.split("while expecting '", 1)[-1].split("'", 1)[0]
        index = line.split("(index ", 1)[-1].split(")", 1)[0]
        received = line.split("received '", 1)[-1][:12].strip()
        # uac_soak.xml: indexes 7 and 8 wait for the BYE's answer; the rest is set-up.
        step = "BYE" if index in ("7", "8") else "INVITE"
        key = f"{expecting} to {step} <- {received}"
        causes[key] = causes.get(key, 0) + 1
    return causes


def byes_answered_408(caller_dir: Path) -> int:
    """How many of the caller's BYEs were answered 408: the last line of the 408 step's
    Recv column in sipp's -trace_counts file (``<scenario>_<pid>_counts.csv``)."""
    for path in caller_dir.glob("*_counts.csv"):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        if len(lines) < 2:
            continue
        names, last = lines[0].split(";"), lines[-1].split(";")
        return sum(
            int(value)
            for name, value in zip(names, last, strict=False)
            if name.endswith("_408_Recv") and value.strip().isdigit()
        )
    return 0


def make_table(url: str, table: str, gateways: list[int]) -> None:
    from sipdispatch.store import SqlStore

    store = SqlStore(url, table)
    try:
        store.ensure_schema()
        for i, port in enumerate(gateways):
            store.add(1, f"sip:{HOST}:{port}", 0, 0, "", f"gateway {i + 1}")
    finally:
        store.close()


def drop_table(table: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def config(port: int, admin: int, db_url: str, table: str) -> str:
    return f"""\
[server]
listen = ["udp:{HOST}:{port}"]
log_level = "warning"

[admin]
listen = "{HOST}:{admin}"

[transaction]
fr_timer = 2000
fr_inv_timer = 30000

[dispatcher]
db_url = "{db_url}"
table_name = "{table}"
ping_interval = 5
probing_mode = 1
probing_threshold = 1
inactive_threshold = 1
failover = true

[[route]]
set = 1
algorithm = "round-robin"
failover_on = ["5xx", "408"]
mark_failed = "ip"
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = args.port_base
    port, admin, gw_ports = base, base + 20, [base + 11, base + 12]
    caller, relay_port = base + 30, base + 40
    workdir = Path(tempfile.mkdtemp(prefix="sipdispatch-soak-"))
    table = f"soak_{os.getpid()}"
    procs = Processes()
    relay = DbRelay(relay_port, ("127.0.0.1", 5432))
    relay.start()
    db_url = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{relay_port}")
    make_table(db_url, table, gw_ports)
    log(f"soak: work directory {workdir}, table {table}")
    gateways: dict[int, sippctl.SippProcess] = {}

    def start_gateway(gw: int) -> None:
        proc = sippctl.start_sipp_uas(
            SIPP_DIR / "uas.xml", gw, host=HOST, workdir=workdir / f"gw-{gw}-{time.time():.0f}",
            extra_args=["-aa"], binary=args.sipp,
        )  # fmt: skip
        procs.adopt(proc.proc)
        wait_for(lambda: udp_port_bound(gw), 20, f"gateway {gw}")
        gateways[gw] = proc

    try:
        for gw in gw_ports:
            start_gateway(gw)
        (workdir / "soak.toml").write_text(config(port, admin, db_url, table))
        proxy = procs.start(
            [args.python, "-m", "sipdispatch", "run", "--config", "soak.toml"], workdir, "proxy.log"
        )
        wait_for(lambda: udp_port_bound(port) or proxy.poll() is not None, 30, "sipdispatch")
        if proxy.poll() is not None:
            raise BenchError((workdir / "proxy.log").read_text()[-2000:])
        seconds = args.minutes * 60
        calls = int(seconds * args.rate)
        uac = sippctl.start_sipp(
            SIPP_DIR / "uac_soak.xml", HOST, port, calls=calls, rate=args.rate,
            timeout=int(seconds + 120), service="1111111", local_port=caller, trace_msg=False,
            workdir=workdir / "caller", extra_args=["-recv_timeout", "60000", "-trace_counts"],
            binary=args.sipp, limit=max(200, int(args.rate * 8)), stat_interval=10,
        )  # fmt: skip
        started = time.monotonic()
        watch = Watch(
            workdir / "samples.log",
            lambda: {
                "proxy": proxy.pid,
                "caller": uac.proc.pid,
                **{
                    f"gw{gw}": g.proc.pid
                    for gw, g in list(gateways.items())
                    if g.proc.poll() is None
                },
            },
            {"proxy": port, "caller": caller, **{f"gw{gw}": gw for gw in gw_ports}},
            started,
        )
        watch.start()
        events: list[str] = []
        rss: list[tuple[float, int]] = []
        next_kill, next_reload, next_rss = args.kill_every, args.reload_every, 0.0
        outage_at = seconds / 2
        outage_done = False
        killed: tuple[int, float] | None = None
        turn = 0
        while uac.poll() is None:
            t = time.monotonic() - started
            if t >= next_rss:
                rss.append((t, status_kb(proxy.pid, "VmRSS")))
                log(f"soak: {t:6.0f} s RSS {rss[-1][1]} KiB {gauges(admin)}")
                next_rss += 30
            if killed is not None and t >= killed[1]:
                start_gateway(killed[0])
                events.append(f"{t:7.1f} s gateway {killed[0]} started again")
                killed = None
            if t >= next_kill and killed is None and t < seconds - args.down:
                gw = gw_ports[turn % 2]
                turn += 1
                procs.stop(gateways[gw].proc, grace=0.1)
                killed = (gw, t + args.down)
                events.append(f"{t:7.1f} s gateway {gw} killed")
                next_kill += args.kill_every
            if t >= next_reload:
                if not outage_done and t >= outage_at:
                    outage_done = True
                    outage = threading.Thread(target=relay.outage, args=(20.0,))
                    outage.start()
                    time.sleep(1)
                    answer = rpc(admin, "dispatcher.reload")
                    events.append(
                        f"{t:7.1f} s reload during a database outage: "
                        f"{answer.get('result', answer.get('error'))}"
                    )
                    outage.join()
                else:
                    answer = rpc(admin, "dispatcher.reload")
                    events.append(f"{t:7.1f} s reload: {answer.get('result', answer)}")
                next_reload += args.reload_every
            time.sleep(0.5)
        done = uac.wait()
        watch.stop()
        if done.returncode not in (0, 1):
            log(f"soak: the caller exited with {done.returncode}: {done.stderr[-1500:]}")
        stats = done.stats
        ok = sippctl.stat_int(stats, "SuccessfulCall(C)")
        failed = sippctl.stat_int(stats, "FailedCall(C)")
        retrans = sippctl.stat_int(stats, "Retransmissions(C)")
        rss.append((time.monotonic() - started, status_kb(proxy.pid, "VmRSS")))
        print("\n".join(events))
        print("RSS (s, KiB): " + ", ".join(f"{t:.0f}:{kb}" for t, kb in rss))
        after = [kb for t, kb in rss if t >= args.warmup]
        if after:
            growth = (after[-1] - after[0]) / after[0] * 100
            print(f"RSS after warm-up: {after[0]} KiB -> {after[-1]} KiB ({growth:+.1f} %)")
        ended_408 = byes_answered_408(workdir / "caller")
        print(
            f"calls: {ok - ended_408} successful, {ended_408} ended by a killed gateway "
            f"(BYE answered 408), {failed} failed, {retrans} retransmissions, "
            f"{args.rate:g} calls/s for {args.minutes:g} min"
        )
        causes = failure_causes(workdir / "caller" / "errors.log")
        if causes:
            print(
                "failed calls by cause: "
                + ", ".join(f"{n} {what}" for what, n in sorted(causes.items()))
            )
        print(watch.summary())
        drops = watch.around_drops()
        if drops:
            print("seconds around each drop (samples.log has every second):")
            print("\n".join(drops))
        alive = proxy.poll() is None
        print(f"proxy alive at the end: {alive}")
        return 0 if alive else 1
    finally:
        procs.stop_all()
        try:
            drop_table(table)
        except Exception as exc:
            log(f"soak: could not drop {table}: {exc}")
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"soak: kept {workdir}")


if __name__ == "__main__":
    sys.exit(main())
