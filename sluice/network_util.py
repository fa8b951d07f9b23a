"""Small address helpers."""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFADDR = 0x8915


def local_address() -> str:
    """The first non-loopback IPv4 interface address, as Envoy's ``getLocalAddress`` picks it
    (it is what Envoy puts in ``x-forwarded-for`` of its own requests). Read-only: nothing
    is bound or sent."""
    try:
        names = [n for _i, n in socket.if_nameindex()]
    except OSError:
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            if name == "lo":
                continue
            try:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
            addr = socket.inet_ntoa(packed[20:24])
            if not addr.startswith("127."):
                return addr
    return "127.0.0.1"


def listener_stat_name(ip: str, port: int) -> str:
    """Envoy's listener stat scope: ``listener.127.0.0.1_8080.`` (``[::1]_80`` style for v6)."""
    return f"listener.{ip}_{port}."
