#!/usr/bin/env bash
# Set up (first time) and run sipdispatch in the foreground.
#   ./run.sh                         # reads ./sipdispatch.toml, else built-in defaults
#   ./run.sh --config my.toml        # any `sipdispatch run` option
# Other sipdispatch commands: .venv/bin/sipdispatch --help
set -euo pipefail
cd "$(dirname "$0")"
scripts/venv.sh   # installs into ./.venv the first time (shared with ./test.sh)
exec .venv/bin/sipdispatch run "$@"
