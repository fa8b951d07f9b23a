"""Kibana 7's legacy log lines on stdout (or ``logging.dest``).

JSON (``logging.json``; its default is "stdout is not a terminal", hence JSON in a container):
``{"type":"log","@timestamp":"2021-09-23T03:17:28+00:00","tags":["info","http","server","Kibana"],
"pid":7,"message":"http server running at http://0.0.0.0:5601"}``, and one ``"type":"response"``
line a request (``"message":"GET /api/status 200 31ms - 9.0B"``). Text:
``  log   [03:17:28.123] [info][http][server][Kibana] http server running at …``.

``logging.quiet`` keeps errors only, ``logging.silent`` nothing, ``logging.verbose`` adds debug.

Deliberate difference: ``response`` lines carry no request/response headers (Kibana's include
them all, cookies and authorization redacted): they add nothing for a lab but noise.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, TextIO


class Log:
    def __init__(self, *, as_json: bool | None = None, quiet: bool = False, silent: bool = False, verbose: bool = False,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.as_json = (not self.stream.isatty()) if as_json is None else as_json
        self.quiet, self.silent, self.verbose = quiet, silent, verbose
        self.lock = threading.Lock()
        self.pid = os.getpid()

    def _write(self, line: str) -> None:
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _stamp(self, now: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))

    def log(self, level: str, tags: list[str], message: str) -> None:
        if self.silent or (self.quiet and level != "error") or (level == "debug" and not self.verbose):
            return
        now = time.time()
        all_tags = [level, *tags]
        if self.as_json:
            obj = {"type": "log", "@timestamp": self._stamp(now), "tags": all_tags, "pid": self.pid, "message": message}
            self._write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
        else:
            clock = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
            self._write(f"  log   [{clock}] {''.join(f'[{t}]' for t in all_tags)} {message}")

    def info(self, tags: list[str], message: str) -> None:
        self.log("info", tags, message)

    def warning(self, tags: list[str], message: str) -> None:
        self.log("warning", tags, message)

    def error(self, tags: list[str], message: str) -> None:
        self.log("error", tags, message)

    def debug(self, tags: list[str], message: str) -> None:
        self.log("debug", tags, message)

    def response(self, method: str, url: str, status: int, ms: float, length: int, remote: str, agent: str) -> None:
        if self.silent or self.quiet:
            return
        now = time.time()
        message = f"{method.upper()} {url} {status} {int(ms)}ms - {_bytes(length)}"
        if self.as_json:
            obj: dict[str, Any] = {
                "type": "response", "@timestamp": self._stamp(now), "tags": [], "pid": self.pid, "method": method.lower(),
                "statusCode": status,
                "req": {"url": url, "method": method.lower(), "remoteAddress": remote, "userAgent": agent},
                "res": {"statusCode": status, "responseTime": int(ms), "contentLength": length},
                "message": message,
            }
            self._write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
        else:
            clock = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
            self._write(f"  respons [{clock}]  {message}")


def _bytes(n: int) -> str:
    # numeral's "0.0b", as Kibana's legacy response line shows sizes.
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}GB"
