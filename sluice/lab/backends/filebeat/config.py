"""``filebeat.yml`` as Filebeat (go-ucfg) reads it.

- YAML 1.1 (``yes``/``no`` are booleans, as in go-yaml v2);
- dotted keys are paths: ``output.elasticsearch.hosts: [...]`` and nested maps are the same
  thing, and they merge (``setup.template.settings: {index.number_of_shards: 1}`` too);
- ``-E key=value`` overrides (the value read as YAML; ``filebeat.inputs.0.paths`` indexes lists);
- ``${name}``, ``${name:default}``, ``${name:?message}``: ``name`` is looked up first as a setting
  of the same file (``${path.data}``), then in the environment; a string that is exactly one
  reference to a non-string setting takes that value;
- typed reads (:class:`Section`): booleans from ``true``/``false``/``yes``/``no``/``on``/``off``
  strings, Go durations (``10s``, ``1m30s``, ``100ms``; a bare number is seconds), lists from a
  comma-separated string (what an environment variable can hold).

Settings that change what Filebeat would do and that this stand-in does not do are refused with
a :class:`ConfigError` naming them; settings that do not matter here are accepted; unknown ones
are reported by :meth:`Section.check` (Filebeat ignores them silently).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml


class ConfigError(Exception):
    pass


# --- loading -------------------------------------------------------------------------------


def load(
    text: str,
    *,
    source: str = "filebeat.yml",
    environ: Mapping[str, str] | None = None,
    overrides: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole configuration, nested, with overrides applied and variables expanded.
    ``defaults`` (dotted keys, e.g. ``path.home``) are set first, so files may refer to them."""
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"error loading config file: yaml: {exc} (source:'{source}')") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"error loading config file: the top level of {source} must be a map")
    tree: dict[str, Any] = {}
    for key, value in (defaults or {}).items():
        set_path(tree, key, value)
    merge(tree, normalize(raw))
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"-E {item}: expected key=value")
        try:
            parsed = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parsed = value
        set_path(tree, key.strip(), normalize(parsed))
    return expand_all(tree, environ if environ is not None else os.environ, source)


def normalize(value: Any) -> Any:
    """Dotted keys → nested maps, recursively (go-ucfg's ``PathSep(".")``)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            nested = normalize(sub)
            parts = str(key).split(".")
            if len(parts) > 1:
                for part in reversed(parts[1:]):
                    nested = {part: nested}
            merge(out, {parts[0]: nested})
        return out
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def merge(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge(dst[key], value)
        else:
            dst[key] = value


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node: Any = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit():
                raise ConfigError(f"-E {dotted}: '{part}' is not a list index")
            idx = int(part)
            while len(node) <= idx:
                node.append({})
            if last:
                node[idx] = value
            else:
                if not isinstance(node[idx], (dict, list)):
                    node[idx] = [] if parts[i + 1].isdigit() else {}
                node = node[idx]
            continue
        if last:
            if isinstance(value, dict) and isinstance(node.get(part), dict):
                merge(node[part], value)
            else:
                node[part] = value
        else:
            child = node.get(part)
            if not isinstance(child, (dict, list)):
                child = node[part] = [] if parts[i + 1].isdigit() else {}
            node = child


def get_path(tree: Any, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(dotted)
    return node


# --- ${...} expansion ----------------------------------------------------------------------

_MISSING = object()


def expand_all(tree: dict[str, Any], environ: Mapping[str, str], source: str) -> dict[str, Any]:
    def walk(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}" if path else k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return _expand(value, tree, environ, path, source, ())
        return value

    out = walk(tree, "")
    assert isinstance(out, dict)
    return out


def _expand(text: str, tree: dict[str, Any], environ: Mapping[str, str], path: str, source: str, seen: tuple[str, ...]) -> Any:
    pieces: list[Any] = []
    i = 0
    while i < len(text):
        start = text.find("${", i)
        if start < 0:
            pieces.append(text[i:])
            break
        pieces.append(text[i:start])
        end = _closing(text, start + 2)
        if end < 0:
            raise ConfigError(f"missing closing '}}' in '{text}' accessing '{path}' (source:'{source}')")
        pieces.append(_resolve(text[start + 2 : end], tree, environ, path, source, seen))
        i = end + 1
    real = [p for p in pieces if p != ""]
    if len(real) == 1 and not isinstance(real[0], str):
        return real[0]
    return "".join(p if isinstance(p, str) else _scalar_text(p) for p in pieces)


def _closing(text: str, i: int) -> int:
    depth = 1
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _resolve(expr: str, tree: dict[str, Any], environ: Mapping[str, str], path: str, source: str, seen: tuple[str, ...]) -> Any:
    name, sep, rest = expr.partition(":")
    name = name.strip()
    if name in seen:
        raise ConfigError(f"cyclic reference detected for '${{{name}}}' accessing '{path}' (source:'{source}')")
    value: Any = _MISSING
    try:
        value = get_path(tree, name)
    except KeyError:
        if name in environ:
            value = environ[name]
    if value is not _MISSING:
        if isinstance(value, str) and "${" in value:
            value = _expand(value, tree, environ, name, source, (*seen, name))
        return value
    if sep and rest.startswith("?"):
        raise ConfigError(f"{rest[1:] or 'required'} accessing '{path}': ${{{name}}} is not set (source:'{source}')")
    if sep:
        return _expand(rest, tree, environ, path, source, seen) if "${" in rest else rest
    raise ConfigError(f"missing field accessing '{path}' (source:'{source}'): ${{{name}}} is neither a setting nor an environment variable")


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- typed reads ---------------------------------------------------------------------------

_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, setting: str = "") -> float:
    """A Go duration (``1m30s``, ``100ms``, ``-1s``) or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{setting}: {value!r} is not a duration")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"-?[0-9]*\.?[0-9]+", text):
        return float(text)
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(body) or not body:
        raise ConfigError(f'{setting}: time: invalid duration "{text}"')
    return sign * total


def format_duration(seconds: float) -> str:
    """Go's ``Duration.String()`` for the values the logs show (``5m0s``, ``10s``, ``1.5s``)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    out = f"{int(h)}h" if h else ""
    if h or m:
        out += f"{int(m)}m"
    return out + f"{s:g}s"


_SIZE = re.compile(r"(?i)\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?i?b?)?\s*")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2}
_SIZE_UNITS.update({"g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3})


def parse_bool(value: Any, setting: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1", "y"):
        return True
    if text in ("false", "no", "off", "0", "n", ""):
        return False
    raise ConfigError(f'{setting}: strconv.ParseBool: parsing "{value}": invalid syntax')


class Section:
    """A map of settings with its dotted path, for typed reads and messages that name the setting."""

    def __init__(self, data: Mapping[str, Any] | None, path: str = "") -> None:
        self.data: Mapping[str, Any] = data or {}
        self.path = path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def child(self, key: str) -> Section:
        value = self.data.get(key)
        if value is None:
            return Section({}, self.name(key))
        if not isinstance(value, dict):
            raise ConfigError(f"{self.name(key)}: required 'object', but found '{_kind(value)}'")
        return Section(value, self.name(key))

    def enabled(self, default: bool = True) -> bool:
        return self.boolean("enabled", default)

    def text(self, key: str, default: str = "") -> str:
        value = self.data.get(key, default)
        if value is None:
            return default
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{self.name(key)}: required 'string', but found '{_kind(value)}'")
        return _scalar_text(value)

    def boolean(self, key: str, default: bool) -> bool:
        return parse_bool(self.data[key], self.name(key)) if self.data.get(key) is not None else default

    def integer(self, key: str, default: int, *, minimum: int | None = None) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        try:
            out = int(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            out = None
        if out is None:
            raise ConfigError(f"{self.name(key)}: {value!r} is not an integer")
        if minimum is not None and out < minimum:
            raise ConfigError(f"{self.name(key)}: requires value >= {minimum}, got {out}")
        return out

    def size(self, key: str, default: int) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        m = _SIZE.fullmatch(str(value))
        unit = (m.group(2) or "").lower() if m else ""
        if not m or unit not in _SIZE_UNITS:
            raise ConfigError(f"{self.name(key)}: {value!r} is not a byte size")
        return int(float(m.group(1)) * _SIZE_UNITS[unit])

    def duration(self, key: str, default: float) -> float:
        value = self.data.get(key)
        return default if value is None else parse_duration(value, self.name(key))

    def strings(self, key: str, default: list[str] | None = None) -> list[str]:
        value = self.data.get(key)
        if value is None:
            return list(default or [])
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            out = []
            for item in value:
                if isinstance(item, (dict, list)):
                    raise ConfigError(f"{self.name(key)}: required 'string' in the list, but found '{_kind(item)}'")
                out.append(_scalar_text(item))
            return out
        return [_scalar_text(value)]

    def check(
        self,
        known: Iterable[str],
        *,
        unsupported: Mapping[str, str] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        """Refuse keys in ``unsupported`` (key → why) that are set to something that matters;
        report keys neither known nor refused."""
        known_set = set(known)
        for key, value in self.data.items():
            if unsupported and key in unsupported:
                if _inert(value):
                    continue
                raise ConfigError(f"{self.name(key)}: {unsupported[key]}")
            if key not in known_set and warn is not None:
                warn(f"setting '{self.name(key)}' is not known to this Filebeat stand-in; ignored (Filebeat ignores unknown settings too)")


def _inert(value: Any) -> bool:
    """A refused setting given as ``null``, ``enabled: false`` or an empty map/list does nothing."""
    if value is None or value == {} or value == []:
        return True
    if isinstance(value, dict) and "enabled" in value:
        try:
            return not parse_bool(value["enabled"], "enabled")
        except ConfigError:
            return False
    return False


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string"
