"""Helpers for the Zipkin/Jaeger stand-in tests: the golden Envoy captures and in-process calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sluice.lab.backends.zipkin.http import Request, Response

GOLDEN = Path(__file__).resolve().parents[3] / "golden" / "envoy-part3-5" / "tracing"


def posts(lab: str, scenario: str) -> list[list[dict[str, Any]]]:
    """The span lists real Envoys POSTed in one scenario (``T01_plain`` …), in order."""
    return [p["spans"] for p in json.loads((GOLDEN / lab / f"{scenario}_spans.json").read_text())]


def call(handler: Any, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Response:
    url = urlsplit(target)
    return handler(Request(method, url.path, url.query, {k.lower(): v for k, v in (headers or {}).items()}, body))


def post_json(handler: Any, spans: Any) -> Response:
    return call(handler, "POST", "/api/v2/spans", json.dumps(spans).encode(), {"Content-Type": "application/json"})
