"""The way into an index for one query: which indexed structure drives the scan.

Candidates are the query's AND-ed parts: all parts that have an FTS5 form, together as one
FTS5 expression, and each range on an indexed (single-valued) date column. Each candidate's
size is estimated by counting its matches up to a cap (cheap whatever the index size), and the
smallest drives; the remaining parts are tested per row. Small indices, or no candidate, are
scanned in rowid order (which is also ES's tie order inside a shard).

The FTS5 driver is forced to the outer loop with ``CROSS JOIN``; when the query's scoring text
clauses are exactly the driver, BM25 comes from the driver itself, otherwise from a LEFT JOIN on
their FTS5 expression.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from sluice.lab.backends.elasticsearch import analysis
from sluice.lab.backends.elasticsearch.compile import Cond
from sluice.lab.backends.elasticsearch.store import IndexMeta

SCAN_BELOW = 4000
"""Indices with fewer documents are scanned without estimating."""
CAPS = (2000, 50000)


@dataclass(slots=True)
class Plan:
    meta: IndexMeta
    empty: bool = False
    from_sql: str = ""
    where: str = "1"
    params: dict[str, Any] = field(default_factory=dict)
    score: str = "0"
    score_join: str = ""
    """The LEFT JOIN that brings BM25 when the driver does not (only the hits query needs it)."""
    driver: str = "scan"
    hwm: int = 0
    """``scan``, ``fts`` or ``date`` (tests and the bench report it)."""

    def select(self, columns: str, tail: str = "") -> str:
        return f"SELECT {columns} FROM {self.from_sql} WHERE {self.where} {tail}"


def _count(db: sqlite3.Connection, sql: str, params: dict[str, Any], cap: int) -> int:
    row = db.execute(f"SELECT count(*) FROM ({sql} LIMIT {cap})", params).fetchone()
    return int(row[0])


def build(meta: IndexMeta, cond: Cond, params: dict[str, Any], db: sqlite3.Connection, *, need_score: bool, hwm: int) -> Plan:
    plan = Plan(meta, params=params, hwm=hwm)
    if cond.const is False:
        plan.empty = True
        return plan
    d, f = f"d{meta.num}", f"f{meta.num}"
    parts = cond.parts() if cond.const is not True else []
    fts_parts = [p for p in parts if p.fts]
    dates = [p for p in parts if p.date]
    choice: tuple[str, Any] = ("scan", None)
    if hwm == 0:
        plan.empty = True
        return plan
    if meta.docs >= SCAN_BELOW and (fts_parts or dates):
        fts_expr = analysis.q_and([p.fts for p in fts_parts if p.fts]) if fts_parts else None
        cands: list[tuple[str, Any, str, dict[str, Any]]] = []
        if fts_expr:
            fparams = {"_drv": fts_expr}
            cands.append(("fts", fts_expr, f"SELECT 1 FROM x.{f} WHERE {f} MATCH :_drv", fparams))
        for p in dates:
            cands.append(("date", p, f"SELECT 1 FROM {d} AS d WHERE {p.date}", params))
        best: list[tuple[int, int, int]] = []
        for i, (kind, _, sql, ps) in enumerate(cands):
            n = _count(db, sql, ps, CAPS[0])
            if n >= CAPS[0]:
                n = _count(db, sql, ps, CAPS[1])
            best.append((n, 0 if kind == "date" else 1, i))
        n, _, i = min(best)
        if n < meta.docs * 0.6:
            choice = (cands[i][0], cands[i][1])
    residual: list[str]
    if choice[0] == "fts":
        params["_drv"] = choice[1]
        plan.from_sql = f"x.{f} CROSS JOIN {d} AS d ON d.rowid = {f}.rowid"
        residual = [f"{f} MATCH :_drv"] + [p.sql for p in parts if not (p.fts and p.exact)]
        plan.driver = "fts"
    elif choice[0] == "date":
        chosen = choice[1]
        plan.from_sql = f"{d} AS d"
        residual = [p.date if p is chosen and p.date else p.sql for p in parts]
        plan.driver = "date"
    else:
        plan.from_sql = f"{d} AS d"
        residual = [p.sql for p in parts] if parts else ([] if cond.const is True else [cond.sql])
    if not parts and cond.const is not True:
        residual = [cond.sql]
    # Near real time, as ES: documents written after the last refresh are not searchable yet.
    residual.append(f"d.rowid <= {int(hwm)}")
    plan.where = " AND ".join(residual)
    if need_score:
        plan.score = _score(plan, cond, params, f, choice)
    return plan


def _score(plan: Plan, cond: Cond, params: dict[str, Any], f: str, choice: tuple[str, Any]) -> str:
    base = cond.score if cond.score != "0" else ""
    fts = list(dict.fromkeys(cond.score_fts))
    if not fts:
        return base or "0"
    expr = analysis.q_or(fts)
    if choice[0] == "fts" and choice[1] == expr:
        bm = f"-bm25({f})"
    else:
        params["_score"] = expr
        plan.score_join = f" LEFT JOIN (SELECT rowid AS r, -bm25({f}) AS s FROM x.{f} WHERE {f} MATCH :_score) AS sc ON sc.r = d.rowid"
        bm = "COALESCE(sc.s, 0)"
    return f"({base} + {bm})" if base else bm
