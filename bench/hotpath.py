#!/usr/bin/env python3
"""In-process hot-path harness: drives Sluice's request path with fake transports (no sockets,
no syscalls, no wrk), so the *Python* cost of one proxied request can be measured, profiled
and compared between code versions far more steadily than with the load benchmark.

It builds a real ``Server`` from the same localized traffic-shifting config that
``run_bench.py`` uses, plugs one fake downstream connection into the listener and one fake,
already connected upstream connection into each host pool, then repeats: feed a
``GET /hostname`` (as wrk sends it) to the downstream connection, feed nginx's response to the
upstream connection. The event loop (uvloop) runs every 8 requests, as it would between reads.

    python bench/hotpath.py                 # µs of Python CPU per request (process_time)
    python bench/hotpath.py --profile       # + cProfile, top functions by own time
    python bench/hotpath.py --cycles        # GC-tracked objects per request left in cycles

Uses Sluice internals (Server._connection, HostPool.idle, UpstreamConnection): update it if
those change. Numbers exclude the kernel (send/recv) and uvloop's I/O work.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench  # noqa: E402

REQ = b"GET /hostname HTTP/1.1\r\nHost: 127.0.0.1:10000\r\n\r\n"
RESP = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 24 Nov 2026 21:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 14\r\nConnection: keep-alive\r\n\r\nServerName: x\n"
)

COLLECTOR_RESP = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"


class FakeTransport:
    def __init__(self, sink: list[bytes], peer: tuple[str, int]) -> None:
        self.sink = sink
        self.peer = peer

    def write(self, data: bytes) -> None:
        self.sink.append(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 10000)}.get(name, default)

    def close(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


async def harness(config: str | None) -> Callable[[int], Awaitable[None]]:
    """A server built from ``config`` (default: the traffic-shifting lab's front proxy) with
    fake connections plugged in, and ``run(n)``: n requests through it."""
    from sluice.cli import settle_heap
    from sluice.config.loader import validate
    from sluice.server import Server
    from sluice.upstream.conn_pool import UpstreamConnection

    tmp = Path(tempfile.mkdtemp(prefix="sluice-hotpath-"))
    seed = Path(config) if config else run_bench.repo_root() / "labs/http-traffic-shifting/front-envoy.yaml"
    cfg = run_bench.localize_config(seed, listen_port=10000, admin_port=10001, upstream_port=9, tmp=tmp, for_envoy=False)
    path = tmp / "sluice.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        bootstrap, unsupported = validate(str(path))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if unsupported:
        raise SystemExit(f"unsupported: {unsupported}")
    server = Server(bootstrap)
    await server.cluster_manager.initialize()
    for lst in server.listeners:  # as Server.start does before it listens
        if hasattr(lst.hcm, "bind_loop"):
            lst.hcm.bind_loop(asyncio.get_running_loop())
    down_out: list[bytes] = []
    up_out: list[bytes] = []
    dconn = server._connection(server.listeners[0])
    dconn.connection_made(FakeTransport(down_out, ("127.0.0.1", 40000)))
    upconns = []
    collectors = []
    # A tracing provider's collector cluster gets its own fake connection, answered 202.
    collector_names = {d.reporter.cluster_name for d in server.tracers.values()}
    for cluster in server.cluster_manager.clusters.values():
        for host in cluster.hosts:
            pool = cluster.pool_for(host)
            uc = UpstreamConnection(pool)
            uc.connection_made(FakeTransport(up_out, (host.ip, host.port)))
            pool.idle.append(uc)
            (collectors if cluster.name in collector_names else upconns).append(uc)

    async def run(n: int) -> None:
        for i in range(n):
            if i % 8 == 0:
                await asyncio.sleep(0)
            for c in collectors:
                if c.handler is not None:  # (a batch of spans was POSTed)
                    c.data_received(COLLECTOR_RESP)
            dconn.data_received(REQ)
            uc = next(c for c in upconns if c.handler is not None)
            up_out.clear()
            uc.data_received(RESP)
            # Downstream writes are coalesced and sent by a call_soon flush; the loop runs that
            # callback only every 8 requests here, so flush now to check the response. The
            # scheduled callback still runs (as a no-op), so its cost stays in the figure.
            dconn.flush()
            if not down_out:
                raise SystemExit("no response written downstream: harness out of date?")
            down_out.clear()

    settle_heap()  # as `sluice run` does once the server is up
    return run


async def main_async(args: argparse.Namespace) -> None:
    run = await harness(args.config)
    await run(2000)  # warm up
    if args.cycles:
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        await run(1000)
        gc.collect()
        kinds = Counter(type(o).__name__ for o in gc.garbage)
        print(f"objects left in reference cycles: {len(gc.garbage) / 1000:.1f} per request")
        for name, n in kinds.most_common(10):
            print(f"  {n / 1000:5.1f}  {name}")
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    per_req = []
    for _ in range(args.repeat):
        t0 = time.process_time()
        await run(args.requests)
        per_req.append((time.process_time() - t0) / args.requests * 1e6)
    runs = ", ".join(f"{x:.2f}" for x in per_req)
    per_req.sort()
    print(
        f"Python CPU per request: min {per_req[0]:.1f} us, median {per_req[len(per_req) // 2]:.1f} us "
        f"({args.repeat} x {args.requests} requests)"
    )
    print(f"runs (us per request, in order): {runs}")
    if args.profile:
        pr = cProfile.Profile()
        pr.enable()
        await run(args.requests)
        pr.disable()
        st = pstats.Stats(pr)
        print(f"function calls per request: {st.total_calls / args.requests:.0f}")
        out = io.StringIO()
        pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
        if args.callers:
            out = io.StringIO()
            pstats.Stats(pr, stream=out).print_callers(args.callers)
            print(out.getvalue())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--callers", default=None, help="with --profile: print the callers of the functions matching this regex")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--cycles", action="store_true")
    p.add_argument("--config", default=None)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.run(main_async(args))
    except ImportError:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
