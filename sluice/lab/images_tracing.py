"""The tracing back ends' images (course part 5's tracing labs):

- ``openzipkin/zipkin*`` → :mod:`sluice.lab.backends.zipkin` on the service's address, port 9411
  (``QUERY_PORT`` from the compose ``environment:`` moves it, as in the image); the image takes no
  command line, so a ``command:`` is reported as not honoured;
- ``jaegertracing/all-in-one*`` → the same package with ``--jaeger``: the Zipkin collector on
  ``COLLECTOR_ZIPKIN_HOST_PORT`` (the jaeger-tracing lab sets ``9411``), the query API on 16686,
  the admin health check on 14269; a ``command:`` may set those three addresses with Jaeger's own
  flags, other flags are reported and dropped.

Both read the compose environment themselves (the runner passes it with
:func:`~sluice.lab.images.base_env`) and keep their spans under the service's folder.

Registered by :mod:`sluice.lab.images` (imported at its end).
"""

from __future__ import annotations

from sluice.lab.compose import Problem
from sluice.lab.images import Decision, ImageContext, Port, Process, register

MODULE = "sluice.lab.backends.zipkin"
_JAEGER_FLAGS = {
    "--collector.zipkin.host-port": "COLLECTOR_ZIPKIN_HOST_PORT",
    "--query.http-server.host-port": "QUERY_HTTP_SERVER_HOST_PORT",
    "--admin.http.host-port": "ADMIN_HTTP_HOST_PORT",
}
_JAEGER_DEFAULTS = {"QUERY_HTTP_SERVER_HOST_PORT": ":16686", "ADMIN_HTTP_HOST_PORT": ":14269"}


def _port_of(value: str) -> int | None:
    _, _, port = value.rpartition(":")
    return int(port) if port.isdigit() else None


def _zipkin(ctx: ImageContext, tag: str) -> Decision:
    problems: list[Problem] = []
    if ctx.service.command:
        problems.append(ctx.problem("command", "not honoured for the zipkin image (it is configured by environment variables)"))
    raw = ctx.service.environment.get("QUERY_PORT", "9411")
    if not raw.isdigit():
        return Decision(f"zipkin {tag}", not_running=f"environment: QUERY_PORT={raw} is not a port")
    argv = [ctx.python, "-m", MODULE, "--host", ctx.address]
    ports = [Port(ctx.address, int(raw), "zipkin http (QUERY_PORT)")]
    return Decision(f"zipkin stand-in ({tag})", [Process("zipkin", argv, ports=ports)], problems=problems)


def _jaeger(ctx: ImageContext, tag: str) -> Decision:
    problems: list[Problem] = []
    settings = {key: ctx.service.environment[key] for key in _JAEGER_FLAGS.values() if key in ctx.service.environment}
    args = list(ctx.service.command or ())
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if flag in _JAEGER_FLAGS and (eq or i + 1 < len(args)):
            if not eq:
                i += 1
                value = args[i]
            settings[_JAEGER_FLAGS[flag]] = value  # a flag wins over the environment, as in viper
        else:
            problems.append(ctx.problem("command", f"'{args[i]}' not honoured by the jaeger stand-in; dropped"))
        i += 1
    argv = [ctx.python, "-m", MODULE, "--jaeger", "--host", ctx.address]
    ports = []
    for key, origin in (("COLLECTOR_ZIPKIN_HOST_PORT", "jaeger zipkin collector"), ("QUERY_HTTP_SERVER_HOST_PORT", "jaeger query"),
                        ("ADMIN_HTTP_HOST_PORT", "jaeger admin")):
        value = settings.get(key, _JAEGER_DEFAULTS.get(key, ""))
        if not value:
            continue  # no Zipkin collector unless asked for, as in 1.27
        port = _port_of(value)
        if port is None:
            return Decision(f"jaeger {tag}", not_running=f"{key}={value} is not a host:port")
        argv.append(f"{next(f for f, k in _JAEGER_FLAGS.items() if k == key)}={value}")
        ports.append(Port(ctx.address, port, origin))
    return Decision(f"jaeger all-in-one stand-in ({tag})", [Process("jaeger", argv, ports=ports)], problems=problems)


register("openzipkin/zipkin*", _zipkin, first=False)
register("jaegertracing/all-in-one*", _jaeger, first=False)
