#!/usr/bin/env bash
# Where sipdispatch's CPU goes at a fixed rate, by perf: one bench run of sipdispatch
# alone (bench/run.sh --only sipdispatch), its proxy process sampled by `perf record`
# for a while in the middle of the run, then the share of each library and of the
# kernel, allocation and lookups, and the kernel's send/receive/sleep paths
# (bench/perfsplit.py).
#
#   bench/perf.sh              # 500 calls/s, 20 s sampled
#   bench/perf.sh 1000 30      # calls/s, seconds sampled
#   KEEP=/tmp/p bench/perf.sh  # keep perf.data and the bench log in /tmp/p
#
# Needs perf (Debian: apt-get install linux-perf), sipp and ./.venv, and root or
# kernel.perf_event_paranoid <= 1 to see the kernel's part.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rate=${1:-500}
seconds=${2:-20}
out=${KEEP:-$(mktemp -d)}
mkdir -p "$out"
bench=""
cleanup() {
  if [ -n "$bench" ]; then kill "$bench" 2>/dev/null || true; wait "$bench" 2>/dev/null || true; fi
  if [ -z "${KEEP:-}" ]; then rm -rf "$out"; fi
}
trap cleanup EXIT
calls=$((rate * (seconds + 20)))
"$here/run.sh" --only sipdispatch --repeat 1 --rate "$rate" --calls "$calls" --settle 0 \
  --no-capture >"$out/bench.log" 2>&1 &
bench=$!
pid=""
for _ in $(seq 1 120); do
  pid=$(pgrep -n -f -- "-m sipdispatch run" || true)
  [ -n "$pid" ] && grep -q "fixed rate" "$out/bench.log" && break
  sleep 0.5
done
[ -n "$pid" ] || { echo "perf.sh: the bench's proxy did not start (see $out/bench.log)" >&2; exit 1; }
sleep 8  # past the start of the calls
perf record -q -F 1999 -g -p "$pid" -o "$out/perf.data" -- sleep "$seconds" >/dev/null 2>&1
wait "$bench"
bench=""
grep "us/call" "$out/bench.log" || true
py=${PYTHON:-$here/../.venv/bin/python}
perf report -i "$out/perf.data" --no-children --sort dso,sym -g none 2>/dev/null | "$py" "$here/perfsplit.py"
perf report -i "$out/perf.data" --children --sort sym -g none 2>/dev/null | "$py" "$here/perfsplit.py" --paths
