"""Refresh: making acknowledged documents searchable, as ES's refresh does — in a process of its
own, so that FTS5 indexing (the larger half of a write) runs on another core than the requests
(SQLite's allocator mutex and the GIL would make two threads of one process take turns).

The refresher is the only writer of the terms database (``x``); it only reads the documents
database (WAL snapshots: everything it sees is committed). One refresh, in one transaction of
``x``:

1. drop the FTS5 tables of deleted indices (``es_dropped``; done ones are listed in
   ``x.fts_dropped`` for the node to purge);
2. remove the terms of documents deleted or replaced since (``es_gone``; the last id applied is
   kept in ``x.fts_meta`` in the same transaction, so each is applied once);
3. per index, ``INSERT INTO x.f<num> … SELECT … FROM d<num> WHERE rowid > hwm`` and move the
   index's high-water mark in ``x.fts_state``.

A crash anywhere leaves a state the next refresh completes. The node reads the marks back
(:meth:`Store.load_refreshed`) and purges what was applied.

Control: the node writes ``refresh all`` or ``refresh <num> …`` lines to the child's stdin and
waits for ``done``; without them, each index is refreshed once its ``index.refresh_interval``
(1s by default, ``-1`` never) has passed since its last refresh.
"""

from __future__ import annotations

import os
import select
import sqlite3
import sys
import time

import orjson

from sluice.lab.backends.elasticsearch import analysis

COLS = ", ".join(analysis.COLUMNS)
GONE_COLS = COLS
TICK = 0.2


def text_values(paths: dict[int, str]) -> str:
    """SQL for ``k, t1 … t32`` of a stored document: a row marked ``_x = 0`` holds its text
    values in ``_t`` (a JSON array, index j for column j); any other row holds in ``_x`` how many
    text columns its index had when it was written, and its text is read from ``_src`` at the
    fields' paths (the same on every call: a column's field never changes, so a refresh and a
    later delete compute the same values)."""
    out = ["_k"]
    for j in range(1, analysis.TEXT_COLUMNS + 1):
        path = paths.get(j)
        if path is None:
            out.append(f"CASE WHEN _x = 0 THEN json_extract(_t, '$[{j}]') END")
        else:
            quoted = path.replace("'", "''")
            out.append(f"CASE WHEN _x = 0 THEN json_extract(_t, '$[{j}]') WHEN _x >= {j} THEN json_extract(_src, '{quoted}') END")
    return ", ".join(out)


def _paths(db: sqlite3.Connection, num: int) -> dict[int, str]:
    from sluice.lab.backends.elasticsearch.mapping import Mapping

    row = db.execute("SELECT mapping, layout FROM es_indices WHERE num = ?", (num,)).fetchone()
    return Mapping(orjson.loads(row[0]), orjson.loads(row[1])).source_paths() if row else {}


def checkpoint(db: sqlite3.Connection) -> None:
    for schema in ("main", "x"):
        try:
            db.execute(f"PRAGMA {schema}.wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass


def connect(main_path: str, terms_path: str) -> sqlite3.Connection:
    db = sqlite3.connect(main_path, isolation_level=None, check_same_thread=False, timeout=60.0)
    db.execute("ATTACH DATABASE ? AS x", (terms_path,))
    for schema in ("main", "x"):
        db.execute(f"PRAGMA {schema}.synchronous=NORMAL")
        db.execute(f"PRAGMA {schema}.cache_size=-65536")
        db.execute(f"PRAGMA {schema}.wal_autocheckpoint=8192")
    return db


def refresh_once(db: sqlite3.Connection, nums: set[int] | None = None) -> list[int]:
    """One refresh (of ``nums``, or of every index); the indices refreshed."""
    done: list[int] = []
    db.execute("BEGIN")
    try:
        refreshed = dict(db.execute("SELECT num, hwm FROM x.fts_state").fetchall())
        finished = {n for (n,) in db.execute("SELECT num FROM x.fts_dropped")}
        for (num,) in db.execute("SELECT num FROM es_dropped").fetchall():
            if num in finished:
                continue
            db.execute(f"DROP TABLE IF EXISTS x.v{num}")
            db.execute(f"DROP TABLE IF EXISTS x.f{num}")
            db.execute("DELETE FROM x.fts_state WHERE num = ?", (num,))
            db.execute("INSERT OR IGNORE INTO x.fts_dropped(num) VALUES (?)", (num,))
            refreshed.pop(num, None)
        row = db.execute("SELECT v FROM x.fts_meta WHERE k = 'gone'").fetchone()
        applied = int(row[0]) if row else 0
        top_gone = int(db.execute("SELECT coalesce(max(id), ?) FROM es_gone", (applied,)).fetchone()[0])
        if top_gone > applied:
            for (num,) in db.execute("SELECT DISTINCT num FROM es_gone WHERE id > ? AND id <= ?", (applied, top_gone)).fetchall():
                if refreshed.get(num, 0) == 0:
                    continue
                db.execute(f"INSERT INTO x.f{num}(f{num}, rowid, {COLS}) SELECT 'delete', rowid_, {GONE_COLS} FROM es_gone "
                           "WHERE num = ? AND id > ? AND id <= ? AND rowid_ <= ? ORDER BY id", (num, applied, top_gone, refreshed[num]))
            db.execute("INSERT OR REPLACE INTO x.fts_meta(k, v) VALUES ('gone', ?)", (top_gone,))
        for (num,) in db.execute("SELECT num FROM es_indices").fetchall():
            if nums is not None and num not in nums:
                continue
            hwm = refreshed.get(num, 0)
            top = int(db.execute(f"SELECT coalesce(max(rowid), 0) FROM d{num}").fetchone()[0])
            if top <= hwm:
                continue
            if hwm == 0:
                db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS x.f{num} USING fts5({COLS}, content='', "
                           f"tokenize=\"{analysis.TOKENIZE}\")")
                db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS x.v{num} USING fts5vocab(f{num}, 'col')")
                db.execute(f"INSERT INTO x.f{num}(f{num}, rank) VALUES ('automerge', 8)")  # fewer merges while loading
            db.execute(f"INSERT INTO x.f{num}(rowid, {COLS}) SELECT rowid, {text_values(_paths(db, num))} FROM d{num} "
                       "WHERE rowid > ? AND rowid <= ? ORDER BY rowid", (hwm, top))
            db.execute("INSERT OR REPLACE INTO x.fts_state(num, hwm) VALUES (?, ?)", (num, top))
            done.append(num)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return done


def _intervals(db: sqlite3.Connection) -> dict[int, float | None]:
    from sluice.lab.backends.elasticsearch.store import parse_interval

    out: dict[int, float | None] = {}
    for num, settings in db.execute("SELECT num, settings FROM es_indices").fetchall():
        out[num] = parse_interval(str(orjson.loads(settings).get("index.refresh_interval", "1s")))
    return out


def serve(main_path: str, terms_path: str) -> int:
    """The child process: periodic refreshes, and those the node asks for on stdin."""
    db = connect(main_path, terms_path)
    last: dict[int, float] = {}
    intervals: dict[int, float | None] = {}
    checked = 0.0
    stdin = sys.stdin.buffer
    buf = b""
    while True:
        ready, _, _ = select.select([stdin], [], [], TICK)
        if ready:
            chunk = os.read(stdin.fileno(), 65536)
            if not chunk:
                return 0
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                words = line.decode().split()
                if not words or words[0] != "refresh":
                    continue
                nums = None if words[1:] in ([], ["all"]) else {int(w) for w in words[1:]}
                try:
                    for num in refresh_once(db, nums):
                        last[num] = time.monotonic()
                    checkpoint(db)
                    sys.stdout.write("done\n")
                except sqlite3.Error as exc:
                    sys.stdout.write(f"error {exc}\n")
                sys.stdout.flush()
            continue
        now = time.monotonic()
        if now - checked > 1.0:
            intervals = _intervals(db)
            checked = now
        due = {n for n, iv in intervals.items() if iv is not None and now - last.get(n, 0.0) >= iv}
        if not due:
            continue
        try:
            if refresh_once(db, due):
                checkpoint(db)
            for num in due:
                last[num] = now
        except sqlite3.Error as exc:
            sys.stderr.write(f"refresh failed: {exc}\n")


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2]))
