"""The admin listener: an HCM (``http.admin.*`` stats) whose terminal filter answers admin
requests from the handler table in :mod:`sluice.admin.handlers`.

Every admin response is streamed (``transfer-encoding: chunked``) with the headers Envoy sends:
``content-type``, ``cache-control: no-cache, max-age=0``, ``x-content-type-options: nosniff``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sluice.access_log.config import AccessLogger, build_access_logs
from sluice.admin import handlers
from sluice.admin.formats import normalize_path, parse_query
from sluice.errors import ConfigError
from sluice.formatter import default_formatter
from sluice.http.conn_manager import DownstreamConnection, HcmConfig, make_connection
from sluice.http.filter import STOP_ITERATION, STOP_ITERATION_NO_BUFFER, FilterStatus
from sluice.http.filter_manager import ActiveStreamFilter
from sluice.http.headers import RequestHeaders, ResponseHeaders
from sluice.paths import host_path
from sluice.stats.blocks import AdminListenerStats, ListenerConnections, PerHandlerListenerStats

if TYPE_CHECKING:
    from sluice.server import Server

log = logging.getLogger("sluice.admin")


class AdminRequest:
    """What a handler sees: method, path, and the parameters - those of the query string, or,
    when it has none, those of a form body (``application/x-www-form-urlencoded``), as Envoy
    takes them. ``pairs`` keeps them in order; ``params`` maps each name to its first value."""

    __slots__ = ("method", "path", "pairs", "params", "body", "raw_path")

    def __init__(self, method: str, raw_path: str, body: bytes, content_type: str) -> None:
        self.method = method
        self.raw_path = raw_path
        path, _, query = raw_path.partition("?")
        self.path = normalize_path(path)
        pairs = parse_query(query)
        if not pairs and body and content_type.startswith("application/x-www-form-urlencoded"):
            pairs = parse_query(body.decode("latin-1"))
        self.pairs = pairs
        params: dict[str, str] = {}
        for k, v in pairs:
            params.setdefault(k, v)
        self.params = params
        self.body = body


class AdminFilter:
    __slots__ = ("admin", "stream", "body")

    def __init__(self, admin: AdminServer, stream: ActiveStreamFilter) -> None:
        self.admin = admin
        self.stream = stream
        self.body = bytearray()

    def decode_headers(self, headers: RequestHeaders, end_stream: bool) -> FilterStatus:
        if end_stream:
            self._respond()
        return STOP_ITERATION

    def decode_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        self.body += data
        if end_stream:
            self._respond()
        return STOP_ITERATION_NO_BUFFER

    def _respond(self) -> None:
        h = self.stream.request_headers
        req = AdminRequest(h.method, h.path, bytes(self.body), h.get("content-type") or "")
        leading: tuple[tuple[str, str], ...] = ()
        try:
            status, content_type, body, *rest = handlers.dispatch(self.admin.server, req)
            if rest:
                leading = rest[0]
        except Exception:  # noqa: BLE001 - an admin bug must not take the proxy down
            log.exception("admin handler failed for %s", h.path)
            status, content_type, body = 500, handlers.TEXT, "internal error\n"
        headers = ResponseHeaders(
            status,
            [
                *([k, v] for k, v in leading),
                ["content-type", content_type],
                ["cache-control", "no-cache, max-age=0"],
                ["x-content-type-options", "nosniff"],
            ],
        )
        payload = body.encode("utf-8") if isinstance(body, str) else body
        self.stream.encode_headers(headers, False)
        self.stream.encode_data(payload, True)
        if req.path == "/quitquitquit" and status == 200:
            self.admin.server.request_stop()

    def on_destroy(self) -> None:
        pass


class AdminServer:
    def __init__(self, server: Server, admin_msg: Any) -> None:
        self.server = server
        sa = admin_msg.address.socket_address
        self.ip = server._bind_ip(sa.address)
        self.port = sa.port_value
        self.access_log_path = host_path(admin_msg.access_log_path, for_write=True) if admin_msg.access_log_path else ""
        access_logs = build_access_logs(
            admin_msg.access_log, "admin.access_log", files=server.access_log_files, runtime=server.runtime, rng=server.rng
        )
        if self.access_log_path:
            # The deprecated access_log_path: a file logger with Envoy's default format.
            try:
                file = server.access_log_files.file(self.access_log_path)
            except OSError as exc:
                raise ConfigError(f"admin.access_log_path: unable to open file '{self.access_log_path}': {exc.strerror}") from exc
            access_logs = (AccessLogger("admin.access_log_path", None, default_formatter(), file), *access_logs)
        self.listener_stats = AdminListenerStats.declare(server.store, "listener.admin.")
        # The admin listener runs on Envoy's main thread: its handler copy is ``main_thread``.
        self.accounting = ListenerConnections(
            self.listener_stats, PerHandlerListenerStats.declare(server.store, "listener.admin.main_thread.")
        )
        self.hcm = HcmConfig(
            stat_prefix="admin",
            store=server.store,
            route_table=None,
            filter_factories=[lambda stream: AdminFilter(self, stream)],
            listener_stats_prefix="listener.admin.",
            rng=server.rng,
            server=None,
            tracing=False,
            access_logs=access_logs,
            # Envoy's admin connection manager: the peer's address is used (XFF appended, the
            # host's own address for a loopback peer), no request id (admin_impl.h).
            use_remote_address=True,
            generate_request_id=False,
            local_address_ip=server.local_ip,
        )
        self._server: asyncio.AbstractServer | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        monotonic = self.server.clock.monotonic

        def make() -> DownstreamConnection:
            accounting = self.accounting
            accounting.opened()
            opened = monotonic()

            def closed(_c: DownstreamConnection) -> None:
                accounting.closed((monotonic() - opened) * 1000)

            return make_connection(self.hcm, closed)

        self._server = await loop.create_server(make, self.ip, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        # The stats flush (histogram merge included) is the server's: Server.flush_stats.

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
