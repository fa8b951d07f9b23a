"""``add_docker_metadata`` without a Docker daemon.

Filebeat's processor takes the container id from ``log.file.path`` (the fifth path element,
``match_source_index: 4``: ``/var/lib/docker/containers/<id>/<id>-json.log``), writes it to
``container.id`` and asks the Docker API (``host``, by default ``unix:///var/run/docker.sock``) for
the container's name, image and labels.

Deliberate difference: there is no Docker here, so the metadata comes from the file Docker itself
keeps beside the log, ``/var/lib/docker/containers/<id>/config.v2.json`` (``Name`` "/name",
``Config.Image``, ``Config.Labels``), which the lab runner writes for every service it starts.
The ``host`` setting is accepted and not used. Entries are re-read when the file changes.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from sluice.lab.backends.filebeat.config import ConfigError, Section
from sluice.lab.backends.filebeat.event import Event, deep_update, put_value
from sluice.lab.backends.filebeat.fs import ContainerFS
from sluice.lab.backends.filebeat.logs import Log

CONTAINERS_DIR = "/var/lib/docker/containers"
_RECHECK = 2.0
"""Seconds between looks at a container's config.v2.json (Docker's watcher learns new containers
from events; this bounds how stale a rename or a new container can be)."""

ALLOWED = {
    "host", "tls", "ssl", "match_fields", "match_pids", "match_source", "match_source_index", "match_short_id",
    "cleanup_timeout", "labels", "labels.dedot", "key", "when", "wait_for_metadata", "wait_for_metadata_timeout",
}  # fmt: skip


class Container:
    __slots__ = ("id", "name", "image", "labels")

    def __init__(self, cid: str, name: str, image: str, labels: dict[str, str]) -> None:
        self.id, self.name, self.image, self.labels = cid, name, image, labels


class DockerMetadata:
    def __init__(self, cfg: Section, fs: ContainerFS, log: Log) -> None:
        self.fs = fs
        self.log = log
        self.fields = cfg.strings("match_fields", [])
        self.match_source = cfg.boolean("match_source", True)
        self.source_index = cfg.integer("match_source_index", 4, minimum=0)
        self.short_id = cfg.boolean("match_short_id", False)
        self.dedot = cfg.child("labels").boolean("dedot", True)
        if cfg.has("match_pids") and cfg.raw("match_pids"):
            pids = cfg.strings("match_pids")
            if pids != ["process.pid", "process.ppid"]:
                raise ConfigError(
                    f"{cfg.name('match_pids')}: matching containers by PID needs cgroups of a Docker host; not supported here"
                )
        self._cache: dict[str, tuple[float, float, Container | None]] = {}
        log.info(
            "add_docker_metadata",
            f"add_docker_metadata: no Docker daemon here; reading container metadata from {CONTAINERS_DIR}/<id>/config.v2.json",
        )

    def __call__(self, event: Event) -> Event | None:
        fields = event.fields
        if fields is None:
            return event
        cid = ""
        if self.match_source:
            path = event.get("log.file.path")
            if isinstance(path, str):
                parts = [p for p in path.split("/") if p]
                if len(parts) > self.source_index:
                    cid = parts[self.source_index]
                    put_value(fields, "container.id", cid)
        if not cid:
            for field in self.fields:
                value = event.get(field)
                if isinstance(value, str):
                    cid = value
                    break
        if not cid:
            return event
        container = self.container(cid)
        if container is None:
            return event
        meta: dict[str, Any] = {}
        if container.labels:
            labels: dict[str, Any] = {}
            for key, value in container.labels.items():
                if self.dedot:
                    labels[key.replace(".", "_")] = value
                else:
                    put_value(labels, key, value)
            meta["labels"] = labels
        meta["id"] = container.id
        meta["image"] = {"name": container.image}
        meta["name"] = container.name
        deep_update(fields, {"container": meta})
        return event

    def container(self, cid: str) -> Container | None:
        now = time.monotonic()
        hit = self._cache.get(cid)
        if hit is not None and now - hit[0] < _RECHECK:
            return hit[2]
        folder = cid
        if self.short_id and len(cid) == 12:
            folder = next((n for n in self.fs.listdir(CONTAINERS_DIR) if n.startswith(cid)), cid)
        path = self.fs.host(f"{CONTAINERS_DIR}/{folder}/config.v2.json")
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            self._cache[cid] = (now, 0.0, None)
            self.log.debug("add_docker_metadata", f"Container not found: cid={cid}")
            return None
        if hit is not None and hit[1] == mtime:
            self._cache[cid] = (now, mtime, hit[2])
            return hit[2]
        container = read_config_v2(path, folder)
        self._cache[cid] = (now, mtime, container)
        return container


def read_config_v2(path: str, cid: str) -> Container | None:
    """Docker's ``config.v2.json``: ``ID``, ``Name`` ("/front-envoy"), ``Config.Image``,
    ``Config.Labels``."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    config: dict[str, Any] = raw["Config"] if isinstance(raw.get("Config"), dict) else {}
    labels: dict[str, Any] = config["Labels"] if isinstance(config.get("Labels"), dict) else {}
    return Container(
        str(raw.get("ID") or cid),
        str(raw.get("Name") or "").lstrip("/"),
        str(config.get("Image") or raw.get("Image") or ""),
        {str(k): str(v) for k, v in labels.items()},
    )
