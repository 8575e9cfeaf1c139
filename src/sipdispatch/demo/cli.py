"""Running the demo: :func:`run_demo` (the coroutine), the command line
(:func:`add_arguments`, :func:`main_from_args`, :func:`main`) and the exit codes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final, TextIO

from sipdispatch.config import ConfigError
from sipdispatch.demo.display import Display
from sipdispatch.demo.options import (
    DEFAULT_CALLS,
    FAST_CALLS,
    MIN_OUTAGE_CALLS,
    MIN_REJECT_CALLS,
    DemoOptions,
)
from sipdispatch.demo.stage import StepFailed
from sipdispatch.demo.story import Demo
from sipdispatch.dispatcher.errors import DispatcherError
from sipdispatch.eventloop import install_uvloop

EXIT_OK: Final = 0
"""Every step did what it should."""
EXIT_FAILED: Final = 1
"""A step's expectation failed (the line on stderr says which and why)."""
EXIT_INTERRUPTED: Final = 130
"""Stopped by Ctrl-C (128 + SIGINT, the shell convention)."""


@contextlib.contextmanager
def _quiet_logs(verbose: bool) -> Iterator[None]:
    """Keep the proxy's log off the narration unless asked for (``--verbose``)."""
    logger = logging.getLogger("sipdispatch")
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler = logging.NullHandler()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.CRITICAL)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


async def run_demo(
    options: DemoOptions | None = None,
    out: TextIO | None = None,
    *,
    tty: bool | None = None,
    err: TextIO | None = None,
) -> int:
    """Tell the story on ``out`` (default stdout); return :data:`EXIT_OK` or
    :data:`EXIT_FAILED` (after one ``demo failed: ...`` line on ``err``, default
    stderr). ``tty`` forces the progress style (default: ``out.isatty()``).

    Cancelling the task stops everything (proxy, sockets, temporary directory) and
    re-raises the cancellation.
    """
    options = options or DemoOptions()
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if tty is None:
        tty = out.isatty()
    loop = asyncio.get_running_loop()
    display = Display(out, tty, loop.time)
    with (
        _quiet_logs(options.verbose),
        tempfile.TemporaryDirectory(prefix="sipdispatch-demo-") as tmp,
    ):
        demo = Demo(options, display, Path(tmp))
        failure: str | None = None
        try:
            from sipdispatch.store import StoreError

            try:
                await demo.start()
            except (OSError, ConfigError, DispatcherError, StoreError) as exc:
                failure = f"demo failed: cannot start the proxy or the simulated peers: {exc}"
            if failure is None:
                try:
                    await demo.tell()
                except StepFailed as exc:
                    step = demo.steps[-1] if demo.steps else None
                    where = f"step {step.number} ({step.short})" if step else "start"
                    failure = f"demo failed: {where}: {exc}"
                demo.summary()
                await demo.destinations()
        finally:
            display.end_progress()
            await demo.stop()
    if failure is not None:
        err.write(failure + "\n")
        err.flush()
        return EXIT_FAILED
    display.line()
    display.line(f"demo completed in {display.elapsed():.1f} s: every step as expected")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 4 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{value} is out of range 4..100000")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options (``--calls N``, ``--fast``, ``--verbose``) to a parser,
    e.g. the ``demo`` subparser of the ``sipdispatch`` command line."""
    parser.add_argument(
        "--calls",
        type=_positive,
        metavar="N",
        help=f"calls in steps 1 and 3 (default {DEFAULT_CALLS}, {FAST_CALLS} with --fast); "
        "steps 2 and 4 make a quarter as many (at least "
        f"{MIN_OUTAGE_CALLS} and {MIN_REJECT_CALLS})",
    )
    parser.add_argument(
        "--fast", action="store_true", help="fewer calls, no pacing and no pauses (for tests)"
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show the proxy's log on stderr"
    )


INTERRUPT_RECHECK: Final = 0.2
"""Seconds after a Ctrl-C at which the story is looked at again: a cancellation that
arrives as a task group's last call finishes can be lost (Python 3.11's TaskGroup
takes it back), and is then made again."""


async def run_interruptibly(options: DemoOptions) -> int:
    """:func:`run_demo`, stopped by Ctrl-C: the story's task is cancelled (it stops the
    proxy, closes the sockets, removes the temporary directory), and cancelled again
    if the cancellation was lost on the way."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def cancel() -> None:
        if task.done():
            return
        if task.cancelling() == 0:  # not asked yet, or a cancellation was taken back
            task.cancel()
        loop.call_later(INTERRUPT_RECHECK, cancel)

    loop.add_signal_handler(signal.SIGINT, cancel)
    try:
        return await run_demo(options)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def main_from_args(args: argparse.Namespace) -> int:
    """Run the demo with options parsed by a parser that :func:`add_arguments` set up."""
    options = DemoOptions(calls=args.calls, fast=args.fast, verbose=args.verbose)
    try:
        with asyncio.Runner(loop_factory=install_uvloop()) as runner:
            return runner.run(run_interruptibly(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # The first Ctrl-C cancelled the story (run_interruptibly), which stopped the
        # proxy, closed the sockets and removed the temporary directory.
        sys.stdout.flush()
        print("demo interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """``sipdispatch demo [--calls N] [--fast] [--verbose]``: ``argv`` holds the
    arguments after ``demo`` (None = ``sys.argv[1:]``). Returns the exit status:
    0 completed, 1 a step failed, 130 interrupted (2 for bad arguments, from argparse)."""
    parser = argparse.ArgumentParser(
        prog="sipdispatch demo",
        description="The dispatcher story on loopback: a proxy, two simulated media "
        "gateways (75/25) and a caller; MG1 dies, comes back, rejects with 404.",
    )
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))
