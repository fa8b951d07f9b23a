#!/usr/bin/env bash
# Sets up .venv (skipped when nothing changed) and runs lint + the whole test suite.
# Usage: scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_venv test
# Browser tests (the Grafana stand-in's dashboard page) drive Debian's Chromium headless; the
# dashboard's own arithmetic (core.js) is unit-tested under Node.js.
ensure_apt_package /usr/bin/chromium chromium "the browser tests"
ensure_apt_package /usr/bin/chromedriver chromium-driver "the browser tests"
ensure_apt_package /usr/share/fonts/truetype/liberation fonts-liberation "the browser tests (a font to draw text with)"
ensure_apt_package /usr/bin/curl curl "the HTTP/2 tests"
ensure_apt_package /usr/bin/h2load nghttp2-client "the HTTP/2 tests and benchmark"
ensure_apt_package /usr/bin/openssl openssl "the TLS tests"
command -v node >/dev/null 2>&1 || ensure_apt_package /usr/bin/node nodejs "the dashboard script's unit tests"
ensure_prometheus  # the lab tests run the real Prometheus
echo "test: ruff check sluice tests"
.venv/bin/python -m ruff check -q sluice tests
echo "test: mypy --strict sluice"
.venv/bin/python -m mypy
echo "test: pytest"
exec .venv/bin/python -m pytest -q "$@"
