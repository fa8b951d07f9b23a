"""Filebeat's own log lines, on stderr (the image runs ``filebeat -e``).

Console format (7.14): ``2022-07-09T03:18:22.105Z\tINFO\t[logger]\tmessage\t{fields}``.
``logging.json: true``: one JSON object a line with zap's keys (``level``, ``timestamp``,
``logger``, ``message``) or, with ``logging.ecs: true``, the ECS keys (``log.level``,
``@timestamp``, ``log.logger``).

Deliberate difference: no ``caller`` (``pipeline/output.go:143``): there is no Go source here, and
made-up file:line pairs would mislead.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

LEVELS = {"debug": 0, "info": 1, "warning": 2, "warn": 2, "error": 3, "critical": 4}
_NAMES = {0: "DEBUG", 1: "INFO", 2: "WARN", 3: "ERROR", 4: "CRITICAL"}


def timestamp(now: float | None = None) -> str:
    now = time.time() if now is None else now
    ms = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{ms:03d}Z"


class Log:
    def __init__(self, *, as_json: bool = False, ecs: bool = False, level: str = "info", stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.ecs = ecs
        self.level = LEVELS.get(level.lower(), 1)
        self.stream = stream
        self.lock = threading.Lock()
        self.lines: list[str] | None = None
        """When set (tests), every line is also kept here."""

    def configure(self, *, as_json: bool, ecs: bool, level: str) -> None:
        self.as_json, self.ecs = as_json, ecs
        self.level = LEVELS.get(level.lower(), 1)

    def debug(self, logger: str, msg: str, **fields: Any) -> None:
        if self.level <= 0:
            self.emit(0, logger, msg, fields)

    def info(self, logger: str, msg: str, **fields: Any) -> None:
        if self.level <= 1:
            self.emit(1, logger, msg, fields)

    def warn(self, logger: str, msg: str, **fields: Any) -> None:
        if self.level <= 2:
            self.emit(2, logger, msg, fields)

    def error(self, logger: str, msg: str, **fields: Any) -> None:
        self.emit(3, logger, msg, fields)

    def emit(self, level: int, logger: str, msg: str, fields: dict[str, Any]) -> None:
        stamp = timestamp()
        if self.as_json:
            if self.ecs:
                obj: dict[str, Any] = {"log.level": _NAMES[level].lower(), "@timestamp": stamp}
                if logger:
                    obj["log.logger"] = logger
            else:
                obj = {"level": _NAMES[level].lower(), "timestamp": stamp}
                if logger:
                    obj["logger"] = logger
            obj["message"] = msg
            obj.update(fields)
            if self.ecs:
                obj.update({"service.name": "filebeat", "ecs.version": "1.6.0"})
            line = json.dumps(obj, ensure_ascii=False, default=str)
        else:
            parts = [stamp, _NAMES[level]]
            if logger:
                parts.append(f"[{logger}]")
            parts.append(msg)
            if fields:
                parts.append(json.dumps(fields, ensure_ascii=False, default=str))
            line = "\t".join(parts)
        with self.lock:
            if self.lines is not None:
                self.lines.append(line)
            stream = self.stream or sys.stderr
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass
