"""Reload: unchanged destinations keep state, counters, latency and load
(keep_state_on_reload); new and changed ones start as Kamailio's do -- their
state is the flags column, whatever the probing mode -- and are probed from there."""

from __future__ import annotations

import pytest

from sipdispatch.dispatcher import parse_list

from .harness import Gateway, Net

GW1 = "sip:127.0.0.1:5071"
GW2 = "sip:127.0.0.1:5072"
GW3 = "sip:127.0.0.1:5073"
GW4 = "sip:127.0.0.1:5074"

BEFORE = f"1 {GW1} 8 0 weight=50\n1 {GW2} 0 0 weight=50"
AFTER = f"1 {GW1} 8 0 weight=50\n1 {GW2} 0 0 weight=60\n1 {GW3} 0\n1 {GW4} 8"


def reload(net: Net, text: str) -> int:
    """Load ``text`` as the new list (gateways for new addresses answer 200)."""
    dests = parse_list(text, "reload.list")
    for d in dests:
        d.addr = (d.host, d.port)
        net.gateways.setdefault(d.addr, Gateway())
    return net.router.replace(dests)


def degraded_net(**config: object) -> Net:
    """GW1 inactive with latency samples and a call, GW2 trying."""
    net = Net(
        BEFORE, ping_interval=1, fr_timer=0.5, probing_threshold=2, inactive_threshold=3,
        ping_latency_stats=True, **config,
    )  # fmt: skip
    net.gw(GW1).code = None
    net.gw(GW2).code = None
    net.advance(1.8)  # each missed one ping -> TP / TX
    gw1 = net.dest(GW1)
    for call in ("call-1", "call-2"):
        net.router.calls.on_invite_sent(call, gw1, net.now)
    net.router.mark(gw1, "ip", "call failed")
    return net


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_unchanged_keep_their_state_new_ones_start_from_their_flags(mode: int) -> None:
    net = degraded_net(probing_mode=mode)
    old1 = net.dest(GW1)
    old1.probing_count = 1
    old1.latency.add_timeout()
    assert old1.flags_text() == "IP"
    carried = reload(net, AFTER)
    assert carried == 1
    gw1, gw2, gw3, gw4 = (net.dest(u) for u in (GW1, GW2, GW3, GW4))
    assert gw1 is not old1
    assert (gw1.flags_text(), gw1.probing_count, gw1.dlg_load) == ("IP", 1, 2)
    assert gw1.latency is old1.latency and gw1.latency.timeout >= 1
    # Changed attrs: a new destination for Kamailio, back to its flags column.
    assert (gw2.flags_text(), gw2.probing_count, gw2.latency.count) == ("AX", 0, 0)
    # New: state = flags, no probing bit added by the mode (Kamailio's add_dest2list).
    assert gw3.flags_text() == "AX" and gw4.flags_text() == "AP"
    assert gw3.probing_count == gw4.probing_count == 0


def test_without_keep_state_on_reload_everything_restarts_from_flags() -> None:
    net = degraded_net(probing_mode=1, keep_state_on_reload=False)
    assert reload(net, AFTER) == 0
    gw1 = net.dest(GW1)
    assert (gw1.flags_text(), gw1.probing_count, gw1.latency.count) == ("AP", 0, 0)
    # Calls in progress are not state: the call-load table recounts them either way.
    assert gw1.dlg_load == 2


def test_after_reload_mode_1_probes_new_destinations_from_ax_to_ap() -> None:
    net = degraded_net(probing_mode=1)
    reload(net, AFTER)
    net.gw(GW1).code = 200
    net.advance(5)
    letters = {u: net.letters(u) for u in (GW1, GW2, GW3, GW4)}
    # GW1 carried IP with 1 of 3 answers... it needs inactive_threshold answers in a row.
    assert letters[GW3] == "AP" and letters[GW4] == "AP"
    assert letters[GW2] == "IP"  # still silent: AX -> TP -> IP
    assert letters[GW1] == "AP"


def test_reload_keeps_inactive_destination_inactive_until_threshold_answers() -> None:
    net = degraded_net(probing_mode=1)
    reload(net, AFTER)
    net.gw(GW1).code = 200
    seen = []
    for _ in range(8):
        net.advance(0.5)
        seen.append(net.letters(GW1))
    # 4 destinations -> GW1 pinged once a second; 3 answers needed.
    assert seen.count("IP") >= 4 and seen[-1] == "AP"
