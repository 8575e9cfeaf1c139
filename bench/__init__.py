"""sipdispatch against Kamailio on this machine: CPU per call, latency, max rate, memory.

Run through ``bench/run.sh`` (``--help`` lists the options). Everything runs on
127.0.0.1: two sipp gateways, the proxy under test (sipdispatch, then Kamailio when
it is installed, each freshly started for every measurement) and a sipp caller. The
same calls go straight to one gateway as the latency baseline. Nothing is installed:
missing tools are named with the command that installs them.

What is measured and how (BENCHMARKS.md has the long form):

- CPU per call: utime+stime of every thread of every process of the proxy, from
  /proc/PID/task/TID/stat, before and after the caller's run, divided by the calls
  that succeeded. With ``--settle S`` the S seconds after the run are counted as
  well (minus the idle rate measured before the run), which catches work a proxy
  defers to timers, such as freeing finished transactions.
- Latency: INVITE -> 200 per call from sipp's response-time measure (rtd, whole
  milliseconds) and, when a packet socket can be opened (root), from kernel
  timestamps on ``lo`` in microseconds (see loopcap.py). "Added" is the proxy's
  percentile minus the direct call's.
- Max rate: the highest rate (calls/s) at which a run has no failed call, no
  retransmission and reaches 95 % of the asked rate; found by stepping up by 1.5x,
  then bisecting.
- Memory: VmRSS of the proxy with N calls in progress minus VmRSS idle, divided by
  N; for Kamailio also its shared-memory pool use (kamcmd core.shmmem) and the
  proportional set size (Pss) of all its processes.

One concern per module:

- ``cli``: the options and one invocation, from the checks to the tables;
- ``tools``: finding sipp, Kamailio and a Python that imports sipdispatch;
- ``machine``: what the results were taken on, and the snapshot of src/ measured;
- ``harness``: the ports, the work directory, the gateways and the proxies started;
- ``fixedrate``, ``maxrate``, ``memory``, ``profiling``: the four measurements;
- ``traffic``: the sipp gateways and caller, on the sipp helper of the integration
  tests (tests/integration/sippctl.py);
- ``proxies``: sipdispatch, Kamailio and the floor as processes under test;
- ``procstat``: CPU time, memory, CPU pressure and bound UDP ports from /proc;
- ``processes``: the processes started, each in its own group, all stopped on exit;
- ``spread``: percentiles, and the median and range over repeated runs;
- ``report``: the tables as text and as Markdown for BENCHMARKS.md;
- ``common``: paths, the loopback address, the progress log, the user's errors;
- ``loopcap``: microsecond INVITE -> 200 timing from a packet socket on ``lo``.

Tools run on their own, as scripts: ``corecost.py`` (the proxy core alone, in
memory), ``floor.py`` (the bare forwarder of ``--floor``) and ``gcstats.py``
(sipdispatch with its garbage collections timed, ``--gc-stats``); ``soak.py``
(``bench/soak.sh``: an hour of calls with faults) and ``statelag.py``
(``bench/statelag.sh``: how long a state change takes to reach another cluster node).
"""
