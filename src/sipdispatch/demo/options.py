"""What ``sipdispatch demo`` was asked for: how many calls, how fast, how verbose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_CALLS: Final = 200
"""Calls in steps 1 and 3 by default: two turns of the 100-slot weight table."""
FAST_CALLS: Final = 100
MIN_OUTAGE_CALLS: Final = 10
MIN_REJECT_CALLS: Final = 30
"""Step 4 needs a call on an MG1 slot: at most 25 of the 100 weight slots in a row are
MG2's, so 26 calls are enough; 30 for good measure."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``sipdispatch demo`` was asked for."""

    calls: int | None = None
    """Calls in steps 1 and 3 (steps 2 and 4 make a quarter as many, at least
    10 and 30); None = 200, or 100 with ``fast``."""
    fast: bool = False
    """No pacing, no pauses, fewer calls (for tests)."""
    verbose: bool = False
    """Show the proxy's log on stderr."""

    @property
    def step_calls(self) -> int:
        """Calls in steps 1 and 3."""
        if self.calls is not None:
            return self.calls
        return FAST_CALLS if self.fast else DEFAULT_CALLS

    @property
    def outage_calls(self) -> int:
        """Calls in step 2."""
        return max(MIN_OUTAGE_CALLS, self.step_calls // 4)

    @property
    def reject_calls(self) -> int:
        """Calls in step 4."""
        return max(MIN_REJECT_CALLS, self.step_calls // 4)
