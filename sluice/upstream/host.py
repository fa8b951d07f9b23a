"""An upstream host and its per-host stats (shown by ``/clusters``)."""

from __future__ import annotations

from typing import Any


class HostStats:
    __slots__ = (
        "cx_active",
        "cx_connect_fail",
        "cx_total",
        "rq_active",
        "rq_error",
        "rq_success",
        "rq_timeout",
        "rq_total",
    )

    def __init__(self) -> None:
        self.cx_active = 0
        self.cx_connect_fail = 0
        self.cx_total = 0
        self.rq_active = 0
        self.rq_error = 0
        self.rq_success = 0
        self.rq_timeout = 0
        self.rq_total = 0


class Host:
    """One endpoint of a cluster. ``healthy`` is false while active health checking failed it
    (``failed_active_hc``) or outlier detection ejected it (``failed_outlier_check``);
    ``health_flags`` is Envoy's ``/clusters`` rendering of those flags."""

    __slots__ = (
        "ip",
        "port",
        "hostname",
        "weight",
        "stats",
        "address",
        "healthy",
        "health_flags",
        "failed_active_hc",
        "failed_outlier_check",
        "outlier",
        "metadata",
    )

    def __init__(self, ip: str, port: int, hostname: str = "", weight: int = 1,
                 metadata: dict[str, dict[str, object]] | None = None) -> None:
        self.ip = ip
        self.port = port
        self.hostname = hostname
        self.weight = weight
        self.stats = HostStats()
        self.address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        self.healthy = True
        self.health_flags = "healthy"
        self.failed_active_hc = False
        self.failed_outlier_check = False
        self.outlier: Any = None
        self.metadata = metadata
        """The endpoint's ``filter_metadata`` (namespace → values), for %UPSTREAM_METADATA%."""
        """The cluster's outlier detector once the host is tracked (``outlier.py``), else None."""

    def __repr__(self) -> str:
        return f"<Host {self.address} {self.health_flags}>"

    def set_failed_active_hc(self, failed: bool) -> None:
        self.failed_active_hc = failed
        self._update_health()

    def set_failed_outlier(self, failed: bool) -> None:
        self.failed_outlier_check = failed
        self._update_health()

    def _update_health(self) -> None:
        # Envoy's healthFlagsToString order: FAILED_ACTIVE_HC, then FAILED_OUTLIER_CHECK.
        flags = ""
        if self.failed_active_hc:
            flags += "/failed_active_hc"
        if self.failed_outlier_check:
            flags += "/failed_outlier_check"
        self.healthy = not flags
        self.health_flags = flags or "healthy"
