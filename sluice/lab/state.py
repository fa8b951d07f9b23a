"""Where a lab keeps its state, and the registry of running labs.

A lab's state folder is ``<lab>/.sluice-lab/`` when the lab folder is writable, else
``$XDG_RUNTIME_DIR/sluice-labs/<project>-<key>/`` (or ``/tmp/sluice-labs/…``), or what
``--state-dir`` names. It holds::

    plan.json          what runs: services, addresses, argv, ports (written by ``up``)
    status.json        what is running: pids, states, exit codes (written by the supervisor)
    supervisor.pid     the supervisor's pid and start time
    hosts              the lab's hosts table
    logs/<svc>.log     each service's output (stdout and stderr)
    services/<svc>/    each service's own root folder (its /etc/hosts, /tmp, …)
    volumes/<name>/    named volumes
    build/             Go builds

The registry (``<base>/running/<key>.json``) lets ``sluice lab ps|logs|down|hosts`` find a
running lab from anywhere: the lab of the current folder first, else the only running one.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def base_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return Path(runtime) / "sluice-labs"
    return Path("/tmp") / f"sluice-labs-{os.getuid()}" if os.getuid() != 0 else Path("/tmp/sluice-labs")


def lab_key(lab_dir: Path) -> str:
    return hashlib.sha256(str(lab_dir.resolve()).encode()).hexdigest()[:10]


def writable(directory: Path) -> bool:
    """Writable for us *and* not marked read-only: root may write anywhere, but a folder whose
    mode has no write bit (a read-only seed) is treated as read-only."""
    try:
        mode = directory.stat().st_mode
    except OSError:
        return False
    return os.access(directory, os.W_OK) and bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def default_state_dir(lab_dir: Path, project: str) -> Path:
    if writable(lab_dir):
        return lab_dir / ".sluice-lab"
    return base_dir() / f"{project}-{lab_key(lab_dir)}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One running lab in the registry."""

    key: str
    project: str
    lab_dir: Path
    state_dir: Path


def registry_dir() -> Path:
    return base_dir() / "running"


def register(project: str, lab_dir: Path, state_dir: Path) -> Entry:
    entry = Entry(lab_key(lab_dir), project, lab_dir.resolve(), state_dir.resolve())
    reg = registry_dir()
    reg.mkdir(parents=True, exist_ok=True)
    write_json(reg / f"{entry.key}.json", {"project": project, "lab_dir": str(entry.lab_dir), "state_dir": str(entry.state_dir)})
    return entry


def unregister(lab_dir: Path) -> None:
    try:
        (registry_dir() / f"{lab_key(lab_dir)}.json").unlink()
    except FileNotFoundError:
        pass


def running_labs() -> list[Entry]:
    """Registered labs whose supervisor is alive (stale entries are dropped)."""
    out: list[Entry] = []
    reg = registry_dir()
    if not reg.is_dir():
        return out
    for f in sorted(reg.glob("*.json")):
        data = read_json(f)
        if not data:
            continue
        entry = Entry(f.stem, str(data["project"]), Path(data["lab_dir"]), Path(data["state_dir"]))
        if supervisor_alive(entry.state_dir) or any_process_alive(entry.state_dir):
            out.append(entry)
        else:
            f.unlink(missing_ok=True)
    return out


def find_running(lab_dir: Path) -> Entry | None:
    key = lab_key(lab_dir)
    for e in running_labs():
        if e.key == key:
            return e
    return None


# --- small JSON files, written atomically ------------------------------------------------


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- processes: a pid is ours only if its start time matches --------------------------------


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[-1].split()
    try:
        if fields[0] == "Z":
            return None
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def alive(pid: int, started: int | None) -> bool:
    st = start_time(pid)
    return st is not None and (started is None or st == started)


def supervisor_record(state_dir: Path) -> tuple[int, int | None] | None:
    data = read_json(state_dir / "supervisor.pid")
    if not data:
        return None
    return int(data["pid"]), data.get("start")


def write_supervisor_record(state_dir: Path) -> None:
    pid = os.getpid()
    write_json(state_dir / "supervisor.pid", {"pid": pid, "start": start_time(pid), "since": time.time()})


def supervisor_alive(state_dir: Path) -> bool:
    rec = supervisor_record(state_dir)
    return rec is not None and alive(*rec)


def recorded_processes(state_dir: Path) -> list[tuple[str, int, int | None]]:
    """(service, pid, start) of every process the status file lists."""
    status = read_json(state_dir / "status.json") or {}
    out: list[tuple[str, int, int | None]] = []
    for svc, s in (status.get("services") or {}).items():
        for p in s.get("processes") or []:
            if p.get("pid"):
                out.append((svc, int(p["pid"]), p.get("start")))
    return out


def any_process_alive(state_dir: Path) -> bool:
    return any(alive(pid, st) for _, pid, st in recorded_processes(state_dir))
