"""The span store: one SQLite file, spans kept as their V2 JSON with the columns the queries
select on, behind the narrow interface the two query APIs use (a real Zipkin storage or
Jaeger's could stand behind the same calls).

The indexes follow what zipkin2's ``InMemoryStorage`` keeps: spans by low 64 bits of the trace
id, by timestamp (milliseconds, as its ``TraceIdTimestamp``), by local service (in memory, see
below; the former ``spans_by_service`` index is dropped, one B-tree less per insert); the service →
span name / remote service name lists (``names``); the values of ``AUTOCOMPLETE_KEYS`` tags.
Spans are kept in arrival order (``rowid``), which is the order a trace's spans are answered in.

Deliberate difference: the real images keep spans in memory (``STORAGE_TYPE=mem``, Jaeger's
``memory`` store) and lose them on restart; this file survives a restart of the service while
the lab runs. ``MEM_MAX_SPANS`` (500000) is honoured: the oldest trace goes first.

One connection, used only from the server's single store thread (``check_same_thread`` off
because that thread is the executor's, not the one that opened it).

The trace-level index the searches walk (each trace's first and last span millisecond, the
traces each service took part in) is kept in memory as well, rebuilt from the file on open: a
search answers *every* trace id of the lookback, newest first (the query APIs page through that
list), and producing 100 000 of them through SQL — a group-by over the spans, or even a covering
index scan with a per-trace service probe — took 100-500 ms, where a bisect and a set filter
over Python lists take a few. SQLite stays the record; this only orders and filters ids.
"""

from __future__ import annotations

import os
import sqlite3
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
  rowid INTEGER PRIMARY KEY,
  trace_low TEXT NOT NULL,
  trace_id TEXT NOT NULL,
  ts INTEGER NOT NULL,
  ts_ms INTEGER NOT NULL,
  service TEXT,
  json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans(trace_low);
CREATE INDEX IF NOT EXISTS spans_by_time ON spans(ts_ms, trace_low);
DROP INDEX IF EXISTS spans_by_service;
CREATE TABLE IF NOT EXISTS names (
  service TEXT NOT NULL,
  kind TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (service, kind, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS autocomplete (
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (key, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Row:
    """One span to store: its V2 JSON and what is indexed."""

    trace_id: str
    timestamp: int
    service: str | None
    json: str
    names: tuple[tuple[str, str], ...] = ()
    """``(kind, value)`` pairs listed under ``service`` (``span``, ``remote``, ``op:<kind>``)."""
    tags: tuple[tuple[str, str], ...] = ()
    """Autocomplete ``(key, value)`` pairs."""


class Store:
    def __init__(self, path: str, *, product: str, max_spans: int = 0) -> None:
        """``product`` (``zipkin`` or ``jaeger``) is recorded: the two normalise spans
        differently, so one file is not opened by the other."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.max_spans = max_spans
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key='product'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('product', ?)", (product,))
        elif row[0] != product:
            raise ValueError(f"{path} holds {row[0]} spans, not {product}'s")
        self._load_index()

    def _load_index(self) -> None:
        """The in-memory side, from the file (on open, and after a rolled-back write)."""
        # The span count, kept here because this connection is the file's only writer: count(*)
        # walks a whole index, and MEM_MAX_SPANS is checked on every POST.
        (count,) = self.db.execute("SELECT count(*) FROM spans").fetchone()
        self._count: int = count
        self._bounds: dict[str, tuple[int, int]] = {}
        """low trace id → (first, last) span timestamp in ms."""
        for low, first, last in self.db.execute("SELECT trace_low, min(ts_ms), max(ts_ms) FROM spans GROUP BY trace_low"):
            self._bounds[low] = (first, last)
        self._by_last = sorted((last, low) for low, (_, last) in self._bounds.items())
        """``(last, low)`` ascending: the order searches answer in, reversed."""
        self._spread = max((last - first for first, last in self._bounds.values()), default=0)
        """An upper bound of ``last - first`` over the traces (never lowered on eviction)."""
        self._members: dict[str, set[str]] = {}
        """local service → the low trace ids it has spans in."""
        for service, low in self.db.execute("SELECT DISTINCT service, trace_low FROM spans WHERE service IS NOT NULL"):
            self._members.setdefault(service, set()).add(low)

    def _index(self, rows: Sequence[Row], evicted: Iterable[str]) -> None:
        """Apply a committed write to the in-memory side."""
        if evicted:
            for low in evicted:
                _, last = self._bounds.pop(low)
                del self._by_last[bisect_left(self._by_last, (last, low))]
            for members in self._members.values():
                members.difference_update(evicted)
            for service in [s for s, members in self._members.items() if not members]:
                del self._members[service]
        bounds, by_last = self._bounds, self._by_last
        for r in rows:
            low, ts_ms = _low(r.trace_id), r.timestamp // 1000
            old = bounds.get(low)
            if old is None:
                bounds[low] = (ts_ms, ts_ms)
                insort(by_last, (ts_ms, low))  # spans mostly arrive in time order: near the end, a short move
            else:
                first, last = old
                if ts_ms > last:
                    del by_last[bisect_left(by_last, (last, low))]
                    insort(by_last, (ts_ms, low))
                    last = ts_ms
                first = min(first, ts_ms)
                bounds[low] = (first, last)
                self._spread = max(self._spread, last - first)
            if r.service is not None:
                self._members.setdefault(r.service, set()).add(low)

    def close(self) -> None:
        self.db.close()

    # --- writes ----------------------------------------------------------------------------

    def add(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        db = self.db
        db.execute("BEGIN")
        evicted: list[str] = []
        try:
            if self.max_spans:
                evicted = self._evict(len(rows))
            db.executemany(
                "INSERT INTO spans(trace_low, trace_id, ts, ts_ms, service, json) VALUES (?,?,?,?,?,?)",
                [(_low(r.trace_id), r.trace_id, r.timestamp, r.timestamp // 1000, r.service, r.json) for r in rows],
            )
            db.executemany(
                "INSERT OR IGNORE INTO names VALUES (?,?,?)",
                [(r.service, kind, value) for r in rows if r.service is not None for kind, value in r.names],
            )
            db.executemany("INSERT OR IGNORE INTO autocomplete VALUES (?,?)", [t for r in rows for t in r.tags])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._load_index()
            raise
        self._count += len(rows)
        self._index(rows, evicted)

    def _evict(self, incoming: int) -> list[str]:
        """``InMemoryStorage.evictToRecoverSpans``: drop whole traces, the one holding the
        oldest span timestamp first, until the new spans fit; services left with no trace lose
        their name lists. The evicted low ids, for ``_index`` once committed."""
        excess = self._count + incoming - self.max_spans
        evicted: list[str] = []
        evicted_services: set[str] = set()
        while excess > 0:
            oldest = self.db.execute("SELECT trace_low FROM spans ORDER BY ts_ms, trace_low LIMIT 1").fetchone()
            if oldest is None:
                break
            services = self.db.execute("SELECT DISTINCT service FROM spans WHERE trace_low=?", oldest).fetchall()
            evicted_services.update(s for (s,) in services if s is not None)
            deleted = self.db.execute("DELETE FROM spans WHERE trace_low=?", oldest).rowcount
            excess -= deleted
            self._count -= deleted
            evicted.append(oldest[0])
        gone = set(evicted)
        for service in evicted_services:
            # (any() stops at the first trace left, where a set difference would copy them all)
            if not any(low not in gone for low in self._members.get(service, ())):
                self.db.execute("DELETE FROM names WHERE service=?", (service,))
        return evicted

    # --- reads -----------------------------------------------------------------------------

    def trace(self, low: str) -> list[tuple[int, str]]:
        """``(timestamp ms, json)`` of every span under a low trace id, in arrival order."""
        return self.db.execute("SELECT ts_ms, json FROM spans WHERE trace_low=? ORDER BY rowid", (low,)).fetchall()

    def traces(self, lows: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
        wanted = list(dict.fromkeys(lows))
        out: dict[str, list[tuple[int, str]]] = {low: [] for low in wanted}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for low, ts_ms, text in self.db.execute(
                f"SELECT trace_low, ts_ms, json FROM spans WHERE trace_low IN ({marks}) ORDER BY rowid", chunk
            ):
                out[low].append((ts_ms, text))
        return out

    def trace_ids_by_time(self, begin_ms: int, end_ms: int, service: str | None = None) -> list[str]:
        """Low trace ids with a span timestamp in ``[begin_ms, end_ms]``, newest first by that
        timestamp, then by id descending (``TIMESTAMP_DESCENDING``); with ``service``, only the
        traces that service took part in (any of its spans, at any time).

        The timestamp a trace is ordered by is its last one *inside* the window: the trace's last
        span when that is in it (the bisected slice of ``_by_last``), else, for the few traces
        that straddle ``end_ms`` (last span after it, first at or before it), asked of SQLite."""
        members: set[str] | None = None
        if service is not None:
            members = self._members.get(service)
            if not members:
                return []
        by_last = self._by_last
        lo = bisect_left(by_last, (begin_ms,))
        hi = bisect_right(by_last, (end_ms, "\U0010ffff"))
        # Straddling traces end within _spread of end_ms.
        straddle_hi = bisect_right(by_last, (end_ms + self._spread, "\U0010ffff"), lo=hi) if self._spread else hi
        extra: list[tuple[int, str]] = []
        for _, low in by_last[hi:straddle_hi]:
            if self._bounds[low][0] <= end_ms and (members is None or low in members):
                (m,) = self.db.execute("SELECT max(ts_ms) FROM spans WHERE trace_low=? AND ts_ms BETWEEN ? AND ?",
                                       (low, begin_ms, end_ms)).fetchone()
                if m is not None:
                    extra.append((m, low))
        window = by_last[lo:hi]
        if extra:
            # Rare (an endTs in the past, cutting through traces): merge by (timestamp, id) descending.
            keyed = window if members is None else [e for e in window if e[1] in members]
            return [low for _, low in sorted(keyed + extra, reverse=True)]
        window.reverse()
        if members is None:
            return [low for _, low in window]
        return [low for _, low in window if low in members]

    def services(self) -> list[str]:
        # Python's code-point order is SQLite's BINARY (UTF-8 byte) order.
        return sorted(self._members)

    def names(self, service: str, kind: str) -> list[str]:
        return [v for (v,) in self.db.execute("SELECT value FROM names WHERE service=? AND kind=? ORDER BY value", (service, kind))]

    def names_like(self, service: str, prefix: str) -> list[tuple[str, str]]:
        """``(kind, value)`` pairs under a service whose kind starts with ``prefix``."""
        return self.db.execute(
            "SELECT kind, value FROM names WHERE service=? AND kind >= ? AND kind < ? ORDER BY kind, value",
            (service, prefix, prefix + "\uffff"),
        ).fetchall()

    def autocomplete(self, key: str) -> list[str]:
        return [v for (v,) in self.db.execute("SELECT value FROM autocomplete WHERE key=? ORDER BY value", (key,))]

    def span_count(self) -> int:
        return self._count


def _low(trace_id: str) -> str:
    return trace_id[16:] if len(trace_id) == 32 else trace_id
