"""The demo's story, told over the :class:`~sipdispatch.demo.stage.Stage`.

1. both gateways up: the calls split 75/25 (as many to MG1 as the weight table
   predicts);
2. MG1 dies (answers nothing): pings are missed, it goes ``TP`` then ``IP``, MG2
   takes every call;
3. MG1 comes back: its pings are answered, it is ``AP`` again, the split resumes;
4. MG1 rejects calls with 404 (but answers pings): each rejected call is retried on
   MG2 without the caller seeing the 404, and MG1 is marked ``IP`` (``mark_failed``)
   until its pings bring it back.

Then the tables: where the calls went, and the destinations as ``dispatcher.list``
shows them. A step whose expectation fails raises
:class:`~sipdispatch.demo.stage.StepFailed`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any, Final, cast

from sipdispatch.demo.config import (
    ALGORITHM_WEIGHT,
    DESCRIPTIONS,
    FAILOVER_ON,
    FR_TIMER_MS,
    HOST,
    INACTIVE_THRESHOLD,
    LABELS,
    MARK_FAILED,
    PING_INTERVAL,
    PROBING_THRESHOLD,
    SET_ID,
    WEIGHTS,
)
from sipdispatch.demo.display import Display
from sipdispatch.demo.options import DemoOptions
from sipdispatch.demo.stage import Stage, StepFailed, StepResult
from sipdispatch.demo.useragent import T1

CALL_RATE: Final = 100.0
"""New calls per second in steps 1-3 (not in ``--fast``), so the progress is watchable."""
REJECT_STEP_RATE: Final = 10.0
"""New calls per second in step 4 (not in ``--fast``): slow enough that MG1 comes back
between two rejections, so the IP -> AP -> IP cycle shows."""
PAUSE: Final = 0.5
"""Seconds between steps (not in ``--fast``), for the reader."""


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


class Demo(Stage):
    """The proxy, two gateways and a caller on one loop, and the story over them."""

    def __init__(self, options: DemoOptions, display: Display, workdir: Path) -> None:
        super().__init__(display, workdir)
        self.options = options
        self.steps: list[StepResult] = []

    # -- expectations ----------------------------------------------------------------

    def predicted_mg1(self, n: int) -> int:
        """MG1's calls the weight table predicts for the next ``n`` selections when both
        gateways are usable: algorithm 9 walks a shuffled 100-slot table, 75 slots MG1's."""
        assert self.server is not None
        dset = self.server.router.sets.get(SET_ID)
        assert dset is not None
        mg1 = next(i for i, d in enumerate(dset.dests) if self.by_uri.get(d.uri) == "MG1")
        return sum(1 for k in range(n) if dset.wlist[(dset.wlast + k) % len(dset.wlist)] == mg1)

    def check_split(self, step: StepResult, predicted: int) -> str:
        n = step.calls
        mg1, mg2 = step.counts["MG1"], step.counts["MG2"]
        # Exact unless a call was failed over (a branch that timed out on a starved
        # machine); a little slack keeps the self-check from being flaky there.
        slack = max(2, n // 25)
        if abs(mg1 - predicted) > slack:
            raise StepFailed(
                f"MG1 got {mg1} and MG2 {mg2} of {n} calls; the weights predict "
                f"{predicted}/{n - predicted}"
            )
        return (
            f"MG1 {mg1} ({_percent(mg1, n)}), MG2 {mg2} ({_percent(mg2, n)}): "
            f"the 75/25 weights ({predicted}/{n - predicted} predicted by the weight table)"
        )

    def title(self, number: int, short: str, text: str) -> StepResult:
        step = StepResult(number, text, short)
        self.steps.append(step)
        self.display.line()
        self.display.line(f"Step {number}/4  {text}")
        return step

    async def pause(self) -> None:
        if not self.options.fast:
            await asyncio.sleep(PAUSE)

    @property
    def rate(self) -> float | None:
        return None if self.options.fast else CALL_RATE

    # -- the story -----------------------------------------------------------------

    def introduce(self) -> None:
        assert self.server is not None and self.caller is not None
        line = self.display.line
        proxy = self.caller.proxy
        admin = self.server.admin.url if self.server.admin is not None else "-"
        line(f"sipdispatch demo: a proxy in front of two media gateways (75/25), live on {HOST}")
        line()
        line(f"  proxy    udp:{proxy[0]}:{proxy[1]}  (admin {admin}/RPC)")
        if admin != "-":
            line(f"  console  {admin}/  (open it in a browser to watch the story)")
        for label, gw in self.gateways.items():
            line(f"  {label}      {gw.uri}  weight={WEIGHTS[label]}  {DESCRIPTIONS[label]}")
        line(f"  caller   udp:{HOST}:{self.caller.port}  INVITE sip:1111111@{proxy[0]}:{proxy[1]}")
        line()
        line("  dispatcher.list:")
        for text in self.list_lines:
            line(f"    {text}")
        line(
            f"  [[route]] set {SET_ID}, algorithm {ALGORITHM_WEIGHT} (weight); failover on "
            f"{', '.join(FAILOVER_ON)} or no answer within fr_timer {FR_TIMER_MS} ms; "
            f'mark_failed "{MARK_FAILED}"'
        )
        line(
            f"  OPTIONS ping every {PING_INTERVAL} s (probing_mode 1): IP after "
            f"{PROBING_THRESHOLD} missed in a row, back to AP after {INACTIVE_THRESHOLD} answered"
        )

    async def first_pings(self) -> None:
        self.display.line()
        self.display.line("Start  the proxy pings both gateways (loaded with flags 0: AX)")
        for label in LABELS:
            await self.wait_state(label, "AP", self.up_wait())

    async def step_both_up(self) -> None:
        n = self.options.step_calls
        step = self.title(1, "both up", f"both gateways up: {n} calls, weights 75/25")
        predicted = self.predicted_mg1(n)
        await self.run_calls(step, n, self.rate)
        self.display.line(f"  -> {self.check_split(step, predicted)}.  OK")
        step.note = f"weights 75/25 ({predicted}/{n - predicted} predicted)"

    async def step_outage(self) -> None:
        step = self.title(2, "MG1 down", "MG1 dies: it answers nothing (pings, calls) from now on")
        mg1 = self.gateways["MG1"]
        before = self.dest("MG1").flags_text()
        mg1.mode = "down"
        self.display.line(
            f"  the proxy keeps pinging it; after {PROBING_THRESHOLD} missed pings it is IP"
        )
        since = len(self.changes)
        timeouts = self.dest("MG1").latency.timeout
        await self.wait_state("MG1", "IP", self.down_wait())
        missed = self.dest("MG1").latency.timeout - timeouts
        ignored_before = mg1.stats["invites_ignored"]
        n = self.options.outage_calls
        self.display.line(f"  MG1 is IP: it gets no calls; MG2 takes 100 %. {n} calls:")
        await self.run_calls(step, n, self.rate)
        seen = " -> ".join([before, *(c.new for c in self.changes[since:] if c.label == "MG1")])
        reached = mg1.stats["invites_ignored"] - ignored_before
        if step.counts["MG1"] or step.counts["MG2"] != n or reached:
            raise StepFailed(
                f"while MG1 was IP it still got calls: MG1 {step.counts['MG1']}, "
                f"MG2 {step.counts['MG2']}, INVITEs that reached MG1 {reached}"
            )
        self.display.line(
            f"  -> MG1 went {seen} after {missed} pings timed out; all {n} calls answered "
            f"by MG2, none failed, no INVITE sent to MG1.  OK"
        )
        step.note = f"MG1 {seen}; MG2 took 100 %"

    async def step_back(self) -> None:
        n = self.options.step_calls
        step = self.title(3, "MG1 back", "MG1 comes back: it answers again")
        self.gateways["MG1"].mode = "up"
        self.display.line(f"  after {INACTIVE_THRESHOLD} answered pings in a row it is AP again")
        await self.wait_state("MG1", "AP", self.up_wait())
        self.display.line(f"  MG1 is AP: the split resumes. {n} calls:")
        predicted = self.predicted_mg1(n)
        await self.run_calls(step, n, self.rate)
        self.display.line(f"  -> {self.check_split(step, predicted)}.  OK")
        step.note = f"IP -> AP; 75/25 again ({predicted}/{n - predicted} predicted)"

    async def step_reject(self) -> None:
        n = self.options.reject_calls
        step = self.title(
            4, "MG1 rejects (404)", "MG1 answers every INVITE with 404 (its pings still get 200)"
        )
        mg1 = self.gateways["MG1"]
        mg1.mode = "reject404"
        self.display.line(
            "  a 404 is in failover_on: the proxy retries the call on MG2 and marks MG1 "
            f"{MARK_FAILED.upper()}; its pings bring it back. {n} calls:"
        )
        rejected_before = mg1.stats["invites_rejected"]
        since = len(self.changes)
        caller = self.caller
        assert caller is not None
        seen_404_before = caller.statuses[404]
        await self.run_calls(step, n, None if self.options.fast else REJECT_STEP_RATE)
        rejected = mg1.stats["invites_rejected"] - rejected_before
        marked = [
            c
            for c in self.changes[since:]
            if c.label == "MG1" and c.new == MARK_FAILED.upper() and "404" in c.reason
        ]
        if rejected == 0:
            raise StepFailed("no call reached MG1, so no 404 was tried")
        if caller.statuses[404] != seen_404_before:
            raise StepFailed("the caller received a 404")
        if step.counts["MG1"] or step.counts["MG2"] != n:
            raise StepFailed(
                f"MG1 answered {step.counts['MG1']} calls and MG2 {step.counts['MG2']} of {n}"
            )
        if not marked:
            raise StepFailed(f"MG1 rejected {rejected} calls but was not marked {MARK_FAILED}")
        self.display.line(
            f"  -> MG1 answered {rejected} INVITE(s) with 404 and went IP {len(marked)} "
            f"time(s); each of those calls was retried on MG2 and the caller saw no 404: "
            f"all {n} calls answered by MG2.  OK"
        )
        step.note = f"{rejected} x 404 from MG1, retried on MG2"
        self.display.line()
        self.display.line("End  MG1 answers calls again; waiting for it to be AP")
        mg1.mode = "up"
        await self.wait_state("MG1", "AP", self.up_wait())

    async def tell(self) -> None:
        self.introduce()
        await self.first_pings()
        await self.pause()
        await self.step_both_up()
        await self.pause()
        await self.step_outage()
        await self.pause()
        await self.step_back()
        await self.pause()
        await self.step_reject()

    # -- the tables ----------------------------------------------------------------

    def summary(self) -> None:
        line = self.display.line
        line()
        line("Where the calls went")
        head = f"  {'step':<22} {'calls':>6} {'MG1':>6} {'MG2':>6} {'failed':>7}  notes"
        line(head)
        total: Counter[str] = Counter()
        calls = 0
        for s in self.steps:
            c = s.counts
            name = f"{s.number} {s.short}"
            line(
                f"  {name:<22} {s.calls:>6} {c['MG1']:>6} {c['MG2']:>6} {c['failed']:>7}  {s.note}"
            )
            total.update(c)
            calls += s.calls
        line(f"  {'total':<22} {calls:>6} {total['MG1']:>6} {total['MG2']:>6} {total['failed']:>7}")

    async def destinations(self) -> None:
        """The destinations as ``sipdispatch rpc dispatcher.list`` shows them."""
        if self.server is None:
            return
        from sipdispatch.admin import rpc

        result = await rpc.Rpc(self.server).call("dispatcher.list")
        line = self.display.line
        slowest: list[str] = []
        line()
        line("Destinations at the end (what `sipdispatch rpc dispatcher.list` shows)")
        line(
            f"  {'':4}{'URI':<24} {'FLAGS':<6} {'PRIORITY':>8}  {'ATTRS':<10}"
            f" {'AVG':>6} {'STD':>6} {'EST':>6} {'MAX':>4} {'TIMEOUT':>8}"
        )
        for record in cast(dict[str, Any], result)["RECORDS"]:
            for target in record["SET"]["TARGETS"]:
                dest = target["DEST"]
                label = self.by_uri.get(dest["URI"], "")
                attrs = (dest.get("ATTRS") or {}).get("BODY") or ""
                lat = dest.get("LATENCY") or {}
                if lat.get("MAX", 0) >= T1 * 1000 * 0.8:
                    slowest.append(label or dest["URI"])
                line(
                    f"  {label:<4}{dest['URI']:<24} {dest['FLAGS']:<6} {dest['PRIORITY']:>8}"
                    f"  {attrs:<10} {lat.get('AVG', 0):>6.2f} {lat.get('STD', 0):>6.2f}"
                    f" {lat.get('EST', 0):>6.2f} {lat.get('MAX', 0):>4} {lat.get('TIMEOUT', 0):>8}"
                )
        line(
            "  LATENCY (ms) of the OPTIONS pings (ping_latency_stats); TIMEOUT counts pings "
            "left unanswered within fr_timer"
        )
        for label in slowest:
            line(
                f"  {label}'s MAX: a ping sent while it was down, answered on its retransmission "
                f"({T1 * 1000:.0f} ms later) once it was back"
            )
