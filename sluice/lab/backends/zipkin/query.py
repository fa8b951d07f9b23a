"""``QueryRequest`` (openzipkin/zipkin 2.27 ``zipkin2/storage/QueryRequest.java``): the
``/api/v2/traces`` criteria, their checks (``endTs <= 0`` …) and ``test(spans)``, which decides
whether a trace matches.

The semantics are Zipkin's, not "one span matches everything": the trace's timestamp (its root's,
else its earliest) must fall in ``[endTs - lookback, endTs]``; then each span of
``serviceName`` (every span when no service is asked for) may satisfy some of the remaining
criteria (``remoteServiceName``, ``spanName``, each ``annotationQuery`` term, the duration
range), and the trace matches once all of them were satisfied by some span.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sluice.lab.backends.zipkin.model import Span


class BadRequest(ValueError):
    """A 400 with the real server's message."""


def parse_annotation_query(text: str | None) -> dict[str, str]:
    """``Builder.parseAnnotationQuery``: ``" and "``-joined terms; ``k=v`` is a tag (the last
    one wins), a bare word an annotation value or tag key (never overriding a tag)."""
    out: dict[str, str] = {}
    if not text:
        return out
    for term in text.split(" and ", 99):  # Java's split(" and ", 100)
        idx = term.find("=")
        if idx == -1:
            term = term.strip()
            out.setdefault(term, "")
        else:
            out[term[:idx].strip()] = term[idx + 1 :].strip()
    out.pop("", None)
    return out


@dataclass(slots=True)
class QueryRequest:
    end_ts: int
    lookback: int
    limit: int
    service_name: str | None = None
    remote_service_name: str | None = None
    span_name: str | None = None
    annotation_query: dict[str, str] = field(default_factory=dict)
    min_duration: int | None = None
    max_duration: int | None = None

    def __post_init__(self) -> None:
        # Builder.build(): lowercase names, drop empty ones ("all" means any span name).
        self.service_name = self.service_name.lower() or None if self.service_name is not None else None
        self.remote_service_name = self.remote_service_name.lower() or None if self.remote_service_name is not None else None
        if self.span_name is not None:
            self.span_name = self.span_name.lower()
            if self.span_name in ("", "all"):
                self.span_name = None
        if self.end_ts <= 0:
            raise BadRequest("endTs <= 0")
        if self.limit <= 0:
            raise BadRequest("limit <= 0")
        if self.lookback <= 0:
            raise BadRequest("lookback <= 0")
        if self.min_duration is not None:
            if self.min_duration <= 0:
                raise BadRequest("minDuration <= 0")
            if self.max_duration is not None and self.max_duration < self.min_duration:
                raise BadRequest("maxDuration < minDuration")
        elif self.max_duration is not None:
            raise BadRequest("maxDuration is only valid with minDuration")

    def test(self, spans: list[Span]) -> bool:
        timestamp = 0
        for s in spans:
            if s.timestamp == 0:
                continue
            if s.parent_id is None:
                timestamp = s.timestamp
                break
            if timestamp == 0 or timestamp > s.timestamp:
                timestamp = s.timestamp
        if timestamp == 0 or timestamp < (self.end_ts - self.lookback) * 1000 or timestamp > self.end_ts * 1000:
            return False
        tested_duration = self.min_duration is None and self.max_duration is None
        service_to_match = self.service_name
        remote_to_match = self.remote_service_name
        name_to_match = self.span_name
        remaining = dict(self.annotation_query)
        for s in spans:
            if self.service_name is not None and self.service_name != s.local_service:
                continue
            service_to_match = None
            for a in s.annotations:
                if remaining.get(a.value) == "":
                    del remaining[a.value]
            for key, value in s.tags.items():
                wanted = remaining.get(key)
                if wanted is not None and (wanted == "" or wanted == value):
                    del remaining[key]
            if remote_to_match is not None and remote_to_match == s.remote_service:
                remote_to_match = None
            if name_to_match is not None and name_to_match == s.name:
                name_to_match = None
            if not tested_duration and self.min_duration is not None:
                if self.max_duration is not None:
                    tested_duration = self.min_duration <= s.duration <= self.max_duration
                else:
                    tested_duration = s.duration >= self.min_duration
        return (
            (self.service_name is None or service_to_match is None)
            and remote_to_match is None
            and name_to_match is None
            and not remaining
            and tested_duration
        )
