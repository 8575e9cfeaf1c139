#!/usr/bin/env bash
# Set up (first time) and run sipdispatch in the foreground.
#   ./run.sh                         # reads ./sipdispatch.toml, else built-in defaults
#   ./run.sh --config my.toml        # any `sipdispatch run` option
# Other sipdispatch commands: .venv/bin/sipdispatch --help
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/sipdispatch ] || [ pyproject.toml -nt .venv/.installed ] \
  || [ -n "$(find setup.py src/sipdispatch/sip src/sipdispatch/dispatcher \
        src/sipdispatch/transport src/sipdispatch/routing.py src/sipdispatch/health -name '*.py' -newer .venv/.installed -print -quit)" ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[mysql,postgresql]'
  touch .venv/.installed
fi
exec .venv/bin/sipdispatch run "$@"
