"""``sipdispatch demo``: the seed article's story, live on loopback, in one process.

A real :class:`~sipdispatch.server.Server` (the proxy) runs on 127.0.0.1 in front of
two simulated media gateways, MG1 (``weight=75``) and MG2 (``weight=25``), in
dispatcher set 1 with algorithm 9 (weight). A simulated caller sends calls
(INVITE, 200, ACK, BYE) to the proxy and counts which gateway answered each. The
story, narrated on the terminal (docs/demo.md explains how to read it):

1. both gateways up: the calls split 75/25;
2. MG1 dies (answers nothing): pings are missed, it goes ``TP`` then ``IP``, MG2
   takes every call;
3. MG1 comes back: its pings are answered, it is ``AP`` again, the split resumes;
4. MG1 rejects calls with 404 (but answers pings): each rejected call is retried on
   MG2 without the caller seeing the 404, and MG1 is marked ``IP`` (``mark_failed``)
   until its pings bring it back.

Then a table of where the calls went and the destinations as ``dispatcher.list``
shows them. The demo is also a self-check: exit status 0 when every step did what
it should, 1 (with one line saying which step and why) otherwise, 130 after
Ctrl-C (everything stopped and the temporary directory removed).

Entry points: :func:`main` (``argv`` without the program name, e.g.
``main(["--fast"])``), :func:`add_arguments` + :func:`main_from_args` for a parent
argparse parser, and the coroutine :func:`run_demo`.

The gateways and the caller are small asyncio UDP user agents written here on
top of :mod:`sipdispatch.sip.message`; everything shares one event loop (uvloop
when installed). One concern per module:

- :mod:`~sipdispatch.demo.config`: the setup (set 1, MG1 and MG2 with their weights)
  and the proxy's configuration;
- :mod:`~sipdispatch.demo.useragent`: what the simulated user agents share (T1/T2,
  SIP helpers, a loopback socket);
- :mod:`~sipdispatch.demo.gateway`: the simulated media gateway (UAS);
- :mod:`~sipdispatch.demo.caller`: the simulated caller (UAC);
- :mod:`~sipdispatch.demo.display`: the narration on the terminal;
- :mod:`~sipdispatch.demo.stage`: the proxy, gateways and caller on one loop:
  start, stop, state changes, batches of calls;
- :mod:`~sipdispatch.demo.story`: the four steps and the final tables;
- :mod:`~sipdispatch.demo.options`: what the demo was asked for;
- :mod:`~sipdispatch.demo.cli`: :func:`run_demo`, the command line, the exit codes.
"""

from __future__ import annotations

from sipdispatch.demo.caller import Caller
from sipdispatch.demo.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_arguments,
    main,
    main_from_args,
    run_demo,
)
from sipdispatch.demo.display import Display
from sipdispatch.demo.gateway import Gateway
from sipdispatch.demo.options import DemoOptions
from sipdispatch.demo.stage import StepFailed
from sipdispatch.demo.story import Demo

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "Caller",
    "Demo",
    "DemoOptions",
    "Display",
    "Gateway",
    "StepFailed",
    "add_arguments",
    "main",
    "main_from_args",
    "run_demo",
]
