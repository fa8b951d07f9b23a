"""Header maps in Envoy's shape: lowercase names, order kept, several values per name.

Request pseudo-headers (``:method``, ``:path``, ``:authority``, ``:scheme``) are attributes of
:class:`RequestHeaders`, not entries, so the HTTP/1 encoder can emit ``host`` first the way
Envoy's codec emits ``:authority`` first.
"""

from __future__ import annotations

from collections.abc import Iterator


class HeaderMap:
    """An ordered multimap of lowercase header names to string values."""

    __slots__ = ("entries",)

    def __init__(self, entries: list[list[str]] | None = None) -> None:
        self.entries: list[list[str]] = entries if entries is not None else []
        """``[name, value]`` pairs; names are lowercase."""

    def get(self, name: str) -> str | None:
        for e in self.entries:
            if e[0] == name:
                return e[1]
        return None

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.entries if k == name]

    def __contains__(self, name: str) -> bool:
        for e in self.entries:
            if e[0] == name:
                return True
        return False

    def add(self, name: str, value: str) -> None:
        self.entries.append([name, value])

    def set(self, name: str, value: str) -> None:
        """Replace the first entry in place (drop the rest), or append: Envoy's ``setCopy``."""
        found = False
        out = self.entries
        i = 0
        while i < len(out):
            if out[i][0] == name:
                if found:
                    del out[i]
                    continue
                out[i][1] = value
                found = True
            i += 1
        if not found:
            out.append([name, value])

    def remove(self, name: str) -> int:
        before = len(self.entries)
        self.entries = [e for e in self.entries if e[0] != name]
        return before - len(self.entries)

    def append_value(self, name: str, value: str) -> None:
        """Append to an existing header's value with ``,`` (Envoy's ``appendCopy``), or add it."""
        for e in self.entries:
            if e[0] == name:
                e[1] = f"{e[1]},{value}" if e[1] else value
                return
        self.entries.append([name, value])

    def __iter__(self) -> Iterator[list[str]]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def byte_size(self) -> int:
        return sum(len(k) + len(v) for k, v in self.entries)

    def copy(self) -> HeaderMap:
        return HeaderMap([[k, v] for k, v in self.entries])

    def __repr__(self) -> str:
        return f"HeaderMap({self.entries!r})"


class RequestHeaders(HeaderMap):
    """Request headers with Envoy's pseudo-headers as attributes."""

    __slots__ = ("method", "path", "authority", "scheme", "version")

    def __init__(
        self,
        method: str,
        path: str,
        authority: str | None,
        entries: list[list[str]] | None = None,
        scheme: str = "http",
        version: str = "1.1",
    ) -> None:
        # (HeaderMap.__init__ inlined: one per request, and super() costs a call and a lookup.)
        self.entries = entries if entries is not None else []
        self.method = method
        self.path = path
        self.authority = authority
        self.scheme = scheme
        self.version = version

    def copy(self) -> RequestHeaders:
        return RequestHeaders(
            self.method,
            self.path,
            self.authority,
            [[k, v] for k, v in self.entries],
            self.scheme,
            self.version,
        )

    def pseudo(self, name: str) -> str | None:
        """Look a header up by Envoy name, pseudo-headers included (``:path``, ``host``)."""
        if name[0] == ":":
            if name == ":path":
                return self.path
            if name == ":method":
                return self.method
            if name == ":authority":
                return self.authority
            if name == ":scheme":
                return self.scheme
            return None
        if name == "host":
            return self.authority
        return self.get(name)


class ResponseHeaders(HeaderMap):
    """Response headers; ``status`` is Envoy's ``:status``."""

    __slots__ = ("status",)

    def __init__(self, status: int, entries: list[list[str]] | None = None) -> None:
        self.entries = entries if entries is not None else []  # (HeaderMap.__init__ inlined)
        self.status = status

    def pseudo(self, name: str) -> str | None:
        if name == ":status":
            return str(self.status)
        return self.get(name)
