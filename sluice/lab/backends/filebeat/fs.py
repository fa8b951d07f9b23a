"""Container paths → host paths, as the lab runner lays out a service, and Go-style globbing.

``SLUICE_FS_ROOT`` (or ``--root``) is the service's own root folder; ``SLUICE_FS_MOUNTS`` (or
``--mount``) a JSON object of container path → host path (file or folder). Outside a lab neither
is set and paths are used as given. Filebeat only ever shows container paths (``log.file.path``,
the registry's ``source``): the host path is used for I/O alone.

Globbing follows Go's ``filepath.Glob`` (``*``, ``?``, ``[...]`` within one path segment) plus
Filebeat's ``recursive_glob``: a ``**`` segment stands for zero to eight directory levels.
A folder's listing includes what is mounted into it, as in a container.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping

_MAGIC = re.compile(r"[*?\[]")
RECURSIVE_GLOB_DEPTH = 8


class ContainerFS:
    def __init__(self, root: str = "", mounts: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.mounts = sorted(((os.path.normpath(k), v) for k, v in (mounts or {}).items()), key=lambda kv: -len(kv[0]))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ContainerFS:
        raw = environ.get("SLUICE_FS_MOUNTS", "")
        return cls(environ.get("SLUICE_FS_ROOT", ""), json.loads(raw) if raw else {})

    @property
    def mapped(self) -> bool:
        return bool(self.root or self.mounts)

    def host(self, path: str) -> str:
        if not os.path.isabs(path) or not self.mapped:
            return path
        path = os.path.normpath(path)
        for cpath, hpath in self.mounts:
            if path == cpath:
                return hpath
            prefix = cpath.rstrip("/") + "/"
            if path.startswith(prefix):
                return os.path.join(hpath, path[len(prefix) :])
        return os.path.join(self.root, path.lstrip("/")) if self.root else path

    def listdir(self, folder: str) -> list[str]:
        """Names in a container folder: the host folder's entries and what is mounted into it."""
        names: set[str] = set()
        try:
            names.update(os.listdir(self.host(folder)))
        except OSError:
            pass
        prefix = folder.rstrip("/") + "/"
        for cpath, _ in self.mounts:
            if cpath.startswith(prefix) and "/" not in cpath[len(prefix) :]:
                names.add(cpath[len(prefix) :])
        return sorted(names)

    def isdir(self, folder: str) -> bool:
        """A container folder exists on the host, or something is mounted below it."""
        if os.path.isdir(self.host(folder)):
            return True
        prefix = folder.rstrip("/") + "/"
        return any(cpath.startswith(prefix) for cpath, _ in self.mounts)

    def glob(self, pattern: str) -> list[str]:
        """Container paths matching ``pattern`` (which must be absolute), sorted."""
        found: set[str] = set()
        for expanded in expand_recursive(pattern):
            found.update(self._glob_one(os.path.normpath(expanded)))
        return sorted(found)

    def _glob_one(self, pattern: str) -> list[str]:
        parts = [p for p in pattern.split("/") if p]
        current = ["/"]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt: list[str] = []
            for base in current:
                if not _MAGIC.search(part):
                    cand = os.path.join(base, _unescape(part))
                    if last or self.isdir(cand):
                        nxt.append(cand)
                    continue
                rx = _go_pattern(part)
                for name in self.listdir(base):
                    if rx.fullmatch(name):
                        nxt.append(os.path.join(base, name))
            current = nxt
            if not current:
                return []
        return [p for p in current if os.path.lexists(self.host(p))]


def expand_recursive(pattern: str) -> list[str]:
    """Filebeat's ``recursive_glob``: ``/a/**/b`` → ``/a/b``, ``/a/*/b``, … (eight levels)."""
    parts = pattern.split("/")
    if "**" not in parts:
        return [pattern]
    i = parts.index("**")
    head, tail = parts[:i], parts[i + 1 :]
    out: list[str] = []
    for depth in range(RECURSIVE_GLOB_DEPTH + 1):
        out.extend(expand_recursive("/".join(head + ["*"] * depth + tail)))
    return out


def has_magic(pattern: str) -> bool:
    return bool(_MAGIC.search(pattern))


def _unescape(part: str) -> str:
    return re.sub(r"\\(.)", r"\1", part)


_RX_CACHE: dict[str, re.Pattern[str]] = {}


def _go_pattern(part: str) -> re.Pattern[str]:
    """Go's ``filepath.Match`` for one segment: ``[^…]`` negates as ``[!…]`` does in fnmatch,
    and ``\\`` escapes."""
    rx = _RX_CACHE.get(part)
    if rx is None:
        out: list[str] = []
        i = 0
        while i < len(part):
            c = part[i]
            if c == "\\" and i + 1 < len(part):
                out.append(re.escape(part[i + 1]))
                i += 2
                continue
            if c == "[":
                j = part.find("]", i + 2)
                if j != -1:
                    body = part[i + 1 : j]
                    if body.startswith("^"):
                        body = "!" + body[1:]
                    out.append(fnmatch.translate("[" + body + "]")[4:-3])
                    i = j + 1
                    continue
            out.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c))
            i += 1
        rx = _RX_CACHE[part] = re.compile("".join(out), re.DOTALL)
    return rx
