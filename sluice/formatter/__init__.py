"""Envoy's substitution formatter (``%COMMAND(arg):N%``), compiled once per config: access-log
lines (text and JSON), and header values such as ``%REQ(...)%`` in ``request_headers_to_add``.

``parser`` splits a format string into literals and providers, ``operators`` holds Envoy's
command table, ``time_format`` its strftime extensions, ``formatters`` the text and JSON
formats built from them.
"""

from sluice.formatter.formatters import (
    DEFAULT_FORMAT,
    Formatter,
    JsonFormatter,
    TextFormatter,
    compile_json,
    compile_substitution,
    compile_text,
    default_formatter,
    to_text,
)

__all__ = [
    "DEFAULT_FORMAT", "Formatter", "JsonFormatter", "TextFormatter", "compile_json", "compile_substitution",
    "compile_text", "default_formatter", "to_text",
]
