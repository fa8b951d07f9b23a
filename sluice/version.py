"""The version line, in Envoy's shape: ``<commit>/<version>/<Clean|Modified>/RELEASE/<runtime>``.

Envoy prints ``envoy  version: 9e55…/1.40.0/Clean/RELEASE/BoringSSL`` for ``--version`` and in
``/server_info``; tools parse the second field. Sluice's commit is read from git when it runs
from a checkout (``unknown`` otherwise, as for an installed wheel), and the last field names the
Python runtime, which is what a bug report needs in place of Envoy's TLS library.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

from sluice import __version__

_SOURCE = Path(__file__).resolve().parent


@functools.cache
def build_version() -> str:
    commit, state = _git_state()
    runtime = f"{platform.python_implementation()}-{platform.python_version()}"
    return f"{commit}/{__version__}/{state}/RELEASE/{runtime}"


def _git_state() -> tuple[str, str]:
    """(commit, Clean|Modified) of the checkout holding this package; ("unknown", "Clean") if none."""
    try:
        commit = _git("rev-parse", "HEAD").strip()
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", str(_SOURCE)).strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", "Clean"
    return (commit or "unknown"), ("Modified" if dirty else "Clean")


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(_SOURCE), *args], capture_output=True, text=True, timeout=5, check=True)
    return done.stdout


def version_int(override: int | None = None) -> int:
    """``server.version``: Envoy's integer of the first six hex digits of its commit (or the
    bootstrap's ``stats_server_version_override``); 0 without a known commit."""
    if override is not None:
        return override
    commit = build_version().split("/", 1)[0]
    try:
        return int(commit[:6], 16)
    except ValueError:
        return 0
