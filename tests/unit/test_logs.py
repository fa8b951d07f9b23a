"""``sluice.logs``: Envoy's line format, level names, the debug flags the hot path tests."""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Iterator

import pytest

from sluice import logs


@pytest.fixture
def saved_logging() -> Iterator[None]:
    """Put the root and ``sluice`` loggers back as they were (pytest's own handlers included)."""
    root = logging.getLogger()
    names = ["sluice", "sluice.http", "sluice.router", *logging.Logger.manager.loggerDict]
    tree = [logging.getLogger(n) for n in dict.fromkeys(names) if n.startswith("sluice")]
    handlers, level, levels = list(root.handlers), root.level, [lg.level for lg in tree]
    yield
    if logs._handler is not None:
        root.removeHandler(logs._handler)
        logs._handler = None
    root.handlers[:] = handlers
    root.setLevel(level)
    for lg, lv in zip(tree, levels, strict=True):
        lg.setLevel(lv)
    logs.refresh()


def record(name: str, level: int, msg: str, pathname: str, created: float, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    r = logging.LogRecord(name, level, pathname, 42, msg, None, exc_info)
    r.created = created
    r.msecs = 7.0
    r.process = 4242
    return r


def test_line_has_envoys_shape() -> None:
    created = time.mktime((2026, 12, 2, 1, 1, 25, 0, 0, -1))
    pathname = logs._PACKAGE_PARENT + "sluice/server.py"
    line = logs.EnvoyFormatter().format(record("sluice", logging.INFO, "starting main dispatch loop", pathname, created))
    assert line == "[2026-12-02 01:01:25.007][4242][info][main] [sluice/server.py:42] starting main dispatch loop"


@pytest.mark.parametrize(
    ("name", "level", "shown"),
    [
        ("sluice.http", logging.DEBUG, "[debug][http]"),
        ("sluice.router", logs.TRACE, "[trace][router]"),
        ("sluice.upstream", logging.WARNING, "[warning][upstream]"),
        ("sluice.admin", logging.CRITICAL, "[critical][admin]"),
        ("asyncio", logging.ERROR, "[error][asyncio]"),
    ],
)
def test_logger_and_level_names(name: str, level: int, shown: str) -> None:
    line = logs.EnvoyFormatter().format(record(name, level, "m", "/elsewhere/lib/mod.py", 0.0))
    assert f"[4242]{shown} [mod.py:42] m" in line


def test_exception_follows_the_line() -> None:
    line = logs.EnvoyFormatter().format(record("sluice", logging.ERROR, "failed", "/x/y.py", 0.0, exc=True))
    first, rest = line.split("\n", 1)
    assert first.endswith("[error][main] [y.py:42] failed")
    assert "ValueError: boom" in rest


def test_multiline_message_kept_as_is() -> None:
    line = logs.EnvoyFormatter().format(record("sluice.http", logging.DEBUG, "headers:\n':path', '/'\n", "/x/y.py", 0.0))
    assert line.endswith("] headers:\n':path', '/'\n")


@pytest.mark.usefixtures("saved_logging")
def test_configure_sets_level_and_debug_flags() -> None:
    out = io.StringIO()
    logs.configure("info", out)
    assert (logs.http_debug, logs.router_debug) == (False, False)
    logging.getLogger("sluice.http").debug("hidden")
    logging.getLogger("sluice").info("shown")
    assert out.getvalue().count("\n") == 1
    assert "[info][main]" in out.getvalue() and "] shown" in out.getvalue()

    logs.configure("debug", out)  # replaces its handler: one line per record, not two
    assert (logs.http_debug, logs.router_debug) == (True, True)
    logging.getLogger("sluice.http").debug("now shown")
    assert out.getvalue().count("now shown") == 1

    logs.configure("trace", out)
    assert logging.getLogger("sluice").getEffectiveLevel() == logs.TRACE
    logs.configure("off", out)
    logging.getLogger("sluice").critical("silent")
    assert "silent" not in out.getvalue()
    assert not logs.http_debug


@pytest.mark.usefixtures("saved_logging")
def test_refresh_follows_a_level_change() -> None:
    logs.configure("info", io.StringIO())
    logging.getLogger("sluice.router").setLevel(logging.DEBUG)
    assert not logs.router_debug  # the hot path's flag changes only on refresh
    logs.refresh()
    assert logs.router_debug and not logs.http_debug


def test_unknown_level_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'.*debug"):
        logs.level_of("loud")
    assert logs.level_of("WARN") == logging.WARNING
