#!/usr/bin/env bash
# sipdispatch against Kamailio's dispatcher on this machine: CPU per call, their
# ratio, failed calls, latency added by the proxy, max rate, bytes per call.
#
#   bench/run.sh                      # 500 calls/s x 5000 calls, 3 runs of each proxy
#   bench/run.sh --max-rate           # highest rate with zero failed calls
#   bench/run.sh --memory             # bytes per call with 10 000 calls in progress
#   bench/run.sh --all --write        # everything, appended to BENCHMARKS.md
#   bench/run.sh --help               # every option
#
# Installs nothing. Needs sipp (Debian: apt-get install sip-tester), Kamailio for the
# comparison (apt-get install kamailio; without it only sipdispatch is measured) and a
# Python that can import sipdispatch: ./.venv (made by ./run.sh) or --python PATH.
# Every process it starts is stopped on exit, Ctrl-C included (the driver, the Python
# package bench/, cleans up; bench/__init__.py lists its modules).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
if ! command -v "$py" >/dev/null 2>&1; then
  echo "bench: $py not found; install Python 3.11 or set PYTHON" >&2
  exit 2
fi
# exec: signals (Ctrl-C, SIGTERM) reach the driver directly, which stops its children.
# Run as a file, bench/__main__.py puts the repo root on the path (for the package and
# the sipp helper in tests/integration), so the current directory does not matter.
exec "$py" "$here/__main__.py" "$@"
