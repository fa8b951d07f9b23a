"""Envoy's UUID request-id extension (``UUIDRequestIDExtension``,
``envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig``): the trace status packed into the
x-request-id, and the request id as the integer the tracing decision samples on.

A UUID's character 14 (its version nibble) carries the status: ``9`` sampled, ``a`` forced by
the service (``x-envoy-force-trace``), ``b`` forced by the client (``x-client-trace-id``),
``4`` not traced; an id of another length is left as it is.
"""

from __future__ import annotations

import enum
from typing import Any

UUID_LENGTH = 36
TRACE_BYTE_POSITION = 14


class Reason(enum.Enum):
    """Envoy's ``Tracing::Reason`` (the trace decision's cause)."""

    NotTraceable = "NotTraceable"
    HealthCheck = "HealthCheck"
    Sampling = "Sampling"
    ServiceForced = "ServiceForced"
    ClientForced = "ClientForced"


TRACED = frozenset({Reason.Sampling, Reason.ServiceForced, Reason.ClientForced})
"""The reasons whose requests are traced (``TracerUtility::shouldTraceRequest``)."""

_REASON_OF = {"a": Reason.ServiceForced, "9": Reason.Sampling, "b": Reason.ClientForced}
_CHAR_OF = {"ServiceForced": "a", "ClientForced": "b", "Sampling": "9", "NotTraceable": "4"}
"""By ``Reason.value``: a str key hashes in C, an Enum member's ``__hash__`` is Python code."""
_HEX = frozenset("0123456789abcdefABCDEF")
_SPACE = " \t\n\v\f\r"


def strtoull16(text: str) -> int | None:
    """Envoy's ``StringUtil::atoull(text, base 16)``: C's ``strtoull`` (leading white space, a
    sign, a ``0x`` prefix; a minus wraps modulo 2^64) that must use up the whole text."""
    s = text.lstrip(_SPACE)
    negative = s[:1] == "-"
    if s[:1] in ("-", "+"):
        s = s[1:]
    if s[:2] in ("0x", "0X") and s[2:3] in _HEX:
        s = s[2:]
    if not s or not _HEX.issuperset(s):
        return None
    value = int(s, 16)
    if value >= 1 << 64:
        return None  # (ERANGE)
    return (-value) % (1 << 64) if negative else value


class UuidRequestId:
    """One HCM's request-id extension: ``pack_trace_reason`` and
    ``use_request_id_for_trace_sampling`` (both true by default)."""

    __slots__ = ("pack_trace_reason", "use_for_sampling")

    def __init__(self, pack_trace_reason: bool = True, use_for_sampling: bool = True) -> None:
        self.pack_trace_reason = pack_trace_reason
        self.use_for_sampling = use_for_sampling

    @classmethod
    def from_proto(cls, hcm: Any, path: str) -> UuidRequestId:
        """From an HCM's ``request_id_extension`` (absent: the defaults)."""
        from sluice.config.compat import unpack_any
        from sluice.errors import UnsupportedError

        if not hcm.HasField("request_id_extension"):
            return cls()
        ext = hcm.request_id_extension.typed_config
        if not ext.type_url.endswith("/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig"):
            raise UnsupportedError(f"{path}.request_id_extension: request id extension '{ext.type_url}' is not implemented yet")
        cfg: Any = unpack_any(ext)
        pack = cfg.pack_trace_reason.value if cfg.HasField("pack_trace_reason") else True
        use = cfg.use_request_id_for_trace_sampling.value if cfg.HasField("use_request_id_for_trace_sampling") else True
        return cls(pack, use)

    @staticmethod
    def integer(rid: str | None) -> int | None:
        """The id's first 8 characters as a hex number (``getInteger``, by ``strtoull``); None
        when absent, shorter, or not a number."""
        if rid is None or len(rid) < 8:
            return None
        head = rid[:8]
        if _HEX.issuperset(head):
            return int(head, 16)  # (a UUID's: the common case)
        return strtoull16(head)

    def reason(self, rid: str | None) -> Reason:
        """The status packed in the id (``getTraceReason``)."""
        if not self.pack_trace_reason or rid is None or len(rid) != UUID_LENGTH:
            return Reason.NotTraceable
        return _REASON_OF.get(rid[TRACE_BYTE_POSITION], Reason.NotTraceable)

    def with_reason(self, rid: str, reason: Reason) -> str:
        """``rid`` with ``reason`` packed in (``setTraceReason``; unchanged when not packing or
        not a UUID's length)."""
        char = _CHAR_OF.get(reason._value_)  # (the attribute: ``.value`` is a Python-level property)
        if not self.pack_trace_reason or len(rid) != UUID_LENGTH or char is None:
            return rid
        return rid[:TRACE_BYTE_POSITION] + char + rid[TRACE_BYTE_POSITION + 1 :]
