"""Access loggers from config: an ``AccessLog`` entry (name, filter, typed_config) becomes an
:class:`AccessLogger` with its compiled filter, formatter and file.

Implemented sinks: ``envoy.access_loggers.file`` (``FileAccessLog``: ``path``, ``log_format``
and the legacy ``format`` / ``json_format`` / ``typed_json_format``), ``.stdout`` and
``.stderr`` (``log_format``). Any other logger is refused by name.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import json_format as pb_json

from sluice import formatter
from sluice.access_log.file_sink import AccessLogFile, AccessLogFileManager
from sluice.access_log.filters import Filter, build_filter
from sluice.config.compat import unpack_any
from sluice.errors import ConfigError, UnsupportedError
from sluice.formatter.context import FormatContext
from sluice.paths import host_path
from sluice.runtime import Runtime

log = logging.getLogger("sluice.access_log")

_FILE = "envoy.extensions.access_loggers.file.v3.FileAccessLog"
_STDOUT = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
_STDERR = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog"
TYPE_URLS = frozenset(f"type.googleapis.com/{n}" for n in (_FILE, _STDOUT, _STDERR))
"""The access-logger typed_configs Sluice implements."""


class AccessLogger:
    """One configured access log: filter → format → file."""

    __slots__ = ("name", "filter", "formatter", "file", "_line")

    def __init__(self, name: str, filter_: Filter | None, fmt: formatter.Formatter, file: AccessLogFile) -> None:
        self.name = name
        self.filter = filter_
        self.formatter = fmt
        self.file = file
        # The line as bytes: a JSON format encodes straight to bytes (no str in between).
        self._line: Callable[[FormatContext], bytes] = getattr(fmt, "format_bytes", None) or self._encoded

    def _encoded(self, ctx: FormatContext) -> bytes:
        return self.formatter.format(ctx).encode("utf-8", "surrogateescape")

    def log(self, ctx: FormatContext) -> None:
        try:
            if self.filter is not None and not self.filter.evaluate(ctx):
                return
            self.file.write_bytes(self._line(ctx))
        except Exception:  # a formatting bug must not take the stream (or the server) down
            log.exception("access log '%s': could not log the request", self.name)


def _formatter(sink: Any, kind: str, path: str) -> formatter.Formatter:
    if kind == _FILE:
        which = sink.WhichOneof("access_log_format")
        if which == "format":
            return formatter.compile_text(sink.format, f"{path}.format")
        if which == "json_format":
            return formatter.compile_json(pb_json.MessageToDict(sink.json_format), f"{path}.json_format")
        if which == "typed_json_format":
            return formatter.compile_json(pb_json.MessageToDict(sink.typed_json_format), f"{path}.typed_json_format")
        if which == "log_format":
            return formatter.compile_substitution(sink.log_format, f"{path}.log_format")
        return formatter.default_formatter()
    if sink.HasField("log_format"):
        return formatter.compile_substitution(sink.log_format, f"{path}.log_format")
    return formatter.default_formatter()


def build_access_logs(
    entries: Sequence[Any], path: str, *, files: AccessLogFileManager, runtime: Runtime, rng: random.Random
) -> tuple[AccessLogger, ...]:
    """The loggers of a repeated ``AccessLog`` field at ``path`` (e.g. an HCM's
    ``access_log``), in order. Config errors name the entry's path and field."""
    out = []
    for i, entry in enumerate(entries):
        here = f"{path}[{i}]"
        if not entry.HasField("typed_config"):
            raise ConfigError(f"{here}.typed_config: access logger '{entry.name}' needs a typed_config")
        type_url = entry.typed_config.type_url
        if type_url not in TYPE_URLS:
            raise UnsupportedError(f"{here}: access logger '{entry.name or type_url}' is not implemented yet")
        sink: Any = unpack_any(entry.typed_config)
        kind = type_url.rsplit("/", 1)[1]
        fmt = _formatter(sink, kind, f"{here}.typed_config")
        if kind == _FILE:
            if not sink.path:
                raise ConfigError(f"{here}.typed_config.path: a file access log needs a path")
            # (inside a lab, a container path maps to the lab's host folder for it)
            file_path = sink.path if sink.path.startswith("/dev/") else host_path(sink.path, for_write=True)
        else:
            file_path = "/dev/stdout" if kind == _STDOUT else "/dev/stderr"
        try:
            file = files.file(file_path)
        except OSError as exc:
            # Envoy: "unable to open file '<path>': <reason>" and the server does not start.
            raise ConfigError(f"{here}.typed_config.path: unable to open file '{file_path}': {exc.strerror}") from exc
        flt = build_filter(entry.filter, f"{here}.filter", runtime, rng) if entry.HasField("filter") else None
        out.append(AccessLogger(entry.name, flt, fmt, file))
    return tuple(out)
