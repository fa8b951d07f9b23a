"""An upstream host and its per-host stats (shown by ``/clusters``)."""

from __future__ import annotations


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
    """One endpoint of a cluster."""

    __slots__ = ("ip", "port", "hostname", "weight", "stats", "address", "healthy", "health_flags")

    def __init__(self, ip: str, port: int, hostname: str = "", weight: int = 1) -> None:
        self.ip = ip
        self.port = port
        self.hostname = hostname
        self.weight = weight
        self.stats = HostStats()
        self.address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        self.healthy = True
        self.health_flags = "healthy"

    def __repr__(self) -> str:
        return f"<Host {self.address}>"
