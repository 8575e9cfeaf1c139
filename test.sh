#!/usr/bin/env bash
# Set up (first time) and run every check: ruff, mypy, the import layers
# (import-linter, contracts in pyproject.toml) and the whole pytest suite
# (unit, property, store round trips against MariaDB/PostgreSQL/SQLite, and
# loopback integration with sipp). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
# The independent peers: sipp (sip-tester), Kamailio with its TLS module, dnsmasq, promtool;
# Chromium for the web console's browser tests (Playwright drives Debian's build).
packages=()
command -v sipp >/dev/null 2>&1 || packages+=(sip-tester)
[ -x /usr/bin/chromium ] || packages+=(chromium)
[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so ] || packages+=(kamailio kamailio-tls-modules)
# dnsmasq serves the NAPTR/SRV/A records of the DNS tests; each test starts its own on a
# free loopback port. dnsmasq-base is the binary alone: no system service is installed
# or started (the dnsmasq package would start one on port 53).
[ -x /usr/sbin/dnsmasq ] || packages+=(dnsmasq-base)
# sngrep reads the proxy's HEP copies as an independent collector; tshark reads the pcap
# it writes.
command -v sngrep >/dev/null 2>&1 || packages+=(sngrep)
command -v tshark >/dev/null 2>&1 || packages+=(tshark)
# promtool (Debian ships it in the prometheus package) checks and unit-tests the alert rules
# of examples/prometheus; the tests run no Prometheus server.
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
# redis-sentinel: the cluster's Sentinel tests start three private sentinels (the tests
# start their own redis-server too; the machine's Redis on 6379 serves the others).
command -v redis-sentinel >/dev/null 2>&1 || packages+=(redis-sentinel)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}") >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}") >/dev/null
  else
    echo "test.sh: missing Debian packages: ${packages[*]}" >&2
    exit 1
  fi
fi
scripts/venv.sh   # installs into ./.venv the first time (shared with ./run.sh)
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
.venv/bin/mypy src
.venv/bin/lint-imports --no-cache --no-logo
exec .venv/bin/pytest "$@"
