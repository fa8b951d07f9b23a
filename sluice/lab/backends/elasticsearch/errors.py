"""Elasticsearch's error vocabulary: an exception carries the ``type`` and ``reason`` ES would
send, its extra fields (``index``, ``index_uuid``, ``resource.id`` …) and its cause, and renders as
ES renders one (``ElasticsearchException.generateFailureXContent``)::

    {"error": {"root_cause": [...], "type": ..., "reason": ..., ..., "caused_by": {...}}, "status": N}

``root_cause`` follows ES's ``guessRootCauses``: the deepest *Elasticsearch* exception in the
cause chain (a wrapped Java exception such as ``illegal_argument_exception`` is not one), or, for
``search_phase_execution_exception``, the distinct causes of its shard failures.
"""

from __future__ import annotations

from typing import Any

# Java exceptions ES wraps but that are not ElasticsearchExceptions: guessRootCauses stops above them.
_JAVA = frozenset(
    {
        "illegal_argument_exception",
        "illegal_state_exception",
        "number_format_exception",
        "json_parse_exception",
        "date_time_parse_exception",
        "arithmetic_exception",
        "unsupported_operation_exception",
        "null_pointer_exception",
        "named_object_not_found_exception",
        "x_content_parse_exception",
    }
)


class EsError(Exception):
    """An error answer. ``status`` is the HTTP status; ``meta`` holds the extra fields ES prints
    between ``reason`` and ``caused_by`` (in that order)."""

    def __init__(
        self,
        status: int,
        type_: str,
        reason: str,
        *,
        caused_by: EsError | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.type = type_
        self.reason = reason
        self.caused_by = caused_by
        self.meta: dict[str, Any] = dict(meta or {})

    def to_dict(self, *, with_cause: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "reason": self.reason}
        out.update(self.meta)
        if with_cause and self.caused_by is not None:
            out["caused_by"] = self.caused_by.to_dict()
        return out

    def root_causes(self) -> list[EsError]:
        if self.caused_by is not None and self.caused_by.type not in _JAVA:
            return self.caused_by.root_causes()
        return [self]

    def body(self) -> dict[str, Any]:
        error = {"root_cause": [rc.to_dict(with_cause=False) for rc in self.root_causes()]}
        error.update(self.to_dict())
        return {"error": error, "status": self.status}

    def __repr__(self) -> str:
        return f"<EsError {self.status} {self.type}: {self.reason}>"


class RawError(EsError):
    """The few answers ES sends as ``{"error": "<text>", "status": N}`` (no handler for a URI,
    wrong method, a missing alias)."""

    def body(self) -> dict[str, Any]:
        return {"error": self.reason, "status": self.status}


class ShardFailure(EsError):
    """``search_phase_execution_exception``: every shard (here: every index) failed."""

    def __init__(self, failures: list[tuple[str, EsError]], node_id: str, phase: str = "query") -> None:
        status = failures[0][1].status if failures else 500
        super().__init__(status, "search_phase_execution_exception", "all shards failed")
        self.failures = failures
        self.meta = {
            "phase": phase,
            "grouped": True,
            "failed_shards": shard_failures(failures, node_id),
        }

    def root_causes(self) -> list[EsError]:
        seen: list[EsError] = []
        keys: set[tuple[str, str]] = set()
        for _, exc in self.failures:
            for rc in exc.root_causes():
                key = (rc.type, rc.reason)
                if key not in keys:
                    keys.add(key)
                    seen.append(rc)
        return seen


def shard_failures(failures: list[tuple[str, EsError]], node_id: str) -> list[dict[str, Any]]:
    """ES groups identical failures (same cause type and reason) and reports one shard of each."""
    out: list[dict[str, Any]] = []
    keys: set[tuple[str, str]] = set()
    for index, exc in failures:
        key = (exc.type, exc.reason.replace(index, ""))
        if key in keys:
            continue
        keys.add(key)
        out.append({"shard": 0, "index": index, "node": node_id, "reason": exc.to_dict()})
    return out


# --- the errors used in more than one place --------------------------------------------------


def bad_request(reason: str, type_: str = "illegal_argument_exception", caused_by: EsError | None = None) -> EsError:
    return EsError(400, type_, reason, caused_by=caused_by)


def parsing(reason: str, caused_by: EsError | None = None) -> EsError:
    return EsError(400, "parsing_exception", reason, caused_by=caused_by)


def index_not_found(name: str) -> EsError:
    return EsError(
        404,
        "index_not_found_exception",
        f"no such index [{name}]",
        meta={"resource.type": "index_or_alias", "resource.id": name, "index_uuid": "_na_", "index": name},
    )


def query_shard(reason: str, index: str, uuid: str, caused_by: EsError | None = None) -> EsError:
    return EsError(400, "query_shard_exception", reason, caused_by=caused_by, meta={"index_uuid": uuid, "index": index})


def json_parse(reason: str) -> EsError:
    return EsError(400, "json_parse_exception", reason)
