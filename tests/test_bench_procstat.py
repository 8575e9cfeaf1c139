"""bench/procstat.py reads what the bench measures from /proc: the CPU time of a proxy's
processes and threads, how busy the machine is, and which UDP ports are bound.

A command name may hold spaces and parentheses, a /proc/pressure file may be empty,
and a proxy's workers are its children: each of those is read right, on lines as the
kernel writes them and on this very process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from bench import procstat

# /proc/PID/stat of a process named "a) (b c" (comm is cut at 15 bytes by the kernel).
STAT = (
    "4242 (a) (b c) S 17 4242 4242 0 -1 4194560 300 0 0 0 "
    "123 45 0 0 20 0 3 0 9999 12345678 900 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 "
    "17 1 0 0 0 0 0\n"
)


def test_stat_fields_start_after_a_command_name_with_spaces_and_parens() -> None:
    fields = procstat.stat_fields(STAT)
    assert fields[0] == "S"  # state, field 3
    assert fields[1] == "17"  # parent pid, field 4
    assert (fields[11], fields[12]) == ("123", "45")  # utime and stime, fields 14 and 15


def test_cpu_times_of_this_process_grow_with_the_cpu_it_burns() -> None:
    user_before, system_before = procstat.cpu_times([os.getpid()])
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    user, system = procstat.cpu_times([os.getpid()])
    assert user + system >= user_before + system_before
    assert procstat.cpu_ticks([os.getpid()]) >= user + system
    assert procstat.cpu_ns([os.getpid()]) > 0
    assert procstat.cpu_times([2**22 + 1]) == (0, 0)  # a pid that cannot exist: nothing


def test_process_tree_holds_the_children_of_a_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = procstat.process_tree(os.getpid())
        assert tree[0] == os.getpid()
        assert child.pid in tree
    finally:
        child.kill()
        child.wait()


def test_cpu_pressure_is_the_total_of_the_some_line() -> None:
    text = (
        "some avg10=1.50 avg60=0.80 avg300=0.20 total=123456789\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=42\n"
    )
    assert procstat.psi_total_us(text) == 123456789
    assert procstat.psi_total_us("") is None
    assert procstat.psi_total_us("some avg10=0.00\n") is None


def test_a_bound_udp_port_is_found_in_the_kernels_table() -> None:
    table = (
        "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "  512: 0100007F:88E4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0\n"
    )
    assert procstat.udp_table_has_port(table, 0x88E4)
    assert not procstat.udp_table_has_port(table, 0x88E5)
    assert not procstat.udp_table_has_port(table.splitlines()[0], 0x88E4)  # header only
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert procstat.udp_port_bound(port)
