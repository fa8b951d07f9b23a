"""Header values with Envoy's ``%COMMAND%`` substitutions (``request_headers_to_add`` etc.).

A value is compiled once into a list of literal strings and provider callables; formatting at
request time only calls the providers. An unknown command is a config error naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from sluice.errors import UnsupportedError

if TYPE_CHECKING:
    from sluice.http.headers import RequestHeaders
    from sluice.http.stream_info import StreamInfo

Provider = Callable[["RequestHeaders | None", "StreamInfo | None"], str]

_COMMAND = re.compile(r"%([A-Z_0-9]+)(\(([^)]*)\))?%")


def _req(name: str) -> Provider:
    names = name.split("?")
    main = names[0].lower()
    alt = names[1].lower() if len(names) > 1 else None

    def provide(headers: RequestHeaders | None, _info: StreamInfo | None) -> str:
        if headers is None:
            return ""
        v = headers.pseudo(main)
        if v is None and alt is not None:
            v = headers.pseudo(alt)
        return v or ""

    return provide


def _remote(with_port: bool) -> Provider:
    def provide(_h: RequestHeaders | None, info: StreamInfo | None) -> str:
        if info is None or info.downstream_remote_address is None:
            return ""
        ip, port = info.downstream_remote_address[:2]
        return f"{ip}:{port}" if with_port else ip

    return provide


def _local(with_port: bool) -> Provider:
    def provide(_h: RequestHeaders | None, info: StreamInfo | None) -> str:
        if info is None or info.downstream_local_address is None:
            return ""
        ip, port = info.downstream_local_address[:2]
        return f"{ip}:{port}" if with_port else ip

    return provide


def _upstream_host(_h: RequestHeaders | None, info: StreamInfo | None) -> str:
    return (info.upstream_host or "") if info is not None else ""


def _protocol(_h: RequestHeaders | None, info: StreamInfo | None) -> str:
    return info.protocol if info is not None else ""


def _start_time(_h: RequestHeaders | None, info: StreamInfo | None) -> str:
    import time

    if info is None:
        return ""
    ms = int(info.start_wall * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(info.start_wall)) + f".{ms:03d}Z"


_SIMPLE: dict[str, Provider] = {
    "DOWNSTREAM_REMOTE_ADDRESS": _remote(True),
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": _remote(False),
    "DOWNSTREAM_LOCAL_ADDRESS": _local(True),
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": _local(False),
    "UPSTREAM_HOST": _upstream_host,
    "PROTOCOL": _protocol,
    "START_TIME": _start_time,
}


class HeaderValueFormat:
    """A compiled header value."""

    __slots__ = ("parts", "literal")

    def __init__(self, template: str, path: str) -> None:
        parts: list[str | Provider] = []
        pos = 0
        text = template
        for m in _COMMAND.finditer(text):
            if m.start() > pos:
                parts.append(text[pos : m.start()])
            cmd, arg = m.group(1), m.group(3)
            if cmd in ("REQ", "REQUEST_HEADER") and arg is not None:
                parts.append(_req(arg))
            elif cmd in _SIMPLE and arg is None:
                parts.append(_SIMPLE[cmd])
            else:
                raise UnsupportedError(
                    f"{path}: header value command '%{cmd}%' is not implemented"
                    if arg is None
                    else f"{path}: header value command '%{cmd}({arg})%' is not implemented"
                )
            pos = m.end()
        if pos < len(text):
            parts.append(text[pos:])
        # '%%' is a literal percent sign in Envoy's header formatter.
        self.parts = [p.replace("%%", "%") if isinstance(p, str) else p for p in parts]
        self.literal: str | None = (
            "".join(p for p in self.parts if isinstance(p, str))
            if all(isinstance(p, str) for p in self.parts)
            else None
        )

    def format(self, headers: RequestHeaders | None, info: StreamInfo | None) -> str:
        if self.literal is not None:
            return self.literal
        return "".join(p if isinstance(p, str) else p(headers, info) for p in self.parts)
