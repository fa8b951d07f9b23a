"""Helpers for the ``sluice lab`` integration tests: the CLI as a user runs it, process and
memory accounting, and plain HTTP requests (no proxy settings)."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sluice.lab import state

SEED = Path(__file__).resolve().parents[3] / "labs"

MEASUREMENTS: list[str] = []
"""Readiness and memory lines, printed in pytest's terminal summary (not asserted)."""


def _can_bind_port_80() -> bool:
    s = socket.socket()
    try:
        s.bind(("127.31.254.254", 80))
    except OSError:
        return False
    finally:
        s.close()
    return True


def check_lab_prerequisites() -> None:
    """The course's labs publish port 80: a machine where that cannot be bound fails the run
    (a skip would make a clone silently test less)."""
    if not SEED.is_dir():
        pytest.fail(f"the course's labs are missing: {SEED} (they are part of the repository)")
    if not _can_bind_port_80():
        pytest.fail("the lab tests need permission to bind port 80 on loopback (run as root, as CI does)")


requires_lab = pytest.mark.usefixtures("lab_prerequisites")


class Lab:
    def __init__(self, directory: Path, state_dir: Path) -> None:
        self.directory = directory
        self.state_dir = state_dir
        self.started = False

    def run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "sluice", "lab", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, NO_COLOR="1"))

    def up(self, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
        t0 = time.monotonic()
        r = self.run("up", "-d", str(self.directory), "--state-dir", str(self.state_dir), *extra)
        self.started = True
        return r, time.monotonic() - t0

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.run("down", str(self.directory), "--state-dir", str(self.state_dir))

    def cli(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        if command == "logs":
            return self.run("logs", "--lab", str(self.directory), "--state-dir", str(self.state_dir), *args)
        return self.run(command, str(self.directory), "--state-dir", str(self.state_dir), *args)

    def plan(self) -> dict[str, Any]:
        return state.read_json(self.state_dir / "plan.json") or {}

    def pids(self) -> list[tuple[int, int | None]]:
        out = [(pid, st) for _, pid, st in state.recorded_processes(self.state_dir)]
        rec = state.supervisor_record(self.state_dir)
        if rec:
            out.append(rec)
        return out

    def live_pids(self) -> list[int]:
        return [pid for pid, st in self.pids() if state.alive(pid, st)]

    def ports(self) -> list[tuple[str, int]]:
        return [(a, p) for s in self.plan().get("services", []) for proc in s["processes"] for a, p, _ in proc["ports"]]

    def rss_kib(self) -> tuple[int, int]:
        """(RSS, PSS) in KiB summed over the supervisor and every service process."""
        rss = pss = 0
        for pid in self.live_pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
            except OSError:
                continue
        return rss, pss


def copy_lab(name: str, dst_root: Path) -> Path:
    dst = dst_root / name
    shutil.copytree(SEED / name, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def get(host: str, path: str, port: int = 80, method: str = "GET") -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()
