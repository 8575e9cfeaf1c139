"""The demo's narration on the terminal (or any text stream)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Final, TextIO

PROGRESS_WIDTH: Final = 24
PROGRESS_REDRAW: Final = 0.05
"""A TTY progress line is redrawn at most this often (s)."""


class Display:
    """Narration on a text stream. On a terminal the progress of a step is one line
    redrawn with ``\\r``; otherwise it is printed as a plain line at each quarter.
    Other lines (state changes) clear the progress line, print, and redraw it."""

    def __init__(self, out: TextIO, tty: bool, clock: Callable[[], float]) -> None:
        self.out = out
        self.tty = tty
        self.clock = clock
        self.started = clock()
        self._progress = ""
        self._drawn_at = 0.0
        self._quarter = 0

    def elapsed(self) -> float:
        return self.clock() - self.started

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def line(self, text: str = "") -> None:
        if self.tty and self._progress:
            self._write("\r" + " " * len(self._progress) + "\r" + text + "\n" + self._progress)
        else:
            self._write(text + "\n")

    def event(self, text: str) -> None:
        """A timestamped line."""
        self.line(f"  {self.elapsed():6.1f}s  {text}")

    def begin_progress(self) -> None:
        self._progress = ""
        self._drawn_at = 0.0
        self._quarter = 0

    def progress(self, done: int, total: int, counts: Counter[str]) -> None:
        filled = PROGRESS_WIDTH * done // total if total else PROGRESS_WIDTH
        bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
        text = (
            f"  [{bar}] {done:>{len(str(total))}}/{total}  "
            f"MG1 {counts['MG1']}  MG2 {counts['MG2']}  failed {counts['failed']}"
        )
        if self.tty:
            now = self.clock()
            if done < total and now - self._drawn_at < PROGRESS_REDRAW:
                return
            self._drawn_at = now
            pad = max(0, len(self._progress) - len(text))
            self._write("\r" + text + " " * pad)
            self._progress = text
            return
        quarter = 4 * done // total if total else 4
        if quarter > self._quarter:
            self._quarter = quarter
            self._write(text + "\n")

    def end_progress(self) -> None:
        if self.tty and self._progress:
            self._write("\n")
        self._progress = ""
