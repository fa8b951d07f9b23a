"""HTTP/1.1 at the edge, differentially (issue 9): every case of ``edge_cases.CASES`` goes as raw
bytes, in one write, on a fresh connection, to the real Envoy and then to Sluice, both on the
same config (listener ``default``, a catch-all route to cluster ``app``), both in front of one
raw recording upstream. Per proxy the test keeps

- the client's answer (all bytes until the answer is complete or the proxy closed; ``date``,
  ``x-envoy-upstream-service-time`` and the listener port normalised),
- whether the proxy closed the connection,
- the exact bytes the upstream received while the case ran (``x-request-id`` and
  ``x-envoy-expected-rq-timeout-ms`` values, listener and upstream ports normalised),
- the access-log lines the case made (code, flags, details, method, path, protocol, bytes:
  :data:`LOG_FORMAT`), read up to a sentinel request's line.

The rule: Sluice's three equal Envoy's; or Sluice refuses more strictly — one 4xx answer and
nothing forwarded where Envoy forwarded the request or did not refuse it with an error —
which is accepted and recorded (see :data:`STRICTER`). Cases where Sluice still differs are in
:data:`KNOWN_DIFFERENCES` (strict xfail: a fix flips the case and its entry must go).

``EDGE_REPORT=/path.md`` writes a report of every difference (and accepted stricter refusal)
when the module ends. Envoy runs live; nothing of its output is stored here."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from edge_cases import CASES, EdgeCase
from harness import LoopThread, ProxyProcess, ScriptedUpstream, free_port, normalise_raw, wait_until

pytestmark = pytest.mark.envoy

CONFIG = """
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: default
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: default
          route_config:
            virtual_hosts:
            - {{name: all, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: app}}}}]}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - {{name: app, connect_timeout: 0.25s, type: STATIC, load_assignment: {{cluster_name: app, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {app}}}}}}}}}]}}]}}}}
"""

LOG_FORMAT = "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL% %BYTES_RECEIVED% %BYTES_SENT%\n"
SENTINEL = b"GET /log-sentinel HTTP/1.1\r\nHost: sentinel\r\n\r\n"

UPSTREAM_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
WARM_UP = b"GET /warm-up HTTP/1.1\r\nHost: warm-up\r\n\r\n"

# Client-side waits (seconds): for a first byte, for more after a complete answer, in all.
FIRST_BYTE_WAIT = 1.0
IDLE_WAIT = 0.08
TOTAL_WAIT = 1.5

# case name → what Sluice does vs Envoy (strict xfail; remove the entry once fixed).
KNOWN_DIFFERENCES: dict[str, str] = {}


# ------------------------------------------------------------------------------------------
# the recording upstream
# ------------------------------------------------------------------------------------------
class _Incomplete(Exception):
    pass


class _Unframeable(Exception):
    pass


def _frame_request(buf: bytes) -> int:
    """The length of the first complete request in ``buf`` (Transfer-Encoding chunked, else
    Content-Length, else no body). :class:`_Incomplete` if more is needed, :class:`_Unframeable`
    if it cannot be framed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise _Incomplete
    head = buf[:end].decode("latin-1")
    pos = end + 4
    te = cl = None
    for line in head.split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name, value = name.strip().lower(), value.strip().lower()
        if name == "transfer-encoding":
            te = value
        elif name == "content-length":
            cl = value
    if te is not None and te.replace(" ", "").split(",")[-1] == "chunked":
        return _chunked_end(buf, pos)
    if te is not None:
        raise _Unframeable
    if cl is not None:
        try:
            n = int(cl)
        except ValueError as e:
            raise _Unframeable from e
        if len(buf) < pos + n:
            raise _Incomplete
        return pos + n
    return pos


def _chunked_end(buf: bytes, pos: int) -> int:
    """Where the chunked body starting at ``buf[pos]`` ends (last chunk and trailers included)."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            raise _Incomplete
        try:
            size = int(buf[pos:eol].split(b";", 1)[0].strip(), 16)
        except ValueError as e:
            raise _Unframeable from e
        pos = eol + 2
        if size == 0:
            if buf[pos : pos + 2] == b"\r\n":
                return pos + 2
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                raise _Incomplete
            return end + 4
        if len(buf) < pos + size + 2:
            raise _Incomplete
        pos += size + 2


class RecordingUpstream:
    """Records every byte it receives (connection id, bytes) in arrival order; answers each
    request it can frame with :data:`UPSTREAM_ANSWER`. Once a connection's bytes cannot be
    framed it only records."""

    def __init__(self, loop: LoopThread) -> None:
        self.log: list[tuple[int, bytes]] = []
        self.last_arrival = 0.0
        ids = itertools.count()

        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            cid = next(ids)
            buf = b""
            framing = True
            with contextlib.suppress(Exception):
                while True:
                    data = await asyncio.wait_for(reader.read(65536), timeout=600)
                    if not data:
                        return
                    self.log.append((cid, data))
                    self.last_arrival = time.monotonic()
                    buf += data
                    while framing and buf:
                        try:
                            n = _frame_request(buf)
                        except _Incomplete:
                            break
                        except _Unframeable:
                            framing = False
                            break
                        buf = buf[n:]
                        writer.write(UPSTREAM_ANSWER)
                        await writer.drain()

        self.server = ScriptedUpstream(loop, script)
        self.port = self.server.port

    def mark(self) -> int:
        return len(self.log)

    def since(self, mark: int) -> bytes:
        return b"".join(data for _, data in self.log[mark:])

    def settle(self, quiet: float = 0.04) -> None:
        """Wait until nothing new arrived for ``quiet`` seconds."""
        while (left := quiet - (time.monotonic() - self.last_arrival)) > 0:
            time.sleep(left)

    def stop(self) -> None:
        self.server.stop()


# ------------------------------------------------------------------------------------------
# the client side
# ------------------------------------------------------------------------------------------
STATUS_RE = re.compile(rb"HTTP/\d\.\d (\d{3})[^\r\n]*")


def parse_answers(buf: bytes) -> tuple[list[bytes], bytes]:
    """The complete responses at the start of ``buf`` (status line + headers + body framed by
    content-length or chunked; 1xx, 204 and 304 have no body) and what is left after them."""
    out: list[bytes] = []
    while buf:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            break
        head = buf[: end + 4]
        m = STATUS_RE.match(head)
        if not m:
            break
        code = int(m.group(1))
        pos = end + 4
        if 100 <= code < 200 or code in (204, 304):
            out.append(head)
            buf = buf[pos:]
            if code == 101:
                break
            continue
        if re.search(rb"(?im)^transfer-encoding:[^\r\n]*chunked", head):
            try:
                pos = _chunked_end(buf, pos)
            except (_Incomplete, _Unframeable):
                break
        else:
            cl = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
            if not cl:
                break  # delimited by the close
            pos += int(cl.group(1))
            if len(buf) < pos:
                break
        out.append(buf[:pos])
        buf = buf[pos:]
    return out, buf


def send_case(port: int, data: bytes) -> tuple[bytes, bool]:
    """Write ``data`` on a fresh connection; read until the proxy closes, or until the answers
    are complete and nothing more comes for :data:`IDLE_WAIT`. After a complete answer with
    ``connection: close`` the client half-closes (Envoy otherwise delays its close by up to a
    second). Returns the bytes read and whether the proxy closed (or reset) the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        buf = b""
        closed = half_closed = False
        start = time.monotonic()
        while True:
            left = TOTAL_WAIT - (time.monotonic() - start)
            if left <= 0:
                break
            if not buf:
                wait = min(left, FIRST_BYTE_WAIT - (time.monotonic() - start))
            else:
                answers, rest = parse_answers(buf)
                if answers and not rest:
                    if re.search(rb"(?im)^connection:\s*close\s*$", answers[-1]) and not half_closed:
                        with contextlib.suppress(OSError):
                            s.shutdown(socket.SHUT_WR)
                        half_closed = True
                    wait = left if half_closed else min(left, IDLE_WAIT)
                else:
                    wait = left
            if wait <= 0:
                break
            s.settimeout(wait)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
        return buf, closed


# ------------------------------------------------------------------------------------------
# the proxies and one exchange
# ------------------------------------------------------------------------------------------
SERVICE_TIME = re.compile(r"(?im)^(x-envoy-upstream-service-time:[ \t]*)[^\r\n]*")
FORWARDED_VOLATILE = re.compile(r"(?im)^((?:x-request-id|x-envoy-expected-rq-timeout-ms):[ \t]*)[^\r\n]*")


@dataclass
class Outcome:
    answer: str  # the normalised answer bytes (latin-1)
    statuses: list[str]  # the status lines of the complete answers, in order
    closed: bool
    forwarded: str  # the normalised bytes the upstream received
    logged: list[str] = field(default_factory=list)  # the case's access-log lines
    raw_answer: bytes = field(default=b"", compare=False, repr=False)
    raw_forwarded: bytes = field(default=b"", compare=False, repr=False)

    def view(self) -> dict[str, Any]:
        return {"answer": self.answer, "closed": self.closed, "forwarded": self.forwarded, "logged": self.logged}


class Proxy:
    def __init__(self, kind: str, app_port: int) -> None:
        self.kind = kind
        self.port = free_port()
        text = CONFIG.format(admin=free_port(), port=self.port, app=app_port)
        config = yaml.safe_load(text)
        self._logdir = tempfile.TemporaryDirectory(prefix=f"edge-log-{kind}-")
        self.log_path = Path(self._logdir.name) / "access.log"
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["access_log"] = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(self.log_path), "log_format": {"text_format": LOG_FORMAT}}}]  # fmt: skip
        self.proc = ProxyProcess(kind, config, args=["--file-flush-interval-msec", "10"]).start()
        self.port = self.proc.port  # re-picked if the first one was taken
        self._log_seen = 0

    def logged(self) -> list[str]:
        """The access-log lines since the last call, up to a sentinel request's line (the
        warm-up request's line left out)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(SENTINEL)
            raw = b""
            while not parse_answers(raw)[0] and (chunk := s.recv(65536)):
                raw += chunk
        lines: list[str] = []

        def sentinel_seen() -> bool:
            nonlocal lines
            text = self.log_path.read_text(encoding="latin-1") if self.log_path.exists() else ""
            lines = text.splitlines()[self._log_seen :]
            return any(" /log-sentinel " in line for line in lines)

        assert wait_until(sentinel_seen, timeout=5), f"{self.kind}: the sentinel request was not logged: {lines}"
        end = next(i for i, line in enumerate(lines) if " /log-sentinel " in line)
        self._log_seen += end + 1
        return [line for line in lines[:end] if " /warm-up " not in line]

    def stop(self) -> None:
        self.proc.stop()
        self._logdir.cleanup()

    def warm(self) -> None:
        """One plain request first, so the proxy holds an idle upstream connection: whether a
        request that fails after its headers had them forwarded then depends on the proxy, not
        on what the previous case did to the pool."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(WARM_UP)
            raw = b""
            while not parse_answers(raw)[0] and (chunk := s.recv(65536)):
                raw += chunk
        assert parse_answers(raw)[0], f"{self.kind}: no answer to the warm-up request: {raw!r}"

    def run(self, up: RecordingUpstream, case: EdgeCase) -> Outcome:
        self.warm()
        mark = up.mark()
        raw, closed = send_case(self.port, case.data)
        up.settle()
        forwarded = up.since(mark)
        answers, _ = parse_answers(raw)
        statuses = [a.split(b"\r\n", 1)[0].decode("latin-1") for a in answers]
        answer = SERVICE_TIME.sub(r"\1<volatile>", normalise_raw(raw)).replace(f":{self.port}", ":<listener>")
        fwd = FORWARDED_VOLATILE.sub(r"\1<volatile>", forwarded.decode("latin-1"))
        fwd = fwd.replace(f":{self.port}", ":<listener>").replace(f":{up.port}", ":<upstream>")
        return Outcome(answer, statuses, closed, fwd, self.logged(), raw, forwarded)


@dataclass
class Suite:
    up: RecordingUpstream
    envoy: Proxy
    sluice: Proxy
    results: dict[str, tuple[Outcome, Outcome]] = field(default_factory=dict)


# Accepted stricter refusals: case name → (Envoy's, Sluice's) outcome.
STRICTER: dict[str, tuple[Outcome, Outcome]] = {}


@pytest.fixture(scope="module")
def suite(loop: LoopThread) -> Iterator[Suite]:
    up = RecordingUpstream(loop)
    started: list[Proxy] = []
    try:
        for kind in ("envoy", "sluice"):
            started.append(Proxy(kind, up.port))
        s = Suite(up, *started)
        yield s
        if os.environ.get("EDGE_REPORT"):
            write_report(os.environ["EDGE_REPORT"], s)
    finally:
        for p in started:
            p.stop()
        up.stop()


def is_stricter_refusal(envoy: Outcome, sluice: Outcome) -> bool:
    """Sluice answered one 4xx and forwarded nothing, where Envoy forwarded something or did
    not answer with an error."""
    if sluice.forwarded or len(sluice.statuses) != 1 or not re.match(r"HTTP/1\.[01] 4\d\d ", sluice.statuses[0]):
        return False
    envoy_refused = bool(envoy.statuses) and all(re.match(r"HTTP/1\.[01] [45]\d\d ", s) for s in envoy.statuses)
    return bool(envoy.forwarded) or not envoy_refused


def _params() -> list[Any]:
    out = []
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_DIFFERENCES[case.name])] if case.name in KNOWN_DIFFERENCES else []
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


@pytest.mark.parametrize("case", _params())
def test_edge_case_as_envoy(suite: Suite, case: EdgeCase, record_property: Any) -> None:
    envoy = suite.envoy.run(suite.up, case)
    sluice = suite.sluice.run(suite.up, case)
    suite.results[case.name] = (envoy, sluice)
    if sluice.view() == envoy.view():
        return
    if is_stricter_refusal(envoy, sluice):
        STRICTER[case.name] = (envoy, sluice)
        record_property("stricter_refusal", f"Envoy {envoy.statuses} forwarded {len(envoy.forwarded)} bytes; Sluice {sluice.statuses}")
        return
    assert sluice.view() == envoy.view(), f"{case.name}: Sluice differs from Envoy"


def test_no_request_left_active(suite: Suite) -> None:
    """After all the cases (their connections closed), neither proxy has a request active."""
    name = "http.default.downstream_rq_active"
    for p in (suite.envoy, suite.sluice):
        assert wait_until(lambda p=p: p.proc.stats().get(name) == 0, timeout=5), f"{p.kind}: {name}={p.proc.stats().get(name)}"


# ------------------------------------------------------------------------------------------
# the report (EDGE_REPORT=path)
# ------------------------------------------------------------------------------------------
def classify(envoy: Outcome, sluice: Outcome) -> str:
    if is_stricter_refusal(envoy, sluice):
        return "Sluice refuses where Envoy forwards or answers (accepted as stricter)"
    if sluice.forwarded and not envoy.forwarded:
        return "Sluice forwards what Envoy refuses"
    if sluice.forwarded != envoy.forwarded:
        if envoy.forwarded and not sluice.forwarded:
            return "Sluice refuses (differently) what Envoy forwards"
        return "Sluice forwards a different message"
    if sluice.statuses != envoy.statuses:
        return "Sluice refuses differently (same forwarded bytes, other status)"
    return "Same status and forwarded bytes; the answer's bytes or the close differ"


def _show(data: bytes | str, limit: int = 300) -> str:
    text = data if isinstance(data, str) else data.decode("latin-1")
    return repr(text[:limit]) + (f" … ({len(text)} bytes)" if len(text) > limit else "")


def write_report(path: str, s: Suite) -> None:
    groups: dict[str, list[str]] = {}
    by_name = {c.name: c for c in CASES}
    for name, (e, sl) in s.results.items():
        if e.view() == sl.view():
            continue
        kind = classify(e, sl)
        c = by_name[name]
        lines = [
            f"### {name}",
            "",
            f"- request: `{_show(c.data, 200)}`" + (f" ({c.note})" if c.note else ""),
            f"- Envoy: statuses {e.statuses or '(no complete answer)'}, closed={e.closed}",
            f"  - forwarded: `{_show(e.forwarded)}`",
            f"- Sluice: statuses {sl.statuses or '(no complete answer)'}, closed={sl.closed}",
            f"  - forwarded: `{_show(sl.forwarded)}`",
        ]
        if e.answer != sl.answer:
            lines += [f"- Envoy answer: `{_show(e.answer, 400)}`", f"- Sluice answer: `{_show(sl.answer, 400)}`"]
        known = KNOWN_DIFFERENCES.get(name)
        if known:
            lines.append(f"- xfail: {known}")
        groups.setdefault(kind, []).append("\n".join(lines))
    out = ["# Edge differential: Sluice vs Envoy", "", f"{len(s.results)} cases run; {sum(map(len, groups.values()))} differ.", ""]
    for kind, entries in groups.items():
        out += [f"## {kind} ({len(entries)})", "", *(e + "\n" for e in entries)]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
