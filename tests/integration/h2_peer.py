"""A scripted raw HTTP/2 (h2c) client for the differential tests: it sends exactly the frames a
test asks for, valid or not, and records what the proxy sends back as normalised events.

Frames are built and parsed with ``hyperframe`` (h2's frame layer) and header blocks coded with
``hpack`` (h2's HPACK), not through ``h2.connection``: h2's state machine would refuse to send
what the bad-input cases need (reused or even stream ids, pseudo-headers after regular ones,
DATA beyond the window) and would raise on the proxy's answers to them. :func:`raw_frame`
writes any (length, type, flags, stream, payload), so malformed frames are one call.

Everything is synchronous on one blocking loopback socket, and every read is bounded in time
(:meth:`H2Peer.collect`). The events (``H2Peer.events``), in arrival order:

- ``("settings", {name: value})`` the proxy's SETTINGS (``("settings_ack",)`` for an ACK);
- ``("window_update", stream_id, increment)``;
- ``("headers", stream_id, [(name, value), ...], end_stream)`` one decoded header block
  (``date`` and other run-dependent values masked, see :data:`MASKED`);
- ``("data", stream_id, bytes, end_stream)``;
- ``("rst", stream_id, code_name)``, ``("goaway", code_name, last_stream_id)``;
- ``("ping", ack, opaque)``, ``("raw", bytes)`` when the answer is not HTTP/2 at all (an HTTP/1
  answer), ``("closed",)`` when the proxy closed (FIN or reset) the connection.

:meth:`H2Peer.view` folds them per stream (headers, body, trailers, reset, ended), which is
what the tests compare: how a proxy splits a body into DATA frames is not behaviour.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

import hpack
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MASKED = frozenset({"date", "x-envoy-upstream-service-time", "x-request-id"})

# frame type numbers (RFC 9113 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)


def code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


def setting_name(code: int) -> str:
    try:
        return SettingCodes(code).name
    except ValueError:
        return f"0x{code:x}"


def raw_frame(ftype: int, flags: int, stream_id: int, payload: bytes, length: int | None = None) -> bytes:
    """A frame with any header: ``length`` defaults to the payload's (give another to lie)."""
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + struct.pack(">I", stream_id & 0xFFFFFFFF) + payload


Headers = Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]


class H2Peer:
    """One h2c connection to ``port``. ``auto_window``: answer each DATA with WINDOW_UPDATEs
    (stream and connection) so the proxy may go on sending; off, the peer never opens the
    windows (a client that does not read)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0, auto_window: bool = True, auto_ack: bool = True) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=1 << 24)
        self.decoder.max_allowed_table_size = 1 << 16
        self.auto_window = auto_window
        self.auto_ack = auto_ack
        self.events: list[tuple[Any, ...]] = []
        self.closed = False
        self.sent_closed = False
        self.next_id = 1
        self.opened: list[int] = []
        self._buf = b""
        self._raw_mode = False
        self._headers_block: tuple[int, bool, bytearray] | None = None

    # -- context -------------------------------------------------------------------------
    def __enter__(self) -> H2Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- sending -------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.sent_closed = True

    def send_frame(self, frame: Frame) -> None:
        self.send(frame.serialize())

    def preface(self, settings: dict[int, int] | None = None, magic: bytes = PREFACE) -> H2Peer:
        """The client magic and a SETTINGS frame (empty unless ``settings``)."""
        f = SettingsFrame(0)
        for k, v in (settings or {}).items():
            f.settings[k] = v
        self.send(magic + f.serialize())
        return self

    def handshake(self, settings: dict[int, int] | None = None) -> H2Peer:
        """The preface, then wait (bounded) for the proxy's SETTINGS and its ACK of ours (and
        the connection WINDOW_UPDATE that follows them): what the proxy does next answers
        only what the test sends next. (A proxy that closes with unread bytes in its socket
        makes the kernel send RST, which can drop what the client has not read yet.)"""
        self.preface(settings)

        def ready(p: H2Peer) -> bool:
            return bool(p.server_settings()) and any(ev[0] == "settings_ack" for ev in p.events)

        self.collect(until=ready, timeout=2.0, idle=0.05, wait_close=False)
        return self

    def settings_ack(self) -> None:
        self.send_frame(SettingsFrame(0, flags=["ACK"]))

    def encode(self, headers: Headers) -> bytes:
        return self.encoder.encode([(_b(k), _b(v)) for k, v in headers], huffman=False)

    def headers(
        self, stream_id: int, headers: Headers, end_stream: bool = False, max_frame: int = 16384, block: bytes | None = None
    ) -> None:
        """HEADERS (+ CONTINUATION frames beyond ``max_frame``) carrying ``headers`` as given
        (case, order, pseudo-headers anywhere: nothing is checked), or the HPACK ``block``."""
        if block is None:
            block = self.encode(headers)
        if stream_id not in self.opened:
            self.opened.append(stream_id)
        pieces = [block[i : i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
        first = HeadersFrame(stream_id, pieces[0])
        if end_stream:
            first.flags.add("END_STREAM")
        if len(pieces) == 1:
            first.flags.add("END_HEADERS")
        out = [first.serialize()]
        for i, piece in enumerate(pieces[1:], start=2):
            c = ContinuationFrame(stream_id, piece)
            if i == len(pieces):
                c.flags.add("END_HEADERS")
            out.append(c.serialize())
        self.send(b"".join(out))

    def data(self, stream_id: int, data: bytes, end_stream: bool = False, max_frame: int = 16384) -> None:
        out = []
        pieces = [data[i : i + max_frame] for i in range(0, len(data), max_frame)] or [b""]
        for i, piece in enumerate(pieces, start=1):
            f = DataFrame(stream_id, piece)
            if end_stream and i == len(pieces):
                f.flags.add("END_STREAM")
            out.append(f.serialize())
        self.send(b"".join(out))

    def trailers(self, stream_id: int, headers: Headers) -> None:
        self.headers(stream_id, headers, end_stream=True)

    def rst(self, stream_id: int, code: int = ErrorCodes.CANCEL) -> None:
        self.send_frame(RstStreamFrame(stream_id, error_code=code))

    def window_update(self, stream_id: int, increment: int) -> None:
        # hyperframe refuses an increment outside 1..2^31-1: build it raw.
        self.send(raw_frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment & 0xFFFFFFFF)))

    def ping(self, opaque: bytes = b"12345678", ack: bool = False) -> None:
        self.send_frame(PingFrame(0, opaque_data=opaque, flags=["ACK"] if ack else []))

    def goaway(self, code: int = ErrorCodes.NO_ERROR, last_stream_id: int = 0) -> None:
        self.send_frame(GoAwayFrame(0, last_stream_id=last_stream_id, error_code=code))

    def new_id(self) -> int:
        sid = self.next_id
        self.next_id += 2
        return sid

    def request(
        self,
        method: str = "GET",
        path: str = "/",
        authority: str | None = "h2.example",
        headers: Headers = (),
        body: bytes | None = None,
        trailers: Headers | None = None,
        scheme: str = "http",
        stream_id: int | None = None,
        end_stream: bool | None = None,
    ) -> int:
        """A whole request on a new stream (its id is returned): HEADERS, DATA, trailers."""
        sid = self.new_id() if stream_id is None else stream_id
        pseudo = [(":method", method), (":scheme", scheme)]
        if authority is not None:
            pseudo.append((":authority", authority))
        pseudo.append((":path", path))
        ends_with_headers = (not body and trailers is None) if end_stream is None else end_stream
        self.headers(sid, [*pseudo, *headers], end_stream=ends_with_headers)
        if body:
            self.data(sid, body, end_stream=trailers is None)
        if trailers is not None:
            self.trailers(sid, trailers)
        return sid

    # -- receiving -----------------------------------------------------------------------
    def finished(self, stream_id: int) -> bool:
        for ev in self.events:
            if ev[0] in ("headers", "data") and ev[1] == stream_id and ev[-1]:
                return True
            if ev[0] == "rst" and ev[1] == stream_id:
                return True
        return False

    def goaway_seen(self) -> bool:
        return any(ev[0] == "goaway" for ev in self.events)

    def all_finished(self) -> bool:
        return all(self.finished(s) for s in self.opened)

    def collect(
        self, until: Callable[[H2Peer], bool] | None = None, timeout: float = 3.0, idle: float = 0.15, wait_close: bool = True
    ) -> list[tuple[Any, ...]]:
        """Read and record frames until ``until(self)`` holds (default: every stream this peer
        opened ended or was reset, or a GOAWAY came) and then ``idle`` seconds pass with nothing
        new; or until the proxy closes; or ``timeout``. After a GOAWAY carrying an error the
        peer half-closes and (``wait_close``) waits for the proxy's close, so that whether the
        proxy closes is recorded (Envoy holds a connection it closes for up to its
        ``delayed_close_timeout`` until the client closes its side)."""
        if until is None:

            def until(p: H2Peer) -> bool:
                return p.all_finished() or p.goaway_seen()

        deadline = time.monotonic() + timeout
        half_closed = False
        while not self.closed:
            now = time.monotonic()
            if now >= deadline:
                break
            if not half_closed and wait_close and any(ev[0] == "goaway" and ev[1] != "NO_ERROR" for ev in self.events):
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_WR)
                half_closed = True
            if half_closed:
                wait = deadline - now
            elif until(self):
                wait = min(idle, deadline - now)
            else:
                wait = deadline - now
            self.sock.settimeout(max(wait, 0.001))
            try:
                chunk = self.sock.recv(262144)
            except TimeoutError:
                if half_closed or not until(self):
                    continue
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                self.events.append(("closed",))
                break
            self._feed(chunk)
        return self.events

    def read_for(self, seconds: float) -> None:
        """Record whatever comes during ``seconds`` (no stop condition)."""
        self.collect(until=lambda p: False, timeout=seconds, wait_close=False)

    def _feed(self, chunk: bytes) -> None:
        if self._raw_mode:
            self.events.append(("raw", chunk))
            return
        self._buf += chunk
        if not any(ev[0] != "raw" for ev in self.events) and self._buf[:5] == b"HTTP/":
            self._raw_mode = True
            self.events.append(("raw", self._buf))
            self._buf = b""
            return
        while len(self._buf) >= 9:
            length = int.from_bytes(self._buf[:3], "big")
            if len(self._buf) < 9 + length:
                return
            head, body = memoryview(self._buf[:9]), self._buf[9 : 9 + length]
            self._buf = self._buf[9 + length :]
            try:
                frame, _ = Frame.parse_frame_header(head)
                frame.parse_body(memoryview(body))
            except Exception as exc:  # noqa: BLE001 - recorded: a frame we cannot parse
                self.events.append(("bad_frame", head.tobytes().hex(), repr(exc)))
                continue
            self._on_frame(frame, length)

    def _on_frame(self, frame: Frame, length: int) -> None:
        ev = self.events
        if isinstance(frame, SettingsFrame):
            if "ACK" in frame.flags:
                ev.append(("settings_ack",))
            else:
                ev.append(("settings", {setting_name(k): v for k, v in frame.settings.items()}))
                if self.auto_ack:
                    self.settings_ack()
        elif isinstance(frame, (HeadersFrame, ContinuationFrame)):
            if isinstance(frame, HeadersFrame):
                self._headers_block = (frame.stream_id, "END_STREAM" in frame.flags, bytearray(frame.data))
            elif self._headers_block is not None:
                self._headers_block[2].extend(frame.data)
            if "END_HEADERS" in frame.flags and self._headers_block is not None:
                sid, end, block = self._headers_block
                self._headers_block = None
                decoded = [(_s(k), _s(v)) for k, v in self.decoder.decode(bytes(block), raw=True)]
                ev.append(("headers", sid, [(k, "<masked>" if k in MASKED else v) for k, v in decoded], end))
        elif isinstance(frame, DataFrame):
            end = "END_STREAM" in frame.flags
            ev.append(("data", frame.stream_id, bytes(frame.data), end))
            if self.auto_window and length:
                if not end:
                    self.window_update(frame.stream_id, length)
                self.window_update(0, length)
        elif isinstance(frame, RstStreamFrame):
            ev.append(("rst", frame.stream_id, code_name(frame.error_code)))
        elif isinstance(frame, GoAwayFrame):
            ev.append(("goaway", code_name(frame.error_code), frame.last_stream_id))
        elif isinstance(frame, WindowUpdateFrame):
            ev.append(("window_update", frame.stream_id, frame.window_increment))
        elif isinstance(frame, PingFrame):
            ack = "ACK" in frame.flags
            ev.append(("ping", ack, bytes(frame.opaque_data)))
            if not ack:
                self.ping(bytes(frame.opaque_data), ack=True)
        else:
            ev.append(("frame", type(frame).__name__, frame.stream_id))

    # -- views ---------------------------------------------------------------------------
    def server_settings(self) -> dict[str, int]:
        for ev in self.events:
            if ev[0] == "settings":
                return dict(ev[1])
        return {}

    def view(self) -> dict[str, Any]:
        """Per stream the response (headers, joined body, trailers, reset code, whether it
        ended), the GOAWAYs (code, last stream id), non-HTTP/2 bytes, whether the proxy closed.
        Connection-level SETTINGS, WINDOW_UPDATE and PING are left out (see :meth:`control`)."""
        streams: dict[int, dict[str, Any]] = {}

        def stream(sid: int) -> dict[str, Any]:
            return streams.setdefault(sid, {"headers": None, "body": b"", "trailers": None, "reset": None, "ended": False})

        goaways: list[tuple[str, int]] = []
        raw = b""
        bad: list[tuple[Any, ...]] = []
        for ev in self.events:
            kind = ev[0]
            if kind == "headers":
                s = stream(ev[1])
                if s["headers"] is None or (s["headers"] and s["headers"][0][1].startswith("1") and not s["body"]):
                    s["headers"] = ev[2]  # a 1xx head is replaced by the final one
                else:
                    s["trailers"] = ev[2]
                s["ended"] = s["ended"] or ev[3]
            elif kind == "data":
                s = stream(ev[1])
                s["body"] += ev[2]
                s["ended"] = s["ended"] or ev[3]
            elif kind == "rst":
                stream(ev[1])["reset"] = ev[2]
            elif kind == "goaway":
                goaways.append((ev[1], ev[2]))
            elif kind == "raw":
                raw += ev[1]
            elif kind in ("bad_frame", "frame"):
                bad.append(ev)
        out: dict[str, Any] = {"streams": dict(sorted(streams.items())), "goaway": goaways, "closed": self.closed}
        if raw:
            out["raw"] = raw
        if bad:
            out["other_frames"] = bad
        return out

    def control(self) -> list[tuple[Any, ...]]:
        """The connection-level frames in order (SETTINGS, their ACK, stream-0 WINDOW_UPDATE, PING)."""
        return [ev for ev in self.events if ev[0] in ("settings", "settings_ack", "ping") or (ev[0] == "window_update" and ev[1] == 0)]


def status_of(view: dict[str, Any], stream_id: int) -> str | None:
    s = view["streams"].get(stream_id)
    if not s or not s["headers"]:
        return None
    return dict(s["headers"]).get(":status")


def _b(x: str | bytes) -> bytes:
    return x if isinstance(x, bytes) else x.encode("latin-1")


def _s(x: str | bytes) -> str:
    return x if isinstance(x, str) else x.decode("latin-1")
