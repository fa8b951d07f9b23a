"""Read a docker-compose file, unchanged, into plain frozen records.

Only the subset the course's labs use is modelled; every other key is kept out of the model and
reported as a :class:`Problem` naming the service and the key, so ``sluice lab up`` can say what it
does not honour instead of dropping it silently. Errors that make the file meaningless (not a
mapping, a ``depends_on`` naming an unknown service, a cycle) raise :class:`ComposeError` with the
same service/key path.

Nothing here touches the network or starts anything: the records are turned into addresses by
``network.py``, into programs by ``images.py`` and into a runnable plan by ``plan.py``.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

COMPOSE_FILES = ("docker-compose.yaml", "docker-compose.yml", "compose.yaml", "compose.yml")

SERVICE_KEYS = frozenset(
    {
        "image",
        "build",
        "volumes",
        "environment",
        "env_file",
        "hostname",
        "container_name",
        "networks",
        "expose",
        "ports",
        "network_mode",
        "depends_on",
        "command",
        "user",
        "ulimits",
        "restart",
    }
)
TOP_KEYS = frozenset({"version", "services", "networks", "volumes", "name"})
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")


class ComposeError(Exception):
    """The compose file cannot be used; the message names the file, service and key."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Something the compose file asks for that the lab does not honour (the lab still runs)."""

    service: str
    """Service name, or ``""`` for a top-level key."""
    key: str
    """Dotted key path inside the service, e.g. ``ulimits.memlock``."""
    message: str

    def __str__(self) -> str:
        where = f"service '{self.service}': " if self.service else ""
        return f"{where}{self.key}: {self.message}"


@dataclass(frozen=True, slots=True)
class Mount:
    """One ``volumes`` entry: a host path (bind) or a named/anonymous volume at ``target``."""

    target: str
    """Absolute path inside the container."""
    kind: str
    """``bind``, ``volume`` (named) or ``anonymous``."""
    source: str
    """Host path as written (bind), volume name (volume), or ``""`` (anonymous)."""
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Published:
    """One ``ports`` entry. ``host_port`` is None for a container-only entry (``- 8786``)."""

    container_port: int
    host_port: int | None
    host_ip: str = ""
    protocol: str = "tcp"
    spec: str = ""
    """The entry as written, for messages."""


@dataclass(frozen=True, slots=True)
class NetworkAttachment:
    ipv4_address: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Build:
    context: str
    """Host path of the build context, absolute."""
    dockerfile: str = "Dockerfile"


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    image: str | None = None
    build: Build | None = None
    volumes: tuple[Mount, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None
    container_name: str | None = None
    networks: dict[str, NetworkAttachment] = field(default_factory=dict)
    """Attached networks in file order (``default`` when the file names none)."""
    expose: tuple[int, ...] = ()
    ports: tuple[Published, ...] = ()
    network_mode: str | None = None
    depends_on: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None
    user: str | None = None
    ulimits: dict[str, tuple[int, int]] = field(default_factory=dict)
    """name → (soft, hard); -1 means unlimited."""
    restart: str = "no"
    restart_max: int = 0
    """``on-failure:N`` → N (0 means no limit)."""

    @property
    def shares_network_of(self) -> str | None:
        """``network_mode: service:X`` → ``X``."""
        if self.network_mode and self.network_mode.startswith("service:"):
            return self.network_mode.split(":", 1)[1]
        return None


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    subnet: str | None = None
    """The first ``ipam.config[].subnet``, as written (e.g. ``172.31.55.0/24``)."""


@dataclass(slots=True)
class Project:
    name: str
    directory: Path
    file: Path
    services: dict[str, Service]
    networks: dict[str, Network]
    volumes: tuple[str, ...]
    problems: list[Problem]

    def container_name(self, service: str) -> str:
        """The name compose gives the container: ``container_name``, else ``<project>-<service>-1``."""
        return self.services[service].container_name or self.default_container_name(service)

    def default_container_name(self, service: str) -> str:
        return f"{self.name}-{service}-1"

    def start_order(self) -> list[str]:
        """Services with everything they depend on first (file order among equals)."""
        order: list[str] = []
        done: set[str] = set()

        def visit(name: str, stack: tuple[str, ...]) -> None:
            if name in done:
                return
            if name in stack:
                cycle = " -> ".join((*stack[stack.index(name) :], name))
                raise ComposeError(f"{self.file}: service '{name}': depends_on: dependency cycle {cycle}")
            for dep in dependencies(self.services[name]):
                visit(dep, (*stack, name))
            done.add(name)
            order.append(name)

        for name in self.services:
            visit(name, ())
        return order


def dependencies(svc: Service) -> tuple[str, ...]:
    """``depends_on`` plus the service whose network this one shares."""
    deps = list(svc.depends_on)
    shared = svc.shares_network_of
    if shared and shared not in deps:
        deps.append(shared)
    return tuple(deps)


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars, as compose's own parser reads them: ``8080:22`` stays a
    string (YAML 1.1 reads base 60) and ``restart: no`` stays ``"no"`` (YAML 1.1 reads false)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?$"), list("-+0123456789.")
)


def find_compose_file(directory: Path) -> Path | None:
    for name in COMPOSE_FILES:
        p = directory / name
        if p.is_file():
            return p
    return None


def load(directory: Path | str, *, environ: dict[str, str] | None = None, project_name: str | None = None) -> Project:
    """Parse the compose file of a lab folder. ``environ`` feeds ``${VAR}`` interpolation and
    ``environment: [KEY]`` entries (default: the process environment)."""
    directory = Path(directory).resolve()
    file = find_compose_file(directory)
    if file is None:
        raise ComposeError(f"{directory}: no docker-compose.yaml or docker-compose.yml")
    try:
        raw = yaml.load(file.read_text(encoding="utf-8"), Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise ComposeError(f"{file}: cannot read: {exc}") from exc
    env = dict(os.environ if environ is None else environ)
    return parse(raw, directory=directory, file=file, environ=env, project_name=project_name)


def parse(raw: Any, *, directory: Path, file: Path, environ: dict[str, str] | None = None, project_name: str | None = None) -> Project:
    env = {} if environ is None else environ
    if not isinstance(raw, dict) or not isinstance(raw.get("services"), dict):
        raise ComposeError(f"{file}: not a compose file (no 'services' mapping)")
    raw = _interpolate(raw, env, file)
    problems: list[Problem] = []
    for key in raw:
        if key not in TOP_KEYS and not str(key).startswith("x-"):
            problems.append(Problem("", str(key), "top-level key not supported; ignored"))
    name = project_name or raw.get("name") or directory.name
    name = _normalize_project_name(str(name))

    networks: dict[str, Network] = {}
    for net_name, net in (raw.get("networks") or {}).items():
        networks[str(net_name)] = _parse_network(str(net_name), net or {}, problems)
    volumes = tuple(str(v) for v in (raw.get("volumes") or {}))

    services: dict[str, Service] = {}
    for svc_name, body in raw["services"].items():
        svc_name = str(svc_name)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ComposeError(f"{file}: service '{svc_name}': expected a mapping")
        services[svc_name] = _parse_service(svc_name, body, directory, file, env, volumes, problems)

    used_default = False
    for svc in services.values():
        for dep in svc.depends_on:
            if dep not in services:
                raise ComposeError(f"{file}: service '{svc.name}': depends_on: unknown service '{dep}'")
        shared = svc.shares_network_of
        if shared is not None and shared not in services:
            raise ComposeError(f"{file}: service '{svc.name}': network_mode: unknown service '{shared}'")
        for net in svc.networks:
            if net == "default":
                used_default = True
            elif net not in networks:
                raise ComposeError(f"{file}: service '{svc.name}': networks: network '{net}' is not declared in the top-level networks")
    if used_default and "default" not in networks:
        networks["default"] = Network("default")
    project = Project(name, directory, file, services, networks, volumes, problems)
    project.start_order()  # raises on a depends_on cycle
    return project


def _normalize_project_name(name: str) -> str:
    # Compose lower-cases the name and keeps [a-z0-9_-].
    out = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return out or "lab"


_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")


def _interpolate(value: Any, env: dict[str, str], file: Path) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env, file) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, file) for v in value]
    if not isinstance(value, str) or "$" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        expr = m.group("braced") if m.group("braced") is not None else m.group("named")
        for op in (":-", "-", ":?", "?"):
            if op in expr:
                var, arg = expr.split(op, 1)
                val = env.get(var)
                if op == ":-":
                    return val if val else arg
                if op == "-":
                    return val if val is not None else arg
                missing = not val if op == ":?" else val is None
                if missing:
                    raise ComposeError(f"{file}: required variable {var} is missing: {arg}")
                return val or ""
        return env.get(expr, "")

    return _VAR.sub(sub, value)


def _parse_network(name: str, net: Any, problems: list[Problem]) -> Network:
    if not isinstance(net, dict):
        return Network(name)
    subnet = None
    for key, val in net.items():
        if key == "driver" and val not in ("bridge", None):
            problems.append(Problem("", f"networks.{name}.driver", f"driver '{val}' not supported; loopback addresses are used"))
        elif key == "ipam":
            for i, cfg in enumerate((val or {}).get("config") or []):
                if isinstance(cfg, dict) and cfg.get("subnet") and subnet is None:
                    subnet = str(cfg["subnet"])
                elif isinstance(cfg, dict) and cfg.get("subnet"):
                    problems.append(Problem("", f"networks.{name}.ipam.config[{i}]", "only the first subnet is used"))
        elif key not in ("driver", "name"):
            problems.append(Problem("", f"networks.{name}.{key}", "not supported; ignored"))
    return Network(name, subnet)


def _parse_service(
    name: str, body: dict[str, Any], directory: Path, file: Path, env: dict[str, str], volumes: tuple[str, ...], problems: list[Problem]
) -> Service:
    def err(key: str, msg: str) -> ComposeError:
        return ComposeError(f"{file}: service '{name}': {key}: {msg}")

    for key in body:
        if key not in SERVICE_KEYS:
            problems.append(Problem(name, str(key), "not supported; ignored"))
    if "image" not in body and "build" not in body:
        raise err("image", "a service needs an image or a build")

    build = None
    if "build" in body:
        b = body["build"]
        if isinstance(b, str):
            build = Build(str((directory / b).resolve()))
        elif isinstance(b, dict) and b.get("context") is not None:
            build = Build(str((directory / str(b["context"])).resolve()), str(b.get("dockerfile") or "Dockerfile"))
            for k in b:
                if k not in ("context", "dockerfile"):
                    problems.append(Problem(name, f"build.{k}", "not supported; ignored"))
        else:
            raise err("build", "expected a folder or a mapping with 'context'")

    environment: dict[str, str] = {}
    for env_file in _as_list(body.get("env_file")):
        path = directory / str(env_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise err("env_file", f"cannot read {path}: {exc}") from exc
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                environment[k.strip()] = v.strip()
    environment.update(_parse_environment(body.get("environment"), env, err))

    networks: dict[str, NetworkAttachment] = {}
    raw_nets = body.get("networks")
    if isinstance(raw_nets, list):
        networks = {str(n): NetworkAttachment() for n in raw_nets}
    elif isinstance(raw_nets, dict):
        for net, att in raw_nets.items():
            att = att or {}
            if not isinstance(att, dict):
                raise err(f"networks.{net}", "expected a mapping")
            for k in att:
                if k not in ("ipv4_address", "aliases"):
                    problems.append(Problem(name, f"networks.{net}.{k}", "not supported; ignored"))
            networks[str(net)] = NetworkAttachment(
                str(att["ipv4_address"]) if att.get("ipv4_address") else None, tuple(str(a) for a in att.get("aliases") or ())
            )
    elif raw_nets is not None:
        raise err("networks", "expected a list or a mapping")

    network_mode = body.get("network_mode")
    if network_mode is not None:
        network_mode = str(network_mode)
        if network_mode.startswith("service:"):
            if networks:
                raise err("network_mode", "cannot be combined with networks")
        else:
            problems.append(Problem(name, "network_mode", f"'{network_mode}' not supported; the service gets its own loopback address"))
            network_mode = None
    if not networks and network_mode is None:
        networks = {"default": NetworkAttachment()}

    depends_raw = body.get("depends_on") or []
    if isinstance(depends_raw, dict):
        depends = tuple(str(d) for d in depends_raw)
        for d, cond in depends_raw.items():
            c = (cond or {}).get("condition") if isinstance(cond, dict) else None
            if c not in (None, "service_started", "service_healthy"):
                problems.append(Problem(name, f"depends_on.{d}.condition", f"'{c}' treated as service_started (ports accepting)"))
    elif isinstance(depends_raw, list):
        depends = tuple(str(d) for d in depends_raw)
    else:
        raise err("depends_on", "expected a list or a mapping")

    command = body.get("command")
    if isinstance(command, str):
        command = tuple(shlex.split(command))
    elif isinstance(command, list):
        command = tuple(str(c) for c in command)
    elif command is not None:
        raise err("command", "expected a string or a list")

    restart = str(body.get("restart", "no") if body.get("restart") is not False else "no")
    restart_max = 0
    if restart.startswith("on-failure:"):
        restart, n = restart.split(":", 1)
        if not n.isdigit():
            raise err("restart", f"bad retry count in 'on-failure:{n}'")
        restart_max = int(n)
    if restart not in RESTART_POLICIES:
        raise err("restart", f"unknown policy '{restart}' (no, always, unless-stopped, on-failure[:N])")

    return Service(
        name=name,
        image=str(body["image"]) if body.get("image") is not None else None,
        build=build,
        volumes=tuple(_parse_volume(v, i, volumes, err) for i, v in enumerate(_as_list(body.get("volumes")))),
        environment=environment,
        hostname=str(body["hostname"]) if body.get("hostname") else None,
        container_name=str(body["container_name"]) if body.get("container_name") else None,
        networks=networks,
        expose=tuple(p for e in _as_list(body.get("expose")) for p in _parse_port_range(str(e).split("/")[0], "expose", err)),
        ports=tuple(_parse_published(p, err, name, problems) for p in _as_list(body.get("ports"))),
        network_mode=network_mode,
        depends_on=depends,
        command=command,
        user=str(body["user"]) if body.get("user") is not None else None,
        ulimits=_parse_ulimits(body.get("ulimits"), err),
        restart=restart,
        restart_max=restart_max,
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _parse_environment(raw: Any, env: dict[str, str], err: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if raw is None:
        return out
    if isinstance(raw, list):
        for item in raw:
            item = str(item)
            if "=" in item:
                k, v = item.split("=", 1)
                out[k] = v
            elif item in env:
                out[item] = env[item]
        return out
    if isinstance(raw, dict):
        for k, v in raw.items():
            if v is None:
                if str(k) in env:
                    out[str(k)] = env[str(k)]
            elif isinstance(v, bool):
                out[str(k)] = "true" if v else "false"
            else:
                out[str(k)] = str(v)
        return out
    raise err("environment", "expected a list or a mapping")


def _parse_volume(raw: Any, index: int, declared: tuple[str, ...], err: Any) -> Mount:
    key = f"volumes[{index}]"
    if isinstance(raw, dict):
        kind = str(raw.get("type", "volume"))
        target = str(raw.get("target", ""))
        source = str(raw.get("source", "") or "")
        ro = bool(raw.get("read_only", False))
        if kind not in ("bind", "volume"):
            raise err(key, f"volume type '{kind}' not supported")
        if kind == "volume" and not source:
            kind = "anonymous"
    else:
        parts = str(raw).split(":")
        mode = ""
        if len(parts) == 1:
            source, target = "", parts[0]
        elif len(parts) == 2:
            source, target = parts
        else:
            source, target, mode = parts[0], parts[1], parts[2]
        ro = "ro" in mode.split(",")
        if not source:
            kind = "anonymous"
        elif source.startswith((".", "/", "~")):
            kind = "bind"
        else:
            kind = "volume"
    if not target.startswith("/"):
        raise err(key, f"container path '{target}' must be absolute")
    if kind == "volume" and source not in declared:
        raise err(key, f"named volume '{source}' is not declared in the top-level volumes")
    return Mount(target=target, kind=kind, source=source, read_only=ro)


def _parse_port_range(text: str, key: str, err: Any) -> list[int]:
    text = text.strip()
    try:
        if "-" in text:
            lo, hi = text.split("-", 1)
            return list(range(int(lo), int(hi) + 1))
        return [int(text)]
    except ValueError:
        raise err(key, f"bad port '{text}'") from None


def _parse_published(raw: Any, err: Any, service: str, problems: list[Problem]) -> Published:
    if isinstance(raw, dict):
        target = int(raw["target"])
        pub = raw.get("published")
        proto = str(raw.get("protocol", "tcp"))
        spec = f"{pub}:{target}" if pub is not None else str(target)
        p = Published(target, int(pub) if pub is not None else None, str(raw.get("host_ip", "")), proto, spec)
    else:
        spec = str(raw)
        body, _, proto = spec.partition("/")
        proto = proto or "tcp"
        parts = body.rsplit(":", 2)
        if len(parts) == 1:
            p = Published(_single(parts[0], spec, err), None, "", proto, spec)
        elif len(parts) == 2:
            p = Published(_single(parts[1], spec, err), _single(parts[0], spec, err) if parts[0] else None, "", proto, spec)
        else:
            p = Published(_single(parts[2], spec, err), _single(parts[1], spec, err) if parts[1] else None, parts[0], proto, spec)
    if p.protocol != "tcp":
        problems.append(Problem(service, f"ports '{p.spec}'", f"{p.protocol} is not forwarded (TCP only)"))
    return p


def _single(text: str, spec: str, err: Any) -> int:
    ports = _parse_port_range(text, f"ports '{spec}'", err)
    if len(ports) != 1:
        raise err(f"ports '{spec}'", "port ranges are not supported")
    return ports[0]


_ULIMIT_NAMES = (
    "nofile",
    "nproc",
    "memlock",
    "core",
    "stack",
    "fsize",
    "cpu",
    "as",
    "data",
    "locks",
    "msgqueue",
    "nice",
    "rtprio",
    "sigpending",
)


def _parse_ulimits(raw: Any, err: Any) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for k, v in (raw or {}).items():
        if k not in _ULIMIT_NAMES:
            raise err(f"ulimits.{k}", "unknown limit")
        if isinstance(v, dict):
            soft, hard = int(v.get("soft", -1)), int(v.get("hard", -1))
        else:
            soft = hard = int(v)
        out[str(k)] = (soft, hard)
    return out
