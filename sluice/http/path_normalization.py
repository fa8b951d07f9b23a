"""The HCM's path options, as Envoy applies them before routing (``maybeNormalizePath``):
``path_with_escaped_slashes_action``, ``normalize_path`` and ``merge_slashes``.

Only the path part of ``:path`` changes; the query stays as it is. ``normalize_path`` is
Envoy's ``PathUtil::canonicalPath``, which is Chromium's URL path canonicalisation: ``\\`` is a
``/``, ``.`` and ``..`` segments (also spelled ``%2e``) are resolved, escapes of unreserved
characters are decoded, and characters a path may not hold are percent-encoded.
"""

from __future__ import annotations

import re
from enum import Enum

_HEX = "0123456789abcdefABCDEF"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Chromium's path table: what it percent-encodes (besides bytes >= 0x80 and controls).
_ESCAPED = frozenset(' "#<>^`{|}\x7f')
_ESCAPED_SLASH = re.compile("%2f|%5c", re.IGNORECASE)
_SLASHES = re.compile("/{2,}")


class Action(Enum):
    """The outcome for a request: go on, refuse (400) or redirect (307) to the new path."""

    CONTINUE = "continue"
    REJECT = "reject"
    REDIRECT = "redirect"


class EscapedSlashes(Enum):
    """``path_with_escaped_slashes_action``, by its proto number (IMPLEMENTATION_SPECIFIC_DEFAULT
    is KEEP_UNCHANGED in Envoy 1.40)."""

    KEEP_UNCHANGED = 1
    REJECT_REQUEST = 2
    UNESCAPE_AND_REDIRECT = 3
    UNESCAPE_AND_FORWARD = 4

    @classmethod
    def from_proto(cls, value: int) -> EscapedSlashes:
        return cls.KEEP_UNCHANGED if value == 0 else cls(value)


def _split(path: str) -> tuple[str, str]:
    cut = path.find("?")
    return (path, "") if cut < 0 else (path[:cut], path[cut:])


def _is_dot(segment: str) -> int:
    """2 for a ``..`` segment, 1 for ``.``, 0 otherwise (``%2e`` counts as a dot)."""
    s = segment.lower().replace("%2e", ".")
    return 1 if s == "." else 2 if s == ".." else 0


class InvalidPath(Exception):
    """The path cannot be canonicalised (an escaped NUL): Envoy refuses the request."""


def canonical_path(path: str) -> str:
    """Chromium's ``CanonicalizePath`` of the path part (the query is kept); raises
    :class:`InvalidPath`."""
    part, query = _split(path)
    segments = part.replace("\\", "/").split("/")[1:]
    out: list[str] = []
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        dot = _is_dot(segment)
        if dot == 2 and out:
            out.pop()  # (an empty segment from "//" is a segment too)
        if dot:
            if i == last:
                out.append("")  # "/a/b/.." is "/a/": the path ends with a slash
            continue
        out.append(_canonical_segment(segment))
    return "/" + "/".join(out) + query


def _canonical_segment(segment: str) -> str:
    chars: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        c = segment[i]
        if c == "%" and i + 2 < n and segment[i + 1] in _HEX and segment[i + 2] in _HEX:
            decoded = chr(int(segment[i + 1 : i + 3], 16))
            if decoded == "\x00":
                raise InvalidPath(segment)
            if decoded in _UNRESERVED:
                chars.append(decoded)
            else:
                chars.append(segment[i : i + 3])
            i += 3
            continue
        o = ord(c)
        if o < 0x20 or o >= 0x7F or c in _ESCAPED:
            chars.extend(f"%{b:02X}" for b in c.encode("utf-8"))
        else:
            chars.append(c)
        i += 1
    return "".join(chars)


def merge_slashes(path: str) -> str:
    part, query = _split(path)
    return _SLASHES.sub("/", part) + query


def unescape_slashes(path: str) -> str | None:
    """The path with ``%2F``/``%5C`` decoded (in the path part), or None when it has none."""
    part, query = _split(path)
    if not _ESCAPED_SLASH.search(part):
        return None
    return _ESCAPED_SLASH.sub(lambda m: "/" if m.group(0)[2] in "fF" else "\\", part) + query


def normalize(path: str, normalize_path: bool, merge: bool, escaped_slashes: EscapedSlashes) -> tuple[Action, str]:
    """Envoy's ``ConnectionManagerUtility::maybeNormalizePath``: the action and the new path."""
    action = Action.CONTINUE
    if escaped_slashes is not EscapedSlashes.KEEP_UNCHANGED:
        unescaped = unescape_slashes(path)
        if unescaped is not None:
            if escaped_slashes is EscapedSlashes.REJECT_REQUEST:
                return Action.REJECT, path
            path = unescaped
            if escaped_slashes is EscapedSlashes.UNESCAPE_AND_REDIRECT:
                action = Action.REDIRECT
    if normalize_path:
        try:
            path = canonical_path(path)
        except InvalidPath:
            return Action.REJECT, path
    if merge:
        path = merge_slashes(path)
    return action, path
