"""Each destination's call set-up times (the console's recent median and 90th
percentile): from the INVITE sent to that destination to its final response, on the
virtual clock of the ``tests/test_routing.py`` seam."""

from __future__ import annotations

from tests.test_routing import (
    CALLER,
    GW1,
    GW2,
    MG1,
    MG2,
    Core,
    answer,
    caller_invite,
    dest,
    requests_to,
    router,
)

SERIAL2 = f"1 {MG1} 0 10\n1 {MG2} 0 5\n"


def test_a_failover_times_each_destination_from_its_own_invite() -> None:
    r = router(SERIAL2, [{"set": 1, "algorithm": 8, "failover_on": ["5xx"]}])
    c = Core(r)
    [first] = requests_to(c.send(caller_invite(), CALLER), GW1, "INVITE")
    c.pump.now = 0.25
    [second] = requests_to(c.send(answer(first, 503, "mg1"), GW1), GW2, "INVITE")
    c.pump.now = 1.0
    c.send(answer(second, 200, "mg2"), GW2)
    mg1, mg2 = dest(r, MG1), dest(r, MG2)
    assert (mg1.setup_count, mg2.setup_count) == (1, 1)
    assert mg1.setup_times[0] == 0.25  # INVITE at 0, 503 at 0.25
    assert mg2.setup_times[0] == 0.75  # its INVITE at 0.25, 200 at 1.0
    assert r.setup_times.count == 1  # the call as a whole: one set-up of 1 s
    assert r.setup_times.sum == 1.0
