"""The lab's containers as Docker keeps them on disk, for a lab that mounts ``/var/lib/docker``
(``container-log-with-efk``: Filebeat's ``container`` input reads the json-file logs and
``add_docker_metadata`` names the container). Without Docker, the lab runner is the engine:

- ``<docker>/containers/<id>/<id>-json.log``: each line a service's process writes, as Docker's
  json-file driver writes it: ``{"log":"…\\n","stream":"stdout","time":"2026-12-03T06:29:01.123456789Z"}``
  (a line longer than 16 KiB is split in pieces without the newline, as Docker splits them);
- ``<docker>/containers/<id>/config.v2.json``: ``ID``, ``Name`` (``/<container name>``),
  ``Config.Image``, ``Config.Labels`` (compose's ``com.docker.compose.*`` labels, as Compose sets
  them), ``Config.Hostname``, ``Created``.

Container ids are 64 hex digits, stable for a project and service (``sha256`` of both), so a
restarted lab writes to the same folders, as a recreated container would not: Filebeat's
registry keeps its offsets per file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

DOCKER_LINE_MAX = 16 * 1024
"""Docker's json-file driver splits a line longer than this into partial lines."""

COMPOSE_VERSION = "2.20.0"
"""What ``com.docker.compose.version`` says (the labs' compose files are version 3 syntax)."""


def container_id(project: str, service: str) -> str:
    return hashlib.sha256(f"sluice-lab/{project}/{service}".encode()).hexdigest()


def rfc3339_nano(t: float) -> str:
    secs = int(t)
    nanos = int((t - secs) * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{nanos:09d}Z"


def write_config(docker_dir: Path, *, cid: str, name: str, image: str, hostname: str, project: str,
                 service: str, working_dir: str, config_file: str) -> Path:
    """The container's ``config.v2.json`` (what Docker's daemon answers ``add_docker_metadata``)."""
    folder = docker_dir / "containers" / cid
    folder.mkdir(parents=True, exist_ok=True)
    labels = {
        "com.docker.compose.project": project,
        "com.docker.compose.service": service,
        "com.docker.compose.container-number": "1",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.version": COMPOSE_VERSION,
        "com.docker.compose.project.working_dir": working_dir,
        "com.docker.compose.project.config_files": config_file,
    }
    doc = {
        "ID": cid,
        "Name": "/" + name,
        "Created": rfc3339_nano(time.time()),
        "Config": {"Hostname": hostname, "Image": image, "Labels": labels},
        "State": {"Running": True},
    }
    path = folder / "config.v2.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)
    return folder / f"{cid}-json.log"


class JsonFileLog:
    """One container's ``<id>-json.log``: bytes from a stream in, json-file lines out. A partial
    line waits for its newline (or for :meth:`flush` when the stream ends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._pending: dict[str, bytes] = {}

    def feed(self, stream: str, data: bytes) -> None:
        buf = self._pending.get(stream, b"") + data
        out: list[bytes] = []
        while True:
            nl = buf.find(b"\n")
            if nl < 0 or nl >= DOCKER_LINE_MAX:
                while len(buf) >= DOCKER_LINE_MAX:  # Docker's partial pieces (no newline)
                    out.append(self._line(stream, buf[:DOCKER_LINE_MAX]))
                    buf = buf[DOCKER_LINE_MAX:]
                if nl < 0 or buf.find(b"\n") < 0:
                    break
                continue
            out.append(self._line(stream, buf[: nl + 1]))
            buf = buf[nl + 1 :]
        self._pending[stream] = buf
        if out:
            os.write(self._fd, b"".join(out))

    def flush(self) -> None:
        """Write what is left of each stream (a last line without its newline)."""
        for stream, buf in list(self._pending.items()):
            if buf:
                os.write(self._fd, self._line(stream, buf))
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        os.close(self._fd)

    @staticmethod
    def _line(stream: str, piece: bytes) -> bytes:
        text = piece.decode("utf-8", "replace")
        line = {"log": text, "stream": stream, "time": rfc3339_nano(time.time())}
        return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
