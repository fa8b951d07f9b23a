"""Filebeat's registry: ``<path.data>/registry/filebeat`` in libbeat's ``memlog`` format.

- ``meta.json``: ``{"version":"1"}``;
- ``log.json``: the update log, two lines an operation: ``{"op":"set","id":N}`` then
  ``{"k":"filebeat::logs::native::<inode>-<device>","v":{…}}`` (or ``{"op":"remove","id":N}`` then
  ``{"k":…}``), ids increasing by one;
- ``<N>.json``: a checkpoint, a JSON array of ``{"_key":…, …value}``, written (through a temporary
  file and a rename) when ``log.json`` reaches 10 MiB, after which ``log.json`` starts empty and
  older checkpoints are removed; ``active.dat`` names the current checkpoint (for people reading).

Opening reads the newest checkpoint, then the log's operations with higher ids, stopping at the
first gap or broken line (what was valid before it stands, as in memlog).

The values are Filebeat 7.14's file states: ``id``, ``prev_id``, ``source``, ``offset``,
``timestamp``, ``ttl`` (nanoseconds, ``-1`` = forever), ``type``, ``FileStateOS.{inode,device}``,
``identifier_name``, ``meta``.

Deliberate difference: ``timestamp`` is written as ``[nanoseconds, unix seconds]``; Filebeat
writes the two internal words of Go's ``time.Time``. Nothing reads it but people.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from typing import Any

from sluice.lab.backends.filebeat.event import StateUpdate
from sluice.lab.backends.filebeat.logs import Log

CHECKPOINT_SIZE = 10 * 1024 * 1024
STORE_VERSION = "1"
KEY_PREFIX = "filebeat::logs::"


class RegistryError(Exception):
    pass


class Store:
    """The memlog key/value store."""

    def __init__(self, directory: str, *, permissions: int = 0o600, checkpoint_size: int = CHECKPOINT_SIZE) -> None:
        self.dir = directory
        self.permissions = permissions
        self.checkpoint_size = checkpoint_size
        self.entries: dict[str, dict[str, Any]] = {}
        self.txid = 0
        self._log: Any = None
        self._log_size = 0
        self._needs_checkpoint = False

    def open(self) -> None:
        os.makedirs(self.dir, mode=0o750, exist_ok=True)
        meta = os.path.join(self.dir, "meta.json")
        if os.path.exists(meta):
            try:
                with open(meta, encoding="utf-8") as f:
                    version = str(json.load(f).get("version", ""))
            except (OSError, ValueError, AttributeError) as exc:
                raise RegistryError(f"failed to read {meta}: {exc}") from None
            if version != STORE_VERSION:
                raise RegistryError(f"unsupported store version {version!r} in {meta}")
        else:
            self._write_file(meta, json.dumps({"version": STORE_VERSION}) + "\n")
        self._load_checkpoint()
        self._replay_log()
        path = os.path.join(self.dir, "log.json")
        self._log = open(path, "a", encoding="utf-8")  # kept open for appends; closed in close()
        os.chmod(path, self.permissions)
        self._log_size = os.path.getsize(path)

    def _data_files(self) -> list[tuple[int, str]]:
        out = []
        for name in os.listdir(self.dir):
            m = re.fullmatch(r"(\d+)\.json", name)
            if m:
                out.append((int(m.group(1)), os.path.join(self.dir, name)))
        return sorted(out)

    def _load_checkpoint(self) -> None:
        files = self._data_files()
        if not files:
            return
        txid, path = files[-1]
        try:
            with open(path, encoding="utf-8") as f:
                items = json.load(f)
        except (OSError, ValueError) as exc:
            raise RegistryError(f"failed to read registry checkpoint {path}: {exc}") from None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("_key"), str):
                key = item.pop("_key")
                self.entries[key] = item
        self.txid = txid

    def _replay_log(self) -> None:
        path = os.path.join(self.dir, "log.json")
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return
        i = 0
        while i + 1 < len(lines):
            try:
                op = json.loads(lines[i])
                data = json.loads(lines[i + 1])
                action, opid, key = op["op"], int(op["id"]), data.get("k", data.get("K"))
            except (ValueError, KeyError, TypeError, AttributeError):
                self._needs_checkpoint = True
                break
            i += 2
            if opid <= self.txid:
                continue
            if opid != self.txid + 1 or not isinstance(key, str):
                self._needs_checkpoint = True
                break
            if action == "set":
                value = data.get("v", data.get("V"))
                if isinstance(value, dict):
                    self.entries[key] = value
            elif action == "remove":
                self.entries.pop(key, None)
            self.txid = opid
        if i < len(lines) and lines[i].strip():
            self._needs_checkpoint = True

    def write(self, sets: dict[str, dict[str, Any]], removes: Iterable[str] = ()) -> None:
        if self._log is None:
            raise RegistryError("registry store is not open")
        out: list[str] = []
        for key in removes:
            if key in self.entries:
                del self.entries[key]
                self.txid += 1
                out.append(json.dumps({"op": "remove", "id": self.txid}))
                out.append(json.dumps({"k": key}))
        for key, value in sets.items():
            self.entries[key] = value
            self.txid += 1
            out.append(json.dumps({"op": "set", "id": self.txid}))
            out.append(json.dumps({"k": key, "v": value}, separators=(",", ":")))
        if not out:
            return
        if self._needs_checkpoint:
            self.checkpoint()
            return
        text = "\n".join(out) + "\n"
        self._log.write(text)
        self._log.flush()
        self._log_size += len(text.encode("utf-8"))
        if self._log_size >= self.checkpoint_size:
            self.checkpoint()

    def checkpoint(self) -> None:
        items = [{"_key": k, **v} for k, v in self.entries.items()]
        final = os.path.join(self.dir, f"{self.txid}.json")
        text = "[\n" + ",\n".join(json.dumps(item, separators=(",", ":")) for item in items) + ("\n" if items else "") + "]\n"
        self._write_file(final, text)
        self._write_file(os.path.join(self.dir, "active.dat"), final)
        if self._log is not None:
            self._log.close()
        path = os.path.join(self.dir, "log.json")
        self._log = open(path, "w", encoding="utf-8")
        os.chmod(path, self.permissions)
        self._log_size = 0
        self._needs_checkpoint = False
        for txid, old in self._data_files():
            if txid < self.txid:
                try:
                    os.remove(old)
                except OSError:
                    pass

    def _write_file(self, path: str, text: str) -> None:
        tmp = path + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.permissions)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def close(self) -> None:
        if self._log is not None:
            try:
                self._log.flush()
                os.fsync(self._log.fileno())
            except OSError:
                pass
            self._log.close()
            self._log = None


def state_value(
    update: StateUpdate, *, inode: int, device: int, input_type: str, meta: dict[str, str] | None, ttl_ns: int, now: float | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    sec = int(now)
    return {
        "id": update.key[len(KEY_PREFIX) :] if update.key.startswith(KEY_PREFIX) else update.key,
        "prev_id": "",
        "source": update.source,
        "offset": update.offset,
        "timestamp": [int((now - sec) * 1e9), sec],
        "ttl": ttl_ns,
        "type": input_type,
        "meta": meta,
        "FileStateOS": {"inode": inode, "device": device},
        "identifier_name": "native",
    }


class Registrar:
    """Applies acknowledged file states to the store, flushing every ``filebeat.registry.flush``
    (``0s``, the 7.14 default: on every acknowledgement)."""

    def __init__(self, store: Store, log: Log, *, flush_interval: float = 0.0) -> None:
        self.store = store
        self.log = log
        self.flush_interval = flush_interval
        self.identities: dict[str, tuple[int, int, str, dict[str, str] | None]] = {}
        self._pending: dict[str, dict[str, Any]] = {}
        self._removes: set[str] = set()
        self._last_flush = 0.0
        self.writes = 0
        self.updates = 0

    def states(self) -> dict[str, dict[str, Any]]:
        return dict(self.store.entries)

    def identify(self, key: str, inode: int, device: int, input_type: str, meta: dict[str, str] | None) -> None:
        self.identities[key] = (inode, device, input_type, meta)

    def apply(self, updates: Iterable[StateUpdate]) -> None:
        now = time.time()
        last: dict[str, StateUpdate] = {}
        for up in updates:
            self.updates += 1
            last.pop(up.key, None)  # keep the order of the last update per key
            last[up.key] = up
        for up in last.values():
            if up.remove:
                self._pending.pop(up.key, None)
                self._removes.add(up.key)
                continue
            ident = self.identities.get(up.key)
            if ident is None:
                continue
            inode, device, input_type, meta = ident
            ttl_ns = -1 if up.ttl < 0 else int(up.ttl * 1e9)
            self._removes.discard(up.key)
            self._pending[up.key] = state_value(up, inode=inode, device=device, input_type=input_type, meta=meta, ttl_ns=ttl_ns, now=now)
        if self.flush_interval <= 0 or now - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        if not self._pending and not self._removes:
            return
        sets, removes = self._pending, self._removes
        self._pending, self._removes = {}, set()
        try:
            self.store.write(sets, removes)
            self.writes += 1
        except OSError as exc:
            self.log.error("registrar", f"Writing of registry returned error: {exc}. Continuing...")
        self._last_flush = time.time()
