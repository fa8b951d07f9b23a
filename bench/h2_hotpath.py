#!/usr/bin/env python3
"""In-process HTTP/2 hot-path harness: ``bench/hotpath.py`` for h2c downstream. Drives Sluice's
HTTP/2 request path with fake transports (no sockets, no h2load), so the *Python* cost of one
proxied HTTP/2 request can be measured, profiled and compared between code versions.

The setup is hotpath.py's: a real ``Server`` from the localized traffic-shifting config that
``h2_bench.py`` uses, one fake downstream connection, fake already-connected HTTP/1.1 upstream
connections (``--streams`` per host, so every concurrent stream finds one). The client side is
bytes built once, as h2load sends them: the preface and SETTINGS, then per batch ``--streams``
HEADERS frames (END_STREAM, a GET of ``/hostname``) in one read, as ``h2load -m 10`` keeps ten
streams open. The request header block is HPACK-encoded once, and again for the second
request, whose block is then all indexed references (the steady state of h2load's encoder;
the server's dynamic table does not change after that). Per batch: the HEADERS are fed, each
upstream connection that got a request is fed nginx's response, the downstream connection is
flushed, and a connection WINDOW_UPDATE gives back what the responses used (as h2load does).
The event loop (uvloop) runs once per batch, as it would between reads.

    python bench/h2_hotpath.py                 # µs of Python CPU per request (process_time)
    python bench/h2_hotpath.py --profile       # + cProfile, top functions by own time
    python bench/h2_hotpath.py --check         # parse the responses with h2 (a client) once

Uses Sluice internals (Server._connection, HostPool.idle, UpstreamConnection): update it if
those change. Numbers exclude the kernel (send/recv) and uvloop's I/O work.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hotpath  # noqa: E402  (FakeTransport, RESP)
import run_bench  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST = [(b":method", b"GET"), (b":path", b"/hostname"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:10000"),
           (b"user-agent", b"h2load nghttp2/1.52.0")]  # fmt: skip


def frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((ftype, flags)) + struct.pack(">I", sid) + payload


def client_bytes() -> tuple[bytes, bytes, bytes]:
    """The preface with SETTINGS (h2load's: 100 streams, 1 GiB - 1 windows), the first
    request's header block (indexing everything) and the steady-state block (all indexed)."""
    import hpack

    enc = hpack.Encoder()
    first = enc.encode(REQUEST)
    steady = enc.encode(REQUEST)
    settings = frame(0x4, 0, 0, struct.pack(">HI", 0x3, 100) + struct.pack(">HI", 0x4, 2**30 - 1))
    window = frame(0x8, 0, 0, struct.pack(">I", 2**30 - 1 - 65535))
    return PREFACE + settings + window, first, steady


async def main_async(args: argparse.Namespace) -> None:
    from sluice.config.loader import validate
    from sluice.server import Server
    from sluice.upstream.conn_pool import UpstreamConnection

    tmp = Path(tempfile.mkdtemp(prefix="sluice-h2hotpath-"))
    seed = Path(args.config) if args.config else run_bench.repo_root() / "labs/http-traffic-shifting/front-envoy.yaml"
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
    for lst in server.listeners:
        if hasattr(lst.hcm, "bind_loop"):
            lst.hcm.bind_loop(asyncio.get_running_loop())
    down_out: list[bytes] = []
    up_out: list[bytes] = []
    dconn = server._connection(server.listeners[0])
    dconn.connection_made(hotpath.FakeTransport(down_out, ("127.0.0.1", 40000)))
    upconns: list[Any] = []
    for cluster in server.cluster_manager.clusters.values():
        for host in cluster.hosts:
            pool = cluster.pool_for(host)
            for _ in range(args.streams):
                uc = UpstreamConnection(pool)
                uc.connection_made(hotpath.FakeTransport(up_out, (host.ip, host.port)))
                pool.idle.append(uc)
                upconns.append(uc)

    preface, first, steady = client_bytes()
    sid = 1
    checker = None
    if args.check:
        import h2.config
        import h2.connection

        checker = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        checker.initiate_connection()
        checker.data_to_send()
    received = 0

    def batch(n_streams: int, block: bytes | None = None) -> None:
        nonlocal sid, received
        reqs = []
        for _ in range(n_streams):
            reqs.append(frame(0x1, 0x5, sid, block if block is not None else steady))  # END_STREAM|END_HEADERS
            if checker is not None:
                checker.send_headers(sid, REQUEST, end_stream=True)  # (so it knows the stream)
            sid += 2
        dconn.data_received(b"".join(reqs))
        for uc in upconns:
            if uc.handler is not None:
                uc.data_received(hotpath.RESP)
        up_out.clear()
        dconn.flush()
        if not down_out:
            raise SystemExit("no response written downstream: harness out of date?")
        out = b"".join(down_out)
        down_out.clear()
        if checker is not None:
            for ev in checker.receive_data(out):
                name = type(ev).__name__
                if name == "ResponseReceived":
                    status = dict(ev.headers)[b":status"]
                    if status != b"200":
                        raise SystemExit(f"stream {ev.stream_id}: status {status!r}")
                    received += 1
                elif name in ("StreamReset", "ConnectionTerminated"):
                    raise SystemExit(f"unexpected {ev}")
            checker.data_to_send()
        # The client gives the connection window back (h2load's nghttp2 does, per DATA read).
        dconn.data_received(frame(0x8, 0, 0, struct.pack(">I", 14 * n_streams)))

    dconn.data_received(preface)
    dconn.flush()
    down_out.clear()
    dconn.data_received(frame(0x4, 0x1, 0, b""))  # (the ACK of the server's SETTINGS)
    batch(1, first)

    async def run(n: int) -> None:
        for _ in range(n // args.streams):
            await asyncio.sleep(0)
            batch(args.streams)

    await run(2000)  # warm up
    if checker is not None:
        print(f"check: {received} responses, all 200")
        checker = None
    per_req = []
    for _ in range(args.repeat):
        t0 = time.process_time()
        await run(args.requests)
        per_req.append((time.process_time() - t0) / args.requests * 1e6)
    per_req.sort()
    print(
        f"Python CPU per HTTP/2 request: min {per_req[0]:.1f} us, median {per_req[len(per_req) // 2]:.1f} us "
        f"({args.repeat} x {args.requests} requests, {args.streams} streams per read)"
    )
    if args.profile:
        pr = cProfile.Profile()
        pr.enable()
        await run(args.requests)
        pr.disable()
        st = pstats.Stats(pr)
        print(f"function calls per request: {st.total_calls / args.requests:.0f}")
        out = io.StringIO()
        pstats.Stats(pr, stream=out).sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue())
        if args.callers:
            out = io.StringIO()
            pstats.Stats(pr, stream=out).print_callers(args.callers)
            print(out.getvalue())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--streams", type=int, default=10, help="concurrent streams per read (h2load -m)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--sort", default="tottime", help="with --profile: pstats sort key (tottime, cumulative)")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--callers", default=None, help="with --profile: print the callers of the functions matching this regex")
    p.add_argument("--check", action="store_true", help="parse the responses with an h2 client during warm-up")
    p.add_argument("--config", default=None)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.run(main_async(args))
    except ImportError:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
