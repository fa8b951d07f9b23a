"""What ``sluice lab up`` says when a lab fails to start: each failed service, why, and the
last lines of its log.

The supervisor decides what failed (``failure`` in ``status.json``, see ``supervisor.py``); this
module only reads that and the logs, so the wording is tested without starting anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sluice.lab.spec import Plan
from sluice.lab.supervisor import tail

LOG_LINES = 20
"""Enough for a Python traceback or a config error with its path, short enough for a terminal."""


@dataclass(frozen=True, slots=True)
class Failure:
    service: str
    prefix: str
    reason: str
    log: str


def failures(plan: Plan, status: dict[str, Any] | None) -> list[Failure]:
    """The services the supervisor marked as failed, in start order."""
    services = (status or {}).get("services") or {}
    out = []
    for s in plan.services:
        reason = (services.get(s.name) or {}).get("failure")
        if reason and not s.not_running:
            out.append(Failure(s.name, s.prefix, str(reason), s.log))
    return out


def headline(failed: list[Failure]) -> str:
    names = ", ".join(f.service for f in failed)
    return f"{len(failed)} service{'s' if len(failed) != 1 else ''} failed to start: {names}"


def render(failed: list[Failure], lines: int = LOG_LINES) -> list[str]:
    """One block per service: a line naming it and why, then its log's last lines, indented."""
    out = []
    for f in failed:
        last = tail(f.log, lines)
        if not last:
            out.append(f"  {f.service} ({f.prefix}): {f.reason}; its log {f.log} is empty")
            continue
        out.append(f"  {f.service} ({f.prefix}): {f.reason}; last {len(last)} line{'s' if len(last) != 1 else ''} of {f.log}:")
        out += [f"    | {ln}" for ln in last]
    return out
