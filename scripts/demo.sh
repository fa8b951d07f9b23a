#!/usr/bin/env bash
# Sets up .venv (once) and runs the course's traffic-shifting lab config, unmodified, through
# Sluice: three demoapp v1.0 and two v1.1 upstreams on loopback, the front proxy on
# 127.31.55.10:80 (admin :9901), names resolved through a lab hosts file. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q -e . >/dev/null
exec .venv/bin/python examples/traffic-shifting/run.py "$@"
