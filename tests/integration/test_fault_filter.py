"""The fault filter end to end: the golden configs (``configs/fault_*.yaml``) run by an
in-process Sluice over loopback, compared with Envoy 1.40's captures
(``fault_injection/fault_filter_behaviours.json``, ``lab_fault_injection.json``); then a few
cases side by side with the real Envoy (``@pytest.mark.envoy``).

Timing bounds are generous on the slow side (a loaded machine) and tight where Envoy's
behaviour depends on them (a delay never ends early; paced bodies never arrive early)."""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from harness import (
    GOLDEN,
    GoldenDemoApp,
    InProcessSluice,
    LoopThread,
    ProxyProcess,
    assert_binomial,
    assert_same_rate,
    free_port,
    localize,
    run_load,
    wait_until,
)

BEHAVIOURS = json.loads((GOLDEN / "fault_injection" / "fault_filter_behaviours.json").read_text(encoding="utf-8"))
LAB = json.loads((GOLDEN / "fault_injection" / "lab_fault_injection.json").read_text(encoding="utf-8"))
HEADERS_CONFIG = GOLDEN / "configs" / "fault_headers.yaml"
BLUE_SIDECAR_CONFIG = GOLDEN / "configs" / "fault_blue_sidecar.yaml"
VOLATILE = {"date", "x-envoy-upstream-service-time", "x-request-id"}
ABORT_BODY = "fault filter abort"


# ------------------------------------------------------------------------------------------
# set-up: one upstream app, the golden config with fresh ports
# ------------------------------------------------------------------------------------------
def load(path: Any) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


def localized(config: dict[str, Any], upstream: GoldenDemoApp) -> dict[str, Any]:
    (endpoint,) = {
        lbe["endpoint"]["address"]["socket_address"]["address"]
        for c in config["static_resources"]["clusters"]
        for g in c["load_assignment"]["endpoints"]
        for lbe in g["lb_endpoints"]
    }
    n = len(config["static_resources"]["listeners"])
    return localize(config, {endpoint: [("127.0.0.1", upstream.port)]}, free_port(), [free_port() for _ in range(n)])


class Lab:
    """A proxy (in-process Sluice, or a ProxyProcess) on a golden config; ports by listener name."""

    def __init__(self, loop: LoopThread, config: dict[str, Any], kind: str = "inprocess") -> None:
        self.loop = loop
        self.app = GoldenDemoApp("probe")
        loop.run(self.app.start("127.0.0.1", 0))
        self.config = localized(config, self.app)
        self.names = [lst["name"] for lst in self.config["static_resources"]["listeners"]]
        self.kind = kind
        self.proc: ProxyProcess | None = None
        self.sluice: InProcessSluice | None = None
        if kind == "inprocess":
            self.sluice = InProcessSluice(loop, yaml.safe_dump(self.config, sort_keys=False))
            self.ports = {name: int(lst.port) for name, lst in zip(self.names, self.sluice.server.listeners, strict=True)}
        else:
            self.proc = ProxyProcess(kind, copy.deepcopy(self.config)).start()
            self.ports = dict(zip(self.names, self.proc.listener_ports, strict=True))

    def port(self, prefix: str) -> int:
        (name,) = [n for n in self.names if n.startswith(prefix)]
        return self.ports[name]

    def stats(self, prefix: str = "") -> dict[str, int]:
        if self.sluice is not None:
            store = self.sluice.server.store
            return {n: store.value(n) for n in [*store.counters, *store.gauges] if n.startswith(prefix)}
        assert self.proc is not None
        return {k: v for k, v in self.proc.stats().items() if k.startswith(prefix)}

    def fault_stats(self, stat_prefix: str) -> list[str]:
        """The five stats as the capture lists them: ``name: value``, sorted."""
        names = ("aborts_injected", "active_faults", "delays_injected", "faults_overflow", "response_rl_injected")
        stats = self.stats(f"http.{stat_prefix}.fault.")
        return [f"http.{stat_prefix}.fault.{n}: {stats.get(f'http.{stat_prefix}.fault.{n}', 0)}" for n in names]

    def stop(self) -> None:
        if self.sluice is not None:
            self.sluice.stop()
        if self.proc is not None:
            self.proc.stop()
        with contextlib.suppress(Exception):
            self.loop.run(self.app.stop())


@pytest.fixture(scope="module")
def lab(loop: LoopThread) -> Iterator[Lab]:
    lab = Lab(loop, load(HEADERS_CONFIG))
    yield lab
    lab.stop()


class Timed:
    __slots__ = ("status_line", "headers", "body", "t_first_byte", "t_total")

    def __init__(self, status_line: str, headers: list[tuple[str, str]], body: bytes, t_first_byte: float, t_total: float) -> None:
        self.status_line = status_line
        self.headers = headers
        self.body = body
        self.t_first_byte = t_first_byte
        self.t_total = t_total

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])


def timed(
    port: int, method: str = "GET", path: str = "/echo", headers: list[tuple[str, str]] | None = None, body: bytes | None = None
) -> Timed:
    """One request on a fresh connection; the time to the response head and to its last byte."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers or [])]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, f"closed before a response head: {buf!r}"
            buf += chunk
        t_head = time.monotonic() - t0
        head, _, rest = buf.partition(b"\r\n\r\n")
        status_line, *hlines = head.decode("latin-1").split("\r\n")
        hdrs = [(k.lower(), v.strip()) for k, _, v in (h.partition(":") for h in hlines)]
        length = 0 if method == "HEAD" else int(dict(hdrs).get("content-length", "0"))
        while len(rest) < length:
            chunk = s.recv(262144)
            assert chunk, "closed before the body ended"
            rest += chunk
        return Timed(status_line, hdrs, rest[:length], t_head, time.monotonic() - t0)


def view(headers: list[tuple[str, str]] | list[list[str]]) -> list[tuple[str, str]]:
    return [(k, "<volatile>" if k in VOLATILE else v) for k, v in headers]


def golden_abort_view(case: dict[str, Any]) -> dict[str, Any]:
    return {"status_line": case["status_line"], "headers": view(case["headers"]), "body": case["body"]}


def abort_view(r: Timed) -> dict[str, Any]:
    return {"status_line": r.status_line, "headers": view(r.headers), "body": r.body.decode("latin-1")}


# ------------------------------------------------------------------------------------------
# A: header_abort + header_delay, 100 %
# ------------------------------------------------------------------------------------------
A = BEHAVIOURS["A_header_abort_and_header_delay_pct100"]
ABORT_CASES = [k for k in A if k.startswith("x-envoy-fault-abort-request: ")]


@pytest.mark.parametrize("case", ABORT_CASES)
def test_header_abort_matches_capture(lab: Lab, case: str) -> None:
    value = case.split(": ", 1)[1].strip("'")
    golden = A[case]
    lab.app.requests.clear()
    r = timed(lab.port("A_"), headers=[("x-envoy-fault-abort-request", value)])
    if golden["body"] == ABORT_BODY:
        assert abort_view(r) == golden_abort_view(golden)
        assert lab.app.requests == []
    else:
        # Ignored: proxied, with Envoy's response header order and the header passed on.
        assert r.status_line == golden["status_line"]
        assert [k for k, _ in r.headers] == [k for k, _ in golden["headers"]]
        (seen,) = lab.app.requests
        assert ("x-envoy-fault-abort-request", value.strip()) in seen.headers


def test_no_fault_headers_is_proxied(lab: Lab) -> None:
    golden = A["no_fault_headers"]
    lab.app.requests.clear()
    r = timed(lab.port("A_"))
    assert r.status_line == golden["status_line"] and [k for k, _ in r.headers] == [k for k, _ in golden["headers"]]
    (seen,) = lab.app.requests
    want = [k for k, _ in json.loads(golden["body"])["headers"]]
    assert [k for k, _ in seen.headers] == want


def test_upstream_gets_fault_headers_when_no_fault(lab: Lab) -> None:
    golden = BEHAVIOURS["A_header_abort_and_header_delay_pct100"]["upstream_request_headers_when_fault_headers_sent_but_no_fault"]
    lab.app.requests.clear()
    r = timed(lab.port("A_"), headers=[("x-envoy-fault-abort-request-percentage", "0"), ("x-envoy-fault-abort-request", "503")])
    assert r.status == 200
    (seen,) = lab.app.requests
    port = lab.port("A_")
    assert [(k, v.replace(str(port), "18910")) for k, v in view(seen.headers)] == view(golden)


@pytest.mark.parametrize(("value", "low", "high"), [("500", 0.495, 1.0), ("0", 0, 0.2), ("abc", 0, 0.2)])
def test_header_delay(lab: Lab, value: str, low: float, high: float) -> None:
    lab.app.requests.clear()
    r = timed(lab.port("A_"), headers=[("x-envoy-fault-delay-request", value)])
    assert r.status == 200 and low <= r.t_total <= high, r.t_total
    (seen,) = lab.app.requests
    assert ("x-envoy-fault-delay-request", value) in seen.headers


def test_delay_then_abort(lab: Lab) -> None:
    golden = A["abort 503 + delay 400 together"]
    r = timed(lab.port("A_"), headers=[("x-envoy-fault-abort-request", "503"), ("x-envoy-fault-delay-request", "400")])
    assert r.status == golden["status"] and r.body.decode() == golden["body"]
    assert 0.395 <= r.t_total <= 0.9


@pytest.mark.parametrize(("pct", "p"), [("50", 0.5), ("0", 0.0), ("100", 1.0), ("150", 1.0)])
def test_abort_percentage_header(lab: Lab, pct: str, p: float) -> None:
    golden = A[f"abort 503 with x-envoy-fault-abort-request-percentage: {pct} (400 reqs)"]
    n = 400
    statuses = Counter(r.status for r in run_load(lab.port("A_"), n, "/echo", 8, headers=[
        ("x-envoy-fault-abort-request", "503"), ("x-envoy-fault-abort-request-percentage", pct)]))  # fmt: skip
    assert set(statuses) <= {200, 503}
    if p in (0.0, 1.0):
        assert dict(statuses) == {int(k): v for k, v in golden.items()}
    else:
        assert_binomial(statuses[503], n, p, "503s")
        assert_same_rate(golden["503"], statuses[503], n, p, "503s")


def test_delay_percentage_header(lab: Lab) -> None:
    golden = A["delay 300ms with x-envoy-fault-delay-request-percentage: 50 (200 reqs)"]
    n = 100
    headers = [("x-envoy-fault-delay-request", "300"), ("x-envoy-fault-delay-request-percentage", "50")]
    with ThreadPoolExecutor(25) as ex:
        times = list(ex.map(lambda _: timed(lab.port("A_"), headers=headers).t_total, range(n)))
    delayed = sum(t >= 0.29 for t in times)
    assert all(t < 0.2 or t >= 0.299 for t in times)
    assert_binomial(delayed, n, 0.5, "delayed")
    assert_same_rate(round(golden["delayed_ge_0.29s"] * n / 200), delayed, n, 0.5, "delayed")


def test_client_gone_while_delayed(lab: Lab) -> None:
    before = lab.stats("http.a_http.")
    lab.app.requests.clear()
    with socket.create_connection(("127.0.0.1", lab.port("A_"))) as s:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nx-envoy-fault-delay-request: 1500\r\n\r\n")
        assert wait_until(lambda: lab.stats("http.a_http.fault.active_faults")["http.a_http.fault.active_faults"] == 1, 2)
    assert wait_until(lambda: lab.stats("http.a_http.fault.active_faults")["http.a_http.fault.active_faults"] == 0, 2)
    after = lab.stats("http.a_http.")
    assert after["http.a_http.downstream_rq_rx_reset"] == before["http.a_http.downstream_rq_rx_reset"] + 1
    assert after["http.a_http.fault.delays_injected"] == before["http.a_http.fault.delays_injected"] + 1
    time.sleep(0.2)
    assert lab.app.requests == []


# ------------------------------------------------------------------------------------------
# B: header_abort at 20 %
# ------------------------------------------------------------------------------------------
B = BEHAVIOURS["B_header_abort_pct20"]


@pytest.mark.parametrize(("case", "pct", "p"), [
    ("abort 503 header, no pct header (1000 reqs)", None, 0.2),
    ("abort 503 header + pct header 50 (1000 reqs)", "50", 0.2),
    ("abort 503 header + pct header 10 (1000 reqs)", "10", 0.1),
])  # fmt: skip
def test_abort_rate(lab: Lab, case: str, pct: str | None, p: float) -> None:
    headers = [("x-envoy-fault-abort-request", "503")] + ([("x-envoy-fault-abort-request-percentage", pct)] if pct else [])
    n = 1000
    statuses = Counter(r.status for r in run_load(lab.port("B_"), n, "/echo", 8, headers=headers))
    assert set(statuses) <= {200, 503}
    assert_binomial(statuses[503], n, p, "503s")
    assert_same_rate(B[case]["503"], statuses[503], n, p, "503s")


# ------------------------------------------------------------------------------------------
# C, D: fixed delays
# ------------------------------------------------------------------------------------------
def test_fixed_delay_then_abort_matches_capture(lab: Lab) -> None:
    golden = BEHAVIOURS["C_fixed_delay_300ms_and_abort_503_pct100"]
    lab.app.requests.clear()
    r = timed(lab.port("C_"))
    assert abort_view(r) == golden_abort_view(golden["response"])
    assert 0.299 <= r.t_first_byte <= 0.8 and lab.app.requests == []


def test_max_active_faults(lab: Lab) -> None:
    golden = BEHAVIOURS["D_max_active_faults_2_fixed_delay_2s_pct100"]
    with ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda _: timed(lab.port("D_")), range(6)))
    times = sorted(r.t_total for r in results)
    assert all(r.status == 200 for r in results)
    assert sum(t >= 1.99 for t in times) == golden["delayed"] and all(t < 0.5 for t in times[:4])
    assert times[-1] < 3.0
    assert wait_until(lambda: lab.fault_stats("d_http") == golden["stats"], 2), lab.fault_stats("d_http")


# ------------------------------------------------------------------------------------------
# E, F: response rate limits
# ------------------------------------------------------------------------------------------
E = BEHAVIOURS["E_response_rate_limit_fixed_50kbps_pct100"]


def test_fixed_rate_limit(lab: Lab) -> None:
    before = lab.stats("http.e_http.fault.response_rl_injected")["http.e_http.fault.response_rl_injected"]
    for size, low, high in [(102400, 1.9, 2.6), (10240, 0.145, 0.5), (1024, 0.0, 0.1)]:
        golden = E[f"GET /bytes/{size}"]
        r = timed(lab.port("E_"), path=f"/bytes/{size}")
        assert r.status == 200 and len(r.body) == size == golden["body_len"]
        assert [k for k, _ in r.headers] == [k for k, _ in golden["headers"]]
        assert r.t_first_byte < 0.1, "the headers are not paced"
        assert low <= r.t_total <= high, (size, r.t_total, golden["t_total_s"])
    after = lab.stats("http.e_http.fault.response_rl_injected")["http.e_http.fault.response_rl_injected"]
    assert after - before == 3
    assert wait_until(lambda: lab.fault_stats("e_http") == E["stats"], 2)


def test_header_rate_limit(lab: Lab) -> None:
    port = lab.port("F_")
    r = timed(port, path="/bytes/102400", headers=[("x-envoy-fault-throughput-response", "200")])
    assert len(r.body) == 102400 and 0.445 <= r.t_total <= 1.0, r.t_total
    for name, value in [
        ("x-envoy-fault-throughput-response", "abc"),
        ("x-envoy-fault-throughput-response", "0"),
        ("x-envoy-fault-throttle-response", "20"),
    ]:
        r = timed(port, path="/bytes/102400", headers=[(name, value)])
        assert len(r.body) == 102400 and r.t_total < 0.2, (name, value, r.t_total)
    assert timed(port, path="/bytes/102400").t_total < 0.2
    stats = lab.stats("http.f_http.fault.")
    assert stats["http.f_http.fault.response_rl_injected"] == 1 and stats["http.f_http.fault.active_faults"] == 0


# ------------------------------------------------------------------------------------------
# G: abort 418
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["GET", "HEAD", "POST_with_body"])
def test_abort_418(lab: Lab, case: str) -> None:
    golden = BEHAVIOURS["G_abort_418_pct100"][case]
    method = case.split("_")[0]
    r = timed(lab.port("G_"), method=method, body=b'{"a":1}' if method == "POST" else None)
    assert abort_view(r) == golden_abort_view(golden)


def test_stats_after_everything(lab: Lab) -> None:
    stats = lab.stats("http.")
    assert all(v == 0 for k, v in stats.items() if k.endswith(".fault.active_faults"))
    assert {k.split(".")[1] for k in stats if ".fault." in k} == {"a_http", "b_http", "c_http", "d_http", "e_http", "f_http", "g_http"}


# ------------------------------------------------------------------------------------------
# the lab's blue sidecar: abort 503 at 10 %
# ------------------------------------------------------------------------------------------
def test_lab_blue_sidecar_abort_rate(loop: LoopThread) -> None:
    golden = LAB["abort_rate_/service/blue_1000_requests(config 10%)"]
    blue = Lab(loop, load(BLUE_SIDECAR_CONFIG))
    try:
        n = 1000
        responses = run_load(blue.ports["listener_0"], n, "/service/blue", 8)
        aborted = [r for r in responses if r.status == 503]
        assert {r.status for r in responses} <= {200, 503}
        assert_binomial(len(aborted), n, 0.1, "503s")
        assert_same_rate(golden["503"], len(aborted), n, 0.1, "503s")
        golden_abort = LAB["abort_direct_from_sidecar_503"]
        assert aborted[0].body.decode() == golden_abort["body"]
        assert [k.lower() for k, _ in aborted[0].headers] == [k for k, _ in golden_abort["headers"]]
        stats = blue.fault_stats("ingress_http")
        assert stats[0] == f"http.ingress_http.fault.aborts_injected: {len(aborted)}"
        assert stats[1:] == LAB["blue_sidecar_fault_stats"][1:]
        # The lab's sidecar has abort.http_status, not header_abort: the header is ignored.
        responses = run_load(blue.ports["listener_0"], 200, "/service/blue", 8, headers=[("x-envoy-fault-abort-request", "429")])
        assert {r.status for r in responses} <= {200, 503}
    finally:
        blue.stop()


# ------------------------------------------------------------------------------------------
# differential: the same requests through the real Envoy and Sluice
# ------------------------------------------------------------------------------------------
EXTRA_LISTENERS = {
    "H_grpc_abort_14": {"abort": {"grpc_status": 14, "percentage": {"numerator": 100}}},
    "I_abort_503_runtime": {"abort": {"http_status": 503, "percentage": {"numerator": 1, "denominator": "TEN_THOUSAND"}}},
}


def differential_config() -> Any:
    """fault_headers.yaml plus two listeners (gRPC abort; abort whose percent the runtime sets)."""
    config = load(HEADERS_CONFIG)
    template = config["static_resources"]["listeners"][-1]
    for name, fault in EXTRA_LISTENERS.items():
        lst = copy.deepcopy(template)
        lst["name"] = name
        hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["stat_prefix"] = name[0].lower() + "_http"
        hcm["http_filters"][0]["typed_config"] = {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault", **fault}
        config["static_resources"]["listeners"].append(lst)
    return config


@pytest.fixture(scope="module")
def pair(loop: LoopThread) -> Iterator[tuple[Lab, Lab]]:
    config = differential_config()
    envoy = Lab(loop, config, "envoy")
    try:
        sluice = Lab(loop, config, "sluice")
    except BaseException:
        envoy.stop()
        raise
    yield envoy, sluice
    sluice.stop()
    envoy.stop()


def exchange(
    lab: Lab, listener: str, method: str = "GET", headers: list[tuple[str, str]] | None = None, body: bytes | None = None
) -> dict[str, Any]:
    port = lab.port(listener)
    r = timed(port, method=method, headers=headers, body=body)
    return {"status_line": r.status_line, "headers": view(r.headers), "body": r.body.decode("latin-1").replace(str(port), "<port>")}


DIFF_CASES = [
    ("A_", "GET", [("x-envoy-fault-abort-request", code)], None) for code in ("200", "204", "304", "413", "418", "451", "503", "599", "600")
] + [
    ("A_", "GET", [("x-envoy-fault-abort-grpc-request", "5")], None),
    ("A_", "POST", [("content-type", "application/grpc"), ("x-envoy-fault-abort-grpc-request", "99")], b""),
    ("A_", "POST", [("content-type", "application/grpc-web"), ("x-envoy-fault-abort-grpc-request", "3")], b""),
    ("A_", "GET", [("x-envoy-fault-abort-grpc-request", "5"), ("x-envoy-fault-abort-request", "418")], None),
    ("A_", "GET", [("x-envoy-fault-abort-request", "+429")], None),
    ("A_", "GET", [("x-envoy-fault-abort-request", "4_29")], None),
    ("G_", "GET", [], None),
    ("G_", "HEAD", [], None),
    ("G_", "POST", [], b"abc"),
    ("G_", "POST", [("content-type", "application/grpc")], b""),
    ("H_", "GET", [], None),
    ("H_", "POST", [("content-type", "application/grpc+proto")], b""),
]  # fmt: skip


@pytest.mark.envoy
@pytest.mark.parametrize("case", DIFF_CASES, ids=lambda c: f"{c[0]}{c[1]}:{c[2]}")
def test_differential_exchange(pair: tuple[Lab, Lab], case: tuple[str, str, list[tuple[str, str]], bytes | None]) -> None:
    envoy, sluice = pair
    listener, method, headers, body = case
    from_envoy = exchange(envoy, listener, method, headers, body)
    from_sluice = exchange(sluice, listener, method, headers, body)
    if from_envoy["headers"] and from_envoy["headers"][0] == ("server", "envoy"):
        # Proxied: the echo bodies carry each proxy's request id and port.
        from_envoy["body"] = from_sluice["body"] = "<echo>"
        for d in (from_envoy, from_sluice):
            d["headers"] = [(k, "<len>" if k == "content-length" else v) for k, v in d["headers"]]
    assert from_sluice == from_envoy


@pytest.mark.envoy
def test_differential_runtime_and_downstream_cluster(pair: tuple[Lab, Lab]) -> None:
    envoy, sluice = pair
    front = [("x-envoy-downstream-service-cluster", "front")]
    steps: list[tuple[dict[str, str], list[tuple[str, str]]]] = [
        ({}, front),
        ({"fault.http.abort.abort_percent": "101"}, []),
        ({"fault.http.abort.http_status": "404"}, []),
        # The cluster's keys replace the filter's; its status falls back to the configured 503.
        ({"fault.http.front.abort.abort_percent": "100"}, front),
        ({"fault.http.front.abort.http_status": "429"}, front),
        ({"fault.http.abort.abort_percent": "0"}, []),
        ({}, front),
        ({"fault.http.front.abort.abort_percent": "0"}, front),
        (
            {"fault.http.c1,c2.abort.abort_percent": "100"},
            [("x-envoy-downstream-service-cluster", "c1"), ("x-envoy-downstream-service-cluster", "c2")],
        ),
    ]
    seen: dict[str, list[int]] = {"envoy": [], "sluice": []}
    try:
        for values, headers in steps:
            for lab in (envoy, sluice):
                assert lab.proc is not None
                if values:
                    lab.proc.runtime_modify(**values)
                seen[lab.kind].append(timed(lab.port("I_"), headers=headers).status)
    finally:
        keys = {k for values, _ in steps for k in values}
        for lab in (envoy, sluice):
            assert lab.proc is not None
            lab.proc.runtime_modify(**dict.fromkeys(keys, ""))
    # 1 in 10 000 configured: only the runtime makes these abort.
    assert seen["envoy"] == [200, 503, 404, 503, 429, 200, 429, 200, 503]
    assert seen["sluice"] == seen["envoy"]
    assert envoy.stats("http.i_http.fault.") == sluice.stats("http.i_http.fault.")


@pytest.mark.envoy
def test_differential_pacing(pair: tuple[Lab, Lab]) -> None:
    """The same body through both: the same release schedule (first burst, 50 ms steps)."""
    envoy, sluice = pair

    def schedule(lab: Lab) -> list[tuple[float, int]]:
        port = lab.port("E_")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t0 = time.monotonic()
            s.sendall(f"GET /bytes/20480 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            got, marks = b"", []
            while True:
                chunk = s.recv(65536)
                got += chunk
                marks.append((time.monotonic() - t0, len(chunk)))
                head, sep, body = got.partition(b"\r\n\r\n")
                if sep and len(body) >= 20480:
                    return marks

    e, s_ = schedule(envoy), schedule(sluice)
    assert abs(e[-1][0] - s_[-1][0]) < 0.08, (e, s_)  # (20480 - 2560) / 51200 = 0.35 s
    for marks in (e, s_):
        assert 0.34 <= marks[-1][0] <= 0.6 and marks[0][0] < 0.05
    bursts = [n for t, n in s_ if t > 0.03]
    assert all(n < 4000 for n in bursts)
