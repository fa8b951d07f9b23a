"""What Envoy's API has that the schema Sluice loads does not: fields and message types newer than
the xds-protos package (``envoy_schema_gaps.json``, written by ``scripts/envoy_schema_gaps.py``
from the descriptors inside the Envoy binary this project tests against).

The loader asks here before calling a key an "unknown field" or a ``@type`` an "unknown extension
type": what Envoy knows is reported as a named limitation — valid for Envoy, not known to this
version's schema, so not implemented — and not as the user's mistake.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

_TABLE = Path(__file__).with_name("envoy_schema_gaps.json")


@functools.cache
def _table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_TABLE.read_text(encoding="utf-8"))
    by_key = {
        message: {**{name: name for name in fields}, **{json: name for name, json in fields.items()}}
        for message, fields in data["fields"].items()
    }
    return {"envoy": data["envoy"], "xds_protos": data["xds_protos"], "fields": by_key, "types": frozenset(data["types"])}


def newer_field(message: str, key: str) -> str | None:
    """The field of ``message`` (full name) that ``key`` (proto or JSON name) names in Envoy's
    API but not in the loaded schema, or None."""
    found: str | None = _table()["fields"].get(message, {}).get(key)
    return found


def is_newer_type(full_name: str) -> bool:
    """Whether Envoy's API has message ``full_name`` and the loaded schema does not."""
    return full_name in _table()["types"]


def not_known(what: str) -> str:
    """The wording of the limitation, naming both versions."""
    table = _table()
    return (
        f"{what} is in Envoy {table['envoy']}'s API but not known to this version's schema "
        f"(xds-protos {table['xds_protos']}), so Sluice does not implement it yet"
    )
