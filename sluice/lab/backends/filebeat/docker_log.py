"""Container log lines as the ``container`` input reads them (``filebeat/input/container``,
``libbeat/reader/readjson/docker_json.go``).

- Docker's json-file driver: ``{"log":"…\\n","stream":"stdout","time":"2022-07-09T03:18:22.123456789Z"}``;
  a ``log`` without the trailing newline is a partial line (Docker splits lines at 16 KiB) and
  is joined with what follows, up to the one that ends the line;
- CRI (containerd, CRI-O): ``2022-07-09T03:18:22.123456789Z stdout F message``, flag ``P`` for
  a partial line;
- ``format: auto`` (the default) tells them apart by the first byte (``{`` is Docker's).

The message is the text without its line ending; ``@timestamp`` is the line's own time;
``stream`` is ``stdout`` or ``stderr``. ``stream: stdout|stderr`` keeps only that stream.
Offsets count every byte read, skipped and unparsable lines included.
"""

from __future__ import annotations

import json

from sluice.lab.backends.filebeat.event import parse_rfc3339


class Unparsable(ValueError):
    pass


class ContainerLine:
    __slots__ = ("text", "stream", "ts_ns", "partial")

    def __init__(self, text: str, stream: str, ts_ns: int, partial: bool) -> None:
        self.text, self.stream, self.ts_ns, self.partial = text, stream, ts_ns, partial


_loads = json.loads


def parse_docker(raw: bytes) -> ContainerLine:
    try:
        obj = _loads(raw)
    except ValueError as exc:
        raise Unparsable(f"decoding docker JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Unparsable("decoding docker JSON: not an object")
    log = obj.get("log")
    ts_text = obj.get("time")
    ts = parse_rfc3339(ts_text) if isinstance(ts_text, str) else None
    if ts is None:
        raise Unparsable(f"parsing docker timestamp: {ts_text!r}")
    text = log if isinstance(log, str) else ""
    partial = not text.endswith("\n")
    stream = obj.get("stream")
    return ContainerLine(text, stream if isinstance(stream, str) else "", ts, partial)


def parse_cri(raw: bytes) -> ContainerLine:
    line = raw.decode("utf-8", "replace")
    parts = line.split(" ", 3)
    if len(parts) < 3:
        raise Unparsable("invalid CRI log format")
    ts = parse_rfc3339(parts[0])
    if ts is None:
        raise Unparsable(f"parsing CRI timestamp: {parts[0]!r}")
    stream = parts[1]
    if len(parts) == 4 and parts[2] in ("P", "F"):
        text, partial = parts[3], parts[2] == "P"
    else:
        text, partial = " ".join(parts[2:]), False
    if partial:
        text = text[:-1] if text.endswith("\n") else text
        if text.endswith("\r"):
            text = text[:-1]
    elif not text.endswith("\n"):
        text += "\n"
    return ContainerLine(text, stream, ts, partial)


def parse(raw: bytes, fmt: str) -> ContainerLine:
    if fmt == "docker" or (fmt == "auto" and raw[:1] == b"{"):
        return parse_docker(raw)
    return parse_cri(raw)


def strip_newline(text: str) -> str:
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    return text
