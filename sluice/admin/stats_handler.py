"""``/stats``: counters, gauges and histograms in Envoy's text, JSON and (plain) HTML formats;
Prometheus' format is :mod:`sluice.admin.prometheus`.

Rules, as observed on Envoy 1.40:
- Counters and gauges come first, as one list sorted by full name (``name: value``); histograms
  follow, sorted by name. An empty result is an empty body (JSON: ``{"stats":[]}``).
- Histograms are as of the last stats flush (:meth:`sluice.stats.store.Histogram.merge`). Text
  shows ``P<q>(<interval>,<cumulative>)`` for the ten supported quantiles, ``nan`` for an empty
  interval, and ``No recorded values`` until a flush has seen samples.
- ``filter`` is a partial-match regex (RE2 in Envoy), ``invert_filter`` negates it, ``usedonly``
  keeps stats that were ever written, ``type`` keeps one kind, ``histogram_buckets`` switches the
  histogram view to bucket counts (``cumulative``, ``disjoint``) or raw buckets (``detailed``).
- JSON is compact (no spaces, no trailing newline); all histograms form one final entry of the
  ``stats`` array; numbers use the shortest spelling and NaN becomes ``null``.

See https://www.envoyproxy.io/docs/envoy/latest/operations/admin#get--stats
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sluice.admin import prometheus
from sluice.admin.formats import HTML, JSON, TEXT, Response, compile_re2, fmt_double, fmt_g, html_escape, json_number
from sluice.stats.store import DEFAULT_BUCKETS, QUANTILES, Histogram

if TYPE_CHECKING:
    import re

    from sluice.admin.server import AdminRequest
    from sluice.server import Server

FORMATS = ("html", "active-html", "text", "json")
TYPES = ("All", "Counters", "Histograms", "Gauges", "TextReadouts")
BUCKET_MODES = ("cumulative", "disjoint", "detailed", "summary")

FORMAT_USAGE = "usage: /stats?format=(html|active-html|json|prometheus|text)\n\n"
BUCKETS_USAGE = "usage: /stats?histogram_buckets=(cumulative|disjoint|detailed|summary|prometheusnative)\n"
TYPE_ERROR = "invalid &type= param"


class StatsParams:
    """The parsed query of one ``/stats`` request."""

    __slots__ = ("used_only", "regex", "invert", "format", "type", "buckets")

    def __init__(self) -> None:
        self.used_only = False
        self.regex: re.Pattern[str] | None = None
        self.invert = False
        self.format = "text"
        self.type = "All"
        self.buckets = "summary"

    def would_show(self, name: str, used: bool) -> bool:
        if self.used_only and not used:
            return False
        if self.regex is None:
            return True
        return (self.regex.search(name) is not None) != self.invert


def parse_params(params: dict[str, str]) -> StatsParams | Response:
    """The request's parameters, or the 400 response Envoy gives for a bad one."""
    p = StatsParams()
    p.used_only = "usedonly" in params
    p.invert = "invert_filter" in params
    flt = params.get("filter", "")
    if flt:
        rx, err = compile_re2(flt)
        if rx is None:
            return 400, TEXT, f"Invalid re2 regex: {err}"
        p.regex = rx
    if "histogram_buckets" in params:
        if params["histogram_buckets"] not in BUCKET_MODES:
            return 400, TEXT, BUCKETS_USAGE
        p.buckets = params["histogram_buckets"]
    if "format" in params:
        if params["format"] not in (*FORMATS, "prometheus"):
            return 400, TEXT, FORMAT_USAGE
        p.format = params["format"]
    if "type" in params:
        if params["type"] not in TYPES:
            return 400, TEXT, TYPE_ERROR
        p.type = params["type"]
    return p


def select(server: Server, p: StatsParams) -> tuple[list[tuple[str, int]], list[Histogram]]:
    """The counters and gauges (sorted together) and histograms (sorted) the request shows."""
    store = server.store
    scalars: list[tuple[str, int]] = []
    if p.type in ("All", "Counters"):
        scalars += [(n, c.value) for n, c in store.counters.items() if p.would_show(n, c.used)]
    if p.type in ("All", "Gauges"):
        scalars += [(n, g.value) for n, g in store.gauges.items() if p.would_show(n, g.used)]
    scalars.sort()
    hists: list[Histogram] = []
    if p.type in ("All", "Histograms"):
        hists = sorted((h for n, h in store.histograms.items() if p.would_show(n, h.used)), key=lambda h: h.name)
    return scalars, hists


def handle(server: Server, req: AdminRequest) -> Response:
    """``/stats`` and ``/stats/prometheus`` (the latter is ``/stats?format=prometheus``)."""
    if req.path == "/stats/prometheus" and req.params.get("histogram_buckets") == "prometheusnative":
        return 400, TEXT, prometheus.NATIVE_NOT_SUPPORTED
    parsed = parse_params(req.params)
    if not isinstance(parsed, StatsParams):
        return parsed
    if req.path == "/stats/prometheus":
        parsed.format = "prometheus"
    bucket_mode = req.params.get("histogram_buckets", "cumulative")
    if parsed.format == "prometheus" and (problem := prometheus.bucket_mode_problem(bucket_mode)) is not None:
        return 400, TEXT, problem
    if server.bootstrap.stats_flush_on_admin:
        # stats_flush_on_admin: the flush (sinks included) happens when the admin asks.
        server.flush_stats()
    if parsed.format == "prometheus":
        return 200, TEXT, prometheus.render(server, parsed, bucket_mode)
    scalars, hists = select(server, parsed)
    if parsed.format == "json":
        return 200, JSON, render_json(scalars, hists, parsed.buckets)
    text = render_text(scalars, hists, parsed.buckets)
    if parsed.format in ("html", "active-html"):
        # Divergence from Envoy: a plain page with the text format, not Envoy's interactive one.
        page = (
            "<!DOCTYPE html>\n<html lang='en'>\n<head>\n  <title>Envoy Admin</title>\n</head>\n<body>\n"
            f"<pre>\n{html_escape(text)}</pre>\n</body>\n</html>\n"
        )
        return 200, HTML, page
    return 200, TEXT, text


# -- text ---------------------------------------------------------------------------------


def quantile_summary(h: Histogram) -> str:
    pairs = zip(h.interval_quantiles(), h.cumulative_quantiles(), strict=True)
    return " ".join(f"P{fmt_double(100 * q)}({fmt_double(i)},{fmt_double(c)})" for q, (i, c) in zip(QUANTILES, pairs, strict=True))


def _disjoint(cumulative_counts: list[int]) -> list[int]:
    return [c - (cumulative_counts[i - 1] if i else 0) for i, c in enumerate(cumulative_counts)]


def _bucket_counts(h: Histogram, mode: str) -> tuple[list[int], list[int]]:
    interval, cumulative = h.interval_buckets(), h.cumulative_buckets()
    if mode == "disjoint":
        return _disjoint(interval), _disjoint(cumulative)
    return interval, cumulative


def _detail_text(buckets: list[tuple[float, float, int]]) -> str:
    return ", ".join(f"{fmt_g(lo)},{fmt_g(w)}:{n}" for lo, w, n in buckets)


def render_text(scalars: list[tuple[str, int]], hists: list[Histogram], mode: str) -> str:
    out = [f"{name}: {value}\n" for name, value in scalars]
    for h in hists:
        if not h.used:
            out.append(f"{h.name}: No recorded values\n")
        elif mode == "detailed":
            out.append(
                f"{h.name}:\n  totals={_detail_text(h.detailed(True))}\n"
                f"  intervals={_detail_text(h.detailed(False))}\n  summary={quantile_summary(h)}\n"
            )
        elif mode in ("cumulative", "disjoint"):
            interval, cumulative = _bucket_counts(h, mode)
            cells = " ".join(f"B{fmt_g(b)}({i},{c})" for b, i, c in zip(DEFAULT_BUCKETS, interval, cumulative, strict=True))
            out.append(f"{h.name}: {cells}\n")
        else:
            out.append(f"{h.name}: {quantile_summary(h)}\n")
    return "".join(out)


# -- JSON ---------------------------------------------------------------------------------


def _percentiles_json(h: Histogram) -> str:
    pairs = zip(h.cumulative_quantiles(), h.interval_quantiles(), strict=True)
    return "[" + ",".join(f'{{"cumulative":{json_number(c)},"interval":{json_number(i)}}}' for c, i in pairs) + "]"


def _supported_json() -> str:
    return "[" + ",".join(fmt_g(100 * q) for q in QUANTILES) + "]"


def _detail_json(buckets: list[tuple[float, float, int]]) -> str:
    cells = (f'{{"lower_bound":{json_number(lo)},"width":{json_number(w)},"count":{n}}}' for lo, w, n in buckets)
    return "[" + ",".join(cells) + "]"


def _histograms_json(hists: list[Histogram], mode: str) -> str:
    if mode == "detailed":
        details = ",".join(
            f'{{"name":{json.dumps(h.name)},"totals":{_detail_json(h.detailed(True))},'
            f'"intervals":{_detail_json(h.detailed(False))},"percentiles":{_percentiles_json(h)}}}'
            for h in hists
        )
        return f'{{"histograms":{{"supported_percentiles":{_supported_json()},"details":[{details}]}}}}'
    if mode in ("cumulative", "disjoint"):
        entries = []
        for h in hists:
            interval, cumulative = _bucket_counts(h, mode)
            cells = ",".join(
                f'{{"upper_bound":{json_number(b)},"interval":{i},"cumulative":{c}}}'
                for b, i, c in zip(DEFAULT_BUCKETS, interval, cumulative, strict=True)
            )
            entries.append(f'{{"name":{json.dumps(h.name)},"buckets":[{cells}]}}')
        return f'{{"histograms":[{",".join(entries)}]}}'
    computed = ",".join(f'{{"name":{json.dumps(h.name)},"values":{_percentiles_json(h)}}}' for h in hists)
    return f'{{"histograms":{{"supported_quantiles":{_supported_json()},"computed_quantiles":[{computed}]}}}}'


def render_json(scalars: list[tuple[str, int]], hists: list[Histogram], mode: str) -> str:
    items = [f'{{"name":{json.dumps(name)},"value":{value}}}' for name, value in scalars]
    if hists:
        items.append(_histograms_json(hists, mode))
    return '{"stats":[' + ",".join(items) + "]}"
