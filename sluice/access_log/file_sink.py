"""Access-log files as Envoy writes them (``AccessLogManagerImpl`` / ``AccessLogFileImpl``).

One :class:`AccessLogFile` per path, shared by every logger that names it (``/dev/stdout`` and
``/dev/stderr`` included: the stdout/stderr loggers use the same machinery). A line is appended
to an in-memory buffer on the event loop; a flush thread per file does the writing, so a slow
or full disk never blocks traffic. As in Envoy:

* the flush timer ticks every ``file_flush_interval`` (default 10 s, ``--file-flush-interval-msec``)
  from the moment the file is opened at config load, counting ``flushed_by_timer`` on each tick;
* the file's first line is written at once (Envoy's flush thread starts with the first write and
  finds it waiting); after that lines are written when the buffer exceeds 64 KiB, on a timer
  tick, and at shutdown;
* ``filesystem.*`` stats: ``write_buffered`` (lines appended), ``write_completed`` (writes to
  the file), ``write_failed``, ``flushed_by_timer`` (timer ticks), ``reopen_failed``, and the
  gauge ``write_total_buffered`` (bytes appended but not yet written: 0 once all is flushed);
* ``reopen()`` (SIGUSR1, admin ``/reopen_logs``) closes and reopens the file before the next
  write, for log rotation.

A write error is counted and reported once per file (then again only after a write succeeded),
and the data is dropped, as Envoy drops it: the proxy keeps serving.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from sluice.stats.store import Counter, Gauge, StatsBlock, Store, block

log = logging.getLogger("sluice.access_log")

MIN_FLUSH_SIZE = 64 * 1024
"""Envoy's ``AccessLogFileImpl::MIN_FLUSH_SIZE``: a buffer past this is written at once."""

_IOV_MAX = 1024
"""Buffers per ``writev`` (Linux's IOV_MAX)."""

DEFAULT_FLUSH_INTERVAL = 10.0
"""Envoy's default ``--file-flush-interval-msec`` (10000)."""


@block
class FilesystemStats(StatsBlock):
    """``filesystem.*`` (``ACCESS_LOG_FILE_STATS``, one set for all files)."""

    flushed_by_timer: Counter
    reopen_failed: Counter
    write_buffered: Counter
    write_completed: Counter
    write_failed: Counter
    write_total_buffered: Gauge


class AccessLogFile:
    """One log file: a buffer filled by the event loop, written by its flush thread."""

    def __init__(self, path: str, stats: FilesystemStats, flush_interval: float) -> None:
        self.path = path
        self._stats = stats
        self._flush_interval = flush_interval
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._thread: threading.Thread | None = None
        self._exit = False
        self._reopen = False
        self._flush_at = 0
        """Buffered bytes past which the flush thread is woken: 0 until the first line."""
        self._flush_now = False
        """Write without waiting for the tick (the first line, a full buffer)."""
        self._fd: int | None = None
        self._failing = False
        self._lines = stats.write_buffered
        self._bytes = stats.write_total_buffered

    def open(self) -> None:
        """Open (create) the file now, as Envoy does at config load (an unwritable path is a
        config-time error, raised as ``OSError``), and start its flush timer."""
        self._fd = self._open_fd()
        # Envoy's timer runs on the main thread and its flush thread starts with the first
        # write; here one thread does both (it sleeps until a tick or a wake-up).
        self._thread = threading.Thread(target=self._flush_loop, name=f"access-log {self.path}", daemon=True)
        self._thread.start()

    def _open_fd(self) -> int:
        if self.path == "/dev/stdout":
            return os.dup(1)
        if self.path == "/dev/stderr":
            return os.dup(2)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, line: str) -> None:
        """Append one line (called on the event loop; never blocks on I/O)."""
        self.write_bytes(line.encode("utf-8", "surrogateescape"))

    def write_bytes(self, data: bytes) -> None:
        """Append one line already encoded (a header value's non-UTF-8 bytes as they came)."""
        # (once per request: the stat handles bumped in place rather than through inc())
        n = len(data)
        with self._lock:
            self._buffer.append(data)
            self._buffered += n
            self._lines.value += 1
            self._bytes.value += n
            if self._buffered > self._flush_at:
                # (the first line at once, then past MIN_FLUSH_SIZE)
                self._flush_at = MIN_FLUSH_SIZE
                self._bytes.used = True
                self._flush_now = True
                self._wake.notify()

    def reopen(self) -> None:
        """Reopen the file before the next write (log rotation)."""
        with self._lock:
            self._reopen = True
            self._wake.notify()

    def close(self) -> None:
        """Write what is buffered and stop the flush thread (shutdown)."""
        with self._lock:
            self._exit = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5.0)
        if self._reopen:  # (asked for just before the exit: the rest goes to the new file)
            self._reopen = False
            self._do_reopen()
        self._write_out(self._take())
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- the flush thread ----------------------------------------------------------------
    def _take(self) -> list[bytes]:
        with self._lock:
            out, self._buffer, self._buffered = self._buffer, [], 0
            return out

    def _flush_loop(self) -> None:
        interval = self._flush_interval
        next_tick = time.monotonic() + interval
        while True:
            with self._lock:
                # Sleep until a wake-up (the first line, a full buffer, a reopen, the exit) or
                # the timer's tick. Each tick is counted, as Envoy's flush timer counts it
                # whether or not anything is buffered, and re-armed from when it fired.
                while not (self._exit or self._reopen or self._flush_now):
                    now = time.monotonic()
                    if now >= next_tick:
                        self._stats.flushed_by_timer.inc()
                        next_tick = now + interval
                        if self._buffer:
                            break
                        continue
                    self._wake.wait(timeout=next_tick - now)
                if self._exit:
                    return  # (close() writes what is left)
                self._flush_now = False
                reopen, self._reopen = self._reopen, False
                chunks, self._buffer, self._buffered = self._buffer, [], 0
            if reopen:
                self._do_reopen()
            self._write_out(chunks)

    def _do_reopen(self) -> None:
        try:
            fd = self._open_fd()
        except OSError as exc:
            self._stats.reopen_failed.inc()
            log.warning("access log %s: reopen failed: %s", self.path, exc)
            return
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd

    def _write_out(self, chunks: list[bytes]) -> None:
        if not chunks:
            return
        size = sum(map(len, chunks))
        st = self._stats
        done = 0
        try:
            if self._fd is None:
                self._fd = self._open_fd()
            # One writev of the lines as they are (no joined copy; the GIL is released for it).
            for i in range(0, len(chunks), _IOV_MAX):
                part = chunks[i : i + _IOV_MAX]
                n = os.writev(self._fd, part)
                want = sum(map(len, part))
                if n < want:  # (a short write: the rest, one call at a time)
                    rest = memoryview(b"".join(part))[n:]
                    while rest:
                        rest = rest[os.write(self._fd, rest) :]
                done += want
            st.write_completed.inc()
            self._failing = False
        except OSError as exc:
            st.write_failed.inc()
            if not self._failing:
                self._failing = True
                log.error("access log %s: write failed, %d bytes dropped: %s", self.path, size - done, exc)
        with self._lock:
            st.write_total_buffered.dec(size)


class AccessLogFileManager:
    """Envoy's ``AccessLogManager``: one :class:`AccessLogFile` per path, shared."""

    def __init__(self, store: Store, flush_interval: float = DEFAULT_FLUSH_INTERVAL) -> None:
        # Envoy makes the filesystem.* stats with the server, files or not.
        self._stats = FilesystemStats.declare(store, "filesystem.")
        self.flush_interval = flush_interval
        self._files: dict[str, AccessLogFile] = {}

    def file(self, path: str) -> AccessLogFile:
        """The file for ``path``, opened now (``OSError`` when it cannot be)."""
        f = self._files.get(path)
        if f is None:
            f = AccessLogFile(path, self._stats, self.flush_interval)
            f.open()
            self._files[path] = f
        return f

    def reopen(self) -> None:
        for f in self._files.values():
            f.reopen()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
