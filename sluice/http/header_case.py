"""Header-name case for HTTP/1 output: ``header_key_format.proper_case_words``.

Sluice keeps header names lower-case, as Envoy does; on the wire an HCM with
``http_protocol_options.header_key_format.proper_case_words`` writes the response's names with
each word capitalised. The rule is Envoy's ``ProperCaseHeaderKeyFormatter``: a letter is
upper-cased when it starts the name or follows a character that is neither a letter nor a digit
(``x-mixed_case-9z`` → ``X-Mixed_Case-9z``, ``1abc`` stays). The upstream request is not
affected (that would be the cluster's own ``http_protocol_options``)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)  # names repeat; the bound keeps a peer's random names from growing it
def proper_case(name: str) -> str:
    out = []
    capitalize = True
    for c in name:
        alpha = c.isascii() and c.isalpha()
        if capitalize and alpha:
            c = c.upper()
        capitalize = not alpha and not (c.isascii() and c.isdigit())
        out.append(c)
    return "".join(out)
