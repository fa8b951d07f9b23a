"""``sluice --help`` and ``sluice --version``: discoverable subcommands, Envoy's version shape."""

from __future__ import annotations

import re
import subprocess
import sys

from sluice import __version__
from sluice.version import build_version


def sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_the_lab_subcommands_and_the_proxy_flags() -> None:
    result = sluice("--help")
    assert result.returncode == 0
    out = result.stdout
    for subcommand in ("sluice lab up", "sluice lab ps", "logs", "sluice lab down", "hosts", "ls"):
        assert subcommand in out
    for flag in ("--config-path", "--config-yaml", "--mode", "--log-level", "--service-cluster", "--service-node",
                 "--drain-time-s", "--concurrency", "--base-id", "--admin-address-path", "--version"):  # fmt: skip
        assert flag in out


def test_version_has_envoys_shape() -> None:
    result = sluice("--version")
    assert result.returncode == 0
    line = result.stdout.strip()
    # Envoy: "envoy  version: 9e55…/1.40.0/Clean/RELEASE/BoringSSL"
    found = re.fullmatch(r"sluice version: ([0-9a-f]{40}|unknown)/([\d.]+)/(Clean|Modified)/RELEASE/(\S+)", line)
    assert found is not None, line
    assert found.group(2) == __version__
    assert found.group(4).startswith(("CPython-", "PyPy-"))
    # Clean/Modified may change between the two reads while files are being edited; the rest may not.
    mine = build_version().split("/")
    assert [found.group(1), found.group(2), found.group(4)] == [mine[0], mine[1], mine[4]]


def test_lab_help_is_reachable() -> None:
    result = sluice("lab", "--help")
    assert result.returncode == 0 and "up" in result.stdout and "down" in result.stdout
