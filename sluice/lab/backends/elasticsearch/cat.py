"""``_cat``: tables rendered as ES's ``RestTable`` renders them — ``v`` (headers), ``h`` (columns by
name, alias or ``*`` pattern), ``s`` (sort, ``:desc``), ``help``, ``bytes`` (``b``, ``kb`` …),
``format=json`` (every value a string) — and the tables the labs read: ``indices``, ``health``,
``templates``, ``count``, ``aliases``, ``nodes``, ``shards``, ``master``."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from sluice.lab.backends.elasticsearch import jsonfmt
from sluice.lab.backends.elasticsearch.datemath import DateFormat
from sluice.lab.backends.elasticsearch.errors import EsError

CAT_INDEX = "=^.^=\n" + "".join(f"/_cat/{p}\n" for p in (
    "allocation", "shards", "shards/{index}", "master", "nodes", "tasks", "indices", "indices/{index}", "segments",
    "segments/{index}", "count", "count/{index}", "recovery", "recovery/{index}", "health", "pending_tasks", "aliases",
    "aliases/{alias}", "thread_pool", "thread_pool/{thread_pools}", "plugins", "fielddata", "fielddata/{fields}", "nodeattrs",
    "repositories", "snapshots/{repository}", "templates", "ml/anomaly_detectors", "ml/datafeeds", "ml/trained_models",
    "ml/data_frame/analytics", "transforms"))


@dataclass(frozen=True, slots=True)
class ByteSize:
    bytes: int

    def __str__(self) -> str:
        units = (("pb", 1 << 50), ("tb", 1 << 40), ("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10))
        for suffix, size in units:
            if self.bytes >= size:
                return _one_decimal(self.bytes / size, suffix)
        return f"{self.bytes}b"


def _one_decimal(value: float, suffix: str) -> str:
    """Java's ``Strings.format1Decimals``: one decimal, truncated, dropped when it is 0."""
    whole = int(value)
    tenth = int((value - whole) * 10)
    return f"{whole}{suffix}" if tenth == 0 else f"{whole}.{tenth}{suffix}"


@dataclass(frozen=True, slots=True)
class Col:
    name: str
    aliases: tuple[str, ...] = ()
    right: bool = False
    default: bool = True
    desc: str = "not available"


@dataclass(slots=True)
class Table:
    cols: list[Col]
    rows: list[dict[str, Any]]


def render(table: Table, params: dict[str, str]) -> tuple[bytes, str]:
    """(body, content type)."""
    if _flag(params, "help"):
        return _help(table), "text/plain; charset=UTF-8"
    cols = _columns(table, params)
    rows = _sorted(table, params)
    fmt = params.get("format", "").lower()
    if fmt in ("json", "yaml", "smile", "cbor"):
        if fmt != "json":
            raise EsError(406, "illegal_argument_exception", f"format [{fmt}] is not supported by this stand-in")
        out = [{display: _value(row.get(name), params) for name, display, _ in cols} for row in rows]
        return jsonfmt.dumps(out, pretty=_flag(params, "pretty")), "application/json; charset=UTF-8"
    if fmt not in ("", "txt", "text"):
        raise EsError(400, "illegal_argument_exception", f"Unsupported format [{fmt}]")
    verbose = _flag(params, "v")
    cells = [[_value(row.get(name), params) for name, _, _ in cols] for row in rows]
    widths = [len(display) if verbose else 0 for _, display, _ in cols]
    for r in cells:
        for i, v in enumerate(r):
            if v is not None:
                widths[i] = max(widths[i], len(v))
    lines: list[str] = []
    last = len(cols) - 1
    if verbose:
        lines.append(" ".join(_pad(display, widths[i], right, i == last) for i, (_, display, right) in enumerate(cols)))
    for r in cells:
        lines.append(" ".join(_pad(v, widths[i], cols[i][2], i == last) for i, v in enumerate(r)))
    return "".join(line + "\n" for line in lines).encode(), "text/plain; charset=UTF-8"


def _flag(params: dict[str, str], name: str) -> bool:
    return name in params and params[name].lower() in ("", "true")


def _pad(v: str | None, width: int, right: bool, last: bool) -> str:
    text = v or ""
    left_over = width - len(text)
    if left_over > 0 and right:
        return " " * left_over + text
    return text if last else text + " " * max(left_over, 0)


def _value(v: Any, params: dict[str, str]) -> str | None:
    if v is None:
        return None
    if isinstance(v, ByteSize):
        unit = params.get("bytes", "")
        div = {"b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40,
               "tb": 1 << 40, "p": 1 << 50, "pb": 1 << 50}.get(unit)
        return str(v.bytes // div) if div else str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _columns(table: Table, params: dict[str, str]) -> list[tuple[str, str, bool]]:
    """(name, display, right-aligned) for the columns to show."""
    if "h" not in params:
        return [(c.name, c.name, c.right) for c in table.cols if c.default]
    out: list[tuple[str, str, bool]] = []
    for want in (p.strip() for p in params["h"].split(",") if p.strip()):
        for c in table.cols:
            if "*" in want:
                if fnmatchcase(c.name, want) or any(fnmatchcase(a, want) for a in c.aliases):
                    if all(c.name != o[0] for o in out):
                        out.append((c.name, c.name, c.right))
            elif want == c.name or want in c.aliases:
                out.append((c.name, want, c.right))
                break
        else:
            if "*" not in want:
                raise EsError(400, "illegal_argument_exception", f"unknown header [{want}]")
    return out


def _sorted(table: Table, params: dict[str, str]) -> list[dict[str, Any]]:
    if "s" not in params:
        return table.rows
    keys: list[tuple[str, bool]] = []
    for part in params["s"].split(","):
        name, reverse = part, False
        if name.endswith(":desc"):
            name, reverse = name[:-5], True
        elif name.endswith(":asc"):
            name = name[:-4]
        col = next((c for c in table.cols if name == c.name or name in c.aliases), None)
        if col is None:
            raise EsError(500, "unsupported_operation_exception", f"Unable to sort by unknown sort key `{name}`")
        keys.append((col.name, reverse))

    def cmp(a: dict[str, Any], b: dict[str, Any]) -> int:
        for name, reverse in keys:
            va, vb = a.get(name), b.get(name)
            if isinstance(va, ByteSize):
                va = va.bytes
            if isinstance(vb, ByteSize):
                vb = vb.bytes
            if va == vb:
                continue
            if va is None:
                c = -1
            elif vb is None:
                c = 1
            elif type(va) is type(vb):
                c = -1 if va < vb else 1
            else:
                c = -1 if str(va) < str(vb) else 1
            return -c if reverse else c
        return 0

    return sorted(table.rows, key=functools.cmp_to_key(cmp))


def _help(table: Table) -> bytes:
    rows = [(c.name, ",".join(c.aliases), c.desc) for c in table.cols]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "".join(f"{a.ljust(w[0])} | {b.ljust(w[1])} | {c}\n" for a, b, c in rows).encode()


# --- the tables -----------------------------------------------------------------------------------

INDICES = [
    Col("health", ("h",), desc="current health status"),
    Col("status", ("s",), desc="open/close status"),
    Col("index", ("i", "idx"), desc="index name"),
    Col("uuid", ("id", "uuid"), desc="index uuid"),
    Col("pri", ("p", "shards.primary", "shardsPrimary"), True, desc="number of primary shards"),
    Col("rep", ("r", "shards.replica", "shardsReplica"), True, desc="number of replica shards"),
    Col("docs.count", ("dc", "docsCount"), True, desc="available docs"),
    Col("docs.deleted", ("dd", "docsDeleted"), True, desc="deleted docs"),
    Col("creation.date", ("cd",), True, False, "index creation date (millisecond value)"),
    Col("creation.date.string", ("cds",), True, False, "index creation date (as string)"),
    Col("store.size", ("ss", "storeSize"), True, desc="store size of primaries & replicas"),
    Col("pri.store.size", (), True, desc="store size of primaries"),
]


def indices_table(metas: list[Any], docs: dict[str, int], health: str | None = None) -> Table:
    """``docs``: each index's refreshed documents (``Store.searchable_docs``)."""
    rows = []
    for m in metas:
        if health and m.health != health:
            continue
        size = ByteSize(m.store_bytes)
        rows.append({"health": m.health, "status": "open", "index": m.name, "uuid": m.uuid, "pri": m.shards, "rep": m.replicas,
                     "docs.count": docs.get(m.name, 0), "docs.deleted": 0, "creation.date": m.created,
                     "creation.date.string": DateFormat.of("strict_date_optional_time").format(m.created), "store.size": size,
                     "pri.store.size": size})
    return Table(INDICES, rows)


HEALTH = [
    Col("epoch", ("t", "time"), True, desc="seconds since 1970-01-01 00:00:00"),
    Col("timestamp", ("ts", "hms", "hhmmss"), desc="time in HH:MM:SS"),
    Col("cluster", ("cl",), desc="cluster name"),
    Col("status", ("st",), desc="health status"),
    Col("node.total", ("nt", "nodeTotal"), True, desc="total number of nodes"),
    Col("node.data", ("nd", "nodeData"), True, desc="number of nodes that can store data"),
    Col("shards", ("t", "sh", "shards.total", "shardsTotal"), True, desc="total number of shards"),
    Col("pri", ("p", "shards.primary", "shardsPrimary"), True, desc="number of primary shards"),
    Col("relo", ("r", "shards.relocating", "shardsRelocating"), True, desc="number of relocating nodes"),
    Col("init", ("i", "shards.initializing", "shardsInitializing"), True, desc="number of initializing nodes"),
    Col("unassign", ("u", "shards.unassigned", "shardsUnassigned"), True, desc="number of unassigned shards"),
    Col("pending_tasks", ("pt", "pendingTasks"), True, desc="number of pending tasks"),
    Col("max_task_wait_time", ("mtwt", "maxTaskWaitTime"), True, desc="wait time of longest task pending"),
    Col("active_shards_percent", ("asp", "activeShardsPercent"), True, desc="active number of shards in percent"),
]


def epoch_cols(params: dict[str, str], cols: list[Col]) -> list[Col]:
    if params.get("ts", "true").lower() == "false":
        return [c for c in cols if c.name not in ("epoch", "timestamp")]
    return cols


def health_table(cluster: str, status: str, active: int, primaries: int, unassigned: int, params: dict[str, str]) -> Table:
    now = time.time()
    pct = 100.0 if active + unassigned == 0 else active * 100.0 / (active + unassigned)
    row = {"epoch": int(now), "timestamp": time.strftime("%H:%M:%S", time.gmtime(now)), "cluster": cluster, "status": status,
           "node.total": 1, "node.data": 1, "shards": active, "pri": primaries, "relo": 0, "init": 0, "unassign": unassigned,
           "pending_tasks": 0, "max_task_wait_time": "-", "active_shards_percent": f"{pct:.1f}%"}
    return Table(epoch_cols(params, HEALTH), [row])


TEMPLATES = [
    Col("name", ("n",), desc="template name"),
    Col("index_patterns", ("t",), desc="template index patterns"),
    Col("order", ("o", "p"), True, desc="template application order/priority number"),
    Col("version", ("v",), True, desc="version"),
    Col("composed_of", ("c",), desc="component templates comprising index template"),
]


def templates_table(legacy: dict[str, Any], composable: dict[str, Any], pattern: str | None) -> Table:
    rows = []
    for name, t in sorted(legacy.items()):
        if pattern and not any(fnmatchcase(name, p) for p in pattern.split(",")):
            continue
        rows.append({"name": name, "index_patterns": "[" + ", ".join(_list(t.get("index_patterns"))) + "]", "order": t.get("order", 0),
                     "version": t.get("version"), "composed_of": ""})
    for name, t in sorted(composable.items()):
        if pattern and not any(fnmatchcase(name, p) for p in pattern.split(",")):
            continue
        rows.append({"name": name, "index_patterns": "[" + ", ".join(_list(t.get("index_patterns"))) + "]",
                     "order": t.get("priority", 0), "version": t.get("version"),
                     "composed_of": "[" + ", ".join(t.get("composed_of", [])) + "]"})
    return Table(TEMPLATES, rows)


def _list(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else [str(x) for x in (v or [])]


COUNT = [Col("epoch", ("t", "time"), True), Col("timestamp", ("ts", "hms", "hhmmss")),
         Col("count", ("dc", "docs.count", "docsCount"), True)]


def count_table(total: int, params: dict[str, str]) -> Table:
    now = time.time()
    return Table(epoch_cols(params, COUNT), [{"epoch": int(now), "timestamp": time.strftime("%H:%M:%S", time.gmtime(now)), "count": total}])


ALIASES = [Col("alias", ("a",)), Col("index", ("i", "idx")), Col("filter", ("f", "fi")), Col("routing.index", ("ri", "routingIndex")),
           Col("routing.search", ("rs", "routingSearch")), Col("is_write_index", ("w", "isWriteIndex"))]


def aliases_table(metas: list[Any], pattern: str | None) -> Table:
    rows = []
    for m in metas:
        for alias, body in sorted(m.aliases.items()):
            if pattern and not any(fnmatchcase(alias, p) for p in pattern.split(",")):
                continue
            w = body.get("is_write_index")
            rows.append({"alias": alias, "index": m.name, "filter": "*" if body.get("filter") else "-",
                         "routing.index": body.get("index_routing", body.get("routing", "-")),
                         "routing.search": body.get("search_routing", body.get("routing", "-")),
                         "is_write_index": "-" if w is None else ("true" if w else "false")})
    return Table(ALIASES, rows)


NODES = [Col("ip", ("i",)), Col("heap.percent", ("hp", "heapPercent"), True), Col("ram.percent", ("rp", "ramPercent"), True),
         Col("cpu", (), True), Col("load_1m", ("l",), True), Col("load_5m", ("l",), True), Col("load_15m", ("l",), True),
         Col("node.role", ("r", "role", "nodeRole")), Col("master", ("m",)), Col("name", ("n",)),
         Col("id", ("nodeId",), default=False), Col("version", ("v",), default=False)]


def nodes_table(ip: str, name: str, node_id: str) -> Table:
    loads = os.getloadavg()
    row = {"ip": ip, "heap.percent": _heap_percent(), "ram.percent": _ram_percent(), "cpu": 0, "load_1m": f"{loads[0]:.2f}",
           "load_5m": f"{loads[1]:.2f}", "load_15m": f"{loads[2]:.2f}", "node.role": "cdfhilmrstw", "master": "*", "name": name,
           "id": node_id[:4], "version": "7.14.2"}
    return Table(NODES, [row])


def _ram_percent() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = {line.split(":")[0]: int(line.split()[1]) for line in f if line.split()[1:]}
        return int(100 - info["MemAvailable"] * 100 / info["MemTotal"])
    except (OSError, KeyError, ValueError, ZeroDivisionError):
        return 0


def _heap_percent() -> int:
    try:
        import resource

        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return min(99, int(rss_kb * 1024 * 100 / (1 << 30)))
    except (ImportError, OSError):
        return 0


SHARDS = [Col("index", ("i", "idx")), Col("shard", ("s", "sh"), True), Col("prirep", ("p", "pr", "primaryOrReplica"), True),
          Col("state", ("st",)), Col("docs", ("d", "dc"), True), Col("store", ("sto",), True), Col("ip"), Col("node", ("n",))]


def shards_table(metas: list[Any], docs: dict[str, int], ip: str, node: str) -> Table:
    """``docs``: as for :func:`indices_table`."""
    rows = []
    for m in metas:
        rows.append({"index": m.name, "shard": 0, "prirep": "p", "state": "STARTED", "docs": docs.get(m.name, 0),
                     "store": ByteSize(m.store_bytes),
                     "ip": ip, "node": node})
        for _ in range(m.replicas):
            rows.append({"index": m.name, "shard": 0, "prirep": "r", "state": "UNASSIGNED"})
    return Table(SHARDS, rows)


MASTER = [Col("id"), Col("host", ("h",)), Col("ip"), Col("node", ("n",))]


def master_table(node_id: str, ip: str, name: str) -> Table:
    return Table(MASTER, [{"id": node_id, "host": ip, "ip": ip, "node": name}])

