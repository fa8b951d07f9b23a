"""Images → local programs: the registry that decides what runs for a compose service.

Each entry maps an image pattern to a factory that returns the processes standing in for the
container (argv, extra environment, the ports they open) or says plainly why nothing runs.
Later work adds entries with :func:`register`; the first matching pattern wins.

Current entries:

- ``envoyproxy/envoy*`` → Sluice with the config mounted at ``/etc/envoy/envoy.yaml`` (the image's
  default command ``envoy -c /etc/envoy/envoy.yaml``; a compose ``command:`` with other Envoy
  flags is honoured);
- ``ikubernetes/demoapp:vX.Y`` → ``sluice.lab.apps.demoapp`` on the service's address, port 80 or
  the ``PORT`` variable (as the real image reads it), named after the hostname;
- ``ikubernetes/servicemesh-app`` → the colored app on ``<address>:8080`` plus a Sluice sidecar on
  ``:80`` with the mounted ``/etc/envoy/envoy.yaml`` or the image's default sidecar config; the
  sidecar's ``127.0.0.1:8080`` cluster reaches the app through ``SLUICE_LOCALHOST_ADDRESS``;
- ``build:`` folders running ``go run main.go`` → the program built with a local Go toolchain,
  else ``sluice.lab.apps.mesh_service`` reading the same ``main.go``;
- ``grafana/grafana*`` → ``sluice.lab.backends.grafana`` with the image's command line (mounted
  ``/etc/grafana/grafana.ini``, provisioning under ``/etc/grafana/provisioning``), on the
  service's address and the ini's ``http_port`` (3000);
- ``prom/statsd-exporter`` → ``sluice.lab.backends.statsd_exporter`` with the ``command:`` flags,
  listening on the service's address;
- ``prom/prometheus`` → the real Prometheus (Debian's ``/usr/bin/prometheus``; "not running", with
  the install command, where it is missing) with the ``command:`` flags (else the image's CMD),
  container paths through the mounts, its TSDB in the service's folder.

A factory sees the service through :class:`ImageContext` and never imports the data plane: Sluice
is always started as a process (STYLE §3.1).
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sluice.lab import gobuild
from sluice.lab.compose import Problem, Project, Service

APPS_DIR = Path(__file__).resolve().parent / "apps"
SIDECAR_DEFAULT = APPS_DIR / "sidecar_default.yaml"
ENVOY_CONFIG = "/etc/envoy/envoy.yaml"


@dataclass(frozen=True, slots=True)
class Port:
    address: str
    port: int
    origin: str
    """Where the port comes from, for messages: ``expose``, ``listener 'listener_0'``, …"""


@dataclass(slots=True)
class Process:
    name: str
    """Short role name inside the service: ``envoy``, ``app``, ``sidecar``, ``main``."""
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ports: list[Port] = field(default_factory=list)


@dataclass(slots=True)
class Decision:
    program: str
    """What stands in for the image, for ``ps`` (``sluice``, ``demoapp v1.0``, …)."""
    processes: list[Process] = field(default_factory=list)
    not_running: str | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass(slots=True)
class ImageContext:
    project: Project
    service: Service
    address: str
    hostname: str
    root: Path
    """The service's own root folder (absolute container paths resolve inside it)."""
    mounts: dict[str, str]
    """Container path → host path, from the service's ``volumes``."""
    state_dir: Path
    python: str = sys.executable
    note: Callable[[str], None] = lambda message: None
    """Progress for slow steps (a first Go build)."""

    def host_path(self, container_path: str) -> str:
        """Where a container path of this service lives on the host (as ``sluice/paths.py``)."""
        path = container_path.rstrip("/") or "/"
        for cpath in sorted(self.mounts, key=len, reverse=True):
            c = cpath.rstrip("/") or "/"
            if path == c:
                return self.mounts[cpath]
            if path.startswith(c + "/"):
                return str(Path(self.mounts[cpath]) / path[len(c) + 1 :])
        return str(self.root / path.lstrip("/"))

    def problem(self, key: str, message: str) -> Problem:
        return Problem(self.service.name, key, message)


Factory = Callable[[ImageContext, str], Decision]
"""``factory(ctx, tag) -> Decision``."""

_REGISTRY: list[tuple[str, Factory]] = []


def register(pattern: str, factory: Factory, *, first: bool = True) -> None:
    """Map images matching ``pattern`` (fnmatch on ``repo:tag``) to ``factory``."""
    entry = (pattern, factory)
    if first:
        _REGISTRY.insert(0, entry)
    else:
        _REGISTRY.append(entry)


def split_image(image: str) -> tuple[str, str]:
    """``docker.io/library/x:1`` → (``x``, ``1``); the tag defaults to ``latest``."""
    ref = image.split("@", 1)[0]
    repo, tag = ref, "latest"
    if ":" in ref.rsplit("/", 1)[-1]:
        repo, tag = ref.rsplit(":", 1)
    for prefix in ("docker.io/", "index.docker.io/", "library/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix) :]
    return repo, tag


def decide(ctx: ImageContext) -> Decision:
    svc = ctx.service
    if svc.build is not None:
        return _go_build(ctx)
    repo, tag = split_image(svc.image or "")
    for pattern, factory in _REGISTRY:
        if fnmatch.fnmatchcase(f"{repo}:{tag}", pattern):
            return factory(ctx, tag)
    return Decision(program=svc.image or "?", not_running=f"image {svc.image} has no local program yet")


def base_env(ctx: ImageContext, hosts_file: str) -> dict[str, str]:
    """What every process of the service gets: the compose environment, the container's
    HOSTNAME, and the lab's settings for Sluice and the stand-in apps."""
    env = dict(ctx.service.environment)
    env.update(
        HOSTNAME=ctx.hostname,
        PYTHONUNBUFFERED="1",
        SLUICE_BIND_ADDRESS=ctx.address,
        SLUICE_LOCALHOST_ADDRESS=ctx.address,
        SLUICE_HOSTS_FILE=hosts_file,
        SLUICE_FS_ROOT=str(ctx.root),
        SLUICE_FS_MOUNTS=json.dumps(ctx.mounts, sort_keys=True),
    )
    return env


# --- envoy ---------------------------------------------------------------------------------

_ENVOY_VALUE_FLAGS = {
    "-c": "-c",
    "--config-path": "-c",
    "--config-yaml": "--config-yaml",
    "-l": "--log-level",
    "--log-level": "--log-level",
    "--service-cluster": "--service-cluster",
    "--service-node": "--service-node",
    "--drain-time-s": "--drain-time-s",
    "--parent-shutdown-time-s": "--parent-shutdown-time-s",
    "--concurrency": "--concurrency",
    "--base-id": "--base-id",
    "--mode": "--mode",
    "--admin-address-path": "--admin-address-path",
}
_ENVOY_IGNORED_VALUE_FLAGS = {
    "--service-zone",
    "--component-log-level",
    "--log-format",
    "--log-path",
    "--restart-epoch",
    "--file-flush-interval-msec",
}
_ENVOY_IGNORED_SWITCHES = {
    "--disable-hot-restart",
    "--use-dynamic-base-id",
    "--allow-unknown-static-fields",
    "--reject-unknown-dynamic-fields",
}


def envoy_argv(ctx: ImageContext, command: tuple[str, ...] | None) -> tuple[list[str], str | None, list[Problem]]:
    """The Sluice command line for an Envoy command line (paths as the container sees them),
    the host path of its config file, and what is not honoured."""
    args = list(command) if command else ["envoy", "-c", ENVOY_CONFIG]
    problems: list[Problem] = []
    if args and (args[0] == "envoy" or args[0].endswith("/envoy")):
        args = args[1:]
    elif args and not args[0].startswith("-"):
        raise _NotRunnable(f"command: '{' '.join(command or ())}' is not an envoy command line")
    out: list[str] = []
    config: str | None = None
    i = 0
    while i < len(args):
        flag, value = args[i], None
        if flag.startswith("--") and "=" in flag:
            flag, value = flag.split("=", 1)
        if flag in _ENVOY_VALUE_FLAGS or flag in _ENVOY_IGNORED_VALUE_FLAGS:
            if value is None:
                if i + 1 >= len(args):
                    raise _NotRunnable(f"command: {flag} needs a value")
                value = args[i + 1]
                i += 1
            mapped = _ENVOY_VALUE_FLAGS.get(flag)
            if mapped is None:
                problems.append(ctx.problem("command", f"envoy flag {flag} not supported by Sluice; dropped"))
            else:
                # Paths stay container paths: Sluice maps them itself (SLUICE_FS_ROOT/MOUNTS).
                out += [mapped, value]
                if mapped == "-c":
                    config = ctx.host_path(value)
        elif flag in _ENVOY_IGNORED_SWITCHES:
            problems.append(ctx.problem("command", f"envoy flag {flag} has no effect in Sluice; dropped"))
        else:
            problems.append(ctx.problem("command", f"envoy argument '{args[i]}' not supported by Sluice; dropped"))
        i += 1
    if config is None and "--config-yaml" not in out:
        raise _NotRunnable("command: no -c config given")
    return [ctx.python, "-m", "sluice", *out], config, problems


def envoy_ports(config_path: str, address: str) -> list[Port]:
    """The admin and listener ports a bootstrap opens, on the service's address for 0.0.0.0."""
    try:
        with open(config_path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(raw, dict):
        return []
    out: list[Port] = []

    def add(sock: Any, origin: str) -> None:
        if not isinstance(sock, dict):
            return
        port = sock.get("port_value")
        if not isinstance(port, int) or port <= 0:
            return
        addr = str(sock.get("address", ""))
        # Sluice binds the service's own address for these (SLUICE_BIND_ADDRESS and
        # SLUICE_LOCALHOST_ADDRESS): knock there, or a healthy proxy would never look ready.
        own = addr in ("0.0.0.0", "::", "", "127.0.0.1", "::1", "localhost")
        out.append(Port(address if own else addr, port, origin))

    admin = raw.get("admin") or {}
    add(((admin.get("address") or {}).get("socket_address")), "admin")
    for lst in (raw.get("static_resources") or {}).get("listeners") or []:
        if isinstance(lst, dict):
            add((lst.get("address") or {}).get("socket_address"), f"listener '{lst.get('name', '')}'")
    return out


class _NotRunnable(Exception):
    pass


def _envoy(ctx: ImageContext, tag: str) -> Decision:
    try:
        argv, config, problems = envoy_argv(ctx, ctx.service.command)
    except _NotRunnable as exc:
        return Decision("sluice", not_running=str(exc))
    if config is not None and not Path(config).is_file():
        return Decision("sluice", not_running=_missing_config(ctx, config))
    ports = envoy_ports(config, ctx.address) if config else []
    return Decision("sluice", [Process("envoy", argv, ports=ports)], problems=problems)


def _missing_config(ctx: ImageContext, config: str) -> str:
    for m in ctx.service.volumes:
        if m.kind == "bind" and ctx.host_path(m.target) == config:
            return f"volumes: {m.source} (mounted at {m.target}) does not exist"
    return f"volumes: nothing is mounted at the envoy config path (looked for {config})"


# --- demoapp -------------------------------------------------------------------------------


def _demoapp(ctx: ImageContext, tag: str) -> Decision:
    problems: list[Problem] = []
    if not re.fullmatch(r"v\d+\.\d+", tag):
        return Decision(f"demoapp {tag}", not_running=f"image: demoapp tag '{tag}' is not a version like v1.0")
    port_text = ctx.service.environment.get("PORT", "80")
    if not port_text.isdigit():
        return Decision(f"demoapp {tag}", not_running=f"environment: PORT={port_text} is not a port number")
    if ctx.service.command:
        problems.append(ctx.problem("command", "not honoured for the demoapp image (its stand-in takes no arguments)"))
    port = int(port_text)
    argv = [
        ctx.python,
        "-m",
        "sluice.lab.apps.demoapp",
        "--host",
        ctx.address,
        "--port",
        str(port),
        "--name",
        ctx.hostname,
        "--version",
        tag,
    ]
    return Decision(f"demoapp {tag}", [Process("demoapp", argv, ports=[Port(ctx.address, port, "demoapp port")])], problems=problems)


# --- servicemesh-app -----------------------------------------------------------------------

SERVICEMESH_APP_PORT = 8080


def _servicemesh(ctx: ImageContext, tag: str) -> Decision:
    problems: list[Problem] = []
    if ctx.service.command:
        problems.append(ctx.problem("command", "not honoured for the servicemesh-app image"))
    mounted = ctx.host_path(ENVOY_CONFIG)
    sidecar_env: dict[str, str] = {}
    if any(m.target.rstrip("/") == ENVOY_CONFIG or ENVOY_CONFIG.startswith(m.target.rstrip("/") + "/") for m in ctx.service.volumes):
        if not Path(mounted).is_file():
            return Decision("colored + sidecar", not_running=_missing_config(ctx, mounted))
        config = mounted
    else:
        # The image ships its sidecar config at /etc/envoy/envoy.yaml: mount ours there.
        config = str(SIDECAR_DEFAULT)
        sidecar_env["SLUICE_FS_MOUNTS"] = json.dumps({**ctx.mounts, ENVOY_CONFIG: config}, sort_keys=True)
    app = Process(
        "app",
        [ctx.python, "-m", "sluice.lab.apps.colored", "--host", ctx.address, "--port", str(SERVICEMESH_APP_PORT)],
        ports=[Port(ctx.address, SERVICEMESH_APP_PORT, "servicemesh app port")],
    )
    sidecar = Process("sidecar", [ctx.python, "-m", "sluice", "-c", ENVOY_CONFIG], env=sidecar_env, ports=envoy_ports(config, ctx.address))
    return Decision("colored + sidecar", [app, sidecar], problems=problems)


# --- build: go run main.go -----------------------------------------------------------------


def _go_build(ctx: ImageContext) -> Decision:
    build = ctx.service.build
    assert build is not None
    found = gobuild.inspect_build(Path(build.context), build.dockerfile)
    if isinstance(found, str):
        return Decision("build", not_running=f"build: {found}")
    problems: list[Problem] = []
    if ctx.service.command:
        problems.append(ctx.problem("command", "not honoured for a build (the Dockerfile's CMD runs)"))
    ports = [Port(ctx.address, p, "main.go ListenAndServe") for p in found.ports]
    built: Path | str = "no Go toolchain on PATH"
    if gobuild.go_toolchain() is not None:
        built = gobuild.build(
            found, ctx.address, ctx.state_dir / "build", note=lambda: ctx.note(f" - Building {ctx.service.name}: go build")
        )
    if isinstance(built, Path):
        return Decision("go build main.go", [Process("main", [str(built)], ports=ports)], problems=problems)
    argv = [ctx.python, "-m", "sluice.lab.apps.mesh_service", "--main-go", str(found.main_go), "--host", ctx.address]
    problems.append(ctx.problem("build", f"{built}: running the built-in stand-in for main.go"))
    return Decision("mesh_service (main.go)", [Process("main", argv, ports=ports)], problems=problems)


# --- grafana -------------------------------------------------------------------------------

GRAFANA_INI = "/etc/grafana/grafana.ini"


def _grafana(ctx: ImageContext, tag: str) -> Decision:
    from sluice.lab.backends.grafana import settings as grafana_settings  # the stand-in's own ini reader

    problems: list[Problem] = []
    if ctx.service.command:
        problems.append(ctx.problem("command", "not honoured for the grafana image (grafana-server runs as the image starts it)"))
    ini = ctx.host_path(GRAFANA_INI)
    try:
        cfg = grafana_settings.load(ini if Path(ini).is_file() else None, environ=ctx.service.environment)
        port = cfg.http_port
    except grafana_settings.SettingsError as exc:
        return Decision(f"grafana {tag}", not_running=f"{GRAFANA_INI}: {exc}")
    argv = [
        ctx.python, "-m", "sluice.lab.backends.grafana",
        "--homepath=/usr/share/grafana", f"--config={GRAFANA_INI}", "--packaging=docker",
        "cfg:default.log.mode=console", "cfg:default.paths.data=/var/lib/grafana",
        "cfg:default.paths.logs=/var/log/grafana", "cfg:default.paths.plugins=/var/lib/grafana/plugins",
        "cfg:default.paths.provisioning=/etc/grafana/provisioning",
        # The container listens on all its interfaces: here, the service's own address.
        f"cfg:server.http_addr={ctx.address}",
    ]
    if not Path(ini).is_file():
        argv.remove(f"--config={GRAFANA_INI}")  # the image's own grafana.ini sets nothing
    return Decision(f"grafana {tag}", [Process("grafana", argv, ports=[Port(ctx.address, port, "grafana http_port")])], problems=problems)


# --- prom/statsd-exporter, prom/prometheus ------------------------------------------------


def _go_flags(args: list[str], rewrite: dict[str, Callable[[str], str]]) -> tuple[list[str], dict[str, str]]:
    """A kingpin command line with the value of each flag in ``rewrite`` rewritten (``--f=v`` or
    ``--f v``); everything else passes through as written. Also the flags' final values."""
    out: list[str] = []
    seen: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, value = arg.partition("=")
        if flag in rewrite and (eq or i + 1 < len(args)):
            if not eq:
                value = args[i + 1]
                i += 1
            seen[flag] = rewrite[flag](value)
            out.append(f"{flag}={seen[flag]}")
        else:
            out.append(arg)
        i += 1
    return out, seen


def _on_own_address(ctx: ImageContext) -> Callable[[str], str]:
    """A Go listen address (``:9102``, ``0.0.0.0:9102``) on the service's own address; ``""``
    (a listener turned off) stays off."""

    def rewrite(value: str) -> str:
        _, sep, port = value.rpartition(":")
        return f"{ctx.address}:{port}" if sep and port.isdigit() else value

    return rewrite


def _strip_entrypoint(command: tuple[str, ...] | None, program: str) -> list[str] | str:
    """The image's ENTRYPOINT is the program: ``command:`` holds its flags (a leading program
    name is dropped); a message when it names something else."""
    args = list(command or ())
    if args and not args[0].startswith("-"):
        if Path(args[0]).name != program:
            return f"command: '{' '.join(args)}' is not a {program} command line"
        args = args[1:]
    return args


STATSD_EXPORTER_LISTEN = {"--web.listen-address": ":9102", "--statsd.listen-udp": ":9125", "--statsd.listen-tcp": ":9125"}


def _statsd_exporter(ctx: ImageContext, tag: str) -> Decision:
    """``sluice.lab.backends.statsd_exporter`` with the service's flags, listening on its address."""
    program = f"statsd_exporter stand-in ({tag})"
    args = _strip_entrypoint(ctx.service.command, "statsd_exporter")
    if isinstance(args, str):
        return Decision(program, not_running=args)
    out, seen = _go_flags(args, dict.fromkeys(STATSD_EXPORTER_LISTEN, _on_own_address(ctx)))
    for flag, default in STATSD_EXPORTER_LISTEN.items():
        if flag not in seen:
            seen[flag] = f"{ctx.address}{default}"
            out.append(f"{flag}={seen[flag]}")
    ports = []
    for flag, origin in (("--web.listen-address", "statsd_exporter web"), ("--statsd.listen-tcp", "statsd_exporter StatsD TCP")):
        _, _, port = seen[flag].rpartition(":")
        if port.isdigit():
            ports.append(Port(ctx.address, int(port), origin))
    argv = [ctx.python, "-m", "sluice.lab.backends.statsd_exporter", *out]
    return Decision(program, [Process("statsd_exporter", argv, ports=ports)])


PROMETHEUS_BINARY = "/usr/bin/prometheus"
PROMETHEUS_INSTALL = "apt-get install prometheus"
PROMETHEUS_DEFAULT_COMMAND = (
    "--config.file=/etc/prometheus/prometheus.yml",
    "--storage.tsdb.path=/prometheus",
    "--web.console.libraries=/usr/share/prometheus/console_libraries",
    "--web.console.templates=/usr/share/prometheus/consoles",
)
"""The image's CMD (``command:`` replaces all of it)."""
PROMETHEUS_WORKDIR = "/prometheus"
_PROMETHEUS_PATH_FLAGS = ("--config.file", "--web.config.file", "--web.user-assets", "--storage.tsdb.path", "--storage.agent.path")
_PROMETHEUS_CONSOLES = {
    "--web.console.templates": "/etc/prometheus/consoles",
    "--web.console.libraries": "/etc/prometheus/console_libraries",
}
"""Debian's consoles stand in for the image's when the lab mounts none."""


def _prometheus(ctx: ImageContext, tag: str) -> Decision:
    """The real Prometheus (Debian's ``/usr/bin/prometheus``) with the service's flags: container
    paths through the service's mounts, storage in its folder, listening on its address."""
    program = f"prometheus ({PROMETHEUS_BINARY})"
    binary = Path(PROMETHEUS_BINARY)
    if not binary.is_file():
        return Decision(program, not_running=f"{PROMETHEUS_BINARY} is not installed (install it with: {PROMETHEUS_INSTALL})")
    args = _strip_entrypoint(ctx.service.command if ctx.service.command is not None else PROMETHEUS_DEFAULT_COMMAND, "prometheus")
    if isinstance(args, str):
        return Decision(program, not_running=args)

    def path(value: str) -> str:
        # Relative paths are relative to the image's WORKDIR, as in the container.
        return ctx.host_path(value if value.startswith("/") else f"{PROMETHEUS_WORKDIR}/{value}")

    def console(flag: str) -> Callable[[str], str]:
        return lambda value: path(value) if Path(path(value)).exists() else _PROMETHEUS_CONSOLES[flag]

    rewrite: dict[str, Callable[[str], str]] = dict.fromkeys(_PROMETHEUS_PATH_FLAGS, path)
    rewrite.update({flag: console(flag) for flag in _PROMETHEUS_CONSOLES})
    rewrite["--web.listen-address"] = _on_own_address(ctx)
    out, seen = _go_flags(args, rewrite)
    defaults = {
        "--config.file": path("/etc/prometheus/prometheus.yml"),
        "--storage.tsdb.path": path(f"{PROMETHEUS_WORKDIR}/data"),
        "--web.listen-address": f"{ctx.address}:9090",
    }
    for flag, value in defaults.items():
        if flag not in seen:
            seen[flag] = value
            out.append(f"{flag}={value}")
    config = seen["--config.file"]
    if not Path(config).is_file():
        return Decision(program, not_running=f"volumes: no prometheus config mounted for --config.file (looked for {config})")
    _, _, port = seen["--web.listen-address"].rpartition(":")
    ports = [Port(ctx.address, int(port), "prometheus web")] if port.isdigit() else []
    return Decision(program, [Process("prometheus", [PROMETHEUS_BINARY, *out], ports=ports)])


register("envoyproxy/envoy*", _envoy, first=False)
register("ikubernetes/demoapp:*", _demoapp, first=False)
register("ikubernetes/servicemesh-app:*", _servicemesh, first=False)
register("prom/statsd-exporter:*", _statsd_exporter, first=False)
register("prom/prometheus:*", _prometheus, first=False)
register("grafana/grafana*", _grafana, first=False)

# The Elastic stack's and the tracing back ends' stand-ins register themselves (modules of their own, for size).
from sluice.lab import images_elastic, images_tracing  # noqa: E402, F401
