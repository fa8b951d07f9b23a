"""HTTP/1.1 upgrades (websocket and the like) and HTTP/2 extended CONNECT (RFC 8441, with
``http2_protocol_options.allow_connect``): Envoy's ``upgrade_configs``, on the HCM's side.

Theory of operation (checked against Envoy 1.40 by tests/integration/test_websocket.py):
- Whether an upgrade request may go on is decided once its route is known, as Envoy's
  ``createUpgradeFilterChain``: a route that names the upgrade type decides (``enabled``), else
  the HCM's ``upgrade_configs`` (a listed type is enabled unless ``enabled: false``); types are
  compared case-insensitively. A refused upgrade keeps today's answer (403 ``upgrade_failed``).
- An allowed upgrade gets a :class:`Tunnel` on its stream (``ActiveStream.tunnel``): the request
  never ends (the codec passes every later byte on as body), ``connection`` and ``upgrade`` are
  forwarded upstream in place, and the upstream request goes out without body framing.
- The upstream's ``101`` with ``upgrade`` and ``connection: upgrade`` is written by
  :meth:`Tunnel.response_head` (no framing, ``connection``/``upgrade`` kept, the upstream's
  ``date`` kept, ``server`` in place); from then on bytes go both ways raw through the router,
  until either side closes, which closes both. Any other answer is a normal response after which
  the connection closes (the request never completed); one below 400 loses its body, as Envoy's.
- Stats: ``downstream_cx_upgrades_total`` / ``_active`` from the allowed upgrade to the end of
  its stream; the 101 counts as a 1xx completed response when it is sent (Envoy charges it
  with the headers); the end of a tunnel counts ``downstream_rq_response_before_rq_complete``
  and a reset of the (never complete) request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sluice.clock import REAL, TimeSource
from sluice.formatter.context import AccessLogType
from sluice.http import http1
from sluice.http.date import http_date
from sluice.http.headers import ResponseHeaders
from sluice.http.stream_info import ResponseFlag

if TYPE_CHECKING:
    from sluice.http.conn_manager import ActiveStream
    from sluice.http.headers import RequestHeaders

# Dropped from an upgrade's 101: Envoy keeps ``connection`` and ``upgrade`` for it.
_TUNNEL_HOP_BY_HOP = frozenset({"keep-alive", "proxy-connection", "transfer-encoding"})


def upgrade_map(configs: Iterable[Any]) -> dict[str, bool]:
    """``upgrade_configs`` (HCM or route) as lower-cased type → enabled (a BoolValue, true
    when unset). A type listed twice: the last wins. Divergence from Envoy, which refuses a
    duplicate type in the HCM's list at load."""
    return {c.upgrade_type.lower(): c.enabled.value if c.HasField("enabled") else True for c in configs}


def allowed(headers: RequestHeaders, route_map: dict[str, bool] | None, hcm_map: dict[str, bool]) -> bool:
    """Envoy's ``createUpgradeFilterChain``: the route's word first, then the HCM's."""
    kind = (headers.get("upgrade") or "").lower()
    if route_map:
        enabled = route_map.get(kind)
        if enabled is not None:
            return enabled
    return hcm_map.get(kind, False)


def _is_upgrade_response(headers: ResponseHeaders) -> bool:
    if "upgrade" not in headers:
        return False
    return any(t.strip().lower() == "upgrade" for v in headers.get_all("connection") for t in v.split(","))


class Tunnel:
    """An allowed upgrade's state on its stream."""

    __slots__ = ("stream", "established")

    def __init__(self, stream: ActiveStream) -> None:
        self.stream = stream
        self.established = False
        """The 101 went to the client: bytes flow raw both ways."""
        st = stream.config.stats
        st.downstream_cx_upgrades_total.inc()
        st.downstream_cx_upgrades_active.inc()

    def response_head(self, headers: ResponseHeaders, end_stream: bool) -> bool | None:
        """Called by ``ActiveStream._write_headers`` first. Writes a 101 upgrade itself (then
        None); otherwise readies the response for the normal path and returns its end_stream."""
        if headers.status != 101 or not _is_upgrade_response(headers):
            # Not switched: Envoy's mutateResponseHeaders drops upgrade (and connection).
            if "upgrade" in headers:
                headers.remove("upgrade")
            return end_stream
        stream = self.stream
        cfg = stream.config
        stream.response_started = True
        stream.response_headers = headers
        info = stream.stream_info
        info.response_code = 101
        # The connection manager's clock (HcmConfig.clock, once it has one): last_activity is
        # compared with its readings by the stream idle timer.
        clock: TimeSource = getattr(cfg, "clock", REAL)
        info.first_downstream_tx = stream.last_activity = clock.monotonic()
        entries = [e for e in headers.entries if e[0] not in _TUNNEL_HOP_BY_HOP]
        # Envoy keeps the upstream's date (adds one when absent) and sets server in place.
        date_set = server_set = False
        out: list[list[str]] = []
        for e in entries:
            if e[0] == "date":
                if date_set:
                    continue
                date_set = True
            elif e[0] == "server":
                if server_set:
                    continue
                e[1] = cfg.server_name
                server_set = True
            out.append(e)
        if not date_set:
            out.append(["date", http_date()])
        if not server_set:
            out.append(["server", cfg.server_name])
        headers.entries = out
        if stream.h2 is not None:
            # An extended CONNECT (RFC 8441): Envoy's codec turns the 101 into a 200 without
            # upgrade/connection (transformUpgradeResponseFromH1toH2); the tunnel's bytes are
            # the stream's DATA. (The stats keep the 101: Envoy charges it before the codec.)
            h2_head = ResponseHeaders(200, [e for e in out if e[0] not in ("upgrade", "connection")])
            stream.conn.encode_h2_headers(stream.stream_id, h2_head, False)
        else:
            data, _ = http1.encode_response_head(headers, False, False, proper_case=cfg.http1_settings.proper_case_words)
            stream.conn.write(data)
        self.established = True
        if cfg.access_logs and cfg.access_log_on_tunnel:
            stream.log_access(AccessLogType.DownstreamTunnelSuccessfullyEstablished)
        # Envoy charges the response code with the headers: a 1xx, completed.
        st = cfg.stats
        st.downstream_rq_completed.inc()
        cfg.xx[0].inc()
        if cfg.listener_stats is not None:
            cfg.listener_stats.downstream_rq_completed.inc()
            cfg.listener_xx[0].inc()
        return None

    def on_destroy(self) -> None:
        """The stream ends (either side closed, a timeout, a refusal)."""
        stream = self.stream
        st = stream.config.stats
        st.downstream_cx_upgrades_active.dec()
        if self.established:
            # (A normal answer counted it when it completed: the request never does.)
            st.downstream_rq_response_before_rq_complete.inc()
        if not stream.stream_info.response_flags & ResponseFlag.DOWNSTREAM_CONNECTION_TERMINATION:
            # Ended from our side (an answer, the upstream's close, a timeout): Envoy resets the
            # never complete request too (on a client's close, on_downstream_reset counted it).
            st.downstream_rq_rx_reset.inc()
