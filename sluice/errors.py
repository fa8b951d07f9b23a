"""The small exception tree Sluice uses, in Envoy's vocabulary."""

from __future__ import annotations


class SluiceError(Exception):
    """Base of every error Sluice raises on purpose."""


class ConfigError(SluiceError):
    """A configuration is invalid or asks for something Sluice does not implement.

    The message always starts with the path of the offending field, e.g.
    ``static_resources.clusters[0].lb_polcy: unknown field``.
    """


class UnsupportedError(ConfigError):
    """A valid Envoy field or extension that Sluice does not implement (yet)."""
