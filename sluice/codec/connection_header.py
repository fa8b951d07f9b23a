"""The HTTP/1 request's ``Connection`` header as Envoy's codec sanitizes it."""

from __future__ import annotations

# Connection tokens that name no header (the connection's own options).
_CONNECTION_OPTIONS = frozenset({"close", "keep-alive", "upgrade", "http2-settings"})
# Nominating one of these would let a client hide where a request came from: refused.
_NEVER_NOMINATED = frozenset({"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"})
_MAX_NOMINATED = 10
_MAX_TE_VALUE = 256


def sanitize_connection(entries: list[list[str]]) -> list[list[str]] | None:
    """Envoy's ``Utility::sanitizeConnectionHeader``: headers the ``Connection`` header nominates
    are removed (``te`` stays as ``trailers`` if it asks for them); ten or more tokens, a
    nominated ``x-forwarded-*`` or pseudo-header, or a ``te`` of 256 bytes or more: refused
    (None; the codec answers 400 ``http1.connection_header_rejected``).
    The ``connection`` header itself is left for the connection manager (hop-by-hop)."""
    value = ",".join(v for k, v in entries if k == "connection")
    tokens = [t.strip() for t in value.split(",") if t.strip()]
    if len(tokens) >= _MAX_NOMINATED:
        return None
    remove: set[str] = set()
    for token in tokens:
        name = token.lower()
        if name in _CONNECTION_OPTIONS or name == "connection":
            continue
        if name in _NEVER_NOMINATED or name.startswith(":"):
            return None
        if name == "te":
            te = next((v for k, v in entries if k == "te"), None)
            if te is not None:
                if len(te) >= _MAX_TE_VALUE:
                    return None
                if any(t.strip().lower() == "trailers" for t in te.split(",")):
                    for e in entries:
                        if e[0] == "te":
                            e[1] = "trailers"
                    continue
        remove.add(name)
    if not remove:
        return entries
    return [e for e in entries if e[0] not in remove]
