"""The proxies under test, each started fresh for every measurement: sipdispatch,
Kamailio and the floor (bench/floor.py), with the same job (bench/kamailio/kamailio.cfg.in)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .common import (
    FLOOR,
    HERE,
    HOST,
    KAMAILIO_TEMPLATE,
    READY_TIMEOUT,
    BenchError,
    run_tool,
    wait_for,
)
from .processes import Processes
from .procstat import process_tree, pss_kb, status_kb, udp_port_bound

KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
"""Where Debian's kamailio package puts its modules (``--kamailio-modules``)."""


class Proxy:
    """A proxy under test: started fresh for each measurement."""

    name = ""

    def __init__(self, procs: Processes, port: int, workdir: Path) -> None:
        self.procs = procs
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def wait_ready(self) -> None:
        raise NotImplementedError

    def wait_log_line(self, marker: str) -> None:
        """Wait until the proxy's log says ``marker``; fail with its last lines if it exits."""
        logfile = self.workdir / f"{self.name}.log"

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                return True
            return marker in logfile.read_text(errors="replace")

        wait_for(ready, READY_TIMEOUT, marker)
        if self.proc is not None and self.proc.poll() is not None:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-3:]
            raise BenchError(f"{self.name} did not start: " + " | ".join(tail))

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = self.procs.start(self.argv(), self.workdir, f"{self.name}.log")
        try:
            self.wait_ready()
        except BenchError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited at start; see {self.workdir}/{self.name}.log")

    def pids(self) -> list[int]:
        assert self.proc is not None
        return process_tree(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None

    def exit_reason(self) -> str:
        code = self.proc.poll() if self.proc is not None else None
        if code is None:
            return "running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def log_tail(self, lines: int) -> list[str]:
        path = self.workdir / f"{self.name}.log"
        try:
            return path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return []

    def memory(self) -> dict[str, int]:
        """Memory figures in bytes (at least ``rss``)."""
        assert self.proc is not None
        try:
            return {"rss": status_kb(self.proc.pid, "VmRSS") * 1024}
        except OSError as e:
            raise BenchError(f"{self.name} is gone ({self.exit_reason()})") from e


def dispatcher_list(gateways: Sequence[int]) -> str:
    lines = ["# setid destination flags priority attrs"]
    # duid: algorithm 10 (--algorithm call-load) counts each call against one.
    lines += [f"1 sip:{HOST}:{gw} 0 0 weight=50;duid=gw{i}" for i, gw in enumerate(gateways)]
    return "\n".join(lines) + "\n"


class Sipdispatch(Proxy):
    name = "sipdispatch"

    def __init__(
        self,
        procs: Processes,
        port: int,
        workdir: Path,
        python: str,
        gateways: Sequence[int],
        admin_port: int,
        workers: int,
        redis_url: str,
        gc_stats: bool,
        *,
        cluster: bool = False,
        algorithm: str = "round-robin",
        hep: int | None = None,
        hep_tcp: int | None = None,
        ladder: bool = True,
    ) -> None:
        super().__init__(procs, port, workdir)
        self.ladder = ladder
        """``[capture] ladder`` left on (its default); off for sipdispatch-noladder."""
        self.hep = hep
        self.hep_tcp = hep_tcp
        """The port of a local TCP HEP sink: [capture] hep over TCP (sipdispatch-heptcp)."""
        """The port of a local HEP sink: [capture] hep on (sipdispatch-hep)."""
        self.clustered = cluster
        """In a cluster of the run's own (--cluster)."""
        self.algorithm = algorithm
        self.python = python
        self.gateways = gateways
        self.admin_port = admin_port
        self.workers = workers
        self.redis_url = redis_url
        self.namespace = f"bench-{os.getpid()}"
        """The workers' Redis key prefix, the run's own."""
        self.gc_stats = gc_stats
        self.gc_file = workdir / "gc.json"

    def config(self) -> str:
        """The TOML config: the same job as bench/kamailio/kamailio.cfg.in."""
        return f"""\
# Generated by bench/run.sh: the same job as bench/kamailio/kamailio.cfg.in.
[server]
listen = ["udp:{HOST}:{self.port}"]
record_route = true
workers = {self.workers}
log_level = "warning"

[admin]
listen = "{HOST}:{self.admin_port}"

[transaction]
fr_timer = 3000
fr_inv_timer = 30000

[dispatcher]
list_file = "dispatcher.list"
ping_interval = 10
ping_method = "OPTIONS"
probing_threshold = 3
inactive_threshold = 3
probing_mode = 1
ping_latency_stats = true
failover = true

[[route]]
set = 1
algorithm = "{self.algorithm}"
failover_on = ["5xx", "404", "408"]
mark_failed = "ip"
{self.cluster()}{self.capture()}"""

    def invites_by_worker(self) -> dict[str, float]:
        """The INVITEs each worker handled, from the proxy's /metrics ({} when it does
        not answer)."""
        import re
        import urllib.request

        url = f"http://{HOST}:{self.admin_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        pattern = (
            r'^sipdispatch_worker_requests_received_total\{method="INVITE",worker="(\d+)"\} (\S+)$'
        )
        return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text, re.M)}

    def capture(self) -> str:
        """With --hep, for sipdispatch-hep: the ``[capture]`` copying to the sink; with
        --ladder, for sipdispatch-noladder: the ladder of failed calls off."""
        lines = []
        if self.hep is not None:
            lines.append(f'hep = "udp:{HOST}:{self.hep}"')
        if self.hep_tcp is not None:
            lines.append(f'hep = "tcp:{HOST}:{self.hep_tcp}"')
        if not self.ladder:
            lines.append("ladder = 0")
        if not lines:
            return ""
        return "\n[capture]\n" + "\n".join(lines) + "\n"

    def cluster(self) -> str:
        """With --cluster: the ``[cluster]`` of the run's own."""
        if not self.clustered:
            return ""
        return f"""
[cluster]
redis_url = "{self.redis_url}"
namespace = "{self.namespace}"
"""

    def argv(self) -> list[str]:
        (self.workdir / "dispatcher.list").write_text(dispatcher_list(self.gateways))
        (self.workdir / "sipdispatch.toml").write_text(self.config())
        command = ["run", "--config", "sipdispatch.toml"]
        if self.gc_stats:
            return [self.python, str(HERE / "gcstats.py"), str(self.gc_file), *command]
        return [self.python, "-m", "sipdispatch", *command]

    def gc_collections(self) -> list[tuple[int, float, float]] | None:
        """The collections recorded by bench/gcstats.py (after the proxy stopped)."""
        try:
            data = json.loads(self.gc_file.read_text())
        except (OSError, ValueError):
            return None
        return [(int(c[0]), float(c[1]), float(c[2])) for c in data["collections"]]

    def wait_ready(self) -> None:
        self.wait_log_line("sipdispatch ready")

    def stop(self) -> None:
        super().stop()
        if self.clustered:
            # The namespace's keys that outlive the workers (the state hash, the node set).
            forget = (
                "import redis, sys; r = redis.Redis.from_url(sys.argv[1]); "
                "keys = list(r.scan_iter(match=sys.argv[2] + ':*')); keys and r.delete(*keys)"
            )
            subprocess.run(
                [self.python, "-c", forget, self.redis_url, self.namespace],
                check=False,
                capture_output=True,
                timeout=30,
            )


class Floor(Proxy):
    """bench/floor.py: what the kernel, uvloop and the interpreter alone cost per call."""

    name = FLOOR

    def __init__(
        self, procs: Processes, port: int, workdir: Path, python: str, gateways: Sequence[int]
    ) -> None:
        super().__init__(procs, port, workdir)
        self.python = python
        self.gateways = gateways

    def argv(self) -> list[str]:
        ports = ",".join(map(str, self.gateways))
        return [self.python, str(HERE / "floor.py"), "--port", str(self.port), "--gateways", ports]

    def wait_ready(self) -> None:
        self.wait_log_line("floor ready")


class Kamailio(Proxy):
    name = "kamailio"

    def __init__(
        self,
        procs: Processes,
        port: int,
        workdir: Path,
        binary: str,
        modules: str,
        gateways: Sequence[int],
    ) -> None:
        super().__init__(procs, port, workdir)
        self.binary = binary
        self.modules = modules
        self.gateways = gateways
        self.ctl = workdir / "kamailio_ctl"

    def argv(self) -> list[str]:
        dslist = self.workdir / "dispatcher.list"
        dslist.write_text(dispatcher_list(self.gateways))
        cfg = KAMAILIO_TEMPLATE.read_text()
        for key, value in {
            "@PORT@": str(self.port),
            "@MPATH@": self.modules,
            "@DSLIST@": str(dslist),
            "@CTL@": str(self.ctl),
        }.items():
            cfg = cfg.replace(key, value)
        path = self.workdir / "kamailio.cfg"
        path.write_text(cfg)
        pidfile = self.workdir / "kamailio.pid"
        # -DD: stay in the foreground (workers still fork); -E: log to stderr.
        return [
            self.binary,
            "-DD",
            "-E",
            "-f",
            str(path),
            "-m",
            "256",
            "-M",
            "16",
            "-P",
            str(pidfile),
        ]

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                return True
            return udp_port_bound(self.port) and self.ctl.exists()

        wait_for(ready, READY_TIMEOUT, "kamailio listening")
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.workdir / "kamailio.log").read_text(errors="replace").splitlines()[-5:]
            raise BenchError("kamailio did not start: " + " | ".join(tail))
        # Workers are forked after the socket is bound; give them a moment.
        time.sleep(1.0)

    def shm_used(self) -> int | None:
        """real_used of Kamailio's shared-memory pool, in bytes (kamcmd core.shmmem)."""
        out = run_tool(["kamcmd", "-s", f"unix:{self.ctl}", "core.shmmem"])
        m = re.search(r"real_used:\s*(\d+)", out)
        return int(m.group(1)) if m else None

    def memory(self) -> dict[str, int]:
        out = super().memory()
        out["pss"] = pss_kb(self.pids()) * 1024
        shm = self.shm_used()
        if shm is not None:
            out["shm"] = shm
        return out
