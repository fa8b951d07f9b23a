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
# A lab that runs prom/prometheus needs the real one (Debian's package).
dir="$lab"; [ -d "$dir" ] || dir="labs/$lab"
if grep -qsE '^\s*image:\s*"?prom/prometheus' "$dir"/*compose*.y*ml; then
  ensure_prometheus
fi
echo "lab: sluice lab up $lab $*"
exec .venv/bin/sluice lab up "$lab" "$@"
