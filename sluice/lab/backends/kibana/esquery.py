"""``buildEsQuery`` of ``@kbn/es-query`` 7.14: the query bar's KQL or Lucene text plus the
filters (here, the time range) into one ``bool`` query, in the order Kibana writes it.

- KQL goes to ``bool.filter`` (``courier:filtersInMustClause`` is off by default);
- Lucene goes to ``bool.must`` as ``query_string`` with ``query:queryString:options``
  (``analyze_wildcard: true``) and the browser's time zone (``dateFormat:tz`` = ``Browser``);
  an empty Lucene query is ``match_all``;
- the time filter is ``range`` on the index pattern's time field, ISO bounds and
  ``format: strict_date_optional_time``.
"""

from __future__ import annotations

from typing import Any

from sluice.lab.backends.kibana import kql

QUERY_STRING_OPTIONS = {"analyze_wildcard": True}


def lucene(query: str, *, time_zone: str | None = None) -> dict[str, Any]:
    if query.strip() == "":
        return {"match_all": {}}
    body: dict[str, Any] = {"query": query, **QUERY_STRING_OPTIONS}
    if time_zone:
        body["time_zone"] = time_zone
    return {"query_string": body}


def time_filter(field: str, gte: str, lte: str) -> dict[str, Any]:
    return {"range": {field: {"gte": gte, "lte": lte, "format": "strict_date_optional_time"}}}


def build(
    query: str,
    language: str,
    fields: list[kql.Field] | None,
    filters: list[dict[str, Any]] | None = None,
    *,
    time_zone: str | None = None,
) -> dict[str, Any]:
    """The ``query`` of a search request. Raises :class:`kql.KQLSyntaxError` for bad KQL and
    ``ValueError`` for an unknown language."""
    must: list[dict[str, Any]] = []
    filter_: list[dict[str, Any]] = []
    if language == "kuery":
        filter_.append(kql.to_dsl(query, fields, time_zone=time_zone))
    elif language == "lucene":
        must.append(lucene(query, time_zone=time_zone))
    else:
        raise ValueError(f"{language} is not a supported query language (kuery or lucene)")
    filter_.extend(filters or [])
    return {"bool": {"must": must, "filter": filter_, "should": [], "must_not": []}}
