"""The lab's stand-in apps (sluice/lab/apps): colored (ikubernetes/servicemesh-app), mesh_service (the
Go service_a/b/c of the tracing and monitoring labs) and the image's default sidecar config.

The expected bytes were taken from the real programs run locally: Flask 1.1.2 / Werkzeug 1.0.1 for
colored, and the labs' main.go built with Go 1.19 for mesh_service. Only Date varies.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.lab.apps import colored, mesh_service
from sluice.lab.apps.colored import ColoredApp, uri_to_iri
from sluice.lab.apps.gonet import go_sprintf
from sluice.lab.apps.mesh_service import VARIANTS, MeshService, UnknownMainGo, go_clean_path, identify

REPO = Path(__file__).resolve().parents[3]
SEED = REPO / "labs"
APPS = REPO / "sluice" / "lab" / "apps"
DATE = re.compile(rb"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT")


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 15))  # type: ignore[arg-type]


def norm(data: bytes) -> bytes:
    return DATE.sub(b"Date: D", data)


async def exchange(port: int, request: bytes, *, until_close: bool = True, wait: float = 0.3) -> bytes:
    """Send raw bytes; read until the server closes (or, with until_close=False, for ``wait`` s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    out = b""
    try:
        while True:
            chunk = await (reader.read(65536) if until_close else asyncio.wait_for(reader.read(65536), wait))
            if not chunk:
                break
            out += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


# -- colored ---------------------------------------------------------------------------------------

NOT_FOUND = (
    b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n'
    b"<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n"
)


def werkzeug(status: str, headers: str, body: bytes) -> bytes:
    return f"HTTP/1.0 {status}\r\n{headers}Server: Werkzeug/1.0.1 Python/3.8.3\r\nDate: D\r\n\r\n".encode() + body


def with_colored(test: Callable[[ColoredApp, list[str]], Awaitable[None]], **kw: Any) -> None:
    logs: list[str] = []
    opts: dict[str, Any] = {"hostname": lambda: "637a84f49f58", "resolve": lambda h: "172.31.73.2", "log": logs.append}
    opts.update(kw)

    async def main() -> None:
        app = ColoredApp("blue", **opts)
        await app.start("127.0.0.1", 0)
        try:
            await test(app, logs)
        finally:
            await app.stop()

    run(main())


def test_colored_service_path_answers_with_the_service_name_not_the_path() -> None:
    async def t(app: ColoredApp, logs: list[str]) -> None:
        got = norm(await exchange(app.port, b"GET /service/colors HTTP/1.1\r\nHost: 172.31.73.10\r\n\r\n"))
        body = b"Hello from App behind Envoy (service blue)! hostname: 637a84f49f58 resolved hostname: 172.31.73.2\n"
        assert len(body) == 98  # the access-log lab: bytes-sent 98 for this very line
        assert got == werkzeug("200 OK", f"Content-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n", body)
        assert re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4} \d\d:\d\d:\d\d\] "GET /service/colors HTTP/1\.1" 200 -', logs[-1])

    with_colored(t)


def test_colored_root_and_head() -> None:
    async def t(app: ColoredApp, logs: list[str]) -> None:
        got = norm(await exchange(app.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        body = b"Hello from App behind Envoy! Hostname: 637a84f49f58, Address: 172.31.73.2!\n"
        assert got == werkzeug("200 OK", f"Content-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n", body)
        got = norm(await exchange(app.port, b"HEAD /service/blue HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert got == werkzeug("200 OK", "Content-Type: text/html; charset=utf-8\r\nContent-Length: 98\r\n", b"")

    with_colored(t)


@pytest.mark.parametrize(
    "target",
    ["/nope", "/service", "/service/", "/service/blue/", "/service/a/b", "/./service/blue", "/service/blue%2Fx", "/service/blue//?a=1"],
)
def test_colored_unknown_paths_get_werkzeugs_404(target: str) -> None:
    async def t(app: ColoredApp, logs: list[str]) -> None:
        got = norm(await exchange(app.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()))
        assert got == werkzeug("404 NOT FOUND", "Content-Type: text/html; charset=utf-8\r\nContent-Length: 232\r\n", NOT_FOUND)
        assert logs[-1].endswith(" 404 -")

    with_colored(t)


@pytest.mark.parametrize(
    "target", ["//service/blue", "http://foo/service/blue", "/service/%E4%B8%AD", "/service/a%ZZ", "/service/blue?x=1"]
)
def test_colored_paths_werkzeug_still_routes(target: str) -> None:
    async def t(app: ColoredApp, logs: list[str]) -> None:
        got = await exchange(app.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert got.startswith(b"HTTP/1.0 200 OK\r\n")
        assert b"(service blue)" in got

    with_colored(t)


def test_colored_methods_options_405_and_merge_slashes_redirect() -> None:
    async def t(app: ColoredApp, logs: list[str]) -> None:
        got = norm(await exchange(app.port, b"OPTIONS /service/blue HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert got == werkzeug(
            "200 OK", "Content-Type: text/html; charset=utf-8\r\nAllow: GET, HEAD, OPTIONS\r\nContent-Length: 0\r\n", b""
        )
        got = norm(await exchange(app.port, b"POST /service/blue HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"))
        body = (
            b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>405 Method Not Allowed</title>\n'
            b"<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n"
        )
        assert got == werkzeug(
            "405 METHOD NOT ALLOWED", "Content-Type: text/html; charset=utf-8\r\nAllow: GET, HEAD, OPTIONS\r\nContent-Length: 178\r\n", body
        )
        got = norm(await exchange(app.port, b"PUT /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))
        assert got.startswith(b"HTTP/1.0 404 NOT FOUND\r\n")
        got = norm(await exchange(app.port, b"GET /service//blue?q=%20a&b=%E4%B8%AD HTTP/1.1\r\nHost: x:81\r\n\r\n"))
        loc = "http://x:81/service/blue?q=%20a&b=%E4%B8%AD"
        esc = loc.replace("&", "&amp;")
        body = (
            '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n'
            f'<p>You should be redirected automatically to target URL: <a href="{esc}">{esc}</a>.  If not click the link.'
        ).encode()
        assert len(body) == 301
        assert got == werkzeug(
            "308 PERMANENT REDIRECT", f"Content-Type: text/html; charset=utf-8\r\nContent-Length: 301\r\nLocation: {loc}\r\n", body
        )
        assert logs[-1].endswith('"GET /service//blue?q=%20a&b=中 HTTP/1.1" 308 -')

    with_colored(t)


def test_colored_answers_one_request_per_connection() -> None:
    async def t(app: ColoredApp, logs: list[str]) -> None:
        two = b"GET /service/blue HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        got = await exchange(app.port, two)
        assert got.count(b"HTTP/1.0 ") == 1 and b"(service blue)" in got
        assert len(app.requests) == 1

    with_colored(t)


def test_colored_golden_header_order() -> None:
    async def t(app: ColoredApp, logs: list[str]) -> None:
        got = norm(await exchange(app.port, b"GET /service/blue HTTP/1.1\r\nHost: x\r\n\r\n"))
        head = got.split(b"\r\n\r\n")[0].split(b"\r\n")
        assert head == [
            b"HTTP/1.0 200 OK",
            b"Server: Werkzeug/1.0.1 Python/3.8.3",
            b"Date: D",
            b"Content-Type: text/html; charset=utf-8",
            b"Content-Length: 98",
        ]

    with_colored(t, header_order="golden")


def test_colored_failed_lookup_is_flasks_500() -> None:
    def fail(host: str) -> str:
        raise socket.gaierror(-2, "Name or service not known")

    async def t(app: ColoredApp, logs: list[str]) -> None:
        got = norm(await exchange(app.port, b"GET /service/blue HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert got.startswith(b"HTTP/1.0 500 INTERNAL SERVER ERROR\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 290\r\n")
        assert got.endswith(
            b"<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>\n"
        )
        assert " ERROR in app: Exception on /service/blue [GET]\nTraceback" in logs[0]
        assert logs[-1].endswith(" 500 -")

    with_colored(t, resolve=fail)


def test_uri_to_iri_as_werkzeugs_log_shows_it() -> None:
    assert uri_to_iri("/service/%62lue%2Fx") == "/service/blue%2Fx"
    assert uri_to_iri("/service/%E4%B8%AD?b=%E4%B8%AD&q=%20") == "/service/中?b=中&q=%20"
    assert uri_to_iri("/a%ZZ/%C3%28?x=%41%2F") == "/a%ZZ/%C3%28?x=A%2F"


def test_colored_cli_reads_service_name_from_the_environment() -> None:
    port = free_port()
    env = dict(os.environ, SERVICE_NAME="red")
    cmd = [sys.executable, "-m", "sluice.lab.apps.colored", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        got = run(exchange(port, b"GET /service/colors HTTP/1.1\r\nHost: x\r\n\r\n"))
        host = socket.gethostname()
        body = f"Hello from App behind Envoy (service red)! hostname: {host} resolved hostname: {socket.gethostbyname(host)}\n"
        assert got.endswith(body.encode()) and b"Server: Werkzeug/1.0.1 Python/3.8.3\r\n" in got
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert b' * Serving Flask app "service" (lazy loading)' in out
    assert f" * Running on http://127.0.0.1:{port}/ (Press CTRL+C to quit)".encode() in err
    assert b'"GET /service/colors HTTP/1.1" 200 -' in err


# -- sidecar_default.yaml -------------------------------------------------------------------------


def test_sidecar_default_validates_and_fronts_the_app() -> None:
    path = colored.SIDECAR_DEFAULT
    assert path == APPS / "sidecar_default.yaml"
    res = subprocess.run(
        [sys.executable, "-m", "sluice", "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(path.read_text())
    assert cfg["admin"]["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 9901}
    listener = cfg["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 80}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["stat_prefix"] == "ingress_http"
    assert [f["name"] for f in hcm["http_filters"]] == ["envoy.filters.http.router"]
    assert hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"] == {"cluster": "local_service"}
    (cluster,) = cfg["static_resources"]["clusters"]
    ep = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (cluster["name"], ep) == ("local_service", {"address": "127.0.0.1", "port_value": 8080})


def test_sidecar_default_is_the_fault_sidecar_without_the_fault_filter() -> None:
    seed = SEED / "fault-injection" / "service-envoy-fault-injection-abort.yaml"
    mine = yaml.safe_load((APPS / "sidecar_default.yaml").read_text())
    theirs = yaml.safe_load(seed.read_text())
    filters = theirs["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    filters[:] = [f for f in filters if f["name"] != "envoy.filters.http.fault"]
    filters[0]["typed_config"] = {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    assert mine == theirs


# -- mesh_service: variants and Go's fmt -----------------------------------------------------------

EXPECTED_VARIANTS = {
    "zipkin-tracing": "tracing-a",
    "jaeger-tracing": "tracing-a",
    "monitoring": "monitoring-a",
    "monitoring-and-accesslog": "monitoring-a",
}


@pytest.mark.parametrize("lab", sorted(EXPECTED_VARIANTS))
def test_every_seed_main_go_maps_to_its_variant(lab: str) -> None:
    got = {svc: identify(SEED / lab / svc / "main.go").name for svc in ("service_a", "service_b", "service_c")}
    assert got == {"service_a": EXPECTED_VARIANTS[lab], "service_b": "hello-b", "service_c": "hello-c"}
    for svc in ("service_a", "service_b", "service_c"):
        assert (SEED / lab / svc / "Dockerfile").read_text() == "FROM golang:alpine\nCOPY main.go main.go\n\nCMD go run main.go\n"


def test_an_unknown_main_go_is_an_error_naming_the_file(tmp_path: Path) -> None:
    odd = tmp_path / "main.go"
    odd.write_text('package main\nfunc main() { println("hi") }\n')
    with pytest.raises(UnknownMainGo, match=re.escape(str(odd))):
        identify(odd)
    res = subprocess.run(
        [sys.executable, "-m", "sluice.lab.apps.mesh_service", "--main-go", str(odd)], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 2 and str(odd) in res.stderr and "--variant" in res.stderr


def test_reformatting_main_go_keeps_the_variant(tmp_path: Path) -> None:
    src = (SEED / "monitoring" / "service_b" / "main.go").read_text()
    (tmp_path / "main.go").write_text(src.replace("\t", "    ").replace("\n", "\r\n"))
    assert identify(tmp_path / "main.go").name == "hello-b"


@pytest.mark.parametrize(
    ("fmt", "want"),
    [
        (b"Hello from service B.\n", b"Hello from service B.\n"),
        (b"100% %s %d %v %% %5.2f %-x %!x %", b"100%s %!d(MISSING) %!v(MISSING) % %!f(MISSING) %!x(MISSING) %!!(MISSING)x %!(NOVERB)"),
        (
            b"%[1]d %[x]d %[2]*d %.[1]d %[1].2d %*.*d %[] %[1",
            b"%!d(BADINDEX) %!d(BADINDEX) %!(BADWIDTH)%!d(BADINDEX) %!d(BADINDEX) %!d(BADINDEX) %!(BADWIDTH)%!(BADPREC)%!d(MISSING) %! (BADINDEX)%!(NOVERB)",
        ),
        ("%é".encode() + b" %\xff", "%!é(MISSING) %!\ufffd(MISSING)".encode()),
        (b"%.", b"%!.(MISSING)"),
        (b"%99999999d", b"%!(NOVERB)"),
    ],
)
def test_go_sprintf_matches_go(fmt: bytes, want: bytes) -> None:
    # Each expectation came from Go 1.19's fmt.Sprintf (20,000 random strings also agreed).
    assert go_sprintf(fmt) == want


@pytest.mark.parametrize(
    ("path", "want"),
    [("", "/"), ("/", "/"), ("/a/../b", "/b"), ("//x", "/x"), ("/x/", "/x/"), ("/x/..", "/"), ("/x/./y/", "/x/y/"), ("/../a", "/a")],
)
def test_go_clean_path(path: str, want: str) -> None:
    assert go_clean_path(path) == want


# -- mesh_service: serving --------------------------------------------------------------------------


class Recorder:
    """A fake downstream (a sidecar's egress listener): records each request head and its connection."""

    def __init__(self, body: bytes = b"Hello from service B.\n", *, close: bool = False) -> None:
        self.body = body
        self.close = close
        self.heads: list[bytes] = []
        self.conns: list[int] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                self.conns.append(id(writer))
                if self.close:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-type: text/plain\r\n\r\n" % len(self.body) + self.body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def go_request(host: str, **values: str) -> bytes:
    names = ["X-B3-Flags", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Spanid", "X-B3-Traceid", "X-Ot-Span-Context", "X-Request-Id"]
    lines = "".join(f"{n}: {values.get(n.lower().replace('-', '_'), '')}\r\n" for n in names)
    return f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\n{lines}Accept-Encoding: gzip\r\n\r\n".encode()


def with_service_a(
    variant: str,
    test: Callable[[MeshService, Recorder, Recorder], Awaitable[None]],
    b: Recorder | None = None,
    c: Recorder | None = None,
    *,
    stdout: io.StringIO | None = None,
    stderr: io.StringIO | None = None,
) -> None:
    async def main() -> None:
        rb = b or Recorder(b"Hello from service B.\n")
        rc = c or Recorder(b"Hello from service C.\n")
        await rb.start()
        await rc.start()
        host = "localhost" if variant == "tracing-a" else "service_a_envoy"
        overrides = {f"{host}:8788": ("127.0.0.1", rb.port), f"{host}:8791": ("127.0.0.1", rc.port)}
        svc = MeshService(VARIANTS[variant], overrides=overrides, stdout=stdout or io.StringIO(), stderr=stderr or io.StringIO())
        await svc.start("127.0.0.1", 0)
        try:
            await test(svc, rb, rc)
        finally:
            await svc.stop()
            await rb.stop()
            await rc.stop()

    run(main())


A_BODY = b"Calling Service B: Hello from service B.\nHello from service A.\nHello from service C.\n"


def test_service_a_calls_b_then_c_forwarding_the_trace_headers() -> None:
    async def t(svc: MeshService, b: Recorder, c: Recorder) -> None:
        req = (
            b"GET / HTTP/1.1\r\nHost: 172.31.85.10\r\nx-request-id: dc43e389\r\nx-b3-traceid: 867004bf874fb877\r\n"
            b"x-b3-spanid:   aa11  \r\nx-b3-parentspanid: 867004bf874fb877\r\nx-b3-sampled: 1\r\nx-b3-sampled: 0\r\nConnection: close\r\n\r\n"
        )
        got = norm(await exchange(svc.port, req))
        # The course's curl through the front envoy shows the same 85-byte body.
        assert got == (
            b"HTTP/1.1 200 OK\r\nDate: D\r\nContent-Length: 85\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
            + A_BODY
        )
        values = {
            "x_request_id": "dc43e389",
            "x_b3_traceid": "867004bf874fb877",
            "x_b3_spanid": "aa11",
            "x_b3_parentspanid": "867004bf874fb877",
            "x_b3_sampled": "1",
        }
        assert b.heads == [go_request("localhost:8788", **values)]
        assert c.heads == [go_request("localhost:8791", **values)]

    with_service_a("tracing-a", t)


def test_monitoring_variant_calls_the_sidecar_by_name_and_reuses_connections() -> None:
    async def t(svc: MeshService, b: Recorder, c: Recorder) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
        for _ in range(3):
            writer.write(b"GET /x HTTP/1.1\r\nHost: y\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection" not in head
            assert await reader.readexactly(85) == A_BODY
        writer.close()
        assert b.heads == [go_request("service_a_envoy:8788")] * 3
        assert c.heads == [go_request("service_a_envoy:8791")] * 3
        assert len(set(b.conns)) == 1 and len(set(c.conns)) == 1

    with_service_a("monitoring-a", t)


def test_upstream_bodies_are_go_format_strings_and_long_bodies_are_chunked() -> None:
    async def t(svc: MeshService, b: Recorder, c: Recorder) -> None:
        got = await exchange(svc.port, b"GET / HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n")
        head, body = got.split(b"\r\n\r\n", 1)
        assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
        assert body == (
            b"800\r\nCalling Service B: 50%!d(MISSING) "
            + b"x" * 2014
            + b"\r\n800\r\n"
            + b"x" * 986
            + b"Hello from service A.\n"
            + b"y" * 1040
            + b"\r\n79a\r\n"
            + b"y" * 1946
            + b"\r\n0\r\n\r\n"
        )

    with_service_a("tracing-a", t, Recorder(b"50%d " + b"x" * 3000), Recorder(b"y" * 2986))


def test_a_failed_call_panics_and_drops_the_connection() -> None:
    out, err = io.StringIO(), io.StringIO()

    async def t(svc: MeshService, b: Recorder, c: Recorder) -> None:
        await c.stop()
        assert c.server is not None
        await c.server.wait_closed()
        got = await exchange(svc.port, b"GET / HTTP/1.1\r\nHost: y\r\n\r\n")
        assert got == b""  # "Calling Service B: ..." was still in the 2048-byte buffer
        assert len(b.heads) == 1

    with_service_a("tracing-a", t, stdout=out, stderr=err)
    assert re.fullmatch(r'Get "http://localhost:8791/": dial tcp 127\.0\.0\.1:\d+: connect: connection refused', out.getvalue())
    first = err.getvalue().splitlines()[0]
    assert re.fullmatch(
        r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d http: panic serving 127\.0\.0\.1:\d+: runtime error: invalid memory address or nil pointer dereference",
        first,
    )
    assert "/go/main.go:63" in err.getvalue()


def test_a_call_closed_without_answer_prints_eof() -> None:
    out = io.StringIO()

    async def t(svc: MeshService, b: Recorder, c: Recorder) -> None:
        assert await exchange(svc.port, b"GET / HTTP/1.1\r\nHost: y\r\n\r\n") == b""
        assert c.heads == []

    with_service_a("tracing-a", t, Recorder(close=True), stdout=out)
    assert out.getvalue() == 'Get "http://localhost:8788/": EOF'


def with_service(variant: str, test: Callable[[MeshService], Awaitable[None]]) -> None:
    async def main() -> None:
        svc = MeshService(VARIANTS[variant])
        await svc.start("127.0.0.1", 0)
        try:
            await test(svc)
        finally:
            await svc.stop()

    run(main())


@pytest.mark.parametrize(
    ("request_bytes", "want"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nDate: D\r\nContent-Length: 22\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nHello from service C.\n",
        ),
        (
            b"POST /any/path?q=1 HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
            b"HTTP/1.0 200 OK\r\nDate: D\r\nContent-Length: 22\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello from service C.\n",
        ),
        (
            b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nDate: D\r\nContent-Length: 22\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n",
        ),
        (
            b"GET /a/../%3Cb%3E?x=<y> HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"HTTP/1.1 301 Moved Permanently\r\nContent-Type: text/html; charset=utf-8\r\nLocation: /%3Cb%3E?x=<y>\r\nDate: D\r\nContent-Length: 55\r\n"
            b'Connection: close\r\n\r\n<a href="/%3Cb%3E?x=&lt;y&gt;">Moved Permanently</a>.\n\n',
        ),
        (
            b"GET / HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 400 Bad Request: missing required Host header\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
            b"400 Bad Request: missing required Host header",
        ),
        (
            b"GET /a%ZZ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request",
        ),
        (
            b"GARBAGE\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request",
        ),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nDate: D\r\nContent-Length: 0\r\n\r\n"),
    ],
)
def test_hello_c_matches_go_net_http(request_bytes: bytes, want: bytes) -> None:
    async def t(svc: MeshService) -> None:
        assert norm(await exchange(svc.port, request_bytes)) == want

    with_service("hello-c", t)


def test_hello_b_keeps_http10_keep_alive_and_pipelines() -> None:
    async def t(svc: MeshService) -> None:
        got = norm(await exchange(svc.port, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", until_close=False))
        assert got == (
            b"HTTP/1.0 200 OK\r\nDate: D\r\nContent-Length: 22\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: keep-alive\r\n\r\n"
            b"Hello from service B.\n"
        )
        two = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        got = norm(await exchange(svc.port, two))
        assert got == (
            b"HTTP/1.1 200 OK\r\nDate: D\r\nContent-Length: 22\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello from service B.\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: D\r\nConnection: close\r\n\r\n"
        )

    with_service("hello-b", t)


def test_mesh_service_cli_with_upstream_override() -> None:
    async def main() -> None:
        b, c = Recorder(b"B\n"), Recorder(b"C\n")
        await b.start()
        await c.start()
        port = free_port()
        cmd = [
            sys.executable, "-m", "sluice.lab.apps.mesh_service", "--variant", "tracing-a", "--host", "127.0.0.1", "--port", str(port),
            "--upstream-override", f"localhost:8788=127.0.0.1:{b.port}", "--upstream-override", f"localhost:8791=127.0.0.1:{c.port}",
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for _ in range(200):
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            got = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert got.endswith(b"\r\n\r\nCalling Service B: B\nHello from service A.\nC\n")
            assert b.heads == [go_request("localhost:8788")]
        finally:
            proc.terminate()
            await proc.wait()
            await b.stop()
            await c.stop()

    run(main())


def test_module_docstrings_name_the_command_lines() -> None:
    assert "python -m sluice.lab.apps.colored --host IP --port 8080 [--service-name NAME]" in (colored.__doc__ or "")
    assert "python -m sluice.lab.apps.mesh_service --main-go PATH" in (mesh_service.__doc__ or "")
