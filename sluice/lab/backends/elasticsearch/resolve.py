"""Index names and index expressions as ES resolves them: validation of a new name, date math
(``<logs-{now/d}>``), aliases, ``*`` patterns, comma lists, ``-exclusions``, ``_all``, hidden
indices and the ``ignore_unavailable`` / ``allow_no_indices`` / ``expand_wildcards`` options."""

from __future__ import annotations

import time
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any, Protocol

from sluice.lab.backends.elasticsearch.datemath import DateError, resolve_index_name
from sluice.lab.backends.elasticsearch.errors import EsError, index_not_found

_INVALID_CHARS = '\\/*?"<>| ,#'


class Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def aliases(self) -> dict[str, dict[str, Any]]: ...

    @property
    def hidden(self) -> bool: ...


def now_ms() -> int:
    return int(time.time() * 1000)


def date_math(name: str) -> str:
    try:
        return resolve_index_name(name, now_ms())
    except DateError as exc:
        raise EsError(400, "illegal_argument_exception", str(exc)) from None


def validate_new_name(name: str) -> None:
    """ES's ``MetadataCreateIndexService.validateIndexOrAliasName`` and friends."""

    def bad(why: str) -> EsError:
        return EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {why}",
                       meta={"index_uuid": "_na_", "index": name})

    if not name:
        raise bad("must not be empty")
    if name != name.lower():
        raise bad("must be lowercase")
    for c in _INVALID_CHARS:
        if c in name:
            raise bad(f"must not contain the following characters {list(_INVALID_CHARS)}".replace("'", ""))
    if ":" in name:
        raise bad("must not contain ':'")
    if name[0] in "_-+":
        raise bad("must not start with '_', '-', or '+'")
    if name in (".", ".."):
        raise bad("must not be '.' or '..'")
    if len(name.encode()) > 255:
        raise bad(f"index name is too long, ({len(name.encode())} > 255)")


def _match(pattern: str, name: str) -> bool:
    return fnmatchcase(name, pattern.replace("[", "[[]").replace("?", "[?]"))


def resolve(
    indices: Mapping[str, Named],
    expression: str | None,
    *,
    ignore_unavailable: bool = False,
    allow_no_indices: bool = True,
    expand_wildcards: str = "open",
) -> list[str]:
    """Concrete index names for a path's index part, sorted by name (ES orders shards by
    index)."""
    parts = [p for p in (expression or "_all").split(",") if p]
    if not parts:
        parts = ["_all"]
    states = set(expand_wildcards.split(",")) if expand_wildcards else set()
    hidden_ok = "all" in states or "hidden" in states
    wild_ok = bool(states - {"none"})
    aliases: dict[str, list[str]] = {}
    for meta in indices.values():
        for alias in meta.aliases:
            aliases.setdefault(alias, []).append(meta.name)
    chosen: dict[str, None] = {}
    for i, raw in enumerate(parts):
        exclude = raw.startswith("-") and i > 0
        part = date_math(raw[1:] if exclude else raw)
        if part in ("_all", "*") and not exclude:
            names = [n for n, m in indices.items() if hidden_ok or not m.hidden]
        elif "*" in part:
            if not wild_ok:
                names = []
            else:
                names = [n for n, m in indices.items() if _match(part, n) and (hidden_ok or not m.hidden or part.startswith("."))]
                for alias, targets in aliases.items():
                    if _match(part, alias):
                        names += [t for t in targets if hidden_ok or not indices[t].hidden or part.startswith(".")]
        elif part in indices:
            names = [part]
        elif part in aliases:
            names = aliases[part]
        elif exclude:
            names = []
        elif ignore_unavailable:
            names = []
        else:
            raise index_not_found(part)
        if exclude:
            for n in names:
                chosen.pop(n, None)
        else:
            for n in names:
                chosen[n] = None
    if not chosen and not allow_no_indices:
        raise index_not_found(expression or "_all")
    return sorted(chosen)


def write_target(indices: Mapping[str, Named], name: str) -> str | None:
    """The concrete index a write to ``name`` goes to: the index itself, or an alias's write
    index; None when neither exists (the caller may create the index)."""
    if name in indices:
        return name
    targets = [(m.name, m.aliases[name]) for m in indices.values() if name in m.aliases]
    if not targets:
        return None
    writers = [n for n, body in targets if body.get("is_write_index") is True]
    if writers:
        return writers[0]
    if len(targets) == 1 and targets[0][1].get("is_write_index") is not False:
        return targets[0][0]
    raise EsError(
        400,
        "illegal_argument_exception",
        f"no write index is defined for alias [{name}]. The write index may be explicitly disabled using is_write_index=false "
        "or the alias points to multiple indices without one being designated as a write index",
    )


def auto_create_allowed(setting: str, name: str) -> bool:
    """``action.auto_create_index``: true, false, or ``+pattern,-pattern`` (first match wins)."""
    s = setting.strip().lower()
    if s in ("", "true"):
        return True
    if s == "false":
        return False
    for pat in (p.strip() for p in setting.split(",")):
        if not pat:
            continue
        allow = not pat.startswith("-")
        if _match(pat.lstrip("+-"), name):
            return allow
    return False
