"""bench/perfsplit.py reads `perf report` text: each library's share and the kernel's,
allocation and lookups among the user-space symbols, and the kernel paths' inclusive
shares, on lines as perf 6 prints them."""

from __future__ import annotations

import pytest
from bench import perfsplit

SELF = """\
# Overhead  Shared Object                 Symbol
# ........  ............................  ......
#
    16.41%  [kernel.kallsyms]             [k] finish_task_switch.isra.0
     4.28%  libpython3.11.so.1.0          [.] _PyObject_Malloc
     2.49%  libpython3.11.so.1.0          [.] _Py_dict_lookup
     1.77%  5468e7c1a3__mypyc.cpython-311-x86_64-linux-gnu.so  [.] CPyDef_message____scan_lines
     1.02%  libpython3.11.so.1.0          [.] tuple_alloc
     0.27%  loop.cpython-311-x86_64-linux-gnu.so  [.] __pyx_f_6uvloop_4loop_12UDPTransport__send
     0.26%  libpython3.11.so.1.0          [.] PyObject_VectorcallMethod
     0.29%  libc.so.6                     [.] malloc
"""

CHILDREN = """\
    34.63%     0.32%  [k] do_syscall_64
    24.48%     0.32%  [.] __libc_sendmsg
     9.45%     0.15%  [k] __udp_enqueue_schedule_skb
     9.39%     0.09%  [k] exit_to_user_mode_loop
     8.95%     0.26%  [.] epoll_pwait
"""


def test_each_library_and_the_kernel_get_the_sum_of_their_symbols() -> None:
    by_dso, allocation, lookup = perfsplit.split(SELF.splitlines())
    assert by_dso == pytest.approx(
        {
            "kernel": 16.41,
            "libpython3.11.so.1.0": 4.28 + 2.49 + 1.02 + 0.26,
            "sipdispatch, compiled (mypyc)": 1.77,
            "uvloop": 0.27,
            "libc.so.6": 0.29,
        }
    )
    assert allocation == pytest.approx(4.28 + 1.02 + 0.29)  # CPython's and glibc's allocators
    assert lookup == pytest.approx(2.49 + 0.26)  # a dictionary lookup, a method called by name


def test_kernel_paths_are_read_inclusive_and_absent_ones_are_zero() -> None:
    shares = perfsplit.paths(CHILDREN.splitlines())
    assert shares["sendmsg (all of it)"] == 24.48
    assert shares["epoll_pwait (sleeping and waking)"] == 8.95
    assert shares["recvmsg"] == 0.0
    # A --children report's rows are not taken for a --no-children one, nor the reverse.
    assert perfsplit.split(CHILDREN.splitlines())[0] == {}
    assert all(share == 0.0 for share in perfsplit.paths(SELF.splitlines()).values())
