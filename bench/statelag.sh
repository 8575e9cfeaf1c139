#!/usr/bin/env bash
# Time for a destination state change on one cluster node to show on the other
# (bench/statelag.py has the method; --help lists the options). Needs ./.venv and a
# Redis server (127.0.0.1:6379 by default).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "${PYTHON:-$here/../.venv/bin/python}" "$here/statelag.py" "$@"
