"""Node settings as the ``elasticsearch`` docker image assembles them, lowest first:

1. the image's ``config/elasticsearch.yml`` (``cluster.name: docker-cluster``,
   ``network.host: 0.0.0.0``), or the one mounted at ``$ES_PATH_CONF/elasticsearch.yml``;
2. environment variables named like settings (``cluster.name=myes``, ``node.name=myes01``,
   ``discovery.type=single-node``: what docker-compose ``environment:`` sets), which the image's
   entrypoint turns into ``-E`` options;
3. ``-E key=value`` on the command line.

Paths are container paths (``path.data`` defaults to ``/usr/share/elasticsearch/data``), mapped
to host paths through ``SLUICE_FS_ROOT``/``SLUICE_FS_MOUNTS`` when the lab runner starts the
node; outside a lab the default data path is ``./data``.

Deliberate difference: "every interface" (the image's ``network.host: 0.0.0.0``, or no
setting) binds the service's own address (``SLUICE_BIND_ADDRESS`` when the lab runner sets it,
else ``127.0.0.1``); an explicit address in ``network.host``/``http.host`` is honoured. Unknown
settings are accepted and listed in the log instead of refusing to start.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from sluice.lab.backends.grafana.fs import ContainerFS

ES_HOME = "/usr/share/elasticsearch"
IMAGE_DEFAULTS = {"cluster.name": "docker-cluster", "network.host": "0.0.0.0"}
_ENV_SETTING = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+")
KNOWN = {
    "cluster.name", "node.name", "network.host", "http.host", "http.port", "http.publish_host", "path.data", "path.logs",
    "discovery.type", "discovery.seed_hosts", "cluster.initial_master_nodes", "bootstrap.memory_lock", "xpack.security.enabled",
    "xpack.license.self_generated.type", "http.max_content_length", "action.auto_create_index", "http.compression",
    "xpack.monitoring.collection.enabled", "xpack.ml.enabled", "xpack.watcher.enabled", "node.roles", "node.master", "node.data",
    "transport.host", "transport.port", "http.cors.enabled", "http.cors.allow-origin", "ingest.geoip.downloader.enabled",
    "action.destructive_requires_name", "indices.query.bool.max_clause_count", "search.max_buckets", "logger.level",
}


class SettingsError(ValueError):
    pass


@dataclass(slots=True)
class NodeSettings:
    values: dict[str, str] = field(default_factory=dict)
    fs: ContainerFS = field(default_factory=ContainerFS)
    hostname: str = ""
    bind_address: str = "127.0.0.1"
    """The lab's address for this service (``SLUICE_BIND_ADDRESS``): "every interface" here."""

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)

    @property
    def cluster_name(self) -> str:
        return self.get("cluster.name", "elasticsearch")

    @property
    def node_name(self) -> str:
        return self.get("node.name") or self.hostname or socket.gethostname()

    @property
    def host(self) -> str:
        raw = self.get("http.host") or self.get("network.host")
        # "Every interface" (the image's 0.0.0.0) is, in a lab, the service's own address.
        if not raw or raw in ("0.0.0.0", "0", "::", "[::]", "_site_", "_global_"):
            return self.bind_address
        first = raw.split(",")[0].strip().strip("[]")
        return "127.0.0.1" if first.startswith("_local") else first

    @property
    def ports(self) -> list[int]:
        raw = self.get("http.port", "9200-9300")
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", raw.strip())
        if not m:
            raise SettingsError(f"Failed to parse value [{raw}] for setting [http.port]")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo or hi > 65535:
            raise SettingsError(f"Failed to parse value [{raw}] for setting [http.port]")
        return list(range(lo, hi + 1))

    @property
    def data_path(self) -> str:
        raw = self.get("path.data")
        if raw:
            return self.fs.host(raw) if os.path.isabs(raw) else os.path.abspath(raw)
        if self.fs.root or self.fs.mounts:
            return self.fs.host(f"{ES_HOME}/data")
        return os.path.abspath("data")

    @property
    def max_content_length(self) -> int:
        return parse_bytes(self.get("http.max_content_length", "100mb"))

    @property
    def license_type(self) -> str:
        return self.get("xpack.license.self_generated.type", "basic")

    @property
    def unknown(self) -> list[str]:
        return sorted(k for k in self.values if k not in KNOWN and not k.startswith(("logger.", "xpack.", "cluster.routing.")))


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g|tb|t|pb|p)?\s*", text.lower())
    if not m:
        raise SettingsError(f"failed to parse setting [http.max_content_length] with value [{text}] as a size in bytes")
    scale = {"b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40,
             "p": 1 << 50, "pb": 1 << 50}[m.group(2) or "b"]
    return int(float(m.group(1)) * scale)


def _flatten(node: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(node, list):
        out[prefix[:-1]] = ",".join(str(x) for x in node)
    elif node is not None:
        out[prefix[:-1]] = str(node).lower() if isinstance(node, bool) else str(node)
    return out


def _substitute(value: str, environ: Mapping[str, str]) -> str:
    """``${VAR}`` / ``${VAR:default}`` in elasticsearch.yml, as ES's settings loader does."""
    return re.sub(r"\$\{([^}:]+)(?::([^}]*))?\}", lambda m: environ.get(m.group(1), m.group(2) or ""), value)


def load(args: list[str], environ: Mapping[str, str] = os.environ) -> NodeSettings:
    fs = ContainerFS.from_env(environ)
    values = dict(IMAGE_DEFAULTS)
    conf = environ.get("ES_PATH_CONF", f"{ES_HOME}/config")
    yml = fs.host(f"{conf}/elasticsearch.yml") if (fs.root or fs.mounts) else os.path.join(conf, "elasticsearch.yml")
    if os.path.isfile(yml):
        try:
            with open(yml, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"Failed to load settings from [{yml}]: {exc}") from None
        values.update({k: _substitute(v, environ) for k, v in _flatten(loaded).items()})
    for key, value in environ.items():
        if _ENV_SETTING.match(key) and value:
            values[key] = value
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq or not key:
            raise SettingsError(f"setting [{arg}] must be of the form key=value")
        values[key] = value
    return NodeSettings(values, fs, environ.get("HOSTNAME", ""), environ.get("SLUICE_BIND_ADDRESS", "127.0.0.1"))
