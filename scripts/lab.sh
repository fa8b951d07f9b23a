#!/usr/bin/env bash
# Sets up .venv (skipped when nothing changed) and runs one of the course's labs with the lab
# runner, in the foreground (Ctrl-C stops it). Usage: scripts/lab.sh [LAB] [sluice lab up options];
# default LAB is http-traffic-shifting. Labs: ls labs/
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_venv
lab="${1:-http-traffic-shifting}"
shift || true
echo "lab: sluice lab up $lab $*"
exec .venv/bin/sluice lab up "$lab" "$@"
