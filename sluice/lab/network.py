"""A compose network on loopback: one 127.x.y.z address per service, and a hosts table.

Rules (all addresses are in 127.0.0.0/8, which Linux routes to ``lo`` without configuration):

- A subnet written in the file maps by replacing its first octet with 127: the course's
  ``172.31.55.0/24`` becomes ``127.31.55.0/24`` and ``ipv4_address: 172.31.55.10`` becomes
  ``127.31.55.10``, so the course's commands work with ``172`` → ``127``.
- A network without ``ipam`` gets a /24 derived from the project and network names
  (``127.200-249.N.0/24``): deterministic, so ``sluice lab hosts`` can print it before ``up``.
- Services without ``ipv4_address`` take ``.2``, ``.3``, … in file order, skipping the fixed
  addresses of the network (and addresses whose ports are taken, when the caller says so).
- ``network_mode: service:X`` shares X's address and gets no name of its own, as in compose.

Names: a service is known by its service name, ``hostname``, ``container_name`` (or compose's
``<project>-<service>-1``), its pseudo container id, and its ``aliases``. A name several services
share resolves to all of them, in file order.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sluice.lab.compose import Project, Service


class NetworkError(Exception):
    """An address the lab cannot use; the message names the service and key."""


def map_address(address: str) -> str:
    """``172.31.55.10`` → ``127.31.55.10``: the first octet becomes 127, the rest is kept."""
    ip = ipaddress.IPv4Address(address)
    return str(ipaddress.IPv4Address((127 << 24) | (int(ip) & 0x00FFFFFF)))


def map_subnet(subnet: str) -> ipaddress.IPv4Network:
    net = ipaddress.IPv4Network(subnet, strict=False)
    if net.prefixlen < 8:
        raise ValueError(f"subnet {subnet} is larger than 127.0.0.0/8")
    return ipaddress.IPv4Network(f"{map_address(str(net.network_address))}/{net.prefixlen}", strict=False)


def derived_subnet(project: str, network: str) -> ipaddress.IPv4Network:
    """A /24 for a network the file gives no subnet: ``127.(200+h%50).(h>>8 % 256).0/24``."""
    h = int.from_bytes(hashlib.sha256(f"{project}_{network}".encode()).digest()[:4], "big")
    return ipaddress.IPv4Network(f"127.{200 + h % 50}.{(h >> 8) % 256}.0/24")


def container_id(project: str, service: str) -> str:
    """A stable 12-hex pseudo container id: the default hostname of a container."""
    return hashlib.sha256(f"{project}/{service}".encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Addressing:
    subnets: dict[str, ipaddress.IPv4Network]
    """Network name → loopback subnet."""
    addresses: dict[str, str]
    """Service name → its loopback address (shared for ``network_mode: service:X``)."""
    hostnames: dict[str, str]
    """Service name → its hostname (``hostname``, else its pseudo container id)."""
    names: dict[str, list[str]]
    """Name → addresses, in file order (the lab's hosts table)."""


def hostname_of(project: Project, svc: Service) -> str:
    shared = svc.shares_network_of
    if shared is not None and svc.hostname is None:
        return hostname_of(project, project.services[shared])
    return svc.hostname or container_id(project.name, svc.name)


def allocate(project: Project, is_free: Callable[[str, str], bool] | None = None) -> Addressing:
    """Give every service its address. ``is_free(service, address)`` lets the caller skip an
    address whose ports are taken; without it every unreserved address is free."""
    subnets: dict[str, ipaddress.IPv4Network] = {}
    for name, network in project.networks.items():
        if network.subnet:
            try:
                subnets[name] = map_subnet(network.subnet)
            except ValueError as exc:
                raise NetworkError(f"networks.{name}.ipam.config.subnet: {exc}") from exc
        else:
            subnets[name] = derived_subnet(project.name, name)

    addresses: dict[str, str] = {}
    reserved: dict[str, set[str]] = {n: set() for n in subnets}
    for svc in project.services.values():
        for net, att in svc.networks.items():
            if att.ipv4_address:
                try:
                    addr = map_address(att.ipv4_address)
                except ValueError as exc:
                    raise NetworkError(f"service '{svc.name}': networks.{net}.ipv4_address: {exc}") from exc
                if ipaddress.IPv4Address(addr) not in subnets[net]:
                    raise NetworkError(
                        f"service '{svc.name}': networks.{net}.ipv4_address: {att.ipv4_address} is outside the network's subnet"
                    )
                for other, a in addresses.items():
                    if a == addr:
                        raise NetworkError(f"service '{svc.name}': networks.{net}.ipv4_address: {att.ipv4_address} is also {other}'s")
                reserved[net].add(addr)
                addresses.setdefault(svc.name, addr)

    for svc in project.services.values():
        if svc.name in addresses or svc.shares_network_of is not None:
            continue
        net = next(iter(svc.networks))
        subnet = subnets[net]
        taken = reserved[net] | set(addresses.values())
        for host in _hosts(subnet):
            addr = str(host)
            if addr in taken:
                continue
            if is_free is not None and not is_free(svc.name, addr):
                continue
            addresses[svc.name] = addr
            reserved[net].add(addr)
            break
        else:
            raise NetworkError(f"service '{svc.name}': networks.{net}: no free address left in {subnet}")

    for svc in project.services.values():
        shared = svc.shares_network_of
        if shared is not None:
            root = shared
            while project.services[root].shares_network_of is not None:
                root = project.services[root].shares_network_of or root
            addresses[svc.name] = addresses[root]

    hostnames = {name: hostname_of(project, svc) for name, svc in project.services.items()}
    names: dict[str, list[str]] = {}
    for svc in project.services.values():
        if svc.shares_network_of is not None:
            continue
        addr = addresses[svc.name]
        for n in service_names(project, svc):
            lst = names.setdefault(n, [])
            if addr not in lst:
                lst.append(addr)
    ordered = {svc: addresses[svc] for svc in project.services}
    return Addressing(subnets, ordered, hostnames, names)


def _hosts(subnet: ipaddress.IPv4Network) -> Iterable[ipaddress.IPv4Address]:
    # .1 is the network's gateway in docker; start at .2 as docker does.
    for host in subnet.hosts():
        if int(host) - int(subnet.network_address) >= 2:
            yield host


def service_names(project: Project, svc: Service) -> list[str]:
    """Every name the service answers to on its networks."""
    out = [svc.name]
    if svc.hostname:
        out.append(svc.hostname)
    out.append(project.container_name(svc.name))
    out.append(container_id(project.name, svc.name))
    for att in svc.networks.values():
        out.extend(att.aliases)
    seen: set[str] = set()
    unique = []
    for n in out:
        if n.lower() not in seen:
            seen.add(n.lower())
            unique.append(n)
    return unique


def render_hosts(names: dict[str, list[str]], header: str = "") -> str:
    """An /etc/hosts file: one line per address, names in table order."""
    by_addr: dict[str, list[str]] = {}
    for name, addrs in names.items():
        for a in addrs:
            by_addr.setdefault(a, []).append(name)
    lines = [f"# {header}"] if header else []
    lines += [f"{a}\t{' '.join(ns)}" for a, ns in sorted(by_addr.items(), key=lambda kv: ipaddress.IPv4Address(kv[0]))]
    return "\n".join(lines) + "\n"


def service_hosts(address: str, hostname: str, names: dict[str, list[str]], header: str = "") -> str:
    """The /etc/hosts a service's processes see: ``localhost`` and its hostname are its own
    address (a container's loopback is its own; processes sharing its network see the same),
    then the lab's table."""
    head = f"{address}\tlocalhost {hostname}\n::1\tip6-localhost ip6-loopback\n"
    return head + render_hosts(names, header)


def bind_error(address: str, port: int) -> OSError | None:
    """Try to bind ``address:port`` as a server would (SO_REUSEADDR); the error, or None."""
    if not ipaddress.IPv4Address(address).is_loopback:
        return OSError(errno.EADDRNOTAVAIL, f"{address} is not a loopback address")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
    except OSError as exc:
        return exc
    finally:
        s.close()
    return None


def port_owner(address: str, port: int) -> str | None:
    """``pid N (command)`` of the process listening on ``address:port`` (or on every address
    with that port), from /proc; None when it cannot be told."""
    inodes: set[str] = set()
    want = {ipaddress.IPv4Address(address).packed[::-1].hex().upper(), "00000000"}
    for table, zero in (("/proc/net/tcp", "00000000"), ("/proc/net/tcp6", "0" * 32)):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) < 10 or cols[3] != "0A":  # 0A = LISTEN
                continue
            addr_hex, port_hex = cols[1].split(":")
            if int(port_hex, 16) == port and (addr_hex in want or addr_hex == zero):
                inodes.add(cols[9])
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {pid} ({cmd[:80]})"
            except OSError:
                continue
    return None


def accepting(address: str, port: int, timeout: float = 0.2) -> bool:
    """Is something accepting TCP connections on ``address:port``?"""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False
