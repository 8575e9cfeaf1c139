#!/usr/bin/env bash
# One hour of calls through sipdispatch with a gateway killed every five minutes, a
# reload every minute and a database outage during one of them (bench/soak.py has the
# whole story; --help lists the options). Needs sipp, ./.venv and the PostgreSQL
# server on 127.0.0.1:5432 (db test; SOAK_POSTGRESQL_URL to use another).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "${PYTHON:-$here/../.venv/bin/python}" "$here/soak.py" "$@"
