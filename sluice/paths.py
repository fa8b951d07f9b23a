"""Container-style file paths for processes the lab runner starts.

In a container, ``/tmp/admin_access.log`` or ``/logs/envoy/access.log`` is the container's own
file. The lab runner gives each service a folder and its compose ``volumes``; it passes them as

- ``SLUICE_FS_ROOT``: the service's own root folder (absolute paths resolve inside it);
- ``SLUICE_FS_MOUNTS``: JSON object, container path → host path (file or folder mounts).

Outside a lab neither is set and paths are used as given (both read once: :mod:`sluice.options`). Every place Sluice opens a file named
in a config goes through :func:`host_path`.
"""

from __future__ import annotations

import os

from sluice.options import lab_options
from sluice.options import reset as _reset_options


def _mapping() -> tuple[str, tuple[tuple[str, str], ...]]:
    opts = lab_options()
    return opts.fs_root, opts.fs_mounts


def host_path(path: str, *, for_write: bool = False) -> str:
    """The host file for a path as the service sees it. With ``for_write`` the parent folder is
    created, as writing to a fresh container path would work."""
    if not path or not os.path.isabs(path):
        return path
    root, mounts = _mapping()
    if not root and not mounts:
        return path
    out = None
    for cpath, hpath in mounts:
        if path == cpath:
            out = hpath
            break
        if path.startswith(cpath + "/"):
            out = os.path.join(hpath, path[len(cpath) + 1 :])
            break
    if out is None:
        if not root or path in ("/dev/null", "/dev/stdout", "/dev/stderr") or path.startswith("/proc/"):
            return path
        out = os.path.join(root, path.lstrip("/"))
    if for_write:
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    return out


def reset_cache() -> None:
    """For tests that change the environment."""
    _reset_options()
