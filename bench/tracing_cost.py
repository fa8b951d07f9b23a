"""What tracing costs per request (issue 12): the zipkin lab's front config
(``labs/zipkin-tracing/front_envoy/envoy-config.yaml``: the Zipkin tracer, every request
sampled, a CLIENT span per request posted in batches of 5 to the collector) against the same
config with its ``tracing`` block removed, measured as ``access_log_cost.py`` measures a logger:

    python bench/tracing_cost.py [--rounds 40] [--batch 2000]     # in-process, Python CPU
    python bench/tracing_cost.py --instructions                   # callgrind, deterministic
    python bench/tracing_cost.py --wire [--wire-rounds 6] [--envoy]   # two processes under wrk

In-process (``hotpath.py``) the collector's connection is a fake one answered 202; on the wire
the collector is the same nginx as the upstream (``/api/v2/spans`` answers 202), so the POSTs'
cost — serialising, sending, reading the answer — is in the figure. The wire mode also runs the
real Envoy on both configs, for its own ratio beside Sluice's.

Target (issue 12): 100 % sampling adds at most 15 % CPU per request.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import access_log_cost  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED = HERE.parent / "labs" / "zipkin-tracing" / "front_envoy" / "envoy-config.yaml"
NAMES = ("tracing", "no-tracing")


def configs(tmp: Path) -> tuple[Path, Path]:
    cfg = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    traced = tmp / "tracing.yaml"
    traced.write_text(yaml.safe_dump(cfg, sort_keys=False))
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    del hcm["tracing"]
    plain = tmp / "no_tracing.yaml"
    plain.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return traced, plain


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--wire", action="store_true")
    p.add_argument("--wire-rounds", type=int, default=6)
    p.add_argument("--instructions", action="store_true")
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--envoy", action="store_true", help="--wire: also the real Envoy on both configs, for its own ratio")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-tracing-bench-") as d:
        traced, plain = configs(Path(d))
        if args.wire:
            access_log_cost.wire(traced, plain, Path(d), args.wire_rounds, args.duration, NAMES, "100 % sampling", 1.15)
            if args.envoy:
                access_log_cost.wire(traced, plain, Path(d), args.wire_rounds, args.duration, NAMES, "100 % sampling", 1.15, envoy=True)
            return
        if args.instructions:
            access_log_cost.instructions(traced, plain, Path(d), NAMES, "100 % sampling", 1.15)
            return
        on, off = access_log_cost.harness_pair(traced, plain, args.rounds, args.batch)
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    q = statistics.quantiles(ratios, n=4)
    print(f"tracing on : median {statistics.median(on):.1f} us/request, fastest batch {min(on):.1f}")
    print(f"tracing off: median {statistics.median(off):.1f} us/request, fastest batch {min(off):.1f}")
    print(f"cost of 100 % sampling: ratio {statistics.median(ratios):.3f} (median of {len(ratios)} rounds; "
          f"quartiles {q[0]:.3f}-{q[2]:.3f}), fastest batches {min(on) / min(off):.3f} (target <= 1.15)")  # fmt: skip


if __name__ == "__main__":
    main()
