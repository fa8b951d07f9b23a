"""The downstream connection's HTTP/1 stats: Envoy (codec_type AUTO) makes the codec, and counts
the connection as HTTP/1, when its first bytes arrive."""

from __future__ import annotations

from typing import Any

from sluice.http.conn_manager import DownstreamConnection, HcmConfig
from sluice.stats.store import Store


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 10000)}.get(name, default)

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _config(store: Store) -> HcmConfig:
    return HcmConfig(stat_prefix="ingress_http", store=store, route_table=None, filter_factories=[], idle_timeout=0.0,
                     call_later=lambda delay, fn: None)  # fmt: skip


def test_a_connection_that_sends_nothing_is_no_http1_connection() -> None:
    store = Store()
    conn = DownstreamConnection(_config(store))
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    conn.connection_lost(None)
    assert store.value("http.ingress_http.downstream_cx_total") == 1
    assert store.value("http.ingress_http.downstream_cx_http1_total") == 0
    assert store.value("http.ingress_http.downstream_cx_http1_active") == 0
    assert not store.gauges["http.ingress_http.downstream_cx_http1_active"].used


def test_the_first_bytes_make_it_an_http1_connection() -> None:
    store = Store()
    conn = DownstreamConnection(_config(store))
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    conn.data_received(b"GET / HT")
    conn.data_received(b"TP/1.1\r\n")
    assert store.value("http.ingress_http.downstream_cx_http1_total") == 1
    assert store.value("http.ingress_http.downstream_cx_http1_active") == 1
    conn.connection_lost(None)
    assert store.value("http.ingress_http.downstream_cx_http1_total") == 1
    assert store.value("http.ingress_http.downstream_cx_http1_active") == 0
    assert store.gauges["http.ingress_http.downstream_cx_rx_bytes_buffered"].used
