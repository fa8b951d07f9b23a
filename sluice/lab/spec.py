"""The plan file (``plan.json``): what the supervisor runs, as plain records.

Kept apart from ``plan.py`` so the supervisor, which lives as long as the lab, loads only these
records and not the compose parser or the image registry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

READY_TIMEOUT = 15.0


@dataclass(slots=True)
class ProcessPlan:
    name: str
    argv: list[str]
    env: dict[str, str]
    ports: list[tuple[str, int, str]] = field(default_factory=list)
    """(address, port, origin) that accept connections once the process is ready."""


@dataclass(slots=True)
class ForwardPlan:
    listen: tuple[str, int]
    target: tuple[str, int]
    spec: str


@dataclass(slots=True)
class ServicePlan:
    name: str
    prefix: str
    """Compose's container name, ``<project>-<service>-1``: the log prefix."""
    image: str
    program: str
    address: str
    hostname: str
    root: str
    log: str
    depends_on: list[str]
    restart: str = "no"
    restart_max: int = 0
    processes: list[ProcessPlan] = field(default_factory=list)
    forwards: list[ForwardPlan] = field(default_factory=list)
    not_running: str | None = None


@dataclass(slots=True)
class Plan:
    project: str
    lab_dir: str
    compose_file: str
    state_dir: str
    namespaces: bool
    subnets: dict[str, str]
    names: dict[str, list[str]]
    services: list[ServicePlan]
    """In start order."""
    problems: list[str]
    ready_timeout: float = READY_TIMEOUT
    docker_dir: str | None = None
    """Set when a service mounts ``/var/lib/docker``: every service's output is also written
    there as Docker's json-file logs (``docker_logs.py``)."""

    def service(self, name: str) -> ServicePlan:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        services = []
        for s in data["services"]:
            procs = [ProcessPlan(p["name"], p["argv"], p["env"], [tuple(x) for x in p["ports"]]) for p in s["processes"]]
            fwds = [ForwardPlan(tuple(f["listen"]), tuple(f["target"]), f["spec"]) for f in s["forwards"]]
            services.append(ServicePlan(**{**s, "processes": procs, "forwards": fwds}))
        return cls(**{**data, "services": services})
