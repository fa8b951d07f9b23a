"""The lab runner's ``SLUICE_*`` environment, read once at startup.

``sluice lab up`` runs each service as a process that believes it is in its own container; it
says how through the environment (see ``sluice/lab/plan.py``):

- ``SLUICE_FS_ROOT``: the service's own root folder (absolute paths resolve inside it);
- ``SLUICE_FS_MOUNTS``: JSON object, container path → host path (the compose volumes);
- ``SLUICE_LOCALHOST_ADDRESS``: the service's own loopback address (its 127.0.0.1);
- ``SLUICE_BIND_ADDRESS``: the address a listener on 0.0.0.0 binds (the container interface);
- ``SLUICE_HOSTS_FILE``: a file in ``/etc/hosts`` form, consulted before DNS (compose service
  names).

Outside a lab none is set and every address and path is used as given. The values are read on
first use and kept (:func:`lab_options`), not per connection or per resolve."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class LabOptions:
    fs_root: str = ""
    fs_mounts: tuple[tuple[str, str], ...] = ()
    """(container path, host path), longest container path first (``/logs/envoy`` wins over
    ``/logs``)."""
    localhost_address: str = ""
    bind_address: str = ""
    hosts_file: str = ""

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> LabOptions:
        raw = env.get("SLUICE_FS_MOUNTS", "")
        try:
            mounts: dict[str, str] = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"SLUICE_FS_MOUNTS is not a JSON object: {exc}") from exc
        if not isinstance(mounts, dict):
            raise ValueError("SLUICE_FS_MOUNTS is not a JSON object (container path → host path)")
        ordered = tuple(sorted(((k.rstrip("/") or "/", v) for k, v in mounts.items()), key=lambda kv: -len(kv[0])))
        return cls(
            fs_root=env.get("SLUICE_FS_ROOT", ""),
            fs_mounts=ordered,
            localhost_address=env.get("SLUICE_LOCALHOST_ADDRESS", ""),
            bind_address=env.get("SLUICE_BIND_ADDRESS", ""),
            hosts_file=env.get("SLUICE_HOSTS_FILE", ""),
        )


@lru_cache(maxsize=1)
def lab_options() -> LabOptions:
    return LabOptions.from_environ(os.environ)


def reset() -> None:
    """Read the environment again at next use (tests that change it)."""
    lab_options.cache_clear()
