"""Name resolution for STRICT_DNS / LOGICAL_DNS clusters.

``SLUICE_HOSTS_FILE`` names a file in ``/etc/hosts`` form that is consulted before the system
resolver; several lines may give one name, and every address they give is a host (this is how
the lab runner makes a compose alias shared by several services resolve to all of them).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING

from sluice.options import lab_options

if TYPE_CHECKING:
    from sluice.stats.blocks import DnsResolverStats


def parse_hosts_file(path: str) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        return table
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        addr, *names = line.split()
        for n in names:
            lst = table.setdefault(n.lower(), [])
            if addr not in lst:
                lst.append(addr)
    return table


LOOPBACK_NAMES = frozenset({"127.0.0.1", "::1", "localhost"})


def local_alias(address: str) -> str:
    """``SLUICE_LOCALHOST_ADDRESS``: inside a lab, a service's own loopback (127.0.0.1,
    localhost) is the service's address, as it is a container's own loopback. Used for
    upstream endpoints and listener binds; outside a lab, addresses are used as given."""
    if address in LOOPBACK_NAMES:
        override = lab_options().localhost_address
        if override:
            return override
    return address


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


AUTO, V4_ONLY, V6_ONLY, V4_PREFERRED, ALL = 0, 1, 2, 3, 4
"""Cluster.DnsLookupFamily values."""


async def resolve(name: str, lookup_family: int = AUTO, stats: DnsResolverStats | None = None) -> list[str]:
    """Every address ``name`` resolves to (in order, without duplicates), with Envoy's
    ``dns_lookup_family`` semantics: AUTO tries IPv6 first and falls back to IPv4 (a second
    query only when the first found nothing), V4_PREFERRED the other way round, ALL asks both.
    ``stats`` counts the queries as Envoy's c-ares resolver does (``dns.cares.*``)."""
    name = local_alias(name)
    if is_ip(name):
        return [name]
    found: list[str] | None = None
    hosts_file = lab_options().hosts_file
    if hosts_file:
        found = parse_hosts_file(hosts_file).get(name.lower()) or None

    async def query(family: int) -> list[str]:
        if stats is not None:
            stats.resolve_total.inc()
        if found is not None:
            # (the lab's hosts file stands for the containers' DNS server)
            got = [a for a in found if (":" in a) == (family == socket.AF_INET6)]
        else:
            got = await _lookup(name, family)
        if not got and stats is not None:
            stats.not_found.inc()
        return got

    if stats is not None:
        stats.pending_resolutions.inc()
    try:
        if lookup_family == V4_ONLY:
            out = await query(socket.AF_INET)
        elif lookup_family == V6_ONLY:
            out = await query(socket.AF_INET6)
        elif lookup_family == V4_PREFERRED:
            out = await query(socket.AF_INET) or await query(socket.AF_INET6)
        elif lookup_family == ALL:
            out = await query(socket.AF_INET) + await query(socket.AF_INET6)
        else:
            out = await query(socket.AF_INET6) or await query(socket.AF_INET)
    finally:
        if stats is not None:
            stats.pending_resolutions.dec()
    if not out:
        raise OSError(f"no address for {name!r}")
    return out


async def _lookup(name: str, family: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, None, family=family, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in out:
            out.append(addr)
    return out
