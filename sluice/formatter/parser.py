"""Envoy's substitution format strings parsed into literal text and command providers
(``SubstitutionFormatParser::parse``).

A command is ``%COMMAND%``, ``%COMMAND(ARG)%`` or ``%COMMAND(ARG):N%``; ``%%`` is a literal
percent sign. A ``%`` that starts no valid command, an unknown command or a command used with
the wrong syntax is a :class:`ConfigError` naming the config path and Envoy's reason.
"""

from __future__ import annotations

import re

from sluice.errors import ConfigError, UnsupportedError
from sluice.formatter.operators import Provider
from sluice.formatter.registry import build_provider

# Envoy's commandWithArgsRegex: COMMAND from A-Z 0-9 _, a lazy (ARG) without ')', an optional :N.
_COMMAND = re.compile(r"%((?:[A-Z]|[0-9]|_)+)(?:\((.*?)\))?(?::([0-9]+))?%")

Piece = str | Provider
"""A literal run of text, or a provider whose value is substituted."""


def parse(fmt: str, path: str) -> list[Piece]:
    """The pieces of ``fmt`` in order; adjacent literals are joined."""
    pieces: list[Piece] = []
    literal: list[str] = []
    pos = 0
    n = len(fmt)
    while pos < n:
        ch = fmt[pos]
        if ch != "%":
            nxt = fmt.find("%", pos)
            end = n if nxt < 0 else nxt
            literal.append(fmt[pos:end])
            pos = end
            continue
        if pos + 1 < n and fmt[pos + 1] == "%":
            literal.append("%")
            pos += 2
            continue
        m = _COMMAND.match(fmt, pos)
        if m is None:
            raise ConfigError(f"{path}: Incorrect configuration: {fmt}. Couldn't find valid command at position {pos}")
        if literal:
            pieces.append("".join(literal))
            literal = []
        command, arg, length = m.group(1), m.group(2) or "", m.group(3)
        max_length = int(length) if length is not None else None
        try:
            pieces.append(build_provider(command, arg, max_length))
        except UnsupportedError as exc:
            raise UnsupportedError(f"{path}: {exc}") from exc
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc} (in '{m.group(0)}')") from exc
        pos = m.end()
    if literal or not pieces:
        pieces.append("".join(literal))
    return pieces


def has_command(fmt: str) -> bool:
    """Whether a JSON value string is a template (Envoy: any ``%`` in it makes it one)."""
    return "%" in fmt
