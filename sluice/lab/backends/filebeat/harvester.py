"""One harvester: reads one open file from an offset and publishes a line at a time
(``filebeat/input/log/harvester.go`` and the reader chain under it).

- Lines end at ``\\n`` (``line_terminator: auto`` also strips a ``\\r`` before it); a last line
  without its terminator waits until it has one;
- ``log.offset`` is where the line starts; the state sent with the event is where it ends, and
  that is what the registry records once the output acknowledges it;
- lines longer than ``max_bytes`` (10 MiB) are cut to that length, the rest skipped;
- ``include_lines`` / ``exclude_lines`` and empty lines: not published, their state still is;
- at end of file: a file now shorter than what was read was truncated (reading restarts at 0),
  ``close_removed`` / ``close_renamed`` / ``close_eof`` / ``close_inactive`` (5m) end the
  harvester, else it waits ``backoff`` (1s, times ``backoff_factor`` up to ``max_backoff`` 10s
  while nothing new comes) and reads again;
- the ``container`` input parses each line as Docker json-file or CRI (:mod:`.docker_log`).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.lab.backends.filebeat import docker_log
from sluice.lab.backends.filebeat.config import format_duration
from sluice.lab.backends.filebeat.event import Event, StateUpdate, now_ns

if TYPE_CHECKING:
    from sluice.lab.backends.filebeat.inputs import FileState, LogInput


@dataclass(slots=True)
class ReaderConfig:
    input_type: str = "log"
    buffer_size: int = 16384
    max_bytes: int = 10 * 1024 * 1024
    encoding: str = "utf-8"
    terminator: bytes = b"\n"
    strip_cr: bool = True
    include_lines: list[re.Pattern[str]] = field(default_factory=list)
    exclude_lines: list[re.Pattern[str]] = field(default_factory=list)
    backoff: float = 1.0
    max_backoff: float = 10.0
    backoff_factor: float = 2.0
    close_inactive: float = 300.0
    close_renamed: bool = False
    close_removed: bool = True
    close_eof: bool = False
    close_timeout: float = 0.0
    container_format: str = "auto"
    stream: str = "all"


READ_SIZE = 64 * 1024
"""Bytes per read (Filebeat reads ``harvester_buffer_size``, 16 KiB; larger reads only save
system calls here, lines and offsets are the same)."""


class Harvester:
    def __init__(self, inp: LogInput, state: FileState, fd: int, host_path: str, offset: int) -> None:
        self.inp = inp
        self.cfg: ReaderConfig = inp.reader
        self.state = state
        self.key = state.key
        self.source = state.source
        self.ident = (state.inode, state.device)
        self.fd = fd
        self.host_path = host_path
        self.offset = offset
        """End of the last complete line read (the next line starts here)."""
        self.committed = offset
        """End of the last message published (differs while container parts are pending)."""
        self.read_off = offset
        self.buf = bytearray()
        self.long_head: bytes | None = None
        self.long_len = 0
        self.pending: list[docker_log.ContainerLine] = []
        self.pending_start = 0
        self.task: asyncio.Task[None] | None = None
        self.process = inp.client.process
        self.close_reason = ""

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        log = self.inp.log
        cfg = self.cfg
        log.info("input.harvester", f"Harvester started for file: {self.source}", source=self.source)
        try:
            os.lseek(self.fd, self.offset, os.SEEK_SET)
            backoff = cfg.backoff
            last_read = started = time.monotonic()
            while True:
                if cfg.close_timeout > 0 and time.monotonic() - started >= cfg.close_timeout:
                    self.close_reason = "timeout"
                    log.info("input.harvester", f"Closing harvester because close_timeout was reached: {self.source}")
                    return
                data = os.read(self.fd, max(cfg.buffer_size, READ_SIZE))
                if data:
                    self.read_off += len(data)
                    self.inp.stats.read_bytes += len(data)
                    self.buf += data
                    await self._consume()
                    backoff = cfg.backoff
                    last_read = time.monotonic()
                    continue
                reason = self._at_eof(last_read)
                if reason == "truncated":
                    log.info("input.harvester", f"File was truncated. Begin reading file from offset 0: {self.source}")
                    os.lseek(self.fd, 0, os.SEEK_SET)
                    self.buf.clear()
                    self.pending.clear()
                    self.long_head, self.long_len = None, 0
                    self.offset = self.committed = self.read_off = 0
                    self.state.offset = 0
                    await self._send(Event(now_ns(), None, None, self._update()))
                    continue
                if reason:
                    self.close_reason = reason
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * cfg.backoff_factor, cfg.max_backoff) if cfg.backoff_factor > 1 else backoff
        except OSError as exc:
            self.close_reason = "error"
            log.error("input.harvester", f"Read line error: {exc}; File: {self.source}")

    def _at_eof(self, last_read: float) -> str:
        cfg, log = self.cfg, self.inp.log
        try:
            size = os.fstat(self.fd).st_size
        except OSError:
            size = self.read_off
        if size < self.read_off:
            return "truncated"
        if cfg.close_removed or cfg.close_renamed:
            try:
                st = os.stat(self.host_path)
                same = (st.st_ino, st.st_dev) == self.ident
            except OSError:
                st, same = None, False
            if st is None and cfg.close_removed:
                log.info("input.harvester", f"File was removed: {self.source}. Closing because close_removed is enabled.")
                return "removed"
            if cfg.close_renamed and not same:
                log.info("input.harvester", f"File was renamed: {self.source}. Closing because close_renamed is enabled.")
                return "renamed"
        if cfg.close_eof:
            log.info("input.harvester", f"End of file reached: {self.source}. Closing because close_eof is enabled.")
            return "eof"
        if cfg.close_inactive > 0 and time.monotonic() - last_read >= cfg.close_inactive:
            log.info(
                "input.harvester",
                f"File is inactive: {self.source}. Closing because close_inactive of {format_duration(cfg.close_inactive)} reached.",
            )
            return "inactive"
        return ""

    # --- lines -----------------------------------------------------------------------------

    async def _consume(self) -> None:
        buf = self.buf
        term = self.cfg.terminator
        tlen = len(term)
        pos = 0
        ts = now_ns()
        out: list[Event] = []
        container = self.cfg.input_type == "container"
        while True:
            nl = buf.find(term, pos)
            if nl < 0:
                break
            end = nl + tlen
            content: bytes | bytearray
            if self.long_head is not None:
                content = self.long_head
                length = self.long_len + end
                self.long_head, self.long_len = None, 0
            else:
                length = end - pos
                content = buf[pos:end] if container else buf[pos:nl]
            start = self.offset
            self.offset += length
            ev = self._container_line(bytes(content), start) if container else self._log_line(content, start, ts)
            if ev is not None:
                out.append(ev)
            pos = end
        if pos:
            del buf[:pos]
        max_bytes = self.cfg.max_bytes
        if max_bytes > 0 and len(buf) > max_bytes:
            # A line longer than max_bytes: keep its head, skip the rest until the terminator.
            if self.long_head is None:
                self.long_head = bytes(buf[:max_bytes])
            self.long_len += len(buf)
            buf.clear()
        if out:
            self.state.offset = self.committed
            queue = self.inp.pipeline.queue
            for ev in out:
                if not queue.put_nowait(ev):
                    await queue.put(ev)

    def _log_line(self, content: bytes | bytearray, start: int, ts: int) -> Event:
        cfg = self.cfg
        if cfg.strip_cr and content.endswith(b"\r"):
            content = content[:-1]
        if cfg.max_bytes > 0 and len(content) > cfg.max_bytes:
            content = content[: cfg.max_bytes]
        self.committed = self.offset
        update = StateUpdate(self.key, self.source, self.offset)
        if not content:
            return Event(ts, None, None, update)
        text = content.decode(cfg.encoding, "replace")
        if not self._wanted(text):
            return Event(ts, None, None, update)
        fields: dict[str, Any] = {
            "log": {"offset": start, "file": {"path": self.source}},
            "message": text,
            "input": {"type": cfg.input_type},
        }
        return self.process(Event(ts, fields, None, update))

    def _container_line(self, raw: bytes, start: int) -> Event | None:
        cfg = self.cfg
        try:
            line = docker_log.parse(raw, cfg.container_format)
        except docker_log.Unparsable as exc:
            self.inp.log.info("input.harvester", f"Skipping unparsable line in file: {self.source}", error=str(exc))
            if self.pending:
                return None
            self.committed = self.offset
            return Event(now_ns(), None, None, self._update())
        if not self.pending:
            self.pending_start = start
        self.pending.append(line)
        if line.partial:
            return None
        parts, self.pending = self.pending, []
        first = parts[0]
        text = docker_log.strip_newline(first.text if len(parts) == 1 else "".join(p.text for p in parts))
        if cfg.max_bytes > 0 and len(text) > cfg.max_bytes:
            text = text[: cfg.max_bytes]
        self.committed = self.offset
        update = self._update()
        if (cfg.stream != "all" and first.stream != cfg.stream) or not self._wanted(text):
            return Event(first.ts_ns, None, None, update)
        fields: dict[str, Any] = {
            "log": {"offset": self.pending_start, "file": {"path": self.source}},
            "stream": first.stream,
            "message": text,
            "input": {"type": "container"},
        }
        return self.inp.client.process(Event(first.ts_ns, fields, None, update))

    def _wanted(self, text: str) -> bool:
        cfg = self.cfg
        if cfg.include_lines and not any(rx.search(text) for rx in cfg.include_lines):
            return False
        return not (cfg.exclude_lines and any(rx.search(text) for rx in cfg.exclude_lines))

    def _update(self, *, finished: bool = False) -> StateUpdate:
        return StateUpdate(self.key, self.source, self.committed, finished=finished)

    async def _send(self, event: Event) -> None:
        queue = self.inp.pipeline.queue
        if not queue.put_nowait(event):
            await queue.put(event)

    def finished_update(self) -> StateUpdate:
        return self._update(finished=True)
