"""``_bulk``'s NDJSON, read as ES's ``BulkRequestParser`` reads it: an action line
(``{"index"|"create"|"update"|"delete": {metadata}}``), then the source line for all but
``delete``. A line that is not an action fails the whole request (400
``illegal_argument_exception``, nothing written); a source that is not a JSON object fails only
its item (``mapper_parsing_exception``, from the writer)."""

from __future__ import annotations

from typing import Any

import orjson

from sluice.lab.backends.elasticsearch.errors import EsError
from sluice.lab.backends.elasticsearch.writer import Op

ACTIONS = ("index", "create", "update", "delete")
_META = {"_index", "_type", "_id", "routing", "_routing", "pipeline", "if_seq_no", "if_primary_term", "version", "version_type",
         "require_alias", "retry_on_conflict", "_retry_on_conflict", "op_type", "_source", "dynamic_templates"}


def _bad(line: int, why: str) -> EsError:
    return EsError(400, "illegal_argument_exception", f"Malformed action/metadata line [{line}], {why}")


def _token(v: Any) -> str:
    if isinstance(v, dict):
        return "START_OBJECT"
    if isinstance(v, list):
        return "START_ARRAY"
    if isinstance(v, str):
        return "VALUE_STRING"
    if isinstance(v, bool):
        return "VALUE_BOOLEAN"
    if v is None:
        return "VALUE_NULL"
    return "VALUE_NUMBER"


def parse_bulk(body: bytes, *, default_index: str | None = None, params: dict[str, str] | None = None) -> list[Op]:
    params = params or {}
    if not body.strip():
        raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")
    if not body.endswith(b"\n"):
        raise EsError(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
    lines = body.split(b"\n")
    ops: list[Op] = []
    i, n = 0, len(lines) - 1  # the text after the last newline is empty
    require_alias = params.get("require_alias", "false").lower() in ("", "true")
    seen: dict[bytes, tuple[str, str | None, str | None, dict[str, Any]]] = {}
    while i < n:
        raw = lines[i].strip()
        lineno = i + 1
        i += 1
        if not raw:
            continue
        # Filebeat repeats one action line: check it once per request. What is kept is only
        # what a valid line yields (an invalid one fails the whole request at its first use).
        known = seen.get(raw)
        if known is None:
            known = _action(raw, lineno, default_index, require_alias)
            if len(seen) < 64:
                seen[raw] = known
        name, index, doc_id, extra = known
        op = Op(name, index, doc_id, None, dict(extra) if extra else {})
        if name != "delete":
            if i >= n:
                raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: source is missing;")
            op.source = lines[i].rstrip(b"\r")
            i += 1
        elif doc_id is None:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: id is missing;")
        if name == "update" and doc_id is None:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: id is missing;")
        if op.index is None:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
        ops.append(op)
    if not ops:
        raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")
    return ops


def _action(raw: bytes, lineno: int, default_index: str | None, require_alias: bool) -> tuple[str, str | None, str | None, dict[str, Any]]:
    """One action line: (action, index, id, the item's parameters), or the request's 400."""
    try:
        action = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _bad(lineno, f"expected START_OBJECT but found [{_first_token(raw)}]") from None
    if not isinstance(action, dict):
        raise _bad(lineno, f"expected START_OBJECT but found [{_token(action)}]")
    if len(action) != 1:
        if not action:
            raise _bad(lineno, "expected FIELD_NAME but found [END_OBJECT]")
        raise _bad(lineno, "expected END_OBJECT but found [FIELD_NAME]")
    name, meta = next(iter(action.items()))
    if name not in ACTIONS:
        raise _bad(lineno, f"expected field [create], [delete], [index] or [update] but found [{name}]")
    if not isinstance(meta, dict):
        raise _bad(lineno, f"expected START_OBJECT but found [{_token(meta)}]")
    for key in meta:
        if key not in _META:
            raise EsError(400, "illegal_argument_exception", f"Action/metadata line [{lineno}] contains an unknown parameter [{key}]")
    index = meta.get("_index", default_index)
    doc_id = meta.get("_id")
    extra: dict[str, Any] = {k: meta[k] for k in ("if_seq_no", "if_primary_term", "version", "version_type", "op_type") if k in meta}
    if meta.get("require_alias", require_alias):
        extra["require_alias"] = True
    if doc_id is not None and not isinstance(doc_id, str):
        doc_id = str(doc_id)
    return name, str(index) if index is not None else None, doc_id, extra


def _first_token(raw: bytes) -> str:
    c = raw[:1]
    if c == b"[":
        return "START_ARRAY"
    if c == b'"':
        return "VALUE_STRING"
    if c in b"-0123456789" and c:
        return "VALUE_NUMBER"
    return raw.decode("utf-8", "replace")[:40]
