"""``build:`` folders whose Dockerfile runs ``go run main.go``, built with a local Go toolchain.

The course's Go services are one ``main.go`` each, standard library only, served with
``http.ListenAndServe(":8081", nil)``. In a container ``:8081`` means the container's own
address; here it would mean every interface of the machine, so the build compiles a copy of
``main.go`` whose listen address is the service's loopback address (the only change; the
lab's folder is not touched). Builds are cached in the lab's state folder by source hash.

Without ``go`` on PATH, or when the build fails (a third-party import with no module proxy
reachable), the caller falls back to the built-in stand-in ``sluice.lab.apps.mesh_service``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_LISTEN = re.compile(r'((?:ListenAndServe(?:TLS)?|net\.Listen)\(\s*(?:"tcp[46]?",\s*)?")(:(\d+))(")')
_RUN_MAIN = ("go", "run", "main.go")


@dataclass(frozen=True, slots=True)
class GoProgram:
    main_go: Path
    """Host path of the ``main.go`` the Dockerfile runs."""
    ports: tuple[int, ...]
    """Ports the program listens on (from its ``ListenAndServe(":N")`` calls)."""


def inspect_build(context: Path, dockerfile: str = "Dockerfile") -> GoProgram | str:
    """The Go program a build folder runs, or why it is not one this runner knows."""
    df = context / dockerfile
    try:
        text = df.read_text(encoding="utf-8")
    except OSError as exc:
        return f"cannot read {df}: {exc}"
    cmd: tuple[str, ...] | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.upper().startswith("CMD "):
            body = line[4:].strip()
            if body.startswith("["):
                cmd = tuple(re.findall(r'"([^"]*)"', body))
            else:
                cmd = tuple(shlex.split(body))
    if cmd != _RUN_MAIN:
        shown = " ".join(cmd) if cmd else "(no CMD)"
        return f"{df.name} runs '{shown}'; only 'go run main.go' builds are runnable"
    main_go = context / "main.go"
    if not main_go.is_file():
        return f"{main_go} does not exist"
    ports = tuple(int(m.group(3)) for m in _LISTEN.finditer(main_go.read_text(encoding="utf-8")))
    return GoProgram(main_go, ports)


def localized_source(source: str, address: str) -> str:
    """``ListenAndServe(":8081", …)`` → ``ListenAndServe("127.31.88.3:8081", …)``."""
    return _LISTEN.sub(lambda m: f"{m.group(1)}{address}{m.group(2)}{m.group(4)}", source)


def go_toolchain() -> str | None:
    """``go`` on PATH; ``SLUICE_LAB_GO`` names another one, or ``0`` to use the stand-in."""
    choice = os.environ.get("SLUICE_LAB_GO", "")
    if choice == "0":
        return None
    return shutil.which(choice or "go")


def build(program: GoProgram, address: str, cache: Path, timeout: float = 120.0, note: Callable[[], None] | None = None) -> Path | str:
    """Compile the localized copy once; the binary's path, or the build's error text."""
    go = go_toolchain()
    if go is None:
        return "no Go toolchain on PATH"
    source = localized_source(program.main_go.read_text(encoding="utf-8"), address)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    work = cache / digest
    binary = work / "service"
    if binary.is_file():
        return binary
    if note is not None:
        note()
    work.mkdir(parents=True, exist_ok=True)
    (work / "main.go").write_text(source, encoding="utf-8")
    gopath = cache / "gopath"
    env = dict(
        os.environ,
        GOPATH=str(gopath),
        GOCACHE=str(gopath / "cache"),
        GOMODCACHE=str(gopath / "mod"),
        GOFLAGS="-mod=mod",
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
    )
    try:
        if not (work / "go.mod").is_file():
            subprocess.run([go, "mod", "init", "labservice"], cwd=work, env=env, capture_output=True, timeout=timeout, check=True)
            subprocess.run([go, "mod", "tidy"], cwd=work, env=env, capture_output=True, timeout=timeout, check=True)
        subprocess.run([go, "build", "-o", str(binary) + ".tmp", "."], cwd=work, env=env, capture_output=True, timeout=timeout, check=True)
    except subprocess.CalledProcessError as exc:
        out = (exc.stderr or exc.stdout or b"").decode(errors="replace").strip().splitlines()
        return f"go build failed: {' / '.join(out[-3:]) or exc}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"go build failed: {exc}"
    os.replace(str(binary) + ".tmp", binary)
    return binary
