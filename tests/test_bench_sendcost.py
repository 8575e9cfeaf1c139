"""bench/sendcost.py times a datagram sent both ways on loopback and prints each."""

from __future__ import annotations

import re

import pytest
from bench import sendcost


def test_both_send_paths_are_timed_and_printed_per_datagram(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sendcost.main(["--datagrams", "300", "--size", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split(":")[0] for line in lines]
    assert names == ["uvloop transport.sendto", "socket.sendto"]
    for line in lines:
        m = re.search(r": ([\d.]+) µs per datagram$", line)
        assert m is not None and float(m.group(1)) > 0
