"""Header values with Envoy's ``%COMMAND%`` substitutions (``request_headers_to_add`` etc.).

Envoy's ``HeaderParser`` hands each value to the access-log substitution formatter with
``omit_empty_values`` on (an absent value is an empty string, not ``-``), after translating
two legacy header-only forms: ``%UPSTREAM_METADATA(["ns", "key"])%`` (and DYNAMIC_METADATA) to
the colon form, and ``%PER_REQUEST_STATE(key)%`` to ``%FILTER_STATE(key:PLAIN)%``. Sluice
does the same with :mod:`sluice.formatter`, so every operator an access log knows works in a
header value too, with the same errors.
"""

from __future__ import annotations

import json
import logging
import re

from sluice.formatter import compile_text
from sluice.formatter.context import FormatContext

log = logging.getLogger("sluice.router")

# Envoy's translator patterns (header_parser_utils.cc); RE2 and Python agree on both.
_LEGACY_METADATA = re.compile(r"%(UPSTREAM|DYNAMIC)_METADATA\(\s*(\[(?:.|\r?\n)+?\]\s*)\)%")
_PER_REQUEST_STATE = re.compile(r"%PER_REQUEST_STATE\((.+?)\)%")


def translate_metadata_format(value: str) -> str:
    """``%UPSTREAM_METADATA(["a", "b"])%`` → ``%UPSTREAM_METADATA(a:b)%``; a value whose JSON
    does not parse into a non-empty list of strings is returned unchanged (Envoy's rule)."""
    out = value
    while (m := _LEGACY_METADATA.search(out)) is not None:
        try:
            params = json.loads(m.group(2))
        except ValueError:
            return value
        if not isinstance(params, list) or not params or not all(isinstance(p, str) for p in params):
            return value
        new = f"%{m.group(1)}_METADATA({':'.join(params)})%"
        log.warning("Header formatter: JSON format of %s_METADATA parameters has been obsoleted. "
                    "Use colon format: %s", m.group(1), new)
        out = out.replace(m.group(0), new)
    return out


def translate_per_request_state(value: str) -> str:
    out = value
    while (m := _PER_REQUEST_STATE.search(out)) is not None:
        new = f"%FILTER_STATE({m.group(1)}:PLAIN)%"
        log.warning("PER_REQUEST_STATE header formatter has been obsoleted. Use %s", new)
        out = out.replace(m.group(0), new)
    return out


class HeaderValueFormat:
    """A compiled header value: ``format(ctx)`` gives the value ('' for an absent one)."""

    __slots__ = ("literal", "_format")

    def __init__(self, template: str, path: str) -> None:
        text = translate_per_request_state(translate_metadata_format(template))
        formatter = compile_text(text, path, omit_empty=True)
        pieces = formatter.pieces
        self.literal: str | None = pieces[0] if len(pieces) == 1 and isinstance(pieces[0], str) else None
        """The value when it has no command (no context needed to format it)."""
        self._format = formatter.format

    def format(self, ctx: FormatContext) -> str:
        if self.literal is not None:
            return self.literal
        return self._format(ctx)
