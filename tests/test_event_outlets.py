"""What destination events are told to (``[events]``): the Python hooks, the command
and the webhook, each for real (a module imported from a file, a program run, an HTTP
server on loopback), and what bounds them -- timeouts, concurrency, the order of one
destination's events, the queue -- so that none of them can stop the proxy."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import textwrap
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from sipdispatch import events as events_module
from sipdispatch.config import ConfigError, EventsConfig, parse_config
from sipdispatch.events import (
    CommandOutlet,
    DestinationEvents,
    HookOutlet,
    Outlet,
    WebhookOutlet,
)
from sipdispatch.health.state import ORIGIN_CALL, ORIGIN_PROBE, StateChange
from sipdispatch.health.statelog import StateLog
from sipdispatch.hooks import DestinationEvent, HookLoader, HookLoadError
from sipdispatch.server import Server
from sipdispatch.service import DispatcherService

T = TypeVar("T")

MG1 = "sip:10.0.0.1:5060"
MG2 = "sip:10.0.0.2:5060"
MG3 = "sip:10.0.0.3:5060"
MG4 = "sip:10.0.0.4:5060"
DEADLINE = 30.0
"""Generous bound for what a loaded machine does in milliseconds."""

AP, IP = 8, 9


def down(uri: str = MG1, setid: int = 1) -> StateChange:
    return StateChange(setid, uri, AP, IP, "no reply to OPTIONS (408), 2 missed in a row",
                       10.0, 408, ORIGIN_PROBE)  # fmt: skip


def up(uri: str = MG1, setid: int = 1) -> StateChange:
    return StateChange(setid, uri, IP, AP, "OPTIONS answered 200", 20.0, 200, ORIGIN_PROBE)


def event(uri: str = MG1, kind: str = "dst-down") -> DestinationEvent:
    return DestinationEvent(kind, 1, uri, "AP", "IP", "no reply", 408, "probe", 1.0e9)


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro, DEADLINE * 2)

    return asyncio.run(main())


async def until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {DEADLINE:.0f}s: {what}")
        await asyncio.sleep(0.01)


def events_with(tmp_path: Path, source: str | None = None, **settings: Any) -> DestinationEvents:
    """DestinationEvents for ``[events]`` ``settings``; ``source`` is the module
    ``evhooks`` next to the configuration (its hooks named ``evhooks:down`` / ``:up``)."""
    module = f"evhooks_{tmp_path.name}"  # one module per test: imports never collide
    if source is not None:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    for key in ("on_destination_down", "on_destination_up"):
        if key in settings:
            settings[key] = settings[key].replace("evhooks:", f"{module}:")
    config = parse_config({"events": settings})
    loader = HookLoader((), [str(tmp_path)], events=config.events.hooks)
    loader.install_events(loader.load_events())
    return DestinationEvents(config.events, loader, node="lb1")


# -- Python hooks ----------------------------------------------------------------------


def test_hooks_get_their_events_in_order_and_one_that_raises_is_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = events_with(
        tmp_path,
        """
        SEEN = []
        def down(event):
            if event.uri.endswith("10.0.0.2:5060"):
                raise LookupError("no NMS entry for " + event.uri)
            SEEN.append(("down", event.set, event.uri, event.old_state, event.new_state))
        async def up(event):
            SEEN.append(("up", event.uri, event.code))
        """,
        on_destination_down="evhooks:down",
        on_destination_up="evhooks:up",
    )

    async def scenario() -> None:
        for change in (down(MG1), up(MG1), down(MG2), down(MG1)):
            events.on_change(change)
        await events.close(grace=DEADLINE)

    with caplog.at_level(logging.INFO, "sipdispatch.events"):
        run(scenario())
    (hooks,) = events.outlets  # one outlet: one destination's events in order across both
    assert isinstance(hooks, HookOutlet)
    function = hooks.loader.event_hooks["events.on_destination_down"]
    module_globals = function.__globals__  # type: ignore[attr-defined]
    assert module_globals["SEEN"] == [
        ("down", 1, MG1, "AP", "IP"),
        ("up", MG1, 200),
        ("down", 1, MG1, "AP", "IP"),
    ]
    assert events.raised == {"dst-down": 3, "dst-up": 1}
    assert (hooks.stats["sent"], hooks.stats["failed"]) == (3, 1)
    failure = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failure) == 1
    assert "events.on_destination_down" in failure[0]
    assert f"raised LookupError: no NMS entry for {MG2}" in failure[0]
    assert "evhooks" in failure[0] and "in down" in failure[0]


def test_a_blocking_hook_past_hook_timeout_is_counted_and_the_next_event_does_not_wait(
    tmp_path: Path,
) -> None:
    gate = threading.Event()
    events = events_with(
        tmp_path,
        """
        import threading
        GATE = threading.Event()
        CALLS = []
        def down(event):
            CALLS.append(event.uri)
            if event.uri.endswith("10.0.0.1:5060"):
                GATE.wait(60)
        """,
        on_destination_down="evhooks:down",
        hook_timeout=0.2,
    )
    (outlet,) = events.outlets
    assert isinstance(outlet, HookOutlet)
    function = outlet.loader.event_hooks["events.on_destination_down"]
    module_globals = function.__globals__  # type: ignore[attr-defined]
    module_globals["GATE"] = gate

    async def scenario() -> None:
        events.on_change(down(MG1))
        events.on_change(down(MG1))  # the same destination: after the first (timed out)
        events.on_change(down(MG2))
        await until(lambda: outlet.stats["timeout"] == 2 and outlet.stats["sent"] == 1, "done")
        gate.set()
        await events.close(grace=DEADLINE)

    run(scenario())
    assert sorted(module_globals["CALLS"]) == [MG1, MG1, MG2]
    assert (outlet.stats["timeout"], outlet.stats["sent"], outlet.pending) == (2, 1, 0)


def test_an_async_hook_past_hook_timeout_is_cancelled(tmp_path: Path) -> None:
    events = events_with(
        tmp_path,
        """
        import asyncio
        STATE = []
        async def up(event):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                STATE.append("cancelled")
                raise
        """,
        on_destination_up="evhooks:up",
        hook_timeout=0.1,
    )
    (outlet,) = events.outlets

    async def scenario() -> None:
        events.on_change(up(MG1))
        events.on_change(down(MG1))  # no down hook: nothing told
        await until(lambda: outlet.stats["timeout"] == 1, "the timeout")
        await events.close(grace=DEADLINE)

    run(scenario())
    assert isinstance(outlet, HookOutlet)
    function = outlet.loader.event_hooks["events.on_destination_up"]
    assert function.__globals__["STATE"] == ["cancelled"]  # type: ignore[attr-defined]
    assert outlet.stats["sent"] == 0


def test_event_hooks_are_imported_at_start_and_afresh_by_a_reload(tmp_path: Path) -> None:
    listing = tmp_path / "dispatcher.list"
    listing.write_text(f"1 {MG1.replace('10.0.0.1', '127.0.0.1')}\n")
    module = tmp_path / "evreload.py"
    module.write_text("def down(event):\n    return 1\n")
    cfg = parse_config(
        {
            "dispatcher": {"list_file": str(listing), "ping_interval": 0},
            "events": {"on_destination_down": "evreload:down"},
        }
    )
    service = DispatcherService.from_config(cfg, StateLog(), [str(tmp_path)])
    first = service.hooks.event_hooks["events.on_destination_down"]
    assert first(event()) == 1
    module.write_text("def down(event):\n    return 2\n")
    run(service.reload())
    second = service.hooks.event_hooks["events.on_destination_down"]
    assert second(event()) == 2
    module.write_text("def down(event:\n")
    with pytest.raises(HookLoadError, match=r'events\.on_destination_down = "evreload:down"'):
        run(service.reload())
    assert service.hooks.event_hooks["events.on_destination_down"] is second
    module.unlink()
    with pytest.raises(ConfigError) as caught:
        DispatcherService.from_config(
            parse_config(
                {
                    "dispatcher": {"list_file": str(listing), "ping_interval": 0},
                    "events": {"on_destination_up": "evmissing:up"},
                }
            ),
            StateLog(),
            [str(tmp_path)],
        )
    assert caught.value.key == "events.on_destination_up"


# -- the command -------------------------------------------------------------------------


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_command_runs_without_a_shell_with_the_event_in_its_environment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "told"
    program = script(
        tmp_path / "notify.sh",
        """
        printf '%s|%s|%s|%s|%s|%s|%s\\n' "$SIPDISPATCH_EVENT" "$SIPDISPATCH_SET" \
            "$SIPDISPATCH_URI" "$SIPDISPATCH_OLD_STATE" "$SIPDISPATCH_NEW_STATE" \
            "$SIPDISPATCH_CODE" "$1" >> "$2"
        echo "paged for $SIPDISPATCH_URI"
        """,
    )
    events = events_with(tmp_path, command=[str(program), "$(touch pwned)", str(out)])

    async def scenario() -> None:
        events.on_change(down(MG1))
        events.on_change(up(MG1))
        await events.close(grace=DEADLINE)

    with caplog.at_level(logging.INFO, "sipdispatch.events"):
        run(scenario())
    assert out.read_text().splitlines() == [
        f"dst-down|1|{MG1}|AP|IP|408|$(touch pwned)",
        f"dst-up|1|{MG1}|IP|AP|200|$(touch pwned)",
    ]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    (outlet,) = events.outlets
    assert outlet.stats["sent"] == 2
    logged = [r.getMessage() for r in caplog.records]
    assert any(f"(dst-down set 1 {MG1}): paged for {MG1}" in line for line in logged)


def test_command_that_fails_or_runs_too_long_is_logged_counted_and_killed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = tmp_path / "child.pid"
    program = script(
        tmp_path / "flaky.sh",
        f"""
        if [ "$SIPDISPATCH_EVENT" = dst-down ]; then
            echo "no route to the pager" >&2
            exit 3
        fi
        sleep 3600 &
        echo $! > {pid_file}
        wait
        """,
    )
    events = events_with(tmp_path, command=[str(program)], command_timeout=0.5)
    (outlet,) = events.outlets

    async def scenario() -> None:
        events.on_change(down(MG1))
        events.on_change(up(MG2))
        await until(lambda: outlet.stats["timeout"] == 1, "the timeout")
        await events.close(grace=DEADLINE)

    with caplog.at_level(logging.INFO, "sipdispatch.events"):
        run(scenario())
    assert (outlet.stats["failed"], outlet.stats["timeout"]) == (1, 1)
    logged = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any(
        level == logging.WARNING and line.endswith("no route to the pager")
        for level, line in logged
    )
    assert any("exit status 3" in line for _, line in logged)
    assert any("still running after 0.5 s (command_timeout): killed" in line for _, line in logged)
    child = int(pid_file.read_text())
    stat_file = Path(f"/proc/{child}/stat")
    # Killed with its process group: gone, or a zombie nobody has reaped yet.
    assert not stat_file.exists() or stat_file.read_text().split(")")[1].split()[0] == "Z"


def test_a_command_that_is_not_there_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    listing = tmp_path / "dispatcher.list"
    listing.write_text("1 sip:127.0.0.1:5071\n")
    config = parse_config(
        {
            "dispatcher": {"list_file": str(listing), "ping_interval": 0},
            "events": {"command": [str(tmp_path / "nosuch.sh")]},
        }
    )
    with pytest.raises(ConfigError) as caught:
        Server(config)
    assert caught.value.key == "events.command"
    assert "nosuch.sh: not found" in str(caught.value)


# -- bounds common to every outlet -----------------------------------------------------


class Held(Outlet):
    """An outlet whose deliveries wait until the test lets each one go."""

    label = "held"

    def __init__(self, concurrency: int) -> None:
        super().__init__("held", concurrency, lambda: 0.0)
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    async def deliver(self, event: DestinationEvent) -> str:
        name = f"{event.event} {event.uri}"
        self.started.append(name)
        gate = self.gates.setdefault(name, asyncio.Event())
        await gate.wait()
        return "sent"

    def release(self, name: str) -> None:
        self.gates.setdefault(name, asyncio.Event()).set()


def test_concurrency_is_bounded_and_one_destinations_events_keep_their_order() -> None:
    async def scenario() -> Held:
        outlet = Held(concurrency=2)
        outlet.submit(event(MG1))
        outlet.submit(event(MG1, "dst-up"))  # the same destination: after the first
        outlet.submit(event(MG2))
        outlet.submit(event(MG3))
        await until(lambda: len(outlet.started) == 2, "two started")
        for _ in range(20):
            await asyncio.sleep(0)
        assert outlet.started == [f"dst-down {MG1}", f"dst-down {MG2}"]
        outlet.release(f"dst-down {MG2}")
        await until(lambda: len(outlet.started) == 3, "the third")
        assert outlet.started[2] == f"dst-down {MG3}"  # not MG1's dst-up: it waits for MG1
        outlet.release(f"dst-down {MG1}")
        await until(lambda: len(outlet.started) == 4, "the fourth")
        assert outlet.started[3] == f"dst-up {MG1}"
        outlet.release(f"dst-up {MG1}")
        outlet.release(f"dst-down {MG3}")
        await outlet.close(DEADLINE)
        return outlet

    outlet = run(scenario())
    assert (outlet.stats["sent"], outlet.pending) == (4, 0)


def test_events_past_the_queue_bound_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(events_module, "MAX_PENDING", 2)

    async def scenario() -> Held:
        outlet = Held(concurrency=1)
        assert outlet.submit(event(MG1)) and outlet.submit(event(MG2))
        assert not outlet.submit(event(MG3))
        assert not outlet.submit(event(MG4))
        for name in (f"dst-down {MG1}", f"dst-down {MG2}"):
            outlet.release(name)
        await outlet.close(DEADLINE)
        return outlet

    with caplog.at_level(logging.ERROR, "sipdispatch.events"):
        outlet = run(scenario())
    assert (outlet.stats["sent"], outlet.stats["dropped"]) == (2, 2)
    (line,) = [r.getMessage() for r in caplog.records]  # the second drop is held back
    assert f"dst-down set 1 {MG3}" in line and "2 events waiting" in line


def test_a_change_outside_the_event_loop_is_dropped_not_raised_as_an_error() -> None:
    outlet = CommandOutlet(["true"], 1.0, 1, lambda: 0.0)
    assert not outlet.submit(event())
    assert outlet.stats["dropped"] == 1


# -- the webhook -------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on loopback that records the webhook's POSTs and answers each
    with the next of ``statuses`` (then 200)."""

    def __init__(self, statuses: list[int] | None = None, hang: bool = False) -> None:
        self.statuses = list(statuses or [])
        self.hang = hang
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.released = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append((request.content_type, json.loads(body)))
        if self.hang:
            await self.released.wait()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/events", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/events"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        self.released.set()
        await self.runner.cleanup()


def test_webhook_posts_the_event_as_json_and_retries_a_failed_post() -> None:
    async def scenario() -> tuple[Receiver, WebhookOutlet]:
        async with Receiver([503]) as receiver:
            events = DestinationEvents(
                EventsConfig(webhook=receiver.url, webhook_retries=2), HookLoader(()),
                node="lb1", clock=lambda: 1_764_633_600.5,
            )  # fmt: skip
            (outlet,) = events.outlets
            assert isinstance(outlet, WebhookOutlet)
            outlet.retry_delay = 0.01
            events.on_change(down(MG2, setid=7))
            await events.close(grace=DEADLINE)
            return receiver, outlet

    receiver, outlet = run(scenario())
    assert outlet.stats["sent"] == 1 and outlet.stats["failed"] == 0
    assert len(receiver.posts) == 2  # 503, then 200
    content_type, body = receiver.posts[-1]
    assert content_type == "application/json"
    assert body == {
        "event": "dst-down", "set": 7, "uri": MG2, "duid": "", "old_state": "AP",
        "new_state": "IP", "reason": "no reply to OPTIONS (408), 2 missed in a row",
        "code": 408, "origin": "probe", "time": 1764633600.5, "node": "lb1",
    }  # fmt: skip


def test_webhook_that_never_answers_gives_up_after_its_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[Receiver, WebhookOutlet]:
        async with Receiver(hang=True) as receiver:
            outlet = WebhookOutlet(receiver.url, 0.2, 1, lambda: 0.0)
            outlet.retry_delay = 0.01
            outlet.submit(event(MG1))
            await until(lambda: outlet.stats["failed"] == 1, "giving up")
            await outlet.close(DEADLINE)
            return receiver, outlet

    with caplog.at_level(logging.ERROR, "sipdispatch.events"):
        receiver, outlet = run(scenario())
    assert len(receiver.posts) == 2 and outlet.stats["failed"] == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert "no answer within 0.2 s (webhook_timeout); gave up after 2 tries" in line


def test_a_call_marked_failed_is_told_with_its_origin(tmp_path: Path) -> None:
    out = tmp_path / "told"
    program = script(tmp_path / "n.sh", f'echo "$SIPDISPATCH_ORIGIN $SIPDISPATCH_CODE." >> {out}\n')
    events = events_with(tmp_path, command=[str(program)])
    change = StateChange(1, MG1, 0, IP, "503 from the gateway", 1.0, None, ORIGIN_CALL)

    async def scenario() -> None:
        events.on_change(change)
        await events.close(grace=DEADLINE)

    run(scenario())
    assert out.read_text() == "call .\n"
    assert os.access(program, os.X_OK)
