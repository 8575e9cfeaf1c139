#!/usr/bin/env bash
# The one install step of ./run.sh and ./test.sh: create ./.venv and install sipdispatch
# into it, editable, with the database drivers and the test tools, compiling its core with
# mypyc (setup.py). Both scripts share it and its stamp, .venv/.installed: whichever runs
# first installs, the other finds it done. It installs again only when pyproject.toml,
# setup.py or a compiled source (sip/, dispatcher/, transport/, routing.py, health/) is
# newer than the stamp.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.installed
if [ ! -x .venv/bin/sipdispatch ] || [ ! -x .venv/bin/pytest ] || [ ! -e "$stamp" ] \
  || [ pyproject.toml -nt "$stamp" ] \
  || [ -n "$(find setup.py src/sipdispatch/sip src/sipdispatch/dispatcher \
        src/sipdispatch/transport src/sipdispatch/routing.py src/sipdispatch/health \
        -name '*.py' -newer "$stamp" -print -quit)" ]; then
  echo "installing sipdispatch into ./.venv (compiling its core: a minute or two)..." >&2
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
