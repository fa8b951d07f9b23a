"""Name resolution for STRICT_DNS / LOGICAL_DNS clusters.

``SLUICE_HOSTS_FILE`` names a file in ``/etc/hosts`` form that is consulted before the system
resolver; several lines may give one name, and every address they give is a host (this is how
the lab runner makes a compose alias shared by several services resolve to all of them).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket


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


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


async def resolve(name: str, family: int = socket.AF_INET) -> list[str]:
    """Every address ``name`` resolves to (in order, without duplicates)."""
    if is_ip(name):
        return [name]
    hosts_file = os.environ.get("SLUICE_HOSTS_FILE")
    if hosts_file:
        found = parse_hosts_file(hosts_file).get(name.lower())
        if found:
            return found
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, None, family=family, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in out:
            out.append(addr)
    return out
