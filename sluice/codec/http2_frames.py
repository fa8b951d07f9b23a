"""The frames Envoy (oghttp2) answers differently from h2, for :class:`sluice.codec.http2.ServerCodec`:
checked (and answered) before h2's state machine sees them. A mixin: the codec's state is its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import h2.connection
from h2.errors import ErrorCodes
from h2.stream import StreamClosedBy, StreamState
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

if TYPE_CHECKING:
    from sluice.codec.http1 import CodecError
    from sluice.codec.http2 import Http2Settings

REMOTE_RESET = "remote reset"
"""Envoy's Http::Utility::resetReasonToString(RemoteReset)."""
MAX_WINDOW = 2**31 - 1


class FrameRules:
    """``_peek`` (raw bytes hyperframe would refuse) and ``_admit`` (parsed frames)."""

    __slots__ = ()

    conn: h2.connection.H2Connection
    settings: Http2Settings
    _settings_acked: bool
    _begun: int
    goaway_last_stream_id: int | None

    def _fail(self, reason: str) -> CodecError:
        raise NotImplementedError

    def _fail_silently(self, reason: str) -> CodecError:
        raise NotImplementedError

    def _stream_error(self, sid: int, code: int, reason: str) -> None:
        raise NotImplementedError

    def _refuse(self, sid: int) -> None:
        raise NotImplementedError

    def _reset_and_notify(self, sid: int, code: int, reason: str) -> None:
        raise NotImplementedError

    def _peek(self, data: bytearray, between_blocks: bool) -> bool:
        """Frames hyperframe refuses while parsing, where Envoy's answer differs: handled (and
        consumed) here, before h2's frame buffer sees them; false when one was."""
        if len(data) < 9 or not between_blocks:
            return True
        ftype = data[3]
        sid = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        if ftype == 0x4 and sid:
            # SETTINGS on a stream: Envoy closes without a GOAWAY (oghttp2 latches a
            # connection error that Envoy never flushes), where h2 would say PROTOCOL_ERROR.
            self._fail_silently("SETTINGS on a stream")
            return False
        if ftype == 0x8 and data[:3] == b"\x00\x00\x04" and len(data) >= 13 and not int.from_bytes(data[9:13], "big") & 0x7FFFFFFF:
            # A zero WINDOW_UPDATE (hyperframe refuses it as a frame error, GOAWAY): on the
            # connection or on a stream, Envoy closes without a frame (checked against Envoy
            # 1.40 for both; oghttp2 latches a connection error, unflushed).
            self._fail_silently(f"zero WINDOW_UPDATE on stream {sid}")
            return False
        return True

    def _partial_stream(self, data: bytearray, block: list[Any]) -> int:
        """A HEADERS frame (or header block) that has begun but is not complete: oghttp2 decodes
        as bytes arrive and calls OnBeginHeadersForStream at the frame header, where Envoy's
        codec creates the connection manager's stream (onBeginHeaders -> newStream), so Envoy
        counts it even if the rest never comes (then the client's close resets it). h2 hands a
        frame over only once whole: the connection's ``begin_stream(sid)`` is told here, and
        the stream is the same one when its headers complete. The stream id to begin, or 0."""
        if block:
            sid = int(block[0].stream_id)
        elif len(data) >= 9 and data[3] == 0x1:
            flags = data[4]
            need = 9 + (1 if flags & 0x8 else 0) + (5 if flags & 0x20 else 0)  # (PADDED, PRIORITY)
            if len(data) < need:
                return 0
            sid = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        else:
            return 0
        conn = self.conn
        if sid % 2 == 0 or sid <= max(conn.highest_inbound_stream_id, self._begun):
            return 0  # (even ids, reused or lower ones: answered once the frame is whole)
        if self.goaway_last_stream_id is not None and sid > self.goaway_last_stream_id:
            return 0
        limit = self.settings.max_concurrent_streams
        if len(conn.streams) >= limit and conn.open_inbound_streams >= limit:
            return 0  # (refused or fatal: never a stream for Envoy's connection manager)
        return sid

    def _admit(self, frame: Frame) -> bool:
        """Whether h2 may process ``frame``: false when Envoy's answer differs from h2's and was
        given here (then the frame is consumed, or :attr:`error` is set)."""
        if isinstance(frame, HeadersFrame):
            return self._admit_headers(frame)
        if isinstance(frame, WindowUpdateFrame):
            return self._admit_window_update(frame)
        if isinstance(frame, GoAwayFrame) and frame.last_stream_id % 2 == 1:
            # oghttp2 OnGoAway: a server's last_stream_id names one of its own (even) streams;
            # a client (odd) id is a connection error, which Envoy does not flush.
            self._fail_silently("GOAWAY with a client stream id")
            return False
        return True

    def _admit_headers(self, frame: HeadersFrame) -> bool:
        conn = self.conn
        sid = frame.stream_id
        if sid % 2 == 0:
            # An even (server) id from the client: oghttp2's connection error, unflushed.
            self._fail_silently(f"HEADERS on even stream {sid}")
            return False
        known = conn.streams.get(sid)
        if known is not None and known.state_machine.state == StreamState.HALF_CLOSED_REMOTE:
            # HEADERS after the request's END_STREAM: a connection error for oghttp2 (with or
            # without the override; checked against Envoy 1.40), unflushed; h2 would reset the
            # stream STREAM_CLOSED.
            self._fail_silently(f"HEADERS on half-closed stream {sid}")
            return False
        if (known is None and sid <= conn.highest_inbound_stream_id) or (known is not None and known.closed):
            # HEADERS on a stream that is closed (reused id) or that a higher id closed
            # implicitly: oghttp2 ignores it (OnBeginHeadersForStream finds no stream and the
            # id below its highest; RFC 9113 5.1.1 would make it PROTOCOL_ERROR, h2 does). The
            # block still goes through the HPACK decoder, whose state both ends share.
            try:
                conn.decoder.decode(frame.data, raw=True)
            except Exception as exc:  # noqa: BLE001 - any HPACK failure is COMPRESSION_ERROR
                conn._terminate_connection(ErrorCodes.COMPRESSION_ERROR)
                self._fail(f"HPACK: {exc}")
            return False
        limit = self.settings.max_concurrent_streams
        # (len(conn.streams) first: open_inbound_streams walks every stream h2 holds.)
        if known is None and len(conn.streams) >= limit and conn.open_inbound_streams >= limit:
            # oghttp2 OnBeginHeadersForStream: over MAX_CONCURRENT_STREAMS once the client has
            # acknowledged it is a connection error (unflushed); before the ACK the client may
            # not know the limit yet, and the stream is refused (RST_STREAM REFUSED_STREAM,
            # never seen by Envoy's connection manager).
            if self._settings_acked:
                self._fail_silently("max concurrent streams exceeded")
                return False
            self._refuse(sid)
        return True

    def _admit_window_update(self, frame: WindowUpdateFrame) -> bool:
        conn = self.conn
        sid = frame.stream_id
        inc = frame.window_increment
        if sid == 0:
            # oghttp2 OnWindowUpdate: a zero increment (PROTOCOL_ERROR) or one overflowing
            # 2^31-1 (FLOW_CONTROL_ERROR) on the connection is a connection error, unflushed.
            if inc == 0 or conn.outbound_flow_control_window + inc > MAX_WINDOW:
                self._fail_silently("bad connection WINDOW_UPDATE")
                return False
            return True
        h2_stream = conn.streams.get(sid)
        if h2_stream is None or h2_stream.closed:
            return True
        if h2_stream.outbound_flow_control_window + inc > MAX_WINDOW:
            # A stream's window overflowing is a connection error in oghttp2 (where RFC 9113
            # 6.9.1 and h2 reset the stream FLOW_CONTROL_ERROR); unflushed by Envoy.
            self._fail_silently(f"WINDOW_UPDATE overflows stream {sid}")
            return False
        return True


def send_pending(conn: h2.connection.H2Connection, stream: Any, stats: Any) -> bool:
    """Send a stream's held body as far as the peer's windows allow, then its end (trailers,
    or an empty DATA frame with END_STREAM) once everything is out; shared by the server and
    client codecs (``stream``: their ``_Stream``: pending, end, trailers, done, stream_id).
    Returns whether the stream's end was sent by this call."""
    sid = stream.stream_id
    buf = stream.pending
    sent = 0
    ended = False
    while buf:
        n = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(buf))
        if n <= 0:
            break
        chunk = bytes(buf[:n])
        del buf[:n]
        sent += n
        ended = not buf and stream.end and not stream.trailers
        conn.send_data(sid, chunk, end_stream=ended)
    if sent and stats is not None:
        stats.pending_send_bytes.dec(sent)
    if buf or not stream.end or stream.done:
        return False
    if not ended:
        if stream.trailers:
            conn.send_headers(sid, stream.trailers, end_stream=True)
        else:
            conn.end_stream(sid)  # (an empty DATA frame with END_STREAM)
    return True


class ServerConnection(h2.connection.H2Connection):
    """h2's connection for the server codec, with one of oghttp2's answers: a frame on a stream
    this side has reset is ignored (RFC 9113 5.4.2 allows it) instead of answered with
    RST_STREAM(STREAM_CLOSED), as Envoy 1.40 does for a client's DATA after the RST_STREAM of a
    local reply (tests/integration/test_grpc_differential.py). h2 still accounts the frame's
    bytes in the connection window. (The server codec itself never resets with STREAM_CLOSED.)"""

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        if len(frames) == 1:
            f = frames[0]
            if (
                isinstance(f, RstStreamFrame)
                and f.error_code == ErrorCodes.STREAM_CLOSED
                and self._stream_closed_by(f.stream_id) is StreamClosedBy.SEND_RST_STREAM
            ):
                return
        super()._prepare_for_sending(frames)

