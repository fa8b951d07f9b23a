"""``type: log`` and ``type: container`` inputs (``filebeat/input/log/input.go``): every
``scan_frequency`` (10s) the ``paths`` globs are expanded, each regular file is known by its
identity (inode + device, ``file_identity: native``), and a harvester is started for a new file
(from offset 0), a file that grew past its recorded offset (from there) or one that shrank below
it (truncated: from 0). A file found under a new name keeps its state and offset (rename); while
its harvester runs nothing changes, once it has finished the state takes the new name.

After each scan the states marked last time are cleaned (``clean_removed``: the file is gone or
its path now holds another file; ``clean_inactive``), and removed files are marked for the next
round, so a renamed file is found under its new name first.
"""

from __future__ import annotations

import asyncio
import codecs
import fnmatch
import os
import re
import stat
import time
import zlib
from dataclasses import dataclass
from typing import Any

from sluice.lab.backends.filebeat import BEAT, VERSION, processors
from sluice.lab.backends.filebeat.config import ConfigError, Section
from sluice.lab.backends.filebeat.event import Event, StateUpdate, now_ns
from sluice.lab.backends.filebeat.fmtstr import FormatString
from sluice.lab.backends.filebeat.fs import ContainerFS, expand_recursive
from sluice.lab.backends.filebeat.harvester import Harvester, ReaderConfig
from sluice.lab.backends.filebeat.logs import Log
from sluice.lab.backends.filebeat.pipeline import Client, Pipeline, Stats
from sluice.lab.backends.filebeat.registry import KEY_PREFIX, Registrar

KNOWN = {
    "type", "id", "enabled", "paths", "encoding", "exclude_lines", "include_lines", "exclude_files", "ignore_older",
    "close_inactive", "close_renamed", "close_removed", "close_eof", "close_timeout", "clean_inactive", "clean_removed",
    "scan_frequency", "scan", "harvester_buffer_size", "max_bytes", "tail_files", "symlinks", "backoff", "max_backoff",
    "backoff_factor", "harvester_limit", "fields", "fields_under_root", "tags", "processors", "pipeline", "index",
    "keep_null", "publisher_pipeline", "recursive_glob", "file_identity", "line_terminator", "stream", "format", "service",
}  # fmt: skip
UNSUPPORTED = {
    "multiline": "multiline joining is not supported by this Filebeat stand-in",
    "json": "JSON decoding in the input is not supported by this Filebeat stand-in (use the decode_json_fields processor)",
    "docker-json": "set type: container instead (docker-json is how Filebeat implements it)",
}
_TERMINATORS = {
    "auto": (b"\n", True), "line_feed": (b"\n", False), "vertical_tab": (b"\v", False), "form_feed": (b"\f", False),
    "carriage_return": (b"\r", False), "carriage_return_line_feed": (b"\r\n", False), "null_terminator": (b"\0", False),
}  # fmt: skip


@dataclass(slots=True)
class FileState:
    key: str
    inode: int
    device: int
    source: str
    offset: int = 0
    finished: bool = True
    ttl: float = -1
    seen: float = 0.0


def glob_matches(pattern: str, path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, p.replace("[^", "[!")) for p in expand_recursive(pattern))


class LogInput:
    def __init__(
        self,
        cfg: Section,
        *,
        fs: ContainerFS,
        log: Log,
        pipeline: Pipeline,
        registrar: Registrar,
        stats: Stats,
        proc_ctx: processors.Context,
        once: bool = False,
    ) -> None:
        self.fs, self.log, self.pipeline, self.registrar, self.stats = fs, log, pipeline, registrar, stats
        self.once = once
        self.type = cfg.text("type", "log")
        cfg.check(KNOWN, unsupported=UNSUPPORTED, warn=lambda m: log.warn("input", m))
        self.paths = cfg.strings("paths")
        if not self.paths:
            raise ConfigError(f"{cfg.path}: No paths were defined for input accessing '{cfg.name('paths')}'")
        for p in self.paths:
            if not os.path.isabs(p):
                raise ConfigError(f"{cfg.name('paths')}: '{p}' is not an absolute path")
        if not cfg.child("recursive_glob").enabled(True):
            for p in self.paths:
                if "**" in p.split("/"):
                    raise ConfigError(f"{cfg.name('paths')}: '**' needs recursive_glob.enabled")
        identity = cfg.raw("file_identity")
        if isinstance(identity, dict) and identity and set(identity) != {"native"}:
            raise ConfigError(f"{cfg.name('file_identity')}: only native (inode + device) is supported by this Filebeat stand-in")
        self.scan_frequency = cfg.duration("scan_frequency", 10.0)
        if self.scan_frequency <= 0:
            raise ConfigError(f"{cfg.name('scan_frequency')}: must be greater than 0")
        self.ignore_older = cfg.duration("ignore_older", 0.0)
        self.clean_inactive = cfg.duration("clean_inactive", 0.0)
        self.clean_removed = cfg.boolean("clean_removed", True)
        self.tail_files = cfg.boolean("tail_files", False)
        self.symlinks = cfg.boolean("symlinks", False)
        self.harvester_limit = cfg.integer("harvester_limit", 0, minimum=0)
        self.exclude_files = [_regex(x, cfg.name("exclude_files")) for x in cfg.strings("exclude_files")]
        self.reader = self._reader_config(cfg, once)
        self.meta: dict[str, str] | None = None
        if self.type == "container":
            self.reader.stream = cfg.text("stream", "all")
            if self.reader.stream not in ("all", "stdout", "stderr"):
                raise ConfigError(f"{cfg.name('stream')}: must be all, stdout or stderr")
            self.reader.container_format = cfg.text("format", "auto")
            if self.reader.container_format not in ("auto", "docker", "cri"):
                raise ConfigError(f"{cfg.name('format')}: must be auto, docker or cri")
            if self.reader.stream != "all":
                self.meta = {"stream": self.reader.stream}
        fields = cfg.raw("fields")
        if fields is not None and not isinstance(fields, dict):
            raise ConfigError(f"{cfg.name('fields')}: expects a map")
        meta: dict[str, Any] = {}
        if cfg.text("pipeline", ""):
            meta["pipeline"] = cfg.text("pipeline")
        self.index_fmt = FormatString(cfg.text("index"), cfg.name("index")) if cfg.text("index", "") else None
        procs = processors.build(cfg.raw("processors"), proc_ctx, cfg.name("processors"))
        if self.index_fmt is not None:
            fmt = self.index_fmt
            # As Filebeat's add_formatted_index: only the beat's static fields and the time.
            static = {k: {"name": BEAT, "version": VERSION} for k in ("agent", "beat", "observer")}

            def raw_index(event: Event) -> Event | None:
                event.put("@metadata.raw_index", fmt.run(Event(event.ts_ns, static)))
                return event

            procs = [*procs, raw_index]
        self.client = Client(
            pipeline,
            fields=fields,
            fields_under_root=cfg.boolean("fields_under_root", False),
            tags=cfg.strings("tags"),
            procs=procs,
            meta=meta,
            host=not cfg.child("publisher_pipeline").boolean("disable_host", False),
        )
        self.id = cfg.text("id", "") or str(zlib.crc32(repr(sorted(cfg.data.items(), key=str)).encode()))
        self.states: dict[str, FileState] = {}
        self.harvesters: dict[str, Harvester] = {}
        self._first_scan = True
        self.done = asyncio.Event()

    def _reader_config(self, cfg: Section, once: bool) -> ReaderConfig:
        r = ReaderConfig(input_type=self.type)
        r.buffer_size = cfg.integer("harvester_buffer_size", 16384, minimum=1)
        r.max_bytes = cfg.size("max_bytes", 10 * 1024 * 1024)
        enc = cfg.text("encoding", "plain").lower()
        if enc in ("plain", "utf-8", "utf8", ""):
            r.encoding = "utf-8"
        else:
            try:
                info = codecs.lookup(enc)
            except LookupError:
                raise ConfigError(f"{cfg.name('encoding')}: unknown encoding '{enc}'") from None
            if "16" in info.name or "32" in info.name:
                raise ConfigError(f"{cfg.name('encoding')}: {enc} is not supported by this Filebeat stand-in")
            r.encoding = info.name
        term = cfg.text("line_terminator", "auto")
        if term not in _TERMINATORS:
            raise ConfigError(f"{cfg.name('line_terminator')}: unknown line terminator '{term}'")
        r.terminator, r.strip_cr = _TERMINATORS[term]
        r.include_lines = [_regex(x, cfg.name("include_lines")) for x in cfg.strings("include_lines")]
        r.exclude_lines = [_regex(x, cfg.name("exclude_lines")) for x in cfg.strings("exclude_lines")]
        r.backoff = cfg.duration("backoff", 1.0)
        r.max_backoff = cfg.duration("max_backoff", 10.0)
        r.backoff_factor = float(cfg.raw("backoff_factor", 2) or 2)
        if r.max_backoff < r.backoff:
            raise ConfigError(f"{cfg.name('max_backoff')}: must be greater or equal to backoff")
        r.close_inactive = cfg.duration("close_inactive", 300.0)
        r.close_renamed = cfg.boolean("close_renamed", False)
        r.close_removed = cfg.boolean("close_removed", True)
        r.close_eof = cfg.boolean("close_eof", False) or once
        r.close_timeout = cfg.duration("close_timeout", 0.0)
        return r

    # --- registry --------------------------------------------------------------------------

    def key_for(self, inode: int, device: int) -> str:
        key = f"{KEY_PREFIX}native::{inode}-{device}"
        if self.meta:
            # Deliberate difference: a stream-filtered container input's states get a CRC-32 of the
            # meta as suffix; Filebeat uses its own structure hash. Only this stand-in reads it.
            key += "-" + str(zlib.crc32(repr(sorted(self.meta.items())).encode()))
        return key

    def load_states(self, entries: dict[str, dict[str, Any]]) -> int:
        n = 0
        for key, value in entries.items():
            source = value.get("source")
            ident = value.get("FileStateOS") or {}
            if value.get("type", "log") != self.type or not isinstance(source, str):
                continue
            if (value.get("meta") or None) != self.meta or not any(glob_matches(p, source) for p in self.paths):
                continue
            try:
                inode, device, offset = int(ident["inode"]), int(ident["device"]), int(value.get("offset", 0))
            except (KeyError, TypeError, ValueError):
                continue
            self.states[key] = FileState(key, inode, device, source, offset, True, -1, time.time())
            self.registrar.identify(key, inode, device, self.type, self.meta)
            n += 1
        return n

    # --- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        self.log.info("input", f"Configured paths: [{' '.join(self.paths)}]", input_id=self.id)
        try:
            while True:
                await self.scan()
                await self.cleanup()
                if self.once:
                    while self.harvesters:
                        await asyncio.gather(*(h.task for h in list(self.harvesters.values()) if h.task is not None))
                    break
                await asyncio.sleep(self.scan_frequency)
        finally:
            self.done.set()

    async def stop(self) -> None:
        tasks = [h.task for h in self.harvesters.values() if h.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def scan(self) -> None:
        seen: set[str] = set()
        for pattern in self.paths:
            for path in self.fs.glob(pattern):
                if any(rx.search(path) for rx in self.exclude_files):
                    continue
                host = self.fs.host(path)
                try:
                    st = os.lstat(host)
                    if stat.S_ISLNK(st.st_mode):
                        if not self.symlinks:
                            continue
                        st = os.stat(host)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                key = self.key_for(st.st_ino, st.st_dev)
                if key in seen:
                    continue
                seen.add(key)
                await self._handle(path, host, st, key)
        self._first_scan = False

    async def _handle(self, path: str, host: str, st: os.stat_result, key: str) -> None:
        state = self.states.get(key)
        if state is not None:
            state.seen = time.time()
        if key in self.harvesters:
            return
        if self.ignore_older > 0 and time.time() - st.st_mtime > self.ignore_older:
            if state is None:
                state = self._new_state(key, st, path, st.st_size)
                await self._send(StateUpdate(key, path, st.st_size, finished=True))
            return
        if state is None:
            state = self._new_state(key, st, path, 0)
            offset = st.st_size if self.tail_files and self._first_scan else 0
            await self._start(state, host, offset)
            return
        if state.source != path:
            self.log.debug("input", f"File rename was detected: {state.source} -> {path}, Current offset: {state.offset}")
            state.source = path
            await self._send(StateUpdate(key, path, state.offset, finished=True))
        if st.st_size < state.offset:
            self.log.debug("input", f"Old file was truncated. Starting from the beginning: {path}")
            await self._start(state, host, 0)
        elif st.st_size > state.offset:
            self.log.debug("input", f"Resuming harvesting of file: {path}, offset: {state.offset}, new size: {st.st_size}")
            await self._start(state, host, state.offset)

    def _new_state(self, key: str, st: os.stat_result, path: str, offset: int) -> FileState:
        state = FileState(key, st.st_ino, st.st_dev, path, offset, True, -1, time.time())
        self.states[key] = state
        self.registrar.identify(key, st.st_ino, st.st_dev, self.type, self.meta)
        return state

    async def _start(self, state: FileState, host: str, offset: int) -> None:
        if self.harvester_limit and len(self.harvesters) >= self.harvester_limit:
            self.log.debug("input", f"Harvester limit reached: {self.harvester_limit}, not starting one for {state.source}")
            return
        try:
            fd = os.open(host, os.O_RDONLY)
        except OSError as exc:
            self.log.error("input", f"Harvester could not be started on new file: {state.source}, Err: {exc}")
            return
        st = os.fstat(fd)
        if (st.st_ino, st.st_dev) != (state.inode, state.device):
            os.close(fd)  # replaced between the scan and the open: the next scan sees the new file
            return
        state.finished, state.ttl, state.offset = False, -1, offset
        h = Harvester(self, state, fd, host, offset)
        self.harvesters[state.key] = h
        self.stats.harvesters_started += 1
        self.stats.harvesters_running += 1
        await self._send(StateUpdate(state.key, state.source, offset))
        h.task = asyncio.get_running_loop().create_task(self._harvest(h), name=f"harvester:{state.source}")
        h.task.add_done_callback(self._harvester_done)

    def _harvester_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("input.harvester", f"Harvester crashed: {task.exception()!r}")

    async def _harvest(self, h: Harvester) -> None:
        try:
            await h.run()
        finally:
            os.close(h.fd)
            self.harvesters.pop(h.key, None)
            self.stats.harvesters_running -= 1
            h.state.offset = h.committed
            h.state.finished = True
        if h.close_reason:
            await self._send(h.finished_update())

    async def cleanup(self) -> None:
        now = time.time()
        for key, state in list(self.states.items()):
            if not state.finished:
                continue
            expired = self.clean_inactive > 0 and now - state.seen > self.clean_inactive
            if state.ttl == 0 or expired:
                del self.states[key]
                self.log.debug("input", f"Remove state for file: {state.source}")
                await self._send(StateUpdate(key, state.source, state.offset, remove=True))
        if not self.clean_removed:
            return
        for state in self.states.values():
            if not state.finished:
                continue
            try:
                st = os.stat(self.fs.host(state.source))
            except FileNotFoundError:
                self.log.debug("input", f"Remove state for file as file removed: {state.source}")
                state.ttl = 0
                continue
            except OSError:
                continue
            if (st.st_ino, st.st_dev) != (state.inode, state.device):
                self.log.debug("input", f"Remove state of file as its identity has changed: {state.source}")
                state.ttl = 0

    async def _send(self, update: StateUpdate) -> None:
        event = Event(now_ns(), None, None, update)
        queue = self.pipeline.queue
        if not queue.put_nowait(event):
            await queue.put(event)


def _regex(pattern: str, setting: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{setting}: invalid regular expression '{pattern}': {exc}") from None
