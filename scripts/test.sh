#!/usr/bin/env bash
# Sets up .venv (skipped when nothing changed) and runs lint + the whole test suite.
# Usage: scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_venv test
# Browser tests (the Grafana stand-in's dashboard page) drive Debian's Chromium headless.
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "test: chromium and chromium-driver are installed"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test: installing chromium and chromium-driver for the browser tests (apt-get install chromium chromium-driver)"
  browser_log="$(mktemp)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >"$browser_log" 2>&1; then
    cat "$browser_log" >&2
    echo "test: apt-get install chromium chromium-driver failed (its output is above)" >&2
    exit 1
  fi
  rm -f "$browser_log"
else
  echo "test: chromium or chromedriver is missing and cannot be installed here: apt-get install chromium chromium-driver (as root)" >&2
fi
ensure_prometheus  # the lab tests run the real Prometheus
echo "test: ruff check sluice tests"
.venv/bin/python -m ruff check -q sluice tests
echo "test: pytest"
exec .venv/bin/python -m pytest -q "$@"
