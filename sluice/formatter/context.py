"""What a formatter reads about one request (Envoy's ``Formatter::HttpFormatterContext``).

Built once when a stream ends (or when a header value is formatted) and handed to every
formatter and access-log filter; nothing in it does I/O.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sluice.http.headers import HeaderMap, RequestHeaders, ResponseHeaders
    from sluice.http.stream_info import StreamInfo


class AccessLogType(enum.Enum):
    """Envoy's ``AccessLog::AccessLogType`` (``%ACCESS_LOG_TYPE%`` prints the name)."""

    NotSet = "NotSet"
    TcpUpstreamConnected = "TcpUpstreamConnected"
    TcpPeriodic = "TcpPeriodic"
    TcpConnectionEnd = "TcpConnectionEnd"
    DownstreamStart = "DownstreamStart"
    DownstreamPeriodic = "DownstreamPeriodic"
    DownstreamEnd = "DownstreamEnd"
    UpstreamPoolReady = "UpstreamPoolReady"
    UpstreamPeriodic = "UpstreamPeriodic"
    UpstreamEnd = "UpstreamEnd"
    DownstreamTunnelSuccessfullyEstablished = "DownstreamTunnelSuccessfullyEstablished"
    UpstreamTunnelSuccessfullyEstablished = "UpstreamTunnelSuccessfullyEstablished"


class FormatContext:
    """The request and response headers, trailers and stream record of one stream. Any of
    the header maps may be None (a codec error before the request headers, a reset before
    the response); formatters print Envoy's ``-`` for what is absent."""

    __slots__ = ("request_headers", "response_headers", "response_trailers", "stream_info", "local_reply_body", "log_type")

    def __init__(
        self,
        stream_info: StreamInfo,
        request_headers: RequestHeaders | None = None,
        response_headers: ResponseHeaders | None = None,
        response_trailers: HeaderMap | None = None,
        local_reply_body: str = "",
        log_type: AccessLogType = AccessLogType.NotSet,
    ) -> None:
        self.stream_info = stream_info
        self.request_headers = request_headers
        self.response_headers = response_headers
        self.response_trailers = response_trailers
        self.local_reply_body = local_reply_body
        self.log_type = log_type
