"""``POST /logging``: list or change log levels, with Envoy's parameters and messages.

Sluice's loggers are Python's ``sluice`` logger tree; each is listed under its name without the
``sluice.`` prefix, and ``sluice`` itself is ``main``. Envoy's ``trace`` level is Python level 5.

# Divergence from Envoy: the logger names are Sluice's, not Envoy's fixed list.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sluice import logs
from sluice.admin.formats import TEXT, Response

if TYPE_CHECKING:
    from sluice.admin.server import AdminRequest
    from sluice.server import Server

TRACE = logs.TRACE
OFF = logs.OFF
LEVELS = {name: level for name, level in logs.LEVELS.items() if name != "warn"}
"""The names /logging takes: Envoy's, which (unlike ``-l``) has no ``warn`` spelling."""
USAGE = (
    "usage: /logging?<name>=<level> (change single level)\n"
    "usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n"
    "usage: /logging?level=<level> (change all levels)\n"
    "usage: /logging?group=<group_name>:<level> (change group of loggers)\n"
    "levels: trace debug info warning error critical off \n"
)


def loggers() -> dict[str, logging.Logger]:
    """Display name → logger, for the ``sluice`` tree."""
    out = {"main": logging.getLogger("sluice")}
    for name, obj in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(obj, logging.Logger) and name.startswith("sluice."):
            out[name.removeprefix("sluice.")] = obj
    return dict(sorted(out.items()))


def level_name(level: int) -> str:
    if level < logging.DEBUG:
        return "trace"
    if level > logging.CRITICAL:
        return "off"
    return {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}.get(level, "critical")


def listing() -> str:
    lines = "".join(f"  {name}: {level_name(lg.getEffectiveLevel())}\n" for name, lg in loggers().items())
    return f"active loggers:\n{lines}\n"


def plan_changes(params: dict[str, str]) -> list[tuple[logging.Logger, int]] | str:
    """The level changes a request asks for, or Envoy's error message for it."""
    params = {k: v for k, v in params.items() if v != ""}
    if not params:
        return []
    if len(params) > 1:
        return "invalid number of parameters"
    (key, value), known = next(iter(params.items())), loggers()
    if key == "group":
        return "group parameter requires fine-grain logging to be enabled"
    if key == "level":
        if value not in LEVELS:
            return "unknown logger level"
        return [(lg, LEVELS[value]) for lg in known.values()]
    pairs: list[tuple[str, str]] = []
    if key == "paths":
        for item in value.split(","):
            name, _, level = item.partition(":")
            if not name or not level:
                return "empty logger name or empty logger level"
            pairs.append((name, level))
    else:
        pairs.append((key, value))
    changes = []
    for name, level in pairs:
        if level not in LEVELS:
            return "unknown logger level"
        if name not in known:
            return "unknown logger name"
        changes.append((known[name], LEVELS[level]))
    return changes


def handle(server: Server, req: AdminRequest) -> Response:
    plan = plan_changes(req.params)
    if isinstance(plan, str):
        return 400, TEXT, f"error: {plan}\n\n{USAGE}{listing()}"
    for lg, level in plan:
        lg.setLevel(level)
    logs.refresh()  # the hot path's debug flags follow the new levels
    return 200, TEXT, listing()
