"""Container paths → host paths, as the lab runner lays out a service.

``SLUICE_FS_ROOT`` is the service's own root folder; ``SLUICE_FS_MOUNTS`` a JSON object of
container path → host path (file or folder). Outside a lab neither is set and paths are used as
given. A folder's listing includes the files mounted into it (``dashboard.json`` mounted at
``/etc/grafana/provisioning/dashboards/dashboard.json`` shows in that folder), as in a container.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path


class ContainerFS:
    def __init__(self, root: str = "", mounts: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.mounts = sorted(((k.rstrip("/") or "/", v) for k, v in (mounts or {}).items()), key=lambda kv: -len(kv[0]))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ContainerFS:
        raw = environ.get("SLUICE_FS_MOUNTS", "")
        return cls(environ.get("SLUICE_FS_ROOT", ""), json.loads(raw) if raw else {})

    def host(self, path: str) -> str:
        if not os.path.isabs(path) or (not self.root and not self.mounts):
            return path
        path = os.path.normpath(path)
        for cpath, hpath in self.mounts:
            if path == cpath:
                return hpath
            if path.startswith(cpath.rstrip("/") + "/"):
                return os.path.join(hpath, path[len(cpath.rstrip("/")) + 1 :])
        return os.path.join(self.root, path.lstrip("/")) if self.root else path

    def files(self, folder: str) -> list[str]:
        """Every file under a container folder (recursively), as container paths, sorted."""
        folder = os.path.normpath(folder)
        found: set[str] = set()
        host = Path(self.host(folder))
        if host.is_dir():
            for p in host.rglob("*"):
                if p.is_file():
                    found.add(os.path.join(folder, str(p.relative_to(host))))
        prefix = folder.rstrip("/") + "/"
        for cpath, hpath in self.mounts:
            if not cpath.startswith(prefix):
                continue
            hp = Path(hpath)
            if hp.is_file():
                found.add(cpath)
            elif hp.is_dir():
                for p in hp.rglob("*"):
                    if p.is_file():
                        found.add(os.path.join(cpath, str(p.relative_to(hp))))
        return sorted(found)
