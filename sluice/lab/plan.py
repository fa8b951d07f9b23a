"""Compose file + addresses + image registry → a plan the supervisor runs without thinking.

``make_plan`` does every check that can fail *before* anything starts (unknown ``depends_on``,
a missing mounted file, a port in use or privileged), so a failed ``up`` leaves nothing running.
The plan is plain data (``plan.json`` in the state folder): final argv (already wrapped for the
service's namespace and ulimits), environment, the ports that say "ready", forwards for
published ports, and the start order.

Per-process isolation, when ``unshare`` works (as root, or through a user namespace): each
process runs in its own mount and UTS namespace with the service's hosts file bound over
``/etc/hosts`` and the compose hostname set, so every program of the lab — Sluice, the stand-in apps, the course's Go
services — resolves the lab's names as in a compose network. Otherwise processes run plainly
with ``SLUICE_HOSTS_FILE`` (which Sluice reads) and a warning that other programs cannot resolve
lab names.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from sluice.lab import compose, images, network, state
from sluice.lab.compose import Problem, Project
from sluice.lab.spec import ForwardPlan, Plan, ProcessPlan, ServicePlan

_FILE_SUFFIXES = (".yaml", ".yml", ".json", ".conf", ".cfg", ".ini", ".txt", ".py", ".sh", ".lua", ".pem", ".crt", ".key", ".toml", ".xml")


DOCKER_ROOT = "/var/lib/docker"


class PlanError(Exception):
    """The lab cannot start; ``messages`` name service and key for each reason."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


ROOT_NS = ("unshare", "--mount", "--uts")
USER_NS = ("unshare", "--user", "--map-root-user", "--mount", "--uts")


@lru_cache(maxsize=1)
def namespace_prefix() -> tuple[str, ...] | None:
    """How to give a process its own mount and UTS namespace here: plain ``unshare`` as root,
    through a user namespace otherwise; None when neither works (SLUICE_LAB_NAMESPACES=0 says
    not to try)."""
    if os.environ.get("SLUICE_LAB_NAMESPACES", "1") == "0" or shutil.which("unshare") is None:
        return None
    for prefix in (ROOT_NS, USER_NS) if os.geteuid() == 0 else (USER_NS,):
        try:
            r = subprocess.run([*prefix, "true"], capture_output=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return prefix
    return None


def make_plan(
    lab_dir: Path,
    state_dir: Path,
    *,
    project: Project | None = None,
    check_ports: bool = True,
    namespaces: bool | None = None,
    python: str = sys.executable,
    note: Callable[[str], None] = lambda message: None,
) -> Plan:
    """Everything ``up`` needs, or :class:`PlanError` listing what is wrong."""
    try:
        project = project or compose.load(lab_dir)
    except compose.ComposeError as exc:
        raise PlanError([str(exc)]) from exc
    ns_prefix = namespace_prefix() if namespaces is None else (ROOT_NS if namespaces else None)
    errors: list[str] = []
    problems = list(project.problems)

    def is_free(service: str, address: str) -> bool:
        if not check_ports:
            return True
        svc = project.services[service]
        ports = set(svc.expose) | {p.container_port for p in svc.ports if p.protocol == "tcp"}
        # Only "in use" makes an address busy; a privileged port is reported later, by key.
        return not any(getattr(network.bind_error(address, p), "errno", None) == errno.EADDRINUSE for p in ports)

    try:
        addressing = network.allocate(project, is_free)
    except network.NetworkError as exc:
        raise PlanError([f"{project.file}: {exc}"]) from exc

    services: list[ServicePlan] = []
    for name in project.start_order():
        svc = project.services[name]
        root = state_dir / "services" / name
        mounts, mount_errors, mount_problems = _mounts(project, svc, state_dir)
        errors += mount_errors
        problems += mount_problems
        address = addressing.addresses[name]
        hostname = addressing.hostnames[name]
        ctx = images.ImageContext(project, svc, address, hostname, root, mounts, state_dir, python, note)
        decision = images.decide(ctx) if not mount_errors else images.Decision("-", not_running="volumes: see errors")
        problems += decision.problems
        hosts_file = str(root / "etc" / "hosts")
        env = images.base_env(ctx, hosts_file)
        procs = [
            ProcessPlan(
                p.name,
                _wrap(p.argv, ns_prefix, hosts_file, hostname, svc.ulimits),
                {**env, **p.env},
                [(port.address, port.port, port.origin) for port in _with_declared(p, decision, svc, address, i)],
            )
            for i, p in enumerate(decision.processes)
        ]
        if svc.user is not None and not _user_is_us(svc.user):
            problems.append(Problem(name, "user", f"'{svc.user}' not honoured; processes run as the current user"))
        forwards = []
        for pub in svc.ports:
            if pub.host_port is None or pub.protocol != "tcp":
                continue
            listen_ip = "127.0.0.1"
            if pub.host_ip and pub.host_ip not in ("0.0.0.0", "127.0.0.1", "::"):
                if not _is_loopback(pub.host_ip):
                    problems.append(Problem(name, f"ports '{pub.spec}'", f"published on 127.0.0.1, not {pub.host_ip}"))
                else:
                    listen_ip = pub.host_ip
            forwards.append(ForwardPlan((listen_ip, pub.host_port), (address, pub.container_port), pub.spec))
        services.append(
            ServicePlan(
                name=name,
                prefix=project.default_container_name(name) if not svc.container_name else svc.container_name,
                image=svc.image or f"build: {Path(svc.build.context).name if svc.build else '?'}",
                program=decision.program,
                address=address,
                hostname=hostname,
                root=str(root),
                log=str(state_dir / "logs" / f"{name}.log"),
                depends_on=list(compose.dependencies(svc)),
                restart=svc.restart,
                restart_max=svc.restart_max,
                processes=procs,
                forwards=forwards if decision.not_running is None else [],
                not_running=decision.not_running,
            )
        )
    if ns_prefix is None:
        problems.append(Problem("", "networks", "no mount/UTS namespaces here (unshare failed): only Sluice resolves lab names"))
    uses_docker = any(
        m.kind == "bind" and os.path.normpath(os.path.expanduser(m.source)) == DOCKER_ROOT
        for svc in project.services.values() for m in svc.volumes
    )  # fmt: skip

    if check_ports and not errors:
        errors += port_errors(services)
    if errors:
        raise PlanError(errors)
    return Plan(
        project=project.name,
        lab_dir=str(project.directory),
        compose_file=str(project.file),
        state_dir=str(state_dir),
        namespaces=ns_prefix is not None,
        subnets={n: str(s) for n, s in addressing.subnets.items()},
        names=addressing.names,
        services=services,
        problems=[str(p) for p in problems],
        docker_dir=str(state_dir / "docker") if uses_docker else None,
    )


def _with_declared(proc: images.Process, decision: images.Decision, svc: compose.Service, address: str, index: int) -> list[images.Port]:
    """A process's own ports; the service's ``expose`` and container ``ports`` go to its last
    process (the one facing the network), unless another process already opens them."""
    ports = list(proc.ports)
    if index != len(decision.processes) - 1:
        return ports
    known = {(p.address, p.port) for q in decision.processes for p in q.ports}
    for port in svc.expose:
        if (address, port) not in known:
            ports.append(images.Port(address, port, "expose"))
            known.add((address, port))
    for pub in svc.ports:
        if pub.protocol == "tcp" and (address, pub.container_port) not in known:
            ports.append(images.Port(address, pub.container_port, f"ports '{pub.spec}'"))
            known.add((address, pub.container_port))
    return ports


def _mounts(project: Project, svc: compose.Service, state_dir: Path) -> tuple[dict[str, str], list[str], list[Problem]]:
    """Container path → host path for a service's volumes; errors for missing mounted files."""
    mounts: dict[str, str] = {}
    errors: list[str] = []
    problems: list[Problem] = []
    for i, m in enumerate(svc.volumes):
        key = f"volumes[{i}] '{m.source}:{m.target}'" if m.source else f"volumes[{i}] '{m.target}'"
        if m.kind == "bind" and os.path.normpath(os.path.expanduser(m.source)) == DOCKER_ROOT:
            # The lab's services are not Docker containers: the lab runner keeps their logs and
            # configs as Docker would, in the lab's state (sluice/lab/docker_logs.py).
            mounts[m.target] = str(state_dir / "docker")
            note = "the lab's own containers (json-file logs, config.v2.json) are mounted for /var/lib/docker"
            problems.append(Problem(svc.name, key, note))
            continue
        if m.kind == "bind":
            host = Path(os.path.expanduser(m.source))
            host = host if host.is_absolute() else (project.directory / host)
            host = Path(os.path.normpath(host))
            if not host.exists():
                if host.suffix.lower() in _FILE_SUFFIXES or Path(m.target).suffix.lower() in _FILE_SUFFIXES:
                    errors.append(f"service '{svc.name}': {key}: mounted file {host} does not exist")
                    continue
                # Docker creates a missing folder; we do so only inside a writable lab folder,
                # never elsewhere on the host (``/var/run/docker.sock`` stays untouched).
                if not (_inside(host, project.directory) and _can_create(host)):
                    alt = state_dir / "binds" / svc.name / str(i)
                    problems.append(Problem(svc.name, key, f"{host} does not exist; an empty folder in the lab's state is mounted instead"))
                    host = alt
            mounts[m.target] = str(host)
        elif m.kind == "volume":
            mounts[m.target] = str(state_dir / "volumes" / m.source)
    return mounts, errors, problems


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _can_create(path: Path) -> bool:
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    return state.writable(parent)


def _wrap(
    argv: list[str], ns_prefix: tuple[str, ...] | None, hosts_file: str, hostname: str, ulimits: dict[str, tuple[int, int]]
) -> list[str]:
    setup: list[str] = []
    if ns_prefix is not None:
        setup.append(f"mount --bind {shlex.quote(hosts_file)} /etc/hosts")
        setup.append(f"hostname {shlex.quote(hostname)}")
    for name, (soft, hard) in ulimits.items():
        flag = _ULIMIT_FLAGS.get(name)
        if flag is None:
            continue
        for which, val in (("-H", hard), ("-S", soft)):
            v = "unlimited" if val < 0 else str(val)
            setup.append(f"{{ ulimit {which} -{flag} {v} 2>/dev/null || echo 'sluice lab: ulimits.{name} {which} {v} not applied' >&2; }}")
    if not setup:
        return list(argv)
    script = " && ".join(setup) + ' && exec "$@"'
    sh = ["sh", "-c", script, "sh", *argv]
    return [*ns_prefix, *sh] if ns_prefix is not None else sh


_ULIMIT_FLAGS = {"nofile": "n", "nproc": "p", "memlock": "l", "core": "c", "stack": "s", "fsize": "f", "cpu": "t", "data": "d", "as": "v"}


def _user_is_us(user: str) -> bool:
    name = user.split(":", 1)[0]
    if name in (str(os.getuid()),):
        return True
    try:
        return pwd.getpwuid(os.getuid()).pw_name == name
    except KeyError:
        return False


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def port_errors(services: list[ServicePlan]) -> list[str]:
    """A port another program holds, a privileged port, or two services on one address:port."""
    errors: list[str] = []
    owners: dict[tuple[str, int], str] = {}
    for s in services:
        if s.not_running:
            continue
        wanted = [(a, p, o) for proc in s.processes for (a, p, o) in proc.ports]
        wanted += [(f.listen[0], f.listen[1], f"ports '{f.spec}' (published on the host)") for f in s.forwards]
        for addr, port, origin in wanted:
            key = (addr, port)
            if key in owners and owners[key] != s.name:
                errors.append(f"service '{s.name}': {origin}: {addr}:{port} is also used by service '{owners[key]}'")
                continue
            if key in owners:
                continue
            owners[key] = s.name
            err = network.bind_error(addr, port)
            if err is None:
                continue
            if err.errno == errno.EADDRINUSE:
                errors.append(f"service '{s.name}': {origin}: {addr}:{port} is already in use{_who(addr, port)}")
            elif err.errno == errno.EACCES:
                errors.append(
                    f"service '{s.name}': {origin}: port {port} is privileged and this user may not bind it"
                    " (run as root, or set sysctl net.ipv4.ip_unprivileged_port_start=0)"
                )
            else:
                errors.append(f"service '{s.name}': {origin}: cannot bind {addr}:{port}: {err.strerror or err}")
    return errors


def _who(addr: str, port: int) -> str:
    for e in state.running_labs():
        data = state.read_json(e.state_dir / "plan.json") or {}
        for s in data.get("services", []):
            for p in s.get("processes", []):
                if any(a == addr and pt == port for a, pt, _ in p.get("ports", [])):
                    return f" by lab '{e.project}' (sluice lab down {e.lab_dir})"
    owner = network.port_owner(addr, port)
    return f" by {owner}" if owner else ""


def prepare(plan: Plan) -> None:
    """Fresh per-service folders (a new container's filesystem), hosts files, log files."""
    state_dir = Path(plan.state_dir)
    for sub in ("services", "logs"):
        shutil.rmtree(state_dir / sub, ignore_errors=True)
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    names = plan.names
    (state_dir / "hosts").write_text(network.render_hosts(names, f"sluice lab {plan.project}"), encoding="utf-8")
    for s in plan.services:
        root = Path(s.root)
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        header = f"sluice lab {plan.project}: service {s.name}"
        (root / "etc" / "hosts").write_text(network.service_hosts(s.address, s.hostname, names, header), encoding="utf-8")
        (root / "etc" / "hostname").write_text(s.hostname + "\n", encoding="utf-8")
        Path(s.log).touch()
        for p in s.processes:
            # Mounted folders that do not exist yet are created, as docker does.
            for host in json.loads(p.env.get("SLUICE_FS_MOUNTS", "{}")).values():
                if not os.path.exists(host):
                    os.makedirs(host, exist_ok=True)
