"""How long a destination's state change takes to reach the other node of a cluster.

    bench/statelag.sh                       # 200 changes, Redis at 127.0.0.1:6379/0
    bench/statelag.sh --changes 1000 --redis redis://10.0.0.5:6379/0

Two ``sipdispatch run`` nodes (the compiled build from ./.venv) on loopback share one
Redis under a namespace of their own (removed at the end) and one list file of two
destinations (nothing pings them: probing is off, so only the operator's changes
move states). Each change is a ``dispatcher.set_state`` (DX, then AP, in turn) sent to
node A's admin RPC; the time measured runs from sending it until node B's
``dispatcher.list`` shows the new state, polled over B's RPC every millisecond or so.
It includes A's RPC round trip (reported apart) and B's poll interval, so it is an
upper bound of what the cluster itself takes. Prints the median, p90, p99 and the
longest, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tests.integration.proxyctl import basic_config, toml_str
from tests.integration.sippctl import free_port

from bench.common import HOST, BenchError, log, wait_for
from bench.processes import Processes
from bench.procstat import udp_port_bound

REPO = Path(__file__).resolve().parent.parent


def rpc(admin: int, method: str, *params: object) -> Any:
    payload = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
    req = urllib.request.Request(
        f"http://{HOST}:{admin}/RPC",
        json.dumps(payload).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    if "result" not in answer:
        raise BenchError(f"{method}: {answer}")
    return answer["result"]


def state_of(admin: int, uri: str) -> str:
    for record in rpc(admin, "dispatcher.list")["RECORDS"]:
        for target in record["SET"]["TARGETS"]:
            if target["DEST"]["URI"] == uri:
                return str(target["DEST"]["FLAGS"])
    raise BenchError(f"{uri} is not in dispatcher.list")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/statelag.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--changes", type=int, default=200, help="state changes measured (200)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    p.add_argument("--heartbeat", type=float, default=1.0, help="cluster.heartbeat (1.0 s)")
    p.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"))
    args = p.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="sipdispatch-statelag-"))
    namespace = f"statelag-{os.getpid()}-{time.time_ns()}"
    uris = [f"sip:{HOST}:{free_port()}", f"sip:{HOST}:{free_port()}"]
    list_file = workdir / "dispatcher.list"
    list_file.write_text("".join(f"1 {u}\n" for u in uris))
    procs = Processes()
    admins: list[int] = []
    try:
        for name in ("lag-a", "lag-b"):
            port, admin = free_port(), free_port("tcp")
            toml = basic_config(port, admin, list_file) + (
                "\n[cluster]\n"
                f"redis_url = {toml_str(args.redis)}\n"
                f"namespace = {toml_str(namespace)}\n"
                f"node_id = {toml_str(name)}\n"
                f"heartbeat = {args.heartbeat}\n"
            )
            (workdir / f"{name}.toml").write_text(toml)
            proc = procs.start(
                [args.python, "-m", "sipdispatch", "run", "--config", f"{name}.toml"],
                workdir,
                f"{name}.log",
            )
            wait_for(
                lambda port=port, proc=proc: udp_port_bound(port) or proc.poll() is not None,  # type: ignore[misc]
                30,
                name,
            )
            if proc.poll() is not None:
                raise BenchError((workdir / f"{name}.log").read_text()[-2000:])
            admins.append(admin)
        a, b = admins
        wait_for(lambda: len(rpc(a, "cluster.nodes")["NODES"]) == 2, 30, "both nodes live")
        lags: list[float] = []
        sends: list[float] = []
        uri = uris[0]
        for i in range(args.changes):
            state, shown = ("dx", "DX") if i % 2 == 0 else ("ap", "AP")
            started = time.perf_counter()
            rpc(a, "dispatcher.set_state", state, 1, uri)
            sends.append(time.perf_counter() - started)
            deadline = started + 10
            while not state_of(b, uri).startswith(shown):
                if time.perf_counter() > deadline:
                    raise BenchError(f"change {i} ({shown}) not seen on node B within 10 s")
                time.sleep(0.001)
            lags.append(time.perf_counter() - started)
        ms = [x * 1000 for x in lags]
        print(
            f"state change A -> B over {args.changes} changes (ms): "
            f"median {statistics.median(ms):.1f}, p90 {percentile(ms, 0.9):.1f}, "
            f"p99 {percentile(ms, 0.99):.1f}, max {max(ms):.1f}; "
            f"A's set_state round trip median {statistics.median(sends) * 1000:.1f} ms; "
            f"heartbeat {args.heartbeat:g} s"
        )
        return 0
    finally:
        procs.stop_all()
        try:
            import redis

            client = redis.Redis.from_url(args.redis)
            keys = list(client.scan_iter(f"{namespace}*"))
            if keys:
                client.delete(*keys)
        except Exception as exc:  # the figures are printed; say what was left
            log(f"statelag: could not remove the namespace {namespace}: {exc}")
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
