"""The small exception tree Sluice uses, in Envoy's vocabulary."""

from __future__ import annotations

from dataclasses import dataclass


class SluiceError(Exception):
    """Base of every error Sluice raises on purpose."""


class ConfigError(SluiceError):
    """A configuration is invalid or asks for something Sluice does not implement.

    The message always starts with the path of the offending field, e.g.
    ``static_resources.clusters[0].lb_polcy: unknown field``.
    """


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a config source (a file, or ``--config-yaml``).

    ``text`` is ``path: message`` (the field's path first, as every ConfigError), or a message
    that names its own place in the source (``FILE:LINE:COLUMN: invalid YAML: ...``).
    """

    source: str
    text: str

    def __str__(self) -> str:
        return self.text if self._located() else f"{self.source}: {self.text}"

    @property
    def path(self) -> str:
        """The field path the problem is at ("" for a problem of the source as a whole)."""
        return "" if self._located() else self.text.split(": ", 1)[0]

    def is_under(self, other: Problem) -> bool:
        """At or below ``other``'s field (``a.b[0].c`` is under ``a.b``): a consequence of it."""
        mine, theirs = self.path, other.path
        if not mine or not theirs:
            return False
        return mine == theirs or mine.startswith((theirs + ".", theirs + "["))

    def _located(self) -> bool:
        return self.text.startswith(self.source) and self.text[len(self.source) : len(self.source) + 1] == ":"


class ConfigErrors(ConfigError):
    """Every problem found in a config, in the order found; ``str()`` is one line each."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems) or "invalid configuration")
        self.problems = problems


class UnsupportedError(ConfigError):
    """A valid Envoy field or extension that Sluice does not implement (yet)."""
