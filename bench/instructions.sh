#!/usr/bin/env bash
# Instructions per call of the proxy core, counted by valgrind (a figure machine load
# does not move): bench/corecost.py's calls (2 000 warm-up + N) under callgrind, counting
# only inside ProxyCore.receive and ProxyCore.handle_timer, so that the driver's own
# message building is left out.
#
#   bench/instructions.sh            # N = 3000
#   bench/instructions.sh 10000
#   bench/instructions.sh 3000 --call-log all     # more corecost.py options after N
#
# Needs valgrind (Debian: apt-get install valgrind) and ./.venv (./run.sh or ./test.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
calls=${1:-3000}
shift || true
py=${PYTHON:-$here/../.venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  --toggle-collect='CPyPy_proxy___ProxyCore___receive' \
  --toggle-collect='CPyPy_proxy___ProxyCore___handle_timer' \
  "$py" "$here/corecost.py" --calls "$calls" --rounds 1 "$@" >"$out/log" 2>&1
total=$(sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' "$out/log" | tail -1)
if [ -z "$total" ]; then
  total=$(grep -E '^(summary|totals):' "$out/cg.out" | tail -1 | awk '{print $2}')
fi
echo "core instructions per call: $((total / (calls + 2000))) ($total over $((calls + 2000)) calls)"
