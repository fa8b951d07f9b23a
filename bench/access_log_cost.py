#!/usr/bin/env python3
"""What an access log costs per request: the access-log lab's front config
(``labs/access-log/front-envoy.yaml.2``, its JSON logger) against the same config with no
logger, both through the in-process hot-path harness (``hotpath.py``: Python CPU per proxied
request, no sockets). The runs alternate (logger, none, logger, ...) so drift hits both.

    python bench/access_log_cost.py [--rounds 3] [--requests 20000]

Target (issue 11): the JSON logger adds at most 10 % CPU per request. The logger writes to a
temporary file (the lab writes to /dev/stdout), through the same buffered flush thread.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SEED = HERE.parent / "labs" / "access-log" / "front-envoy.yaml.2"


def configs(tmp: Path) -> tuple[Path, Path]:
    cfg = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for entry in hcm["access_log"]:
        entry["typed_config"]["path"] = str(tmp / "access.log")
    with_log = tmp / "with_log.yaml"
    with_log.write_text(yaml.safe_dump(cfg, sort_keys=False))
    del hcm["access_log"]
    without = tmp / "without_log.yaml"
    without.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return with_log, without


def measure(config: Path, requests: int) -> float:
    out = subprocess.run(
        [sys.executable, str(HERE / "hotpath.py"), "--config", str(config), "--requests", str(requests), "--repeat", "3"],
        check=True, capture_output=True, text=True, timeout=600,
    ).stdout  # fmt: skip
    m = re.search(r"median ([0-9.]+) us", out)
    if m is None:
        raise SystemExit(f"hotpath.py said: {out}")
    return float(m.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=20000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-alog-bench-") as d:
        with_log, without = configs(Path(d))
        logged, plain = [], []
        for _ in range(args.rounds):
            logged.append(measure(with_log, args.requests))
            plain.append(measure(without, args.requests))
        lines = (Path(d) / "access.log").read_text(encoding="utf-8").count("\n")
    a, b = statistics.median(logged), statistics.median(plain)
    print(f"JSON access log on : {a:.1f} us/request (rounds {', '.join(f'{x:.1f}' for x in logged)})")
    print(f"no access log      : {b:.1f} us/request (rounds {', '.join(f'{x:.1f}' for x in plain)})")
    print(f"cost of the logger : {a - b:+.1f} us/request, ratio {a / b:.3f} (target <= 1.10); {lines} lines written")


if __name__ == "__main__":
    main()
