"""The network connection alone: coalesced writes, counted read-disable, pulled codec output."""

from __future__ import annotations

from typing import Any

from sluice.network.connection import Connection


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.paused = self.resumed = 0
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return None

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1


class Handler:
    def __init__(self) -> None:
        self.log: list[Any] = []

    def on_connected(self) -> None:
        self.log.append("connected")

    def on_data(self, data: bytes) -> None:
        self.log.append(data)

    def on_connection_closed(self) -> None:
        self.log.append("closed")

    def on_write_watermark(self, above: bool) -> None:
        self.log.append(("watermark", above))


def make() -> tuple[Connection, Transport, Handler, list[Any]]:
    soon: list[Any] = []
    handler = Handler()
    conn = Connection(lambda c: handler, None, soon.append)
    t = Transport()
    conn.connection_made(t)  # type: ignore[arg-type]
    return conn, t, handler, soon


def test_writes_in_one_iteration_leave_in_one_send() -> None:
    conn, t, _, soon = make()
    conn.write(b"head")
    conn.write(b"body")
    assert t.writes == [] and len(soon) == 1
    soon.pop()()
    assert t.writes == [b"headbody"]


def test_read_disable_is_counted() -> None:
    conn, t, _, _ = make()
    conn.read_disable(True)
    conn.read_disable(True)
    conn.read_disable(False)
    assert (t.paused, t.resumed) == (1, 0)
    conn.read_disable(False)
    assert (t.paused, t.resumed) == (1, 1)
    conn.read_disable(False)  # (more enables than disables: nothing)
    assert t.resumed == 1
    conn.read_disable(True)
    conn.read_disable(True)
    conn.read_enable_all()
    assert (t.paused, t.resumed) == (2, 2)


def test_pulled_output_joins_the_flush() -> None:
    conn, t, _, soon = make()
    conn.pull = lambda: b"frames"
    conn.want_flush()
    conn.want_flush()
    assert len(soon) == 1
    soon.pop()()
    assert t.writes == [b"frames"]


def test_events_reach_the_handler_and_close_flushes_first() -> None:
    conn, t, h, _ = make()
    conn.data_received(b"x")
    conn.pause_writing()
    conn.resume_writing()
    conn.write(b"last")
    conn.close()
    assert t.writes == [b"last"] and t.closed
    conn.write(b"late")
    conn.connection_lost(None)
    assert h.log == ["connected", b"x", ("watermark", True), ("watermark", False), "closed"]
    assert t.writes == [b"last"]
