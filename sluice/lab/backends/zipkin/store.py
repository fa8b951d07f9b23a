"""The span store: one SQLite file, spans kept as their V2 JSON with the columns the queries
select on, behind the narrow interface the two query APIs use (a real Zipkin storage or
Jaeger's could stand behind the same calls).

The indexes follow what zipkin2's ``InMemoryStorage`` keeps: spans by low 64 bits of the trace
id, by timestamp (milliseconds, as its ``TraceIdTimestamp``), by local service; the service →
span name / remote service name lists (``names``); the values of ``AUTOCOMPLETE_KEYS`` tags.
Spans are kept in arrival order (``rowid``), which is the order a trace's spans are answered in.

Deliberate difference: the real images keep spans in memory (``STORAGE_TYPE=mem``, Jaeger's
``memory`` store) and lose them on restart; this file survives a restart of the service while
the lab runs. ``MEM_MAX_SPANS`` (500000) is honoured: the oldest trace goes first.

One connection, used only from the server's single store thread (``check_same_thread`` off
because that thread is the executor's, not the one that opened it).
"""

from __future__ import annotations

import os
import sqlite3
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
CREATE INDEX IF NOT EXISTS spans_by_service ON spans(service, trace_low);
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

    def close(self) -> None:
        self.db.close()

    # --- writes ----------------------------------------------------------------------------

    def add(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        db = self.db
        db.execute("BEGIN")
        try:
            if self.max_spans:
                self._evict(len(rows))
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
            raise

    def _evict(self, incoming: int) -> None:
        """``InMemoryStorage.evictToRecoverSpans``: drop whole traces, the one holding the
        oldest span timestamp first, until the new spans fit; services left with no trace lose
        their name lists."""
        (count,) = self.db.execute("SELECT count(*) FROM spans").fetchone()
        excess = count + incoming - self.max_spans
        evicted_services: set[str] = set()
        while excess > 0:
            oldest = self.db.execute("SELECT trace_low FROM spans ORDER BY ts_ms, trace_low LIMIT 1").fetchone()
            if oldest is None:
                break
            services = self.db.execute("SELECT DISTINCT service FROM spans WHERE trace_low=?", oldest).fetchall()
            evicted_services.update(s for (s,) in services if s is not None)
            excess -= self.db.execute("DELETE FROM spans WHERE trace_low=?", oldest).rowcount
        for service in evicted_services:
            if self.db.execute("SELECT 1 FROM spans WHERE service=? LIMIT 1", (service,)).fetchone() is None:
                self.db.execute("DELETE FROM names WHERE service=?", (service,))

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
        traces that service took part in (any of its spans, at any time)."""
        if service is None:
            sql = "SELECT trace_low, max(ts_ms) m FROM spans WHERE ts_ms BETWEEN ? AND ? GROUP BY trace_low ORDER BY m DESC, trace_low DESC"
            args: tuple[object, ...] = (begin_ms, end_ms)
        else:
            sql = (
                "SELECT trace_low, max(ts_ms) m FROM spans WHERE ts_ms BETWEEN ? AND ? AND trace_low IN "
                "(SELECT trace_low FROM spans WHERE service=?) GROUP BY trace_low ORDER BY m DESC, trace_low DESC"
            )
            args = (begin_ms, end_ms, service)
        return [low for low, _ in self.db.execute(sql, args)]

    def services(self) -> list[str]:
        return [s for (s,) in self.db.execute("SELECT DISTINCT service FROM spans WHERE service IS NOT NULL ORDER BY service")]

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
        (n,) = self.db.execute("SELECT count(*) FROM spans").fetchone()
        return int(n)


def _low(trace_id: str) -> str:
    return trace_id[16:] if len(trace_id) == 32 else trace_id
