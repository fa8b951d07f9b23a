#!/usr/bin/env bash
# Sets up .venv (once) and runs one of the course's labs with the lab runner, in the foreground
# (Ctrl-C stops it). Usage: scripts/lab.sh [LAB] [sluice lab up options]; default LAB is
# http-traffic-shifting. Labs: ls labs/
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q -e . >/dev/null
lab="${1:-http-traffic-shifting}"
shift || true
exec .venv/bin/sluice lab up "$lab" "$@"
