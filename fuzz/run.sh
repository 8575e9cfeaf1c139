#!/usr/bin/env bash
# Fuzz the SIP parser and the proxy core with atheris (coverage-guided, libFuzzer).
#
#   fuzz/run.sh                  # 1 000 000 inputs from the seed corpus, one process
#   fuzz/run.sh -runs=20000      # libFuzzer options replace the defaults
#
# Needs ./.venv with atheris (./test.sh installs the test extras, atheris among them).
# The corpus grows in fuzz/corpus (FUZZ_CORPUS chooses another folder; not committed);
# a crash is written to fuzz/crash-* and reproduced with: fuzz/run.sh fuzz/crash-<hash>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
py=${PYTHON:-$repo/.venv/bin/python}
pure=$(mktemp -d)
trap 'rm -rf "$pure"' EXIT
# The pure-Python build: compiled modules are opaque to coverage.
cp -r "$repo/src/sipdispatch" "$pure/"
find "$pure" \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
corpus=${FUZZ_CORPUS:-$here/corpus}
mkdir -p "$corpus"
PYTHONPATH="$pure" "$py" "$here/seed_corpus.py" "$corpus" >/dev/null
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  args=(-runs=1000000 -seed=1 -max_len=8192 -rss_limit_mb=2048)
fi
inputs=("$corpus")
for a in "${args[@]}"; do
  [ -f "$a" ] && inputs=()  # reproducing a file: run it, do not fuzz
done
cd "$here"
PYTHONPATH="$pure:$repo" exec "$py" "$here/sip_core.py" -artifact_prefix="${FUZZ_ARTIFACTS:-$here/}" "${args[@]}" "${inputs[@]}"
