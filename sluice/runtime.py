"""Envoy's layered runtime: static, disk and admin layers, and the lookups routes use.

A key's value is the one in the last layer that has it. Values are kept as strings (as
``/runtime`` shows them) and parsed the way Envoy's ``SnapshotImpl::createEntry`` does: a value
that parses as a non-negative double also gets an integer value (floored), so ``"50.7"`` acts as
50 and ``"0.5"`` as 0, while ``"abc"`` and ``"-1"`` fall back to the configured default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sluice.errors import ConfigError
from sluice.paths import host_path

DENOMINATORS = {0: 100, 1: 10_000, 2: 1_000_000}
"""FractionalPercent.DenominatorType enum number → denominator."""


@dataclass(slots=True)
class Entry:
    raw: str
    uint: int | None
    double: float | None


def make_entry(raw: str) -> Entry:
    double: float | None
    try:
        # absl::SimpleAtod accepts surrounding whitespace, like float() does.
        double = float(raw)
        if double != double or double in (float("inf"), float("-inf")):
            double = None
    except ValueError:
        double = None
    uint = None
    if double is not None and 0 <= double <= 2**64 - 1:
        uint = int(double)
    return Entry(raw, uint, double)


@dataclass(slots=True)
class Layer:
    name: str
    kind: str
    """``static``, ``disk`` or ``admin``."""
    values: dict[str, Entry] = field(default_factory=dict)


def _flatten(prefix: str, value: object, out: dict[str, Entry]) -> None:
    """Flatten a static_layer Struct into dotted keys, as Envoy's static layer does."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, bool):
        out[prefix] = make_entry("true" if value else "false")
    elif isinstance(value, float) and value.is_integer():
        out[prefix] = make_entry(str(int(value)))
    else:
        out[prefix] = make_entry(str(value))


class Runtime:
    """The runtime loader; readers call :meth:`get`, :meth:`get_integer`, :meth:`feature_enabled`."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers
        self._merged: dict[str, Entry] = {}
        self._admin = next((layer for layer in layers if layer.kind == "admin"), None)
        self._rebuild()

    @classmethod
    def from_config(cls, layered_runtime: object | None, service_cluster: str = "") -> Runtime:
        """Build from a ``LayeredRuntime`` message (or ``None``: Envoy then has an admin layer-less
        empty runtime, and ``/runtime_modify`` fails)."""
        from google.protobuf import json_format

        layers: list[Layer] = []
        if layered_runtime is None:
            return cls(layers)
        for i, lc in enumerate(layered_runtime.layers):  # type: ignore[attr-defined]
            kind = lc.WhichOneof("layer_specifier")
            if kind == "static_layer":
                layer = Layer(lc.name, "static")
                _flatten("", json_format.MessageToDict(lc.static_layer), layer.values)
            elif kind == "disk_layer":
                layer = Layer(lc.name, "disk")
                root = Path(host_path(lc.disk_layer.symlink_root))
                if lc.disk_layer.subdirectory:
                    root = root / lc.disk_layer.subdirectory
                if lc.disk_layer.append_service_cluster and service_cluster:
                    root = root / service_cluster
                _load_disk(root, layer.values)
            elif kind == "admin_layer":
                layer = Layer(lc.name, "admin")
            else:
                raise ConfigError(f"layered_runtime.layers[{i}]: layer '{lc.name}' has no type")
            layers.append(layer)
        return cls(layers)

    def _rebuild(self) -> None:
        merged: dict[str, Entry] = {}
        for layer in self.layers:
            merged.update(layer.values)
        self._merged = merged

    @property
    def has_admin_layer(self) -> bool:
        return self._admin is not None

    def merge_admin(self, values: dict[str, str]) -> None:
        """Apply ``/runtime_modify`` values; an empty value removes the override."""
        if self._admin is None:
            raise ConfigError("no admin layer specified")
        for k, v in values.items():
            self._admin.values.pop(k, None)
            if v != "":
                self._admin.values[k] = make_entry(v)
        self._rebuild()

    def get(self, key: str) -> str | None:
        e = self._merged.get(key)
        return None if e is None else e.raw

    def get_integer(self, key: str, default: int) -> int:
        e = self._merged.get(key)
        if e is None or e.uint is None:
            return default
        return e.uint

    def feature_enabled(self, key: str, numerator: int, denominator: int, random_value: int) -> bool:
        """Envoy's ``featureEnabled(key, FractionalPercent default, random)``. A runtime value
        that is an integer is a percentage out of 100 whatever the default's denominator, and
        above 100 always enables (observed with Envoy 1.40: TEN_THOUSAND default, runtime 50 →
        about 50 %); without one, the default fraction applies."""
        if key:
            e = self._merged.get(key)
            if e is not None and e.uint is not None:
                if e.uint > 100:
                    return True
                return random_value % 100 < e.uint
        return random_value % denominator < numerator

    def snapshot_json(self) -> dict[str, object]:
        """The body of ``GET /runtime``."""
        entries: dict[str, object] = {}
        keys = sorted(self._merged)
        for k in keys:
            entries[k] = {
                "final_value": self._merged[k].raw,
                "layer_values": [
                    layer.values[k].raw if k in layer.values else "" for layer in self.layers
                ],
            }
        return {"entries": entries, "layers": [layer.name for layer in self.layers]}


def _load_disk(root: Path, out: dict[str, Entry]) -> None:
    if not root.is_dir():
        return
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            key = ".".join(p.relative_to(root).parts)
            try:
                out[key] = make_entry(p.read_text().strip())
            except OSError:
                continue
