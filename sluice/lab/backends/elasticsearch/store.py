"""The embedded store: two SQLite databases (WAL) in ``path.data``, behind the narrow
interface the HTTP side uses (index admin, bulk writes, refresh, reader connections, named
objects).

``sluice-elasticsearch.sqlite3`` (written by request threads, one at a time)::

    es_meta(k, v)                cluster uuid, node id
    es_indices(num, name, …)     one row per index: settings, mapping + layout, aliases, counters
    es_objects(kind, name, body) legacy/composable/component templates, ILM policies
    d<num>                       documents: rowid, _id (unique), _ver, _seq, _src, their FTS5
                                 values (_k, _t1…_t32) and doc values c<field>…
    es_gone(id, num, rowid, …)   FTS5 values of searchable documents since deleted or replaced
    es_dropped(num)              deleted indices whose FTS5 tables are still to drop

``sluice-elasticsearch-terms.sqlite3`` (attached as ``x``; written only by :mod:`.refresh`)::

    f<num>, v<num>               FTS5 terms of the documents (contentless; k, t1…t32), vocabulary
    fts_state(num, hwm)          documents with rowid <= hwm are in f<num>
    fts_meta(k, v)               the last es_gone row applied

Why two files: SQLite has one writer per database file, and FTS5 indexing is the larger half of
a write. With the terms in their own file, refreshes (one ``INSERT … SELECT`` in C, without the
GIL) run on the other core while requests keep writing documents: ES's near-real-time model —
acknowledged writes are durable at once and searchable after the next refresh. Rowids only
grow, so a term left behind by a crash between the two files can never describe another
document (searches join the terms back to ``d<num>``).

Concurrency: one writer per file; any number of readers, each thread with its own connection,
reading WAL snapshots. Index metadata is published as immutable :class:`IndexMeta` snapshots
after the commit that made them, and the refreshed high-water marks after the refresh's commit.

Deliberate difference: ``docs.deleted`` is always 0 (no segments to merge); a replaced document
is unsearchable (not its old version) until the next refresh.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import orjson

from sluice.lab.backends.elasticsearch import analysis
from sluice.lab.backends.elasticsearch.errors import EsError, index_not_found
from sluice.lab.backends.elasticsearch.mapping import Mapping

DB_FILE = "sluice-elasticsearch.sqlite3"
TERMS_FILE = "sluice-elasticsearch-terms.sqlite3"
GONE_COLS = ", ".join(analysis.COLUMNS)
"""``es_gone`` keeps the FTS5 values ``k, t1 … t32`` of a buried document."""
VERSION_CREATED = "7140299"
DV_KINDS = ("keyword", "long", "double", "date", "bool")
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def es_uuid() -> str:
    """A random 22-character base64url id, as ES's ``UUIDs.randomBase64UUID``."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class IndexMeta:
    name: str
    num: int
    uuid: str
    created: int
    settings: dict[str, Any]
    """Flat ``index.*`` settings, values as strings (as ES keeps them)."""
    mapping: Mapping
    aliases: dict[str, dict[str, Any]]
    docs: int
    bytes: int
    seq: int
    """The last sequence number used (-1: none yet)."""
    next_rowid: int
    """Never reused (see the module's notes)."""
    columns: frozenset[int]

    @property
    def hidden(self) -> bool:
        return str(self.settings.get("index.hidden", "false")).lower() == "true"

    @property
    def shards(self) -> int:
        return int(self.settings.get("index.number_of_shards", "1"))

    @property
    def replicas(self) -> int:
        auto = str(self.settings.get("index.auto_expand_replicas", "false"))
        if auto not in ("false", ""):
            return 0  # a single node: "0-1" / "0-all" expand to no replica
        return int(self.settings.get("index.number_of_replicas", "1"))

    @property
    def health(self) -> str:
        return "green" if self.replicas == 0 else "yellow"

    @property
    def store_bytes(self) -> int:
        # Deliberate difference: an estimate (an empty Lucene index's 208 bytes plus the stored
        # sources), not the bytes of the SQLite pages.
        return 208 + self.bytes

    @property
    def total_fields_limit(self) -> int:
        return int(self.settings.get("index.mapping.total_fields.limit", "1000"))

    @property
    def refresh_interval(self) -> float | None:
        """Seconds between automatic refreshes (``index.refresh_interval``; None: ``-1``, never)."""
        return parse_interval(str(self.settings.get("index.refresh_interval", "1s")))


def parse_interval(text: str) -> float | None:
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not m:
        return 1.0
    value = float(m.group(1))
    if value < 0:
        return None
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}[m.group(2) or "ms"]


class Store:
    def __init__(self, data_dir: str) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = data_dir
        self.path = os.path.join(data_dir, DB_FILE)
        self.terms_path = os.path.join(data_dir, TERMS_FILE)
        self._lockfile = open(os.path.join(data_dir, "node.lock"), "a+")  # noqa: SIM115 (held for the store's life)
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise OSError(f"failed to obtain node locks, tried [{data_dir}]; maybe another node is using the same data path") from None
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.db = self.connect()
        self.db.executescript(
            """
            PRAGMA journal_mode=WAL;
            PRAGMA x.journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS es_meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS es_indices(num INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, uuid TEXT NOT NULL,
                created INTEGER NOT NULL, settings TEXT NOT NULL, mapping TEXT NOT NULL, layout TEXT NOT NULL,
                aliases TEXT NOT NULL, docs INTEGER NOT NULL, bytes INTEGER NOT NULL, seq INTEGER NOT NULL,
                next_rowid INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS es_objects(kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY(kind, name));
            CREATE TABLE IF NOT EXISTS es_dropped(num INTEGER PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS x.fts_state(num INTEGER PRIMARY KEY, hwm INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS x.fts_meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS x.fts_dropped(num INTEGER PRIMARY KEY);
            """
        )
        self.db.execute(f"CREATE TABLE IF NOT EXISTS es_gone(id INTEGER PRIMARY KEY AUTOINCREMENT, num INTEGER NOT NULL, "
                        f"rowid_ INTEGER NOT NULL, {GONE_COLS})")
        self.cluster_uuid = self._meta_value("cluster_uuid", es_uuid)
        self.node_id = self._meta_value("node_id", es_uuid)
        self.created_ms = int(self._meta_value("created", lambda: int(time.time() * 1000)))
        self._indices: dict[str, IndexMeta] = {}
        cols = "num, name, uuid, created, settings, mapping, layout, aliases, docs, bytes, seq, next_rowid"
        for row in self.db.execute(f"SELECT {cols} FROM es_indices"):
            meta = self._load_meta(row)
            self._indices[meta.name] = meta
        self.refreshed: dict[int, int] = dict(self.db.execute("SELECT num, hwm FROM x.fts_state").fetchall())
        """Index number → documents with rowid up to this are searchable (published after each
        refresh's commit; replaced whole, never mutated)."""
        row = self.db.execute("SELECT v FROM x.fts_meta WHERE k = 'gone'").fetchone()
        self.gone_applied = int(row[0]) if row else 0
        self._objects: dict[str, dict[str, Any]] = {}
        for kind, name, body in self.db.execute("SELECT kind, name, body FROM es_objects"):
            self._objects.setdefault(kind, {})[name] = orjson.loads(body)
        self._deferred: list[tuple[list[IndexMeta], tuple[str, ...]]] | None = None
        self._refresh_lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._own_refresh_db: sqlite3.Connection | None = None
        self._watch_db: sqlite3.Connection | None = None
        self._id_seq = 0
        self._id_node = secrets.token_bytes(6)
        self.closed = False

    def connect(self) -> sqlite3.Connection:
        """A connection to the documents database with the terms database attached as ``x``."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60.0)
        db.execute("ATTACH DATABASE ? AS x", (self.terms_path,))
        for schema in ("main", "x"):
            db.execute(f"PRAGMA {schema}.synchronous=NORMAL")
            db.execute(f"PRAGMA {schema}.cache_size=-65536")
            db.execute(f"PRAGMA {schema}.mmap_size=1073741824")
            # The refresher process checkpoints (passively) after each refresh, off this core.
            db.execute(f"PRAGMA {schema}.wal_autocheckpoint=0")
        db.execute("PRAGMA temp_store=MEMORY")
        db.create_function("regexp", 2, _regexp, deterministic=True)
        return db

    def _meta_value(self, key: str, make: Any) -> str:
        row = self.db.execute("SELECT v FROM es_meta WHERE k = ?", (key,)).fetchone()
        if row:
            return str(row[0])
        value = str(make())
        self.db.execute("INSERT INTO es_meta(k, v) VALUES (?, ?)", (key, value))
        return value

    def _load_meta(self, row: tuple[Any, ...]) -> IndexMeta:
        num, name, uuid, created, settings, mapping, layout, aliases, docs, size, seq, next_rowid = row
        cols = frozenset(
            int(c[1][1:]) for c in self.db.execute(f"PRAGMA table_info(d{num})") if re.fullmatch(r"c\d+", c[1])
        )
        last = self.db.execute(f"SELECT max(rowid) FROM d{num}").fetchone()[0] or 0
        m = Mapping(orjson.loads(mapping), orjson.loads(layout))
        settings_d = orjson.loads(settings)
        m.total_fields_limit = int(settings_d.get("index.mapping.total_fields.limit", "1000"))
        return IndexMeta(name, num, uuid, created, settings_d, m, orjson.loads(aliases), docs, size, seq, max(next_rowid, last + 1),
                         cols)

    def close(self) -> None:
        with self._refresh_lock:
            child, self._child = self._child, None
            if child is not None:
                assert child.stdin is not None
                child.stdin.close()
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                if child.stdout is not None:
                    child.stdout.close()
            for extra in (self._own_refresh_db, self._watch_db):
                if extra is not None:
                    extra.close()
            self._own_refresh_db = self._watch_db = None
        with self._lock:
            if self.closed:
                return
            self.closed = True
            with self._readers_lock:
                for r in self._readers:
                    r.close()
                self._readers.clear()
            for schema in ("main", "x"):
                try:
                    self.db.execute(f"PRAGMA {schema}.wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass
            self.db.close()
            self._lockfile.close()

    # --- snapshots and readers ----------------------------------------------------------------

    def indices(self) -> dict[str, IndexMeta]:
        return self._indices

    def get_index(self, name: str) -> IndexMeta:
        meta = self._indices.get(name)
        if meta is None:
            raise index_not_found(name)
        return meta

    def hwm(self, meta: IndexMeta) -> int:
        return self.refreshed.get(meta.num, 0)

    def reader(self) -> sqlite3.Connection:
        """This thread's read connection."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            if self.closed:
                raise EsError(503, "node_closed_exception", "node closed")
            db = self.connect()
            db.execute("PRAGMA query_only=1")
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several statements."""
        db = self.reader()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    # --- writing ------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The writer's transaction on the documents database (deferred: ``BEGIN IMMEDIATE``
        would lock the terms database too). Snapshots :meth:`publish`\\ ed inside it take
        effect after the COMMIT and before the lock is released: readers never see uncommitted
        tables, and the next writer always sees this one's indices."""
        with self._lock:
            if self.closed:
                raise EsError(503, "node_closed_exception", "node closed")
            self.db.execute("BEGIN")
            self._deferred = []
            try:
                yield self.db
            except BaseException:
                self._deferred = None
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            deferred, self._deferred = self._deferred, None
            for metas, removed in deferred:
                self._apply(metas, removed)

    @property
    def write_lock(self) -> threading.RLock:
        return self._lock

    def publish(self, metas: list[IndexMeta], removed: tuple[str, ...] = ()) -> None:
        with self._lock:
            if self._deferred is not None:
                self._deferred.append((metas, removed))
            else:
                self._apply(metas, removed)

    def _apply(self, metas: list[IndexMeta], removed: tuple[str, ...]) -> None:
        with self._lock:
            fresh = dict(self._indices)
            for name in removed:
                fresh.pop(name, None)
            for meta in metas:
                fresh[meta.name] = meta
            self._indices = fresh

    def new_id(self) -> str:
        """A 20-character base64url id. Deliberate difference from ES's time-based UUIDs: the
        byte layout (milliseconds, then a sequence, then a random node part) keeps new ids in
        ascending order, which is what the ``_id`` B-tree wants."""
        self._id_seq = (self._id_seq + 1) & 0xFFFFFF
        ms = int(time.time() * 1000)
        raw = ms.to_bytes(6, "big") + self._id_seq.to_bytes(3, "big") + self._id_node
        # base64.urlsafe_b64encode without its two Python-level wrappers (one id per document).
        return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).decode()

    def create_tables(self, db: sqlite3.Connection, num: int) -> None:
        # _x, _k, _t: what the refresher indexes (see refresh.text_values).
        db.execute(f"CREATE TABLE d{num}(rowid INTEGER PRIMARY KEY, _id TEXT NOT NULL, _ver INTEGER NOT NULL, "
                   "_seq INTEGER NOT NULL, _src BLOB NOT NULL, _x INTEGER NOT NULL, _k TEXT NOT NULL, _t BLOB)")
        db.execute(f"CREATE UNIQUE INDEX d{num}_id ON d{num}(_id)")

    def add_columns(self, db: sqlite3.Connection, meta: IndexMeta, mapping: Mapping) -> frozenset[int]:
        """``ALTER TABLE`` for fields with doc values that have no column yet (a B-tree index for
        dates, the range queries' way in). Returns the new column set."""
        cols = set(meta.columns)
        for f in mapping.fields.values():
            if f.num and f.doc_values and f.kind in DV_KINDS and f.num not in cols:
                db.execute(f"ALTER TABLE d{meta.num} ADD COLUMN c{f.num}")
                if f.kind == "date":
                    db.execute(f"CREATE INDEX d{meta.num}_c{f.num} ON d{meta.num}(c{f.num})")
                cols.add(f.num)
        return frozenset(cols)

    def insert_index(self, db: sqlite3.Connection, name: str, settings: dict[str, Any], mapping: Mapping,
                     aliases: dict[str, dict[str, Any]]) -> IndexMeta:
        num = int(db.execute("SELECT coalesce(max(CAST(v AS INTEGER)), 0) FROM es_meta WHERE k = 'next_index'").fetchone()[0])
        num = max(num, int(db.execute("SELECT coalesce(max(num), 0) FROM es_indices").fetchone()[0])) + 1
        db.execute("INSERT OR REPLACE INTO es_meta(k, v) VALUES ('next_index', ?)", (str(num),))
        uuid = settings["index.uuid"]
        created = int(settings["index.creation_date"])
        mapping.total_fields_limit = int(settings.get("index.mapping.total_fields.limit", "1000"))
        self.create_tables(db, num)
        meta = IndexMeta(name, num, uuid, created, settings, mapping, aliases, 0, 0, -1, 1, frozenset())
        meta = replace(meta, columns=self.add_columns(db, meta, mapping))
        db.execute(
            "INSERT INTO es_indices(num, name, uuid, created, settings, mapping, layout, aliases, docs, bytes, seq, next_rowid) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, -1, 1)",
            (num, name, uuid, created, _j(settings), _j(mapping.to_json()), _j(mapping.layout()), _j(aliases)),
        )
        return meta

    def save_meta(self, db: sqlite3.Connection, meta: IndexMeta, *, mapping_changed: bool = False) -> None:
        if mapping_changed:
            db.execute(
                "UPDATE es_indices SET docs = ?, bytes = ?, seq = ?, next_rowid = ?, mapping = ?, layout = ? WHERE num = ?",
                (meta.docs, meta.bytes, meta.seq, meta.next_rowid, _j(meta.mapping.to_json()), _j(meta.mapping.layout()), meta.num),
            )
        else:
            db.execute("UPDATE es_indices SET docs = ?, bytes = ?, seq = ?, next_rowid = ? WHERE num = ?",
                       (meta.docs, meta.bytes, meta.seq, meta.next_rowid, meta.num))

    def bury(self, db: sqlite3.Connection, meta: IndexMeta, rowid: int) -> None:
        """Before a searchable document's row goes: keep its FTS5 values for the refresher, which
        removes its terms (FTS5's ``delete`` needs them exactly)."""
        if rowid <= self.hwm(meta):
            from sluice.lab.backends.elasticsearch.refresh import text_values

            values = text_values(meta.mapping.source_paths())
            db.execute(f"INSERT INTO es_gone(num, rowid_, {GONE_COLS}) "
                       f"SELECT ?, rowid, {values} FROM d{meta.num} WHERE rowid = ?", (meta.num, rowid))

    def checkpoint_all(self) -> None:
        with self._lock:
            for schema in ("main", "x"):
                self.db.execute(f"PRAGMA {schema}.wal_checkpoint(PASSIVE)")

    def start_refresher(self) -> None:
        """Run refreshes in a child process (see :mod:`.refresh`); without one, :meth:`refresh`
        runs them in the calling thread (and nothing refreshes periodically)."""
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._child = subprocess.Popen(
            [sys.executable, "-m", "sluice.lab.backends.elasticsearch.refresh", self.path, self.terms_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )

    def refresh(self, names: list[str] | None = None) -> None:
        """Make what was written so far searchable (of the named indices, or all), then read the
        new high-water marks back."""
        nums = None if names is None else {self._indices[n].num for n in names if n in self._indices}
        with self._refresh_lock:
            child = self._child
            if child is not None and child.poll() is None:
                assert child.stdin is not None and child.stdout is not None
                words = "all" if nums is None else " ".join(str(n) for n in sorted(nums))
                if nums is not None and not nums:
                    return
                child.stdin.write(f"refresh {words}\n".encode())
                child.stdin.flush()
                answer = child.stdout.readline().decode().strip()
                if answer != "done":
                    raise EsError(500, "refresh_failed_engine_exception", f"refresh failed: {answer or 'refresher exited'}")
            else:
                from sluice.lab.backends.elasticsearch.refresh import checkpoint, refresh_once

                if self._own_refresh_db is None:
                    self._own_refresh_db = self.connect()
                refresh_once(self._own_refresh_db, nums)
                checkpoint(self._own_refresh_db)
        self.load_refreshed()

    def load_refreshed(self) -> None:
        """Read the refresher's marks: publish the searchable high-water marks, and purge the
        deletions and dropped indices it has applied."""
        with self._refresh_lock:
            if self.closed:
                return
            if self._watch_db is None:
                self._watch_db = self.connect()
            db = self._watch_db
            db.execute("BEGIN")
            try:
                state = dict(db.execute("SELECT num, hwm FROM x.fts_state").fetchall())
                row = db.execute("SELECT v FROM x.fts_meta WHERE k = 'gone'").fetchone()
                dropped = [n for (n,) in db.execute("SELECT num FROM x.fts_dropped WHERE num IN (SELECT num FROM es_dropped)")]
            finally:
                db.execute("COMMIT")
            self.refreshed = state
            applied = int(row[0]) if row else 0
        if applied > self.gone_applied or dropped:
            with self.transaction() as wdb:
                wdb.execute("DELETE FROM es_gone WHERE id <= ?", (applied,))
                if dropped:
                    wdb.execute(f"DELETE FROM es_dropped WHERE num IN ({', '.join('?' * len(dropped))})", dropped)
            self.gone_applied = applied

    def searchable_docs(self, metas: list[IndexMeta]) -> dict[str, int]:
        """Index name → its documents as of the last refresh (what a search sees, and what ES's
        ``docs`` stats count: a document indexed since is not counted yet)."""
        out: dict[str, int] = {}
        tails: list[tuple[IndexMeta, int]] = []
        for meta in metas:
            hwm = self.hwm(meta)
            if hwm == 0:
                out[meta.name] = 0
            elif meta.next_rowid - 1 <= hwm:
                out[meta.name] = meta.docs  # all of this snapshot's rows are refreshed
            else:
                tails.append((meta, hwm))
        if tails:
            # The rows since the refresh are few (a refresh interval's worth): count those, in
            # one snapshot with the index's total.
            with self.read() as db:
                for meta, hwm in tails:
                    row = db.execute("SELECT docs FROM es_indices WHERE num = ?", (meta.num,)).fetchone()
                    if row is None:  # deleted meanwhile
                        out[meta.name] = 0
                        continue
                    tail = db.execute(f"SELECT count(*) FROM d{meta.num} WHERE rowid > ?", (hwm,)).fetchone()[0]
                    out[meta.name] = int(row[0]) - int(tail)
        return out

    def pending(self) -> list[IndexMeta]:
        refreshed = self.refreshed
        return [m for m in self._indices.values() if m.next_rowid - 1 > refreshed.get(m.num, 0)]

    def save_settings_aliases(self, db: sqlite3.Connection, meta: IndexMeta) -> None:
        db.execute("UPDATE es_indices SET settings = ?, aliases = ? WHERE num = ?", (_j(meta.settings), _j(meta.aliases), meta.num))

    def drop_index(self, db: sqlite3.Connection, meta: IndexMeta) -> None:
        db.execute(f"DROP TABLE IF EXISTS d{meta.num}")
        db.execute("DELETE FROM es_indices WHERE num = ?", (meta.num,))
        db.execute("INSERT OR IGNORE INTO es_dropped(num) VALUES (?)", (meta.num,))

    # --- named objects (templates, ILM policies) ------------------------------------------------

    def objects(self, kind: str) -> dict[str, Any]:
        return dict(self._objects.get(kind, {}))

    def put_object(self, kind: str, name: str, body: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO es_objects(kind, name, body) VALUES (?, ?, ?)", (kind, name, _j(body)))
            fresh = dict(self._objects)
            fresh[kind] = {**fresh.get(kind, {}), name: body}
            self._objects = fresh

    def delete_object(self, kind: str, name: str) -> bool:
        with self.transaction() as db:
            if name not in self._objects.get(kind, {}):
                return False
            db.execute("DELETE FROM es_objects WHERE kind = ? AND name = ?", (kind, name))
            fresh = dict(self._objects)
            fresh[kind] = {k: v for k, v in fresh.get(kind, {}).items() if k != name}
            self._objects = fresh
        return True

    def checkpoint(self) -> None:
        with self._lock:
            self.db.execute("PRAGMA main.wal_checkpoint(PASSIVE)")


def _j(v: Any) -> str:
    return orjson.dumps(v).decode()


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _regexp(pattern: str, value: Any) -> int:
    """SQL ``value REGEXP pattern``: a Lucene regular expression matches the whole value."""
    if value is None:
        return 0
    rx = _REGEX_CACHE.get(pattern)
    if rx is None:
        try:
            rx = re.compile(pattern, re.S)
        except re.error:
            rx = re.compile(re.escape(pattern))
        if len(_REGEX_CACHE) > 256:
            _REGEX_CACHE.clear()
        _REGEX_CACHE[pattern] = rx
    if isinstance(value, bytes):
        return int(any(isinstance(v, str) and rx.fullmatch(v) for v in orjson.loads(value)))
    return 1 if rx.fullmatch(str(value)) else 0
