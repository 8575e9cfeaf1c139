"""Settings every test shares."""

from __future__ import annotations

from hypothesis import settings

# Property tests are deterministic (a fixed seed per test, no example database) and
# have no per-example deadline: the suite runs on loaded 2-core machines.
settings.register_profile("sipdispatch", derandomize=True, database=None, deadline=None)
settings.load_profile("sipdispatch")
