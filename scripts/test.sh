#!/usr/bin/env bash
# Sets up .venv (skipped when nothing changed) and runs lint + the whole test suite.
# Usage: scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_venv test
echo "test: ruff check sluice tests"
.venv/bin/python -m ruff check -q sluice tests
echo "test: pytest"
exec .venv/bin/python -m pytest -q "$@"
