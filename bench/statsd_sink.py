#!/usr/bin/env python3
"""What a StatsD sink costs Sluice, on the traffic-shifting config (not a test; see README.md).

1. **CPU per request, in process** (the ``hotpath.py`` harness: fake downstream/upstream
   transports, no wrk): the seed config as it is, then with a StatsD sink added - UDP
   (``address``) and TCP (``tcp_cluster_name`` → a cluster on a discarding receiver). The sink's
   sockets are real (loopback, to a receiver in a child process), so each histogram sample's
   ``sendto``/``send`` is in the figure. Target: <= 5 % more than without a sink.
2. **CPU per request under load** (``--load``): two Sluice processes (without / with the TCP
   sink) behind wrk and nginx as ``run_bench.py`` runs them, interleaved rounds, median.
3. **One flush with 10 000 stats**: the server's ``flush_stats()`` (server gauges, histogram
   merge, snapshot with counter latching, lines, the write) with the store grown to 10 000 used
   counters and gauges. Target: <= 20 ms.

Loopback only; every run is bounded (fixed request counts, fixed wrk durations).

    python bench/statsd_sink.py                       # 1 and 3
    python bench/statsd_sink.py --load --rounds 3     # 1, 2 and 3
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hotpath  # noqa: E402
import run_bench  # noqa: E402

SEED = run_bench.repo_root() / "labs/http-traffic-shifting/front-envoy.yaml"
TARGET_CPU_RATIO = 1.05
TARGET_FLUSH_MS = 20.0

RECEIVER = textwrap.dedent(
    """
    import selectors, socket, sys
    tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", 0)); tcp.listen(16)
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", port))
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    print(port, flush=True)
    sel = selectors.DefaultSelector()
    sel.register(tcp, selectors.EVENT_READ, "accept"); sel.register(udp, selectors.EVENT_READ, "udp")
    while True:
        for key, _ in sel.select(1.0):
            if key.data == "accept":
                c, _ = tcp.accept(); sel.register(c, selectors.EVENT_READ, "tcp")
            elif key.data == "udp":
                udp.recv(65536)
            elif not key.fileobj.recv(1 << 20):
                sel.unregister(key.fileobj); key.fileobj.close()
    """
)


class Receiver:
    """A StatsD receiver in a child process that reads and discards (TCP and UDP, one port)."""

    def __enter__(self) -> Receiver:
        self.proc = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        run_bench.stop_process(self.proc)


def with_sink(cfg: dict[str, Any], kind: str, port: int, interval: str = "5s") -> dict[str, Any]:
    """The localized config plus one StatsD sink (``kind`` "udp" or "tcp") on ``port``."""
    if kind == "none":
        return cfg
    cfg = yaml.safe_load(yaml.safe_dump(cfg))
    cfg["node"] = {"id": "front-envoy", "cluster": "mycluster"}  # a TCP sink needs both
    cfg["stats_flush_interval"] = interval
    sink: dict[str, Any] = {"@type": "type.googleapis.com/envoy.config.metrics.v3.StatsdSink", "prefix": "front-envoy"}
    if kind == "udp":
        sink["address"] = {"socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": port}}
    else:
        sink["tcp_cluster_name"] = "statsd_exporter"
        cfg["static_resources"]["clusters"].append({
            "name": "statsd_exporter", "connect_timeout": "0.25s", "type": "STATIC",
            "load_assignment": {"cluster_name": "statsd_exporter", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
        })  # fmt: skip
    cfg["stats_sinks"] = [{"name": "envoy.stat_sinks.statsd", "typed_config": sink}]
    return cfg


def base_config(tmp: Path, upstream_port: int = 9, listen_port: int = 10000, admin_port: int = 10001) -> dict[str, Any]:
    return run_bench.localize_config(
        SEED, listen_port=listen_port, admin_port=admin_port, upstream_port=upstream_port, tmp=tmp, for_envoy=False
    )


async def build_server(cfg: dict[str, Any], tmp: Path) -> Any:
    from sluice.config.loader import validate
    from sluice.server import Server

    path = tmp / "sluice.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    bootstrap, unsupported = validate(str(path))
    if unsupported:
        raise SystemExit(f"unsupported: {unsupported}")
    server = Server(bootstrap)
    await server.cluster_manager.initialize()
    server.state = "LIVE"
    return server


# -- 1: CPU per request, in process -------------------------------------------------------------
async def request_driver(kind: str, port: int) -> tuple[Any, Any]:
    """A server for ``kind`` and ``run(n)``: n requests through hotpath.py's fake transports."""
    from sluice.upstream.conn_pool import UpstreamConnection

    tmp = Path(tempfile.mkdtemp(prefix="sluice-statsd-bench-"))
    try:
        server = await build_server(with_sink(base_config(tmp), kind, port), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    down_out: list[bytes] = []
    up_out: list[bytes] = []
    dconn = server._connection(server.listeners[0])
    dconn.connection_made(hotpath.FakeTransport(down_out, ("127.0.0.1", 40000)))
    upconns = []
    for name, cluster in server.cluster_manager.clusters.items():
        if name == "statsd_exporter":
            continue
        for host in cluster.hosts:
            pool = cluster.pool_for(host)
            uc = UpstreamConnection(pool)
            uc.connection_made(hotpath.FakeTransport(up_out, (host.ip, host.port)))
            pool.idle.append(uc)
            upconns.append(uc)

    async def run(n: int) -> None:
        for i in range(n):
            if i % 8 == 0:
                await asyncio.sleep(0)
            dconn.data_received(hotpath.REQ)
            uc = next(c for c in upconns if c.handler is not None)
            up_out.clear()
            uc.data_received(hotpath.RESP)
            dconn.flush()
            if not down_out:
                raise SystemExit("no response written downstream: harness out of date?")
            down_out.clear()

    return server, run


async def cpu_per_request(kinds: list[str], port: int, requests: int, repeat: int) -> dict[str, list[float]]:
    """µs of process CPU (user + system) per request per kind, the kinds' runs interleaved (so
    other load on the machine hits them alike)."""
    drivers = {kind: await request_driver(kind, port) for kind in kinds}
    for _, run in drivers.values():
        await run(2000)  # warm up (and, with a TCP sink, connect)
    await asyncio.sleep(0.1)
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    for r in range(repeat):
        for kind in kinds if r % 2 == 0 else reversed(kinds):
            run = drivers[kind][1]
            t0 = time.process_time()
            await run(requests)
            samples[kind].append((time.process_time() - t0) / requests * 1e6)
            await asyncio.sleep(0.01)
    for server, _ in drivers.values():
        for sink in server.sinks:
            await sink.close(1.0)
    return samples


# -- 1b: the sink's own work per request, isolated ---------------------------------------------
async def sink_path_cost(port: int, samples_per_request: int, rps: float, n: int = 100_000) -> dict[str, float]:
    """µs per request the TCP sink adds, from its parts (steadier than two load runs on a
    shared machine): a sinked ``record`` minus a plain one, times the samples of a request;
    the hand-over and formatting per sample; one ``send`` per fanout window, spread over the
    requests of that window at ``rps``."""
    from sluice.stats.sinks.fanout import SAMPLE_WINDOW_S
    from sluice.stats.sinks.statsd import TcpStatsdSink
    from sluice.stats.store import Counter, Store

    def per_call(fn: Any, reps: int = 5) -> float:
        best = float("inf")
        for _ in range(reps):
            t0 = time.process_time()
            fn()
            best = min(best, (time.process_time() - t0) / n * 1e6)
        return best

    plain = Store().histogram("cluster.demoappv10.upstream_rq_time")
    store = Store()
    sinked = store.histogram("cluster.demoappv10.upstream_rq_time")
    queue: list[tuple[str, int]] = []
    store.set_histogram_sink(queue, lambda: None)  # as HistogramFanout.attach; drained by hand here
    t_plain = per_call(lambda: [plain.record(3.2) for _ in range(n)])
    t_sinked = per_call(lambda: ([sinked.record(3.2) for _ in range(n)], queue.clear()))
    sink = TcpStatsdSink("front-envoy", lambda: ("127.0.0.1", port), 0.25, Counter("tx"), Counter("overflow"))
    sink.on_histograms([("warm", 1)])
    await asyncio.sleep(0.2)  # connected
    batch = [("cluster.demoappv10.upstream_rq_time", 3)] * max(1, int(rps * SAMPLE_WINDOW_S * samples_per_request))
    transport = sink._transport
    assert transport is not None
    writes = 200
    spent = 0.0
    for _ in range(writes):
        t0 = time.process_time()
        sink.on_histograms(batch)  # the lines, the join, the send syscall
        spent += time.process_time() - t0
        await asyncio.sleep(0.002)  # let the receiver drain it (not the sink's work)
    t_window = spent / writes * 1e6
    await sink.close(1.0)
    requests_per_window = len(batch) / samples_per_request
    return {
        "record_extra_us": (t_sinked - t_plain) * samples_per_request,
        "window_us_per_request": t_window / requests_per_window,
        "total_us_per_request": (t_sinked - t_plain) * samples_per_request + t_window / requests_per_window,
    }


# -- 3: one flush with 10 000 stats ------------------------------------------------------------
async def flush_time(kind: str, port: int, n_stats: int, flushes: int) -> tuple[float, float, int]:
    """(median ms, max ms, stats per flush) of ``Server.flush_stats()``."""
    tmp = Path(tempfile.mkdtemp(prefix="sluice-statsd-bench-"))
    try:
        server = await build_server(with_sink(base_config(tmp), kind, port), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    store = server.store
    have = sum(1 for c in store.counters.values() if c.used) + sum(1 for g in store.gauges.values() if g.used)
    extra = max(0, n_stats - have)
    counters = [store.counter(f"cluster.bench_{i // 100}.upstream_rq_{i % 100}") for i in range(extra * 7 // 10)]
    gauges = [store.gauge(f"cluster.bench_{i // 100}.membership_{i % 100}") for i in range(extra - len(counters))]
    for c in counters:
        c.inc()
    for g in gauges:
        g.set(1)
    used = sum(1 for c in store.counters.values() if c.used) + sum(1 for g in store.gauges.values() if g.used)
    server.flush_stats()  # connects a TCP sink; the first flush's bytes wait in its buffer
    await asyncio.sleep(0.2)
    times = []
    for k in range(flushes):
        for c in counters[k % 7 :: 7]:
            c.inc()
        t0 = time.perf_counter()
        server.flush_stats()
        times.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.02)  # let the loop send it, as between two real flushes
    for sink in server.sinks:
        await sink.close(1.0)
    return statistics.median(times), max(times), used


# -- 2: under load ---------------------------------------------------------------------------------
def load_rounds(args: argparse.Namespace, receiver_port: int) -> dict[str, float]:
    missing = [b for b in ("wrk", "nginx", "taskset") if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        raise SystemExit(f"--load needs {', '.join(missing)}")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proxy_cpu, load_cpu = run_bench.choose_cpus(argparse.Namespace(no_pin=False, proxy_cpu=None, load_cpu=None))
    tmp = Path(tempfile.mkdtemp(prefix="sluice-statsd-load-"))
    upstream_port = run_bench.free_port()
    nginx_proc = None
    proxies: dict[str, run_bench.Proxy] = {}
    # Sluice without a sink, with UDP and with TCP; Envoy without a sink and with UDP (what one
    # datagram per histogram sample costs a proxy written in C++, on the same machine).
    per_kind: dict[str, list[float]] = {"none": [], "udp": [], "tcp": []}
    envoy = run_bench.find_envoy(None, sys.executable)
    if envoy is not None:
        per_kind.update({"envoy-none": [], "envoy-udp": []})
    try:
        (tmp / "nginx.conf").write_text(run_bench.NGINX_CONF.format(tmp=tmp, port=upstream_port, body=run_bench.HOSTNAME_BODY))
        nginx_proc = subprocess.Popen(
            run_bench.pinned([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "nginx-error.log")], load_cpu),
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        run_bench.wait_ready(upstream_port, nginx_proc, "nginx")
        for kind in per_kind:
            lport, aport = run_bench.free_port(), run_bench.free_port()
            is_envoy = kind.startswith("envoy-")
            sink = kind.removeprefix("envoy-")
            cfg = run_bench.localize_config(
                SEED, listen_port=lport, admin_port=aport, upstream_port=upstream_port, tmp=tmp, for_envoy=is_envoy
            )
            cfg = with_sink(cfg, sink, receiver_port)
            path = tmp / f"{kind}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            if is_envoy:
                assert envoy is not None
                cmd = [envoy, "-c", str(path), "--concurrency", "1", "-l", "warning", "--disable-hot-restart"]
            else:
                cmd = [sys.executable, "-m", "sluice", "-c", str(path), "-l", "warning"]
            proxy = run_bench.Proxy(kind, cmd, lport)
            proxy.start(proxy_cpu, tmp)
            proxies[kind] = proxy
        margs = argparse.Namespace(quiet_wait=0, warmup=args.warmup, duration=args.duration, connections=args.connections, same_core=False)
        for r in range(args.rounds):
            order = list(per_kind) if r % 2 == 0 else list(reversed(per_kind))
            for kind in order:
                res = run_bench.measure_proxy(proxies[kind], margs, proxy_cpu, load_cpu)
                per_kind[kind].append(res["cpu_us_per_req"])
                print(f"  round {r + 1} {kind:>10}: {res['cpu_us_per_req']:.1f} us/req, {res['rps']:.0f} req/s", flush=True)
    finally:
        for proxy in proxies.values():
            proxy.stop()
        run_bench.stop_process(nginx_proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return {k: statistics.median(v) for k, v in per_kind.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20000, help="requests per in-process measurement")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--stats", type=int, default=10000, help="used stats in the flush test")
    p.add_argument("--flushes", type=int, default=20)
    p.add_argument("--rps", type=float, default=5000, help="request rate assumed for the per-window send in 1b")
    p.add_argument("--load", action="store_true", help="also measure under wrk load (needs wrk, nginx)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=50)
    args = p.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    ok = True
    # As sluice.cli runs the server: start-up objects frozen, young collections every 10 000.
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    with Receiver() as rx:
        print(f"1. CPU per request in process ({args.repeat} interleaved x {args.requests} requests)")
        per_kind = runner(cpu_per_request(["none", "udp", "tcp"], rx.port, args.requests, args.repeat))
        base_min, base_med = min(per_kind["none"]), statistics.median(per_kind["none"])
        for kind, us in per_kind.items():
            lo, med = min(us), statistics.median(us)
            verdict = ""
            if kind != "none":
                passed = lo / base_min <= TARGET_CPU_RATIO
                verdict = f"  min x{lo / base_min:.3f}, median x{med / base_med:.3f}  {'PASS' if passed else 'FAIL'}"
                ok &= passed
            print(f"   sink {kind:>4}: min {lo:6.1f}, median {med:6.1f} us/request{verdict}")
        parts = runner(sink_path_cost(rx.port, 3, args.rps))
        share = parts["total_us_per_request"] / base_min
        ok &= share <= TARGET_CPU_RATIO - 1
        print(f"1b. the TCP sink's own work, 3 samples/request at {args.rps:g} req/s: "
              f"{parts['record_extra_us']:.2f} us (record) + {parts['window_us_per_request']:.2f} us (hand-over, "
              f"lines, send) = {parts['total_us_per_request']:.2f} us/request = {share * 100:.1f} % of {base_min:.1f} us  "
              f"{'PASS' if share <= TARGET_CPU_RATIO - 1 else 'FAIL'}")  # fmt: skip
        if args.load:
            print(f"2. CPU per request under load (wrk -c{args.connections}, {args.rounds} rounds x {args.duration:g}s, median)")
            res = load_rounds(args, rx.port)
            for kind in ("tcp", "udp"):
                ratio = res[kind] / res["none"]
                ok &= ratio <= TARGET_CPU_RATIO
                print(f"   sluice: no sink {res['none']:.1f} us/req, {kind} sink {res[kind]:.1f} us/req "
                      f"(+{res[kind] - res['none']:.1f}): x{ratio:.3f}  {'PASS' if ratio <= TARGET_CPU_RATIO else 'FAIL'}")  # fmt: skip
            if "envoy-none" in res:
                e0, e1 = res["envoy-none"], res["envoy-udp"]
                print(f"   envoy:  no sink {e0:.1f} us/req, udp sink {e1:.1f} us/req (+{e1 - e0:.1f}): x{e1 / e0:.3f}  "
                      f"(reference: the same datagrams cost Envoy this much)")  # fmt: skip
        print(f"3. one flush with {args.stats} stats (median / max of {args.flushes})")
        for kind in ("tcp", "udp"):
            med, worst, used = runner(flush_time(kind, rx.port, args.stats, args.flushes))
            ok &= med <= TARGET_FLUSH_MS
            print(f"   sink {kind:>4}: {med:6.2f} ms / {worst:6.2f} ms ({used} stats)  {'PASS' if med <= TARGET_FLUSH_MS else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
