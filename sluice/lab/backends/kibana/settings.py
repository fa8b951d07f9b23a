"""Kibana's settings as the docker image assembles them, lowest first:

1. ``kibana.yml`` (``-c``/``--config``, repeatable; by default the image's
   ``/usr/share/kibana/config/kibana.yml``: ``server.host: "0.0.0.0"``,
   ``elasticsearch.hosts: [ "http://elasticsearch:9200" ]``), dotted or nested keys, ``${VAR}``;
2. the image entrypoint's variables: ``kibana-docker`` turns each variable named after a setting
   (``ELASTICSEARCH_HOSTS`` → ``elasticsearch.hosts``, ``SERVER_NAME``, ``KIBANA_INDEX``, …) into
   ``--setting=value`` ahead of the command's own arguments;
3. the command line: ``--setting=value`` (or ``--setting value``) and ``bin/kibana``'s flags
   ``-e/--elasticsearch``, ``-H/--host``, ``-p/--port``, ``-l/--log-file``, ``-q/--quiet``,
   ``-Q/--silent``, ``--verbose``.

A list setting given as text is read as JSON when it looks like a list
(``ELASTICSEARCH_HOSTS='["http://myes01:9200"]'``, as ``@kbn/config-schema`` does).
``ELASTICSEARCH_URL`` is not one of the image's variables (it was dropped in 7.0; the labs
still set it next to ``ELASTICSEARCH_HOSTS``) and is ignored here too, with a warning.

Deliberate difference: "every interface" (``0.0.0.0``, ``0``, ``::``) binds the service's own
address (``SLUICE_BIND_ADDRESS`` when the lab runner sets it, else ``127.0.0.1``), as the
Elasticsearch stand-in does. Settings this stand-in does not read are accepted with a warning
(Kibana refuses to start on an unknown key).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from sluice.lab.backends.grafana.fs import ContainerFS

KIBANA_HOME = "/usr/share/kibana"
DEFAULT_CONFIG = f"{KIBANA_HOME}/config/kibana.yml"
IMAGE_DEFAULTS: dict[str, Any] = {
    "server.host": "0.0.0.0",
    "server.shutdownTimeout": "5s",
    "elasticsearch.hosts": ["http://elasticsearch:9200"],
    "monitoring.ui.container.elasticsearch.enabled": True,
}
DEFAULTS: dict[str, Any] = {
    "server.port": 5601,
    "server.host": "localhost",
    "elasticsearch.hosts": ["http://localhost:9200"],
    "elasticsearch.requestTimeout": 30000,
    "kibana.index": ".kibana",
    "logging.json": None,
    "logging.quiet": False,
    "logging.silent": False,
    "logging.verbose": False,
}
# The subset of kibana-docker's kibana_vars this stand-in reads (the rest are accepted and unused).
DOCKER_VARS = (
    "elasticsearch.hosts", "elasticsearch.username", "elasticsearch.password", "elasticsearch.requestTimeout",
    "elasticsearch.pingTimeout", "elasticsearch.customHeaders", "kibana.index", "kibana.defaultAppId", "logging.dest",
    "logging.json", "logging.quiet", "logging.silent", "logging.verbose", "path.data", "pid.file", "server.basePath",
    "server.defaultRoute", "server.host", "server.name", "server.port", "status.allowAnonymous", "i18n.locale",
    "monitoring.ui.container.elasticsearch.enabled", "telemetry.enabled", "newsfeed.enabled", "xpack.security.enabled",
)
USED = {
    "elasticsearch.hosts", "elasticsearch.username", "elasticsearch.password", "elasticsearch.requestTimeout",
    "elasticsearch.customHeaders", "kibana.index", "logging.dest", "logging.json", "logging.quiet", "logging.silent",
    "logging.verbose", "path.data", "pid.file", "server.host", "server.name", "server.port", "server.shutdownTimeout",
    "monitoring.ui.container.elasticsearch.enabled",
}
_SHORT = {"-e": "elasticsearch", "-H": "host", "-p": "port", "-l": "log-file", "-c": "config"}
_FLAGS = {"-q": "logging.quiet", "--quiet": "logging.quiet", "-Q": "logging.silent", "--silent": "logging.silent",
          "--verbose": "logging.verbose"}


class SettingsError(ValueError):
    pass


def docker_env_name(setting: str) -> str:
    return setting.upper().replace(".", "_")


@dataclass(slots=True)
class Settings:
    values: dict[str, Any] = field(default_factory=dict)
    fs: ContainerFS = field(default_factory=ContainerFS)
    environ: Mapping[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, DEFAULTS.get(key, default))

    def flag(self, key: str) -> bool:
        v = self.get(key)
        return v if isinstance(v, bool) else str(v).strip().lower() == "true"

    @property
    def host(self) -> str:
        raw = str(self.get("server.host")).strip().strip("[]")
        if raw in ("0.0.0.0", "0", "::", ""):
            return self.environ.get("SLUICE_BIND_ADDRESS", "127.0.0.1")
        return "127.0.0.1" if raw == "localhost" else raw

    @property
    def port(self) -> int:
        raw = self.get("server.port")
        try:
            port = int(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"[config validation of [server].port]: expected value of type [number] but got [{raw}]") from None
        if not 0 <= port <= 65535:
            raise SettingsError(f"[config validation of [server].port]: Value must be equal to or lower than [65535]. ({port})")
        return port

    @property
    def es_hosts(self) -> list[str]:
        raw = self.get("elasticsearch.hosts")
        hosts = _as_list(raw)
        for h in hosts:
            if not re.match(r"^https?://[^/]", h):
                raise SettingsError(f"[config validation of [elasticsearch].hosts]: expected URI with scheme [http|https] but got [{h}].")
        if not hosts:
            raise SettingsError("[config validation of [elasticsearch].hosts]: array size is [0], but cannot be smaller than [1]")
        return hosts

    @property
    def request_timeout(self) -> float:
        try:
            return max(1.0, float(self.get("elasticsearch.requestTimeout")) / 1000)
        except (TypeError, ValueError):
            raise SettingsError("[config validation of [elasticsearch].requestTimeout]: expected a duration in ms") from None

    @property
    def custom_headers(self) -> dict[str, str]:
        raw = self.get("elasticsearch.customHeaders") or {}
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise SettingsError("[config validation of [elasticsearch].customHeaders]: could not parse object value") from None
        return {str(k): str(v) for k, v in dict(raw).items()}

    @property
    def index(self) -> str:
        return str(self.get("kibana.index"))

    @property
    def server_name(self) -> str:
        return str(self.get("server.name") or self.environ.get("HOSTNAME") or socket.gethostname())

    @property
    def data_path(self) -> str:
        raw = self.get("path.data")
        if raw:
            return self.fs.host(str(raw)) if os.path.isabs(str(raw)) else os.path.abspath(str(raw))
        if self.fs.root or self.fs.mounts:
            return self.fs.host(f"{KIBANA_HOME}/data")
        return os.path.abspath("data")

    @property
    def log_json(self) -> bool | None:
        v = self.get("logging.json")
        return None if v is None else self.flag("logging.json")

    @property
    def unused(self) -> list[str]:
        return sorted(k for k in self.values if k not in USED)


def _as_list(raw: Any) -> list[str]:
    if isinstance(raw, list | tuple):
        return [str(x).strip() for x in raw]
    text = str(raw).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise SettingsError(
                f"[config validation of [elasticsearch].hosts]: could not parse array value from json input: {text}"
            ) from None
        return [str(x).strip() for x in parsed]
    return [text] if text else []


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, dict) and v and not str(k).endswith("customHeaders"):
                out.update(_flatten(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
    return out


def _substitute(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: environ.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [_substitute(v, environ) for v in value]
    return value


def _parse_argv(argv: list[str]) -> tuple[list[str], list[tuple[str, Any]]]:
    """(config files, ordered setting overrides) from ``bin/kibana``'s arguments."""
    configs: list[str] = []
    overrides: list[tuple[str, Any]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in _FLAGS:
            overrides.append((_FLAGS[arg], True))
            continue
        name, eq, value = arg.partition("=")
        long = _SHORT.get(name, name[2:] if name.startswith("--") else None)
        if long is None or long == "":
            raise SettingsError(f"error: unknown option '{arg}'")
        if not eq:
            if i < len(argv) and not argv[i].startswith("-"):
                value = argv[i]
                i += 1
            elif long in ("elasticsearch", "host", "port", "log-file", "config"):
                raise SettingsError(f"error: option '{name}' argument missing")
            else:
                value = "true"
        if long == "config":
            configs.append(value)
        elif long == "elasticsearch":
            overrides.append(("elasticsearch.hosts", [v.strip() for v in value.split(",") if v.strip()]))
        elif long == "host":
            overrides.append(("server.host", value))
        elif long == "port":
            overrides.append(("server.port", value))
        elif long == "log-file":
            overrides.append(("logging.dest", value))
        elif long in ("plugin-dir", "plugin-path", "optimize", "dev", "no-base-path", "no-watch", "oss"):
            continue
        else:
            overrides.append((long, _typed(value)))
    return configs, overrides


def _typed(text: str) -> Any:
    return {"true": True, "false": False}.get(text, text)


def load(argv: list[str], environ: Mapping[str, str] = os.environ) -> Settings:
    fs = ContainerFS.from_env(environ)
    configs, overrides = _parse_argv(argv)
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for path in configs or [DEFAULT_CONFIG]:
        host_path = fs.host(path)
        if not os.path.isfile(host_path):
            if configs:
                raise SettingsError(f"ENOENT: no such file or directory, open '{path}'")
            values.update(IMAGE_DEFAULTS)  # the image's own kibana.yml
            continue
        try:
            with open(host_path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"failed to read {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path}: expected a mapping of settings")
        values.update({k: _substitute(v, environ) for k, v in _flatten(loaded).items()})
    for setting in DOCKER_VARS:
        value = environ.get(docker_env_name(setting), "")
        if value:
            values[setting] = _typed(value)
    if environ.get("ELASTICSEARCH_URL"):
        warnings.append("ELASTICSEARCH_URL is not read by the kibana 7.x image (set ELASTICSEARCH_HOSTS); ignored")
    for key, value in overrides:
        values[key] = value
    return Settings(values, fs, environ, warnings)
