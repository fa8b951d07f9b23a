"""The process log, printed as Envoy prints its own: one line per record on stderr,

    [2026-12-02 01:01:25.123][4242][info][main] [sluice/server.py:250] starting main dispatch loop

that is ``[time][thread][level][logger] [source:line] message``. The thread is the process id
(Sluice has one thread, and Linux gives the main thread the pid as its id); the logger is the
``sluice`` logger's child name (``http``, ``router``, ``upstream``, ``admin``, ``config``) and
``main`` for ``sluice`` itself, as the admin ``/logging`` endpoint lists them.

Per-request debug lines cost nothing at the default level: the hot path tests a module
attribute (``http_debug``, ``router_debug``) that :func:`refresh` computes from the loggers'
levels — at start-up here and whenever ``/logging`` changes a level — and builds a message only
when it is true. Never call ``log.debug`` on the hot path without that test in front.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from typing import TextIO

TRACE = 5
"""Envoy's ``trace`` level (below Python's DEBUG)."""
OFF = logging.CRITICAL + 10
LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "off": OFF,
}
_LEVEL_NAMES = {TRACE: "trace", logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
                logging.ERROR: "error", logging.CRITICAL: "critical"}  # fmt: skip

connection_ids = itertools.count()
"""Envoy's connection ids (``ConnectionId`` in debug lines): one sequence for the process."""

http_debug = False
"""``sluice.http`` logs at debug: the connection manager writes its per-stream lines."""
router_debug = False
"""``sluice.router`` logs at debug: the router writes its per-request decisions."""

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_handler: logging.Handler | None = None


def refresh() -> None:
    """Recompute the debug flags the hot path tests; call after any logger level changes."""
    global http_debug, router_debug
    http_debug = logging.getLogger("sluice.http").isEnabledFor(logging.DEBUG)
    router_debug = logging.getLogger("sluice.router").isEnabledFor(logging.DEBUG)


class EnvoyFormatter(logging.Formatter):
    """``[%Y-%m-%d %T.%e][thread][level][logger] [source:line] message`` (Envoy's default)."""

    def __init__(self) -> None:
        super().__init__()
        self._sources: dict[str, str] = {}

    def _source(self, pathname: str) -> str:
        # Shown relative to the directory holding the package (``sluice/http/conn_manager.py``),
        # as Envoy shows ``source/common/http/conn_manager_impl.cc``; cached per file.
        src = self._sources.get(pathname)
        if src is None:
            src = pathname[len(_PACKAGE_PARENT) :] if pathname.startswith(_PACKAGE_PARENT) else os.path.basename(pathname)
            self._sources[pathname] = src
        return src

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        name = record.name
        logger = "main" if name == "sluice" else name.removeprefix("sluice.")
        level = _LEVEL_NAMES.get(record.levelno) or record.levelname.lower()
        line = (
            f"[{stamp}.{int(record.msecs):03d}][{record.process}][{level}][{logger}] "
            f"[{self._source(record.pathname)}:{record.lineno}] {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def level_of(name: str) -> int:
    """The Python level for an Envoy level name (``-l``); ValueError names the choices."""
    level = LEVELS.get(name.lower())
    if level is None:
        raise ValueError(f"unknown log level '{name}' (one of {', '.join(LEVELS)})")
    return level


def configure(level_name: str, stream: TextIO | None = None) -> None:
    """Send every log record at ``level_name`` or above to ``stream`` (stderr) in Envoy's format.

    The root logger gets the handler, so a library's warning (asyncio's, say) prints the same
    way; calling this again replaces the handler instead of adding a second one.
    """
    global _handler
    level = level_of(level_name)
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    _handler.setFormatter(EnvoyFormatter())
    root.addHandler(_handler)
    root.setLevel(level)
    # As Envoy's -l, the level is every Sluice logger's: ``sluice`` holds it (``/logging`` lists
    # and sets these loggers) and its children inherit it.
    logging.getLogger("sluice").setLevel(level)
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and name.startswith("sluice."):
            lg.setLevel(logging.NOTSET)
    refresh()
