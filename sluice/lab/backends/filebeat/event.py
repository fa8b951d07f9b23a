"""Events as libbeat keeps them: a timestamp, ``Fields`` (nested maps), ``Meta`` (``@metadata``)
and the private file state the registry needs once the output acknowledges the event.

Field paths (``log.file.path``) walk nested maps as ``common.MapStr`` does: ``put`` creates the
maps on the way (replacing a non-map in the way), ``get`` falls back to a literal dotted key.
"""

from __future__ import annotations

import calendar
import re
import time
from typing import Any

MISSING: Any = object()


class StateUpdate:
    """The file state after an event: what the registry records once the event is acknowledged."""

    __slots__ = ("key", "source", "offset", "finished", "ttl", "remove")

    def __init__(self, key: str, source: str, offset: int, finished: bool = False, ttl: float = -1, remove: bool = False) -> None:
        self.key = key
        self.source = source
        self.offset = offset
        self.finished = finished
        self.ttl = ttl
        self.remove = remove


class Event:
    __slots__ = ("ts_ns", "fields", "meta", "private")

    def __init__(
        self, ts_ns: int, fields: dict[str, Any] | None, meta: dict[str, Any] | None = None, private: StateUpdate | None = None
    ) -> None:
        self.ts_ns = ts_ns
        self.fields = fields
        """``None`` for a state-only update (an empty line, a dropped event)."""
        self.meta = meta
        self.private = private

    def get(self, path: str, default: Any = MISSING) -> Any:
        fields = self.fields
        if fields is not None and path in fields:
            return fields[path]
        if path == "@timestamp":
            return format_ts(self.ts_ns)
        if path.startswith("@metadata."):
            return get_value(self.meta or {}, path[len("@metadata.") :], default)
        if path == "@metadata":
            return self.meta if self.meta is not None else default
        return get_value(self.fields or {}, path, default)

    def put(self, path: str, value: Any) -> None:
        if path.startswith("@metadata."):
            if self.meta is None:
                self.meta = {}
            put_value(self.meta, path[len("@metadata.") :], value)
            return
        if self.fields is None:
            self.fields = {}
        put_value(self.fields, path, value)

    def delete(self, path: str) -> bool:
        if path.startswith("@metadata."):
            return delete_value(self.meta or {}, path[len("@metadata.") :])
        return delete_value(self.fields or {}, path)


def get_value(d: dict[str, Any], path: str, default: Any = MISSING) -> Any:
    node: Any = d
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return d.get(path, default) if path in d else default
    return node


def put_value(d: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = d
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def delete_value(d: dict[str, Any], path: str) -> bool:
    parts = path.split(".")
    node: Any = d
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return False
    if isinstance(node, dict) and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False


def deep_update(dst: dict[str, Any], src: dict[str, Any], *, overwrite: bool = True, copy: bool = True) -> None:
    """``MapStr.DeepUpdate`` / ``DeepUpdateNoOverwrite``: maps merge, other values replace (or
    not). ``copy=False`` when ``src`` is the caller's to give away (freshly decoded JSON)."""
    for key, value in src.items():
        if type(value) is dict:
            cur = dst.get(key)
            if type(cur) is dict:
                deep_update(cur, value, overwrite=overwrite, copy=copy)
                continue
            if not overwrite and key in dst:
                continue
            dst[key] = _copy(value) if copy else value
        elif overwrite or key not in dst:
            dst[key] = _copy(value) if copy and type(value) is list else value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


# --- time ---------------------------------------------------------------------------------

_TS_CACHE: dict[int, str] = {}


def now_ns() -> int:
    return time.time_ns()


def format_ts(ts_ns: int) -> str:
    """libbeat's ``@timestamp``: UTC, millisecond precision (truncated), ``Z``."""
    sec, rem = divmod(ts_ns, 1_000_000_000)
    prefix = _TS_CACHE.get(sec)
    if prefix is None:
        if len(_TS_CACHE) > 4096:
            _TS_CACHE.clear()
        prefix = _TS_CACHE[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{prefix}.{rem // 1_000_000:03d}Z"


_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):?(\d\d))")
_SEC_CACHE: dict[str, int] = {}


def parse_rfc3339(text: str) -> int | None:
    """RFC 3339 (nanosecond fractions allowed, as Docker writes them) → Unix nanoseconds."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    head = text[:19] + (m.group(9) or "") + (m.group(10) or "") + (m.group(11) or "")
    sec = _SEC_CACHE.get(head)
    if sec is None:
        y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
        try:
            sec = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
        except (ValueError, OverflowError):
            return None
        if m.group(9):
            off = int(m.group(10)) * 3600 + int(m.group(11)) * 60
            sec -= off if m.group(9) == "+" else -off
        if len(_SEC_CACHE) > 4096:
            _SEC_CACHE.clear()
        _SEC_CACHE[head] = sec
    frac = m.group(7) or ""
    return sec * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
