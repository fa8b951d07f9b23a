"""Access logs (Envoy's ``envoy.config.accesslog.v3.AccessLog``): a filter deciding whether a
finished stream is logged, a formatter making the line, a sink writing it."""

from __future__ import annotations

from typing import Protocol

from sluice.formatter.context import FormatContext


class AccessLogInstance(Protocol):
    """One configured access logger (Envoy's ``AccessLog::Instance``)."""

    def log(self, ctx: FormatContext) -> None:
        """Filter, format and write (never blocks the event loop, never raises)."""
