"""The connection manager's per-stream debug lines: Envoy's wording at debug, nothing built at info."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest

from sluice import logs
from sluice.http import debug_log
from sluice.http.conn_manager import ActiveStream, HcmConfig
from sluice.http.filter import STOP_ITERATION, PassThroughFilter
from sluice.http.headers import RequestHeaders, ResponseHeaders
from sluice.http.stream_info import ResponseFlag
from sluice.stats.store import Store


class FakeConn:
    def __init__(self, config: HcmConfig) -> None:
        self.config = config
        self.remote = ("10.1.2.3", 5555)
        self.local = ("127.0.0.1", 80)
        self.cid = 7
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data

    def stream_done(self, stream: ActiveStream, close: bool) -> None:
        pass

    def reset(self) -> None:
        pass


class Answer(PassThroughFilter):
    """Terminal filter: 200 with a body, or (``local``) a 503 local reply flagged UH."""

    def __init__(self, stream: ActiveStream, local: bool) -> None:
        self.stream = stream
        self.local = local

    def decode_headers(self, headers: RequestHeaders, end_stream: bool) -> Any:
        if self.local:
            self.stream.send_local_reply(503, "no healthy upstream", "no_healthy_upstream", ResponseFlag.NO_HEALTHY_UPSTREAM)
        else:
            self.stream.encode_headers(ResponseHeaders(200, [["content-length", "2"]]), False)
            self.stream.encode_data(b"ok", True)
        return STOP_ITERATION


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logs.TRACE)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def capture() -> Iterator[Capture]:
    lg = logging.getLogger("sluice.http")
    h, level = Capture(), lg.level
    lg.addHandler(h)
    yield h
    lg.removeHandler(h)
    lg.setLevel(level)
    logs.refresh()


def run_stream(local: bool = False) -> ActiveStream:
    cfg = HcmConfig(
        stat_prefix="t",
        store=Store(),
        route_table=None,
        filter_factories=[lambda s: Answer(s, local)],
        rng=random.Random(1),
        call_later=lambda d, f: None,
    )
    conn = FakeConn(cfg)
    s = ActiveStream(conn, RequestHeaders("GET", "/p?q=1", "example.com", [["user-agent", "t/1"]]), True)  # type: ignore[arg-type]
    s.start()
    return s


def test_debug_lines_follow_envoys(capture: Capture) -> None:
    logging.getLogger("sluice.http").setLevel(logging.DEBUG)
    logs.refresh()
    s = run_stream()
    tag = f'[Tags: "ConnectionId":"7","StreamId":"{s.random_value}"]'
    m = capture.messages
    assert m[0] == '[Tags: "ConnectionId":"7"] new stream'
    assert m[1] == (
        f"{tag} request headers complete (end_stream=true):\n"
        "':authority', 'example.com'\n':path', '/p?q=1'\n':method', 'GET'\n'user-agent', 't/1'\n"
    )
    assert m[2].startswith(f"{tag} encoding headers via codec (end_stream=false):\n':status', '200'\n'content-length', '2'\n'date', ")
    assert m[2].endswith("'server', 'envoy'\n")
    assert m[3] == (f"{tag} stream complete: route '-', cluster '-', upstream host -, response code 200, response flags -, details -")
    assert len(m) == 4


def test_local_reply_names_details_and_flags(capture: Capture) -> None:
    logging.getLogger("sluice.http").setLevel(logging.DEBUG)
    logs.refresh()
    run_stream(local=True)
    m = capture.messages
    assert m[2].endswith("] Sending local reply with details no_healthy_upstream")
    assert "encoding headers via codec (end_stream=false):\n':status', '503'\n" in m[3]
    assert m[4].endswith("response code 503, response flags UH, details no_healthy_upstream")


def test_nothing_is_built_at_info(capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    logging.getLogger("sluice.http").setLevel(logging.INFO)
    logs.refresh()

    def forbidden(*args: object) -> None:
        raise AssertionError("a debug line was built at info")

    for name in ("new_connection", "new_stream", "local_reply", "encoding_headers", "stream_complete", "stream_reset"):
        monkeypatch.setattr(debug_log, name, forbidden)
    s = run_stream()
    run_stream(local=True)
    assert s.response_complete
    assert capture.messages == []
