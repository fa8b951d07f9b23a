"""The processors the labs (and the usual filebeat.yml) use, as libbeat 7.14 runs them.

Each takes an event and returns it (changed), or ``None`` to drop it; a failure raises
:class:`ProcessorError`, which libbeat logs at debug level and then carries on with the next
processor (the event is kept). ``when`` wraps any processor in a condition.

- ``decode_json_fields`` (``fields``, ``target``, ``overwrite_keys``, ``add_error_key``,
  ``process_array``, ``max_depth``, ``expand_keys``, ``document_id``): JSON numbers that are
  integers stay integers (int64; larger ones become floats, as Go's ``TransformNumbers``);
  ``target: ""`` merges at the root (``@timestamp``, ``@metadata`` and ``type`` handled as
  libbeat's ``WriteJSONKeys``); a decode failure leaves the event as it was;
- ``add_docker_metadata`` (:mod:`.docker_meta`), ``add_host_metadata``, ``add_cloud_metadata``
  (no cloud here: it adds nothing, as Filebeat does when no provider answers);
- ``drop_fields``, ``drop_event``, ``add_fields``, ``add_tags``, ``rename``.

Anything else is refused with Filebeat's message (``the processor action X does not exist``).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice.lab.backends.filebeat import conditions
from sluice.lab.backends.filebeat.config import ConfigError, Section, normalize
from sluice.lab.backends.filebeat.docker_meta import ALLOWED as DOCKER_ALLOWED
from sluice.lab.backends.filebeat.docker_meta import DockerMetadata
from sluice.lab.backends.filebeat.event import MISSING, Event, deep_update, parse_rfc3339
from sluice.lab.backends.filebeat.fs import ContainerFS
from sluice.lab.backends.filebeat.logs import Log

Processor = Callable[[Event], "Event | None"]


class ProcessorError(Exception):
    pass


@dataclass(slots=True)
class Context:
    fs: ContainerFS
    log: Log
    hostname: str


# --- decode_json_fields ----------------------------------------------------------------------

_I64 = (-(2**63), 2**63 - 1)


def _int(text: str) -> int | float:
    value = int(text)
    return value if _I64[0] <= value <= _I64[1] else float(text)


def _no_constants(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


_decoder = json.JSONDecoder(parse_int=_int, parse_constant=_no_constants)
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]
_SPACE = " \t\n\r"


def decode_json(text: str) -> Any:
    """One JSON value (and nothing after it but white space), Go-style numbers."""
    if not text or text[0] in _SPACE or text[-1] in _SPACE:
        return _decoder.decode(text)
    try:
        value, end = _scan(text, 0)
    except StopIteration as exc:
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


class _Skipped(Exception):
    """Go's ``errProcessingSkipped``: an array met with ``process_array: false``."""


def _structured(s: str) -> bool:
    s = s.strip()
    return len(s) > 1 and ((s[0] == "[" and s[-1] == "]") or (s[0] == "{" and s[-1] == "}"))


def unmarshal(max_depth: int, text: str, process_array: bool) -> Any:
    out = decode_json(text)
    max_depth -= 1
    if max_depth == 0:
        return out

    def try_nested(v: Any) -> tuple[Any, bool]:
        if not isinstance(v, str) or not _structured(v):
            return v, False
        try:
            return unmarshal(max_depth, v, process_array), True
        except _Skipped:
            return v, True
        except ValueError:
            return v, False

    if isinstance(out, dict):
        for k, v in out.items():
            decoded, ok = try_nested(v)
            if ok:
                out[k] = decoded
    elif isinstance(out, list):
        if not process_array:
            raise _Skipped("processing skipped")
        for i, v in enumerate(out):
            decoded, ok = try_nested(v)
            if ok:
                out[i] = decoded
    return out


class DecodeJSONFields:
    ALLOWED = {"fields", "max_depth", "overwrite_keys", "add_error_key", "process_array", "target", "when", "document_id", "expand_keys"}

    def __init__(self, cfg: Section) -> None:
        if not cfg.has("fields"):
            raise ConfigError(f"{cfg.path}: missing required field accessing 'fields'")
        self.fields = cfg.strings("fields")
        self.max_depth = cfg.integer("max_depth", 1, minimum=1)
        self.overwrite = cfg.boolean("overwrite_keys", False)
        self.add_error_key = cfg.boolean("add_error_key", False)
        self.process_array = cfg.boolean("process_array", False)
        self.expand_keys = cfg.boolean("expand_keys", False)
        self.document_id = cfg.text("document_id", "")
        self.target: str | None = cfg.text("target") if cfg.has("target") and cfg.raw("target") is not None else None

    def __call__(self, event: Event) -> Event | None:
        errs: list[str] = []
        for field in self.fields:
            text = event.get(field)
            if not isinstance(text, str):
                continue  # libbeat ignores fields that are missing or not strings
            try:
                output = unmarshal(self.max_depth, text, self.process_array)
            except (ValueError, _Skipped) as exc:
                msg = str(exc)
                errs.append(msg)
                if self.add_error_key:
                    event.put("error", {"message": "parsing input as JSON: " + msg, "data": text, "field": field})
                continue
            target = field if self.target is None else self.target
            doc_id = ""
            if self.document_id and isinstance(output, dict):
                v = _pop_path(output, self.document_id)
                if isinstance(v, str):
                    doc_id = v
            if target:
                event.put(target, output)
            elif isinstance(output, dict):
                write_json_keys(event, output, expand=self.expand_keys, overwrite=self.overwrite, add_error_key=self.add_error_key)
            else:
                errs.append("failed to add target to root")
                continue
            if doc_id:
                event.put("@metadata._id", doc_id)
        if errs:
            raise ProcessorError(", ".join(errs))
        return event


def _pop_path(d: dict[str, Any], path: str) -> Any:
    parts = path.split(".")
    node: Any = d
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        return node.pop(parts[-1], None)
    return None


def _json_error(event: Event, message: str, add: bool) -> None:
    if add:
        event.put("error", {"message": message, "type": "json"})


def write_json_keys(event: Event, keys: dict[str, Any], *, expand: bool, overwrite: bool, add_error_key: bool) -> None:
    """libbeat's ``jsontransform.WriteJSONKeys``."""
    if expand:
        try:
            keys = _expand_keys(keys)
        except ValueError as exc:
            _json_error(event, str(exc), add_error_key)
            return
    fields = event.fields if event.fields is not None else {}
    event.fields = fields
    if "@timestamp" not in keys and "@metadata" not in keys and "type" not in keys:
        if fields.keys().isdisjoint(keys):
            fields.update(keys)  # nothing to merge or keep: the common case, at C speed
        else:
            deep_update(fields, keys, overwrite=overwrite, copy=False)
        return
    if not overwrite:
        keys = {k: v for k, v in keys.items() if k not in ("@timestamp", "@metadata")}
        deep_update(fields, keys, overwrite=False, copy=False)
        return
    rest: dict[str, Any] = {}
    for key, value in keys.items():
        if key == "@timestamp":
            if not isinstance(value, str):
                _json_error(event, "@timestamp not overwritten (not string)", add_error_key)
                continue
            ts = parse_rfc3339(value)
            if ts is None:
                _json_error(event, f"@timestamp not overwritten (parse error on {value})", add_error_key)
                continue
            event.ts_ns = ts
        elif key == "@metadata":
            if isinstance(value, dict):
                if event.meta is None:
                    event.meta = {}
                deep_update(event.meta, value)
            else:
                _json_error(event, "failed to update @metadata", add_error_key)
        elif key == "type":
            if not isinstance(value, str):
                _json_error(event, "type not overwritten (not string)", add_error_key)
            elif not value or value.startswith("_"):
                _json_error(event, f"type not overwritten (invalid value [{value}])", add_error_key)
            else:
                fields["type"] = value
        else:
            rest[key] = value
    deep_update(fields, rest, copy=False)


def _expand_keys(keys: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in keys.items():
        if isinstance(value, dict):
            value = _expand_keys(value)
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"cannot expand {key!r}: found conflicting key")
            node = child
        last = parts[-1]
        if last in node:
            if isinstance(node[last], dict) and isinstance(value, dict):
                deep_update(node[last], value)
                continue
            raise ValueError(f"cannot expand {key!r}: found conflicting key")
        node[last] = value
    return out


# --- host and cloud metadata -------------------------------------------------------------------


def _os_release() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                key, eq, value = line.strip().partition("=")
                if eq:
                    out[key] = value.strip('"')
    except OSError:
        pass
    return out


def host_fields(hostname: str) -> dict[str, Any]:
    """What ``add_host_metadata`` reports (from go-sysinfo).

    Deliberate difference: no ``host.ip``/``host.mac`` (``netinfo``): Python has no portable
    interface listing without a new dependency."""
    rel = _os_release()
    family = (rel.get("ID_LIKE") or rel.get("ID") or "linux").split()[0]
    os_info: dict[str, Any] = {
        "type": platform.system().lower(),
        "family": family,
        "platform": rel.get("ID", "linux"),
        "name": rel.get("NAME", platform.system()),
        "kernel": platform.release(),
    }
    if rel.get("VERSION"):
        os_info["version"] = rel["VERSION"]
    if rel.get("VERSION_CODENAME"):
        os_info["codename"] = rel["VERSION_CODENAME"]
    out: dict[str, Any] = {
        "hostname": hostname,
        "name": hostname,
        "architecture": platform.machine(),
        "os": os_info,
        "containerized": os.path.exists("/.dockerenv"),
    }
    try:
        with open("/etc/machine-id", encoding="utf-8") as f:
            mid = f.read().strip()
        if mid:
            out["id"] = mid
    except OSError:
        pass
    return out


class AddHostMetadata:
    ALLOWED = {"netinfo", "cache", "geo", "name", "replace_fields", "when"}

    def __init__(self, cfg: Section, ctx: Context) -> None:
        self.replace = cfg.boolean("replace_fields", True)
        name = cfg.text("name", "")
        self.info = host_fields(ctx.hostname)
        if name:
            self.info["name"] = name
        geo = cfg.raw("geo")
        if isinstance(geo, dict) and geo:
            self.info["geo"] = geo

    def __call__(self, event: Event) -> Event | None:
        fields = event.fields
        if fields is None:
            return event
        host = fields.get("host")
        if not self.replace and isinstance(host, dict) and any(k != "name" for k in host):
            return event
        fields["host"] = json.loads(json.dumps(self.info))
        return event


def add_cloud_metadata(cfg: Section, ctx: Context) -> Processor:
    # Deliberate difference: Filebeat probes the providers' metadata endpoints for up to
    # `timeout` (3s); on a lab machine none answers, with the same result, so none is probed.
    ctx.log.info("add_cloud_metadata", "add_cloud_metadata: hosting provider type not detected.")
    return lambda event: event


# --- field editing -------------------------------------------------------------------------------


def drop_fields(cfg: Section, ctx: Context) -> Processor:
    if not cfg.has("fields"):
        raise ConfigError(f"{cfg.path}: missing required field accessing 'fields'")
    names = cfg.strings("fields")
    ignore_missing = cfg.boolean("ignore_missing", False)
    for name in names:
        if name in ("@timestamp", "type"):
            raise ConfigError(f"{cfg.path}.fields: the {name} field cannot be dropped")

    def run(event: Event) -> Event | None:
        errs = [n for n in names if not event.delete(n) and not ignore_missing]
        if errs:
            raise ProcessorError("; ".join(f"failed to drop field [{n}]: key not found" for n in errs))
        return event

    return run


def drop_event(cfg: Section, ctx: Context) -> Processor:
    return lambda event: None


def add_fields(cfg: Section, ctx: Context) -> Processor:
    target = cfg.text("target", "fields") if cfg.has("target") else "fields"
    values = cfg.raw("fields")
    if not isinstance(values, dict):
        raise ConfigError(f"{cfg.path}: missing required field accessing 'fields'")
    add = {target: values} if target else values

    def run(event: Event) -> Event | None:
        if event.fields is None:
            event.fields = {}
        deep_update(event.fields, add)
        return event

    return run


def add_tags(cfg: Section, ctx: Context) -> Processor:
    tags = cfg.strings("tags")
    target = cfg.text("target", "tags") or "tags"

    def run(event: Event) -> Event | None:
        current = event.get(target)
        if current is MISSING:
            current = []
        elif not isinstance(current, list):
            current = [current]
        event.put(target, current + [t for t in tags if t not in current])
        return event

    return run


def rename(cfg: Section, ctx: Context) -> Processor:
    pairs = []
    for i, item in enumerate(cfg.raw("fields") or []):
        sub = Section(item if isinstance(item, dict) else {}, f"{cfg.path}.fields.{i}")
        if not sub.has("from") or not sub.has("to"):
            raise ConfigError(f"{sub.path}: needs from and to")
        pairs.append((_flat_name(sub.raw("from")), _flat_name(sub.raw("to"))))
    ignore_missing = cfg.boolean("ignore_missing", False)
    fail_on_error = cfg.boolean("fail_on_error", True)

    def run(event: Event) -> Event | None:
        for src, dst in pairs:
            value = event.get(src)
            if value is MISSING:
                if ignore_missing:
                    continue
                if fail_on_error:
                    raise ProcessorError(f"could not fetch value for key: {src}, Error: key not found")
                continue
            if event.get(dst) is not MISSING:
                if fail_on_error:
                    raise ProcessorError(f"target field {dst} already exists, drop or rename this field first")
                continue
            event.delete(src)
            event.put(dst, value)
        return event

    return run


def _flat_name(value: Any) -> str:
    """``from: a.b`` arrives as a string; a dotted map key would have been split."""
    if isinstance(value, dict):
        (k, v), *_ = value.items()
        return f"{k}.{_flat_name(v)}" if isinstance(v, dict) else f"{k}.{v}"
    return str(value)


# --- the registry ---------------------------------------------------------------------------------

_SIMPLE: dict[str, tuple[Callable[[Section, Context], Processor], set[str]]] = {
    "add_cloud_metadata": (add_cloud_metadata, {"timeout", "providers", "overwrite", "when"}),
    "drop_fields": (drop_fields, {"fields", "ignore_missing", "when"}),
    "drop_event": (drop_event, {"when"}),
    "add_fields": (add_fields, {"target", "fields", "when"}),
    "add_tags": (add_tags, {"tags", "target", "when"}),
    "rename": (rename, {"fields", "ignore_missing", "fail_on_error", "when"}),
}
KNOWN = sorted({"decode_json_fields", "add_docker_metadata", "add_host_metadata", *_SIMPLE})
_LIBBEAT_ONLY = {
    "add_id", "add_kubernetes_metadata", "add_labels", "add_locale", "add_network_direction", "add_observer_metadata",
    "add_process_metadata", "community_id", "convert", "copy_fields", "decode_base64_field", "decode_cef", "decode_csv_fields",
    "decode_xml", "decode_xml_wineventlog", "decompress_gzip_field", "detect_mime_type", "dissect", "dns", "extract_array",
    "fingerprint", "include_fields", "registered_domain", "script", "syslog", "timestamp", "translate_sid", "truncate_fields",
    "urldecode", "rate_limit", "replace",
}  # fmt: skip


def build(entries: Any, ctx: Context, setting: str = "processors") -> list[Processor]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{setting}: expects a list of processors")
    out: list[Processor] = []
    for i, entry in enumerate(entries):
        path = f"{setting}.{i}"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(f"error initializing processors: {path}: each processor is a map with one key, the action name")
        ((name, raw),) = entry.items()
        out.append(_one(str(name), raw, ctx, f"{path}.{name}"))
    return out


def _one(name: str, raw: Any, ctx: Context, path: str) -> Processor:
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"error initializing processors: {path}: expects a map of settings")
    cfg = Section(normalize(raw or {}), path)
    if name == "decode_json_fields":
        allowed: set[str] = DecodeJSONFields.ALLOWED
    elif name == "add_docker_metadata":
        allowed = DOCKER_ALLOWED
    elif name == "add_host_metadata":
        allowed = AddHostMetadata.ALLOWED
    elif name in _SIMPLE:
        allowed = _SIMPLE[name][1]
    elif name in _LIBBEAT_ONLY:
        raise ConfigError(f"error initializing processors: {path}: the processor action {name} is not supported by this Filebeat stand-in")
    else:
        raise ConfigError(f"error initializing processors: the processor action {name} does not exist. Valid actions: {', '.join(KNOWN)}")
    for key in cfg.data:
        if key not in allowed:
            raise ConfigError(f"error initializing processors: {path}: unexpected {key} option in {name}")
    proc: Processor
    if name == "decode_json_fields":
        proc = DecodeJSONFields(cfg)
    elif name == "add_docker_metadata":
        proc = DockerMetadata(cfg, ctx.fs, ctx.log)
    elif name == "add_host_metadata":
        proc = AddHostMetadata(cfg, ctx)
    else:
        proc = _SIMPLE[name][0](cfg, ctx)
    if cfg.has("when"):
        cond = conditions.build(cfg.raw("when"), f"{path}.when")
        inner = proc

        def guarded(event: Event) -> Event | None:
            return inner(event) if cond(event) else event

        return guarded
    return proc


def run_all(procs: list[Processor], event: Event, log: Log) -> Event | None:
    for proc in procs:
        try:
            out = proc(event)
        except ProcessorError as exc:
            log.debug("publisher_processing", f"Fail to apply processor {proc}: {exc}")
            continue
        if out is None:
            return None
        event = out
    return event
