"""Grafana's storage: SQLite at ``<paths.data>/grafana.db``, as Grafana itself keeps it.

A narrow interface (:class:`Store`) over three of Grafana's tables — ``data_source``,
``dashboard`` (folders are dashboards with ``is_folder``), ``dashboard_provisioning`` — and
login sessions (``user_auth_token``). Another database could stand behind the same methods.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS data_source (
  id INTEGER PRIMARY KEY AUTOINCREMENT, org_id INTEGER NOT NULL, version INTEGER NOT NULL,
  type TEXT NOT NULL, name TEXT NOT NULL, access TEXT NOT NULL, url TEXT NOT NULL,
  user TEXT NOT NULL DEFAULT '', database TEXT NOT NULL DEFAULT '',
  basic_auth INTEGER NOT NULL DEFAULT 0, basic_auth_user TEXT NOT NULL DEFAULT '',
  with_credentials INTEGER NOT NULL DEFAULT 0, is_default INTEGER NOT NULL DEFAULT 0,
  json_data TEXT NOT NULL DEFAULT '{}', secure_json_data TEXT NOT NULL DEFAULT '{}',
  read_only INTEGER NOT NULL DEFAULT 0, uid TEXT NOT NULL,
  created REAL NOT NULL, updated REAL NOT NULL,
  UNIQUE (org_id, name), UNIQUE (org_id, uid)
);
CREATE TABLE IF NOT EXISTS dashboard (
  id INTEGER PRIMARY KEY AUTOINCREMENT, org_id INTEGER NOT NULL, uid TEXT NOT NULL,
  slug TEXT NOT NULL, title TEXT NOT NULL, data TEXT NOT NULL, tags TEXT NOT NULL DEFAULT '[]',
  folder_id INTEGER NOT NULL DEFAULT 0, is_folder INTEGER NOT NULL DEFAULT 0,
  version INTEGER NOT NULL DEFAULT 1, created REAL NOT NULL, updated REAL NOT NULL,
  UNIQUE (org_id, uid)
);
CREATE TABLE IF NOT EXISTS dashboard_provisioning (
  id INTEGER PRIMARY KEY AUTOINCREMENT, dashboard_id INTEGER NOT NULL UNIQUE, name TEXT NOT NULL,
  external_id TEXT NOT NULL, check_sum TEXT NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS user_auth_token (
  id INTEGER PRIMARY KEY AUTOINCREMENT, user_login TEXT NOT NULL, auth_token TEXT NOT NULL UNIQUE,
  created_at REAL NOT NULL
);
"""


@dataclass
class DataSource:
    id: int
    uid: str
    org_id: int
    name: str
    type: str
    access: str
    url: str
    user: str = ""
    database: str = ""
    basic_auth: bool = False
    basic_auth_user: str = ""
    with_credentials: bool = False
    is_default: bool = False
    json_data: dict[str, Any] = field(default_factory=dict)
    secure_json_data: dict[str, str] = field(default_factory=dict)
    version: int = 1
    read_only: bool = False


@dataclass
class Dashboard:
    id: int
    uid: str
    org_id: int
    slug: str
    title: str
    data: dict[str, Any]
    tags: list[str]
    folder_id: int
    is_folder: bool
    version: int
    created: float
    updated: float
    provisioned_external_id: str = ""


def short_uid(*parts: str) -> str:
    """A 9-character uid like Grafana's generated ones, derived from ``parts`` so it stays the
    same across restarts and fresh lab folders."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    n = int.from_bytes(digest[:8], "big")
    out = ""
    for _ in range(9):
        n, r = divmod(n, len(alphabet))
        out += alphabet[r]
    return out


class Store:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def ping(self) -> bool:
        try:
            first: object = self._q("SELECT 1")[0][0]
            return first == 1
        except sqlite3.Error:
            return False

    # --- datasources ---------------------------------------------------------------------

    def upsert_datasource(self, ds: dict[str, Any]) -> DataSource:
        """Insert or update by (orgId, name), as datasource provisioning does."""
        now = time.time()
        org = int(ds.get("orgId") or 1)
        existing = self.datasource_by_name(ds["name"], org)
        values = (
            ds.get("type", ""),
            ds.get("access") or "proxy",
            ds.get("url") or "",
            ds.get("user") or "",
            ds.get("database") or "",
            int(bool(ds.get("basicAuth"))),
            ds.get("basicAuthUser") or "",
            int(bool(ds.get("withCredentials"))),
            int(bool(ds.get("isDefault"))),
            json.dumps(ds.get("jsonData") or {}),
            json.dumps(ds.get("secureJsonData") or {}),
            int(not ds.get("editable", False)),
        )
        with self._lock:
            if existing is None:
                uid = ds.get("uid") or short_uid("datasource", str(org), ds["name"])
                self._db.execute(
                    "INSERT INTO data_source (org_id, version, type, access, url, user, database, basic_auth,"
                    " basic_auth_user, with_credentials, is_default, json_data, secure_json_data, read_only,"
                    " name, uid, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (org, int(ds.get("version") or 1), *values, ds["name"], uid, now, now),
                )
            else:
                self._db.execute(
                    "UPDATE data_source SET version = version + 1, type=?, access=?, url=?, user=?, database=?,"
                    " basic_auth=?, basic_auth_user=?, with_credentials=?, is_default=?, json_data=?,"
                    " secure_json_data=?, read_only=?, uid=?, updated=? WHERE id=?",
                    (*values, ds.get("uid") or existing.uid, now, existing.id),
                )
        found = self.datasource_by_name(ds["name"], org)
        assert found is not None
        return found

    def delete_datasource(self, name: str, org: int = 1) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM data_source WHERE org_id=? AND name=?", (org, name)).rowcount > 0

    def datasources(self, org: int = 1) -> list[DataSource]:
        return [_ds(r) for r in self._q("SELECT * FROM data_source WHERE org_id=? ORDER BY name COLLATE NOCASE", (org,))]

    def datasource_by_id(self, id_: int, org: int = 1) -> DataSource | None:
        rows = self._q("SELECT * FROM data_source WHERE org_id=? AND id=?", (org, id_))
        return _ds(rows[0]) if rows else None

    def datasource_by_name(self, name: str, org: int = 1) -> DataSource | None:
        rows = self._q("SELECT * FROM data_source WHERE org_id=? AND name=?", (org, name))
        return _ds(rows[0]) if rows else None

    def datasource_by_uid(self, uid: str, org: int = 1) -> DataSource | None:
        rows = self._q("SELECT * FROM data_source WHERE org_id=? AND uid=?", (org, uid))
        return _ds(rows[0]) if rows else None

    # --- dashboards ----------------------------------------------------------------------

    def save_dashboard(
        self, data: dict[str, Any], *, uid: str, slug: str, folder_id: int = 0, is_folder: bool = False,
        provisioner: str = "", external_id: str = "", check_sum: str = "", org: int = 1,
    ) -> Dashboard:
        """Insert or update by uid; the version goes up when the content changes."""
        now = time.time()
        title = str(data.get("title", ""))
        tags = [str(t) for t in data.get("tags") or []]
        with self._lock:
            row = self._db.execute("SELECT id, data, version FROM dashboard WHERE org_id=? AND uid=?", (org, uid)).fetchone()
            if row is None:
                cur = self._db.execute(
                    "INSERT INTO dashboard (org_id, uid, slug, title, data, tags, folder_id, is_folder, version, created, updated)"
                    " VALUES (?,?,?,?,?,?,?,?,1,?,?)",
                    (org, uid, slug, title, "{}", json.dumps(tags), folder_id, int(is_folder), now, now),
                )
                id_, version = int(cur.lastrowid or 0), 1
            else:
                id_, version = int(row["id"]), int(row["version"])
                stored = json.loads(row["data"])
                stored.pop("id", None), stored.pop("uid", None), stored.pop("version", None)
                clean = {k: v for k, v in data.items() if k not in ("id", "uid", "version")}
                if stored != clean:
                    version += 1
            doc = {**data, "id": id_, "uid": uid, "version": version}
            self._db.execute(
                "UPDATE dashboard SET slug=?, title=?, data=?, tags=?, folder_id=?, is_folder=?, version=?, updated=?"
                " WHERE id=?",
                (slug, title, json.dumps(doc), json.dumps(tags), folder_id, int(is_folder), version, now, id_),
            )
            if provisioner:
                self._db.execute(
                    "INSERT INTO dashboard_provisioning (dashboard_id, name, external_id, check_sum, updated)"
                    " VALUES (?,?,?,?,?) ON CONFLICT(dashboard_id) DO UPDATE SET name=excluded.name,"
                    " external_id=excluded.external_id, check_sum=excluded.check_sum, updated=excluded.updated",
                    (id_, provisioner, external_id, check_sum, now),
                )
        found = self.dashboard_by_uid(uid, org)
        assert found is not None
        return found

    def delete_dashboard(self, id_: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM dashboard WHERE id=?", (id_,))
            self._db.execute("DELETE FROM dashboard_provisioning WHERE dashboard_id=?", (id_,))

    def provisioned(self, provisioner: str) -> dict[str, tuple[int, str]]:
        """external_id → (dashboard id, check_sum) for one provider."""
        rows = self._q("SELECT dashboard_id, external_id, check_sum FROM dashboard_provisioning WHERE name=?", (provisioner,))
        return {r["external_id"]: (int(r["dashboard_id"]), r["check_sum"]) for r in rows}

    def dashboard_by_uid(self, uid: str, org: int = 1) -> Dashboard | None:
        rows = self._q(_DASH_SELECT + " WHERE d.org_id=? AND d.uid=?", (org, uid))
        return _dash(rows[0]) if rows else None

    def dashboard_by_id(self, id_: int) -> Dashboard | None:
        rows = self._q(_DASH_SELECT + " WHERE d.id=?", (id_,))
        return _dash(rows[0]) if rows else None

    def dashboards(self, org: int = 1) -> list[Dashboard]:
        return [_dash(r) for r in self._q(_DASH_SELECT + " WHERE d.org_id=? ORDER BY d.title COLLATE NOCASE", (org,))]

    # --- sessions ------------------------------------------------------------------------

    def new_session(self, login: str) -> str:
        token = secrets.token_hex(16)
        with self._lock:
            self._db.execute(
                "INSERT INTO user_auth_token (user_login, auth_token, created_at) VALUES (?,?,?)",
                (login, hashlib.sha256(token.encode()).hexdigest(), time.time()),
            )
        return token

    def session_user(self, token: str) -> str | None:
        rows = self._q("SELECT user_login FROM user_auth_token WHERE auth_token=?", (hashlib.sha256(token.encode()).hexdigest(),))
        return str(rows[0][0]) if rows else None

    def end_session(self, token: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM user_auth_token WHERE auth_token=?", (hashlib.sha256(token.encode()).hexdigest(),))


_DASH_SELECT = (
    "SELECT d.*, COALESCE(p.external_id, '') AS external_id FROM dashboard d"
    " LEFT JOIN dashboard_provisioning p ON p.dashboard_id = d.id"
)


def _ds(r: sqlite3.Row) -> DataSource:
    return DataSource(
        id=int(r["id"]), uid=r["uid"], org_id=int(r["org_id"]), name=r["name"], type=r["type"], access=r["access"],
        url=r["url"], user=r["user"], database=r["database"], basic_auth=bool(r["basic_auth"]),
        basic_auth_user=r["basic_auth_user"], with_credentials=bool(r["with_credentials"]),
        is_default=bool(r["is_default"]), json_data=json.loads(r["json_data"]),
        secure_json_data=json.loads(r["secure_json_data"]), version=int(r["version"]), read_only=bool(r["read_only"]),
    )


def _dash(r: sqlite3.Row) -> Dashboard:
    return Dashboard(
        id=int(r["id"]), uid=r["uid"], org_id=int(r["org_id"]), slug=r["slug"], title=r["title"],
        data=json.loads(r["data"]), tags=json.loads(r["tags"]), folder_id=int(r["folder_id"]),
        is_folder=bool(r["is_folder"]), version=int(r["version"]), created=float(r["created"]),
        updated=float(r["updated"]), provisioned_external_id=r["external_id"],
    )
