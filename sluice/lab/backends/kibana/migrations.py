"""Start-up against Elasticsearch, as Kibana 7.14 does it before it serves:

1. wait until every node answers ``/_nodes`` with a compatible version (same major, minor at
   least Kibana's), logging "Unable to retrieve version information from Elasticsearch nodes.
   …" while it cannot reach them;
2. the saved-objects migrations (v2): for ``.kibana`` and ``.kibana_task_manager``, if the alias
   is missing create ``<index>_7.14.2_001`` with the mappings and both aliases (``.kibana`` and
   ``.kibana_7.14.2``), else bring the mappings up to date; log the state transitions
   (``[.kibana] INIT -> CREATE_NEW_TARGET. took: 3ms.``).

Deliberate difference: an index left by another Kibana version is used as it is (no reindex into
a new ``_001`` index), with a warning; its documents keep their shape here anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice.lab.backends.kibana import VERSION
from sluice.lab.backends.kibana.es import Client, ESUnavailable
from sluice.lab.backends.kibana.logs import Log

_REFERENCES = {"type": "nested", "properties": {"name": {"type": "keyword"}, "type": {"type": "keyword"}, "id": {"type": "keyword"}}}
_COMMON: dict[str, Any] = {
    "type": {"type": "keyword"},
    "namespace": {"type": "keyword"},
    "namespaces": {"type": "keyword"},
    "originId": {"type": "keyword"},
    "updated_at": {"type": "date"},
    "references": _REFERENCES,
    "migrationVersion": {"dynamic": "true", "type": "object"},
    "coreMigrationVersion": {"type": "keyword"},
}
KIBANA_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        **_COMMON,
        "index-pattern": {"dynamic": "false", "properties": {"title": {"type": "text"}, "type": {"type": "keyword"}}},
        "config": {"dynamic": "false", "properties": {"buildNum": {"type": "keyword"}}},
    },
}
TASK_MANAGER_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        **_COMMON,
        "task": {"dynamic": "false", "properties": {"taskType": {"type": "keyword"}, "status": {"type": "keyword"},
                                                   "runAt": {"type": "date"}, "scheduledAt": {"type": "date"}}},
    },
}
INDEX_SETTINGS = {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1", "hidden": True}}
HEALTH_DELAY = 2.5
"""``elasticsearch.healthCheck.delay``: seconds between node checks."""

TAGS = ["savedobjects-service"]


class MigrationError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class NodesCheck:
    ok: bool
    message: str


def _version_tuple(text: str) -> tuple[int, int, int]:
    parts = (text.split("-", 1)[0].split(".") + ["0", "0", "0"])[:3]
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return 0, 0, 0


def check_nodes(es: Client) -> NodesCheck:
    """One ``pollEsNodesVersion`` round."""
    try:
        reply = es.request("GET", "/_nodes", params={"filter_path": "nodes.*.version,nodes.*.http.publish_address,nodes.*.ip"})
    except ESUnavailable as exc:
        return NodesCheck(False, f"Unable to retrieve version information from Elasticsearch nodes. {exc}")
    if not reply.ok or not isinstance(reply.body, dict):
        detail = _es_reason(reply.body) or f"status {reply.status}"
        return NodesCheck(False, f"Unable to retrieve version information from Elasticsearch nodes. {detail}")
    nodes = reply.body.get("nodes") or {}
    ours = _version_tuple(VERSION)
    bad = []
    for node in nodes.values():
        version = str(node.get("version", ""))
        v = _version_tuple(version)
        if v[0] != ours[0] or v[1] < ours[1]:
            addr = (node.get("http") or {}).get("publish_address", "?")
            bad.append(f"v{version} @ {addr} ({node.get('ip', '?')})")
    if bad:
        return NodesCheck(False, f"This version of Kibana (v{VERSION}) is incompatible with the following Elasticsearch nodes "
                                 f"in your cluster: {', '.join(bad)}")
    if not nodes:
        return NodesCheck(False, "Unable to retrieve version information from Elasticsearch nodes. no nodes")
    return NodesCheck(True, "Elasticsearch is available")


def _es_reason(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('type', 'error')}: {err.get('reason', '')}"
    return ""


def wait_for_nodes(es: Client, log: Log, stop: threading.Event, *, delay: float | None = None) -> bool:
    """Until the nodes are compatible (True) or ``stop`` is set (False)."""
    delay = HEALTH_DELAY if delay is None else delay
    last = ""
    while not stop.is_set():
        check = check_nodes(es)
        if check.ok:
            return True
        if check.message != last:
            log.error(["elasticsearch-service"], check.message)
            last = check.message
        stop.wait(delay)
    return False


class Migrator:
    def __init__(self, es: Client, log: Log, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.es = es
        self.log = log
        self.clock = clock

    def run(self, index: str) -> None:
        self.migrate(index, KIBANA_MAPPINGS)
        self.migrate(f"{index}_task_manager", TASK_MANAGER_MAPPINGS)

    def _step(self, index: str, frm: str, to: str, since: float) -> float:
        now = self.clock()
        self.log.info(TAGS, f"[{index}] {frm} -> {to}. took: {int((now - since) * 1000)}ms.")
        return now

    def migrate(self, index: str, mappings: dict[str, Any]) -> None:
        started = t = self.clock()
        target = f"{index}_{VERSION}_001"
        version_alias = f"{index}_{VERSION}"
        reply = self.es.request("GET", f"/{index}")
        if reply.status == 404:
            t = self._step(index, "INIT", "CREATE_NEW_TARGET", t)
            body = {"mappings": mappings, "settings": INDEX_SETTINGS, "aliases": {index: {}, version_alias: {}}}
            created = self.es.request("PUT", f"/{target}", body, params={"wait_for_active_shards": "all", "timeout": "60s"})
            if not created.ok and created.error_type() != "resource_already_exists_exception":
                raise MigrationError(f"[{index}] creating {target} failed: {_es_reason(created.body) or created.status}")
            t = self._step(index, "CREATE_NEW_TARGET", "MARK_VERSION_INDEX_READY", t)
            t = self._step(index, "MARK_VERSION_INDEX_READY", "DONE", t)
        elif reply.ok and isinstance(reply.body, dict) and reply.body:
            concrete = next(iter(reply.body))
            aliases = (reply.body[concrete] or {}).get("aliases") or {}
            if concrete != target and version_alias not in aliases:
                self.log.warning(TAGS, f"[{index}] {concrete} was written by another Kibana version; using it as it is")
            t = self._step(index, "INIT", "UPDATE_TARGET_MAPPINGS", t)
            put = self.es.request("PUT", f"/{index}/_mapping", {"properties": mappings["properties"]})
            if not put.ok:
                raise MigrationError(f"[{index}] updating the mappings of {concrete} failed: {_es_reason(put.body) or put.status}")
            t = self._step(index, "UPDATE_TARGET_MAPPINGS", "DONE", t)
        else:
            raise MigrationError(f"[{index}] reading the index failed: {_es_reason(reply.body) or reply.status}")
        self.log.info(TAGS, f"[{index}] Migration completed after {int((self.clock() - started) * 1000)}ms")
