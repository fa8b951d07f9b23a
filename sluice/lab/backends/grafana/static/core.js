/* The parts of Grafana 8's front end that decide what a dashboard asks Prometheus for, with no
 * DOM: time ranges (dateMath), $__interval (rangeUtil.calculateInterval), the Prometheus
 * datasource's step (adjustInterval, alignRange), template variables (metrics(...) queries,
 * their regex and sort), interpolation ($var, [[var]], ${var}), legends ({{label}}) and the
 * matrix → series transform. Loaded by dashboard.html as window.GrafanaCore and by the unit
 * tests under node (module.exports).
 */
(function (root, factory) {
  var api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.GrafanaCore = api;
})(this, function () {
  "use strict";

  var UNITS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000, M: 2592000000, y: 31536000000 };

  /* rangeUtil.intervalToMs: "15s" → 15000, "1m" → 60000, ">10s" keeps the number. */
  function intervalToMs(text) {
    if (text === undefined || text === null || text === "") return 0;
    var m = /^>?\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|M|y)?$/.exec(String(text).trim());
    if (!m) throw new Error('Invalid interval string, has to be either unit-less or end with one of the following units: "y, M, w, d, h, m, s, ms"');
    return Number(m[1]) * UNITS[m[2] || "s"];
  }

  function intervalToSeconds(text) {
    return intervalToMs(text) / 1000;
  }

  /* rangeUtil.roundInterval: snap to a human-friendly bucket. */
  var ROUND = [
    [10, 1], [15, 10], [35, 20], [75, 50], [150, 100], [350, 200], [750, 500], [1500, 1000],
    [3500, 2000], [7500, 5000], [12500, 10000], [17500, 15000], [25000, 20000], [45000, 30000],
    [90000, 60000], [210000, 120000], [450000, 300000], [750000, 600000], [1050000, 900000],
    [1500000, 1200000], [2700000, 1800000], [5400000, 3600000], [9000000, 7200000],
    [16200000, 10800000], [32400000, 21600000], [86400000, 43200000], [604800000, 86400000],
    [1814400000, 604800000], [3628800000, 2592000000],
  ];
  function roundInterval(ms) {
    for (var i = 0; i < ROUND.length; i++) if (ms < ROUND[i][0]) return ROUND[i][1];
    return 31536000000;
  }

  /* rangeUtil.secondsToHms as intervals are shown: 30 → "30s", 60 → "1m", 0.5 → "500ms". */
  function msToInterval(ms) {
    var units = [["y", 31536000000], ["w", 604800000], ["d", 86400000], ["h", 3600000], ["m", 60000], ["s", 1000]];
    for (var i = 0; i < units.length; i++) {
      if (ms >= units[i][1] && ms % units[i][1] === 0) return ms / units[i][1] + units[i][0];
    }
    if (ms >= 1000) return ms / 1000 + "s";
    return ms + "ms";
  }

  /* rangeUtil.calculateInterval(range, resolution, lowLimit). */
  function calculateInterval(rangeMs, resolution, lowLimit) {
    var lowMs = lowLimit ? intervalToMs(lowLimit) : 0;
    var intervalMs = roundInterval(rangeMs / Math.max(1, resolution));
    if (lowMs > intervalMs) intervalMs = lowMs;
    return { intervalMs: intervalMs, interval: msToInterval(intervalMs) };
  }

  /* PrometheusDatasource.adjustInterval: the step for a query_range, in seconds. */
  function adjustInterval(intervalSec, minIntervalSec, rangeSec, intervalFactor) {
    var safeInterval = rangeSec / 11000;
    if (safeInterval > 1) safeInterval = Math.ceil(safeInterval);
    return Math.max(intervalSec * (intervalFactor || 1), minIntervalSec, safeInterval);
  }

  /* prometheus/datasource alignRange: start and end on multiples of the step. */
  function alignRange(start, end, step, utcOffsetSec) {
    var offset = utcOffsetSec || 0;
    return {
      start: Math.floor((start + offset) / step) * step - offset,
      end: Math.floor((end + offset) / step) * step - offset,
    };
  }

  /* dateMath.parse for what dashboards use: "now", "now-1h", "now-7d/d", epoch ms. */
  function parseTime(text, roundUp, now) {
    now = now === undefined ? Date.now() : now;
    if (typeof text === "number") return text;
    text = String(text).trim();
    if (/^\d+$/.test(text)) return Number(text);
    if (text.indexOf("now") !== 0) {
      var t = Date.parse(text);
      if (isNaN(t)) throw new Error("invalid time " + text);
      return t;
    }
    var d = new Date(now);
    var rest = text.slice(3);
    var re = /([+-])(\d+)(ms|s|m|h|d|w|M|y)|\/(s|m|h|d|w|M|y)/g;
    var m, pos = 0;
    while ((m = re.exec(rest)) !== null) {
      if (m.index !== pos) throw new Error("invalid time " + text);
      pos = re.lastIndex;
      if (m[1]) {
        var n = Number(m[2]) * (m[1] === "-" ? -1 : 1);
        if (m[3] === "M") d.setUTCMonth(d.getUTCMonth() + n);
        else if (m[3] === "y") d.setUTCFullYear(d.getUTCFullYear() + n);
        else d = new Date(d.getTime() + n * UNITS[m[3]]);
      } else {
        d = roundTo(d, m[4], roundUp);
      }
    }
    if (pos !== rest.length) throw new Error("invalid time " + text);
    return d.getTime();
  }

  function roundTo(d, unit, up) {
    var x = new Date(d.getTime());
    var order = ["y", "M", "w", "d", "h", "m", "s"];
    if (unit === "w") {
      x.setUTCHours(0, 0, 0, 0);
      x = new Date(x.getTime() - x.getUTCDay() * 86400000);
    } else {
      var i = order.indexOf(unit);
      if (i <= 0) x.setUTCMonth(0);
      if (i <= 1) x.setUTCDate(1);
      if (i <= 3) x.setUTCHours(0);
      if (i <= 4) x.setUTCMinutes(0);
      if (i <= 5) x.setUTCSeconds(0);
      x.setUTCMilliseconds(0);
    }
    if (!up) return x;
    var next = new Date(x.getTime());
    if (unit === "y") next.setUTCFullYear(next.getUTCFullYear() + 1);
    else if (unit === "M") next.setUTCMonth(next.getUTCMonth() + 1);
    else next = new Date(next.getTime() + UNITS[unit]);
    return new Date(next.getTime() - 1);
  }

  /* The Prometheus query time of a range edge: seconds, rounded up (getPrometheusTime). */
  function prometheusTime(ms) {
    return Math.ceil(ms / 1000);
  }

  /* Everything a panel's query_range call needs, as Grafana computes it. */
  function queryPlan(opts) {
    var from = opts.from, to = opts.to; // ms
    var lowLimit = opts.panelInterval || opts.datasourceInterval || "";
    var calc = calculateInterval(to - from, opts.maxDataPoints, lowLimit);
    var intervalSec = calc.intervalMs / 1000;
    var target = opts.target || {};
    var start = prometheusTime(from), end = prometheusTime(to);
    var rangeSec = Math.ceil(end - start);
    var minIntervalText = target.interval || calc.interval;
    var minIntervalSec = intervalToSeconds(interpolate(minIntervalText, opts.variables || {}, {}));
    var step = adjustInterval(intervalSec, minIntervalSec, rangeSec, target.intervalFactor || 1);
    var aligned = alignRange(start, end, step, opts.utcOffsetSec || 0);
    var builtins = rangeVars(from, to);
    var scrapeSec = Math.max(intervalToSeconds(opts.datasourceInterval || "15s"), 1);
    if (step === intervalSec) {
      builtins.__interval = calc.interval;
      builtins.__interval_ms = String(calc.intervalMs);
    } else {
      // The datasource adjusted the interval: Grafana then shows it in seconds ("30s").
      builtins.__interval = step + "s";
      builtins.__interval_ms = String(step * 1000);
    }
    builtins.__rate_interval = Math.max(step + scrapeSec, 4 * scrapeSec) + "s";
    return {
      expr: interpolate(target.expr || "", opts.variables || {}, builtins, prometheusEscape),
      start: aligned.start,
      end: aligned.end,
      step: step,
      interval: calc.interval,
      intervalMs: calc.intervalMs,
    };
  }

  function rangeVars(from, to) {
    var ms = Math.round(to - from);
    var s = Math.round(ms / 1000);
    return { __range_ms: String(ms), __range_s: String(s), __range: s + "s" };
  }

  /* Prometheus datasource interpolateQueryExpr for a single value: escape \ and '. */
  function prometheusEscape(value) {
    return String(value).replace(/\\/g, "\\\\").replace(/'/g, "\\'");
  }

  /* templateSrv.replace: $var, [[var]], [[var:fmt]], ${var}, ${var:fmt}. */
  var VAR_RE = /\$(\w+)|\[\[([\s\S]+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}/g;
  function interpolate(text, variables, builtins, escape) {
    if (!text) return text || "";
    return String(text).replace(VAR_RE, function (match, v1, v2, fmt2, v3, field, fmt3) {
      var name = v1 || v2 || v3;
      var fmt = fmt2 || fmt3;
      var value;
      if (builtins && Object.prototype.hasOwnProperty.call(builtins, name)) value = builtins[name];
      else if (variables && Object.prototype.hasOwnProperty.call(variables, name)) {
        value = variables[name];
        if (escape && fmt !== "raw") value = escape(value);
      } else return match;
      if (fmt === "regex") value = String(value).replace(/[\\^$*+?.()|[\]{}/]/g, "\\$&");
      return String(value);
    });
  }

  /* stringToJsRegex: "/re/flags" → RegExp; a plain string is a RegExp too. */
  function stringToJsRegex(text) {
    if (text.charAt(0) !== "/") return new RegExp("^" + text + "$");
    var m = /^\/(.*)\/([gmiyuvsd]*)$/.exec(text);
    if (!m) throw new Error("'" + text + "' is not a valid regular expression.");
    return new RegExp(m[1], m[2]);
  }

  /* What a Prometheus variable query asks for (PrometheusMetricFindQuery). */
  function parseVariableQuery(query) {
    query = String(query || "").trim();
    var m;
    if ((m = /^label_names\(\)\s*$/.exec(query))) return { kind: "label_names" };
    if ((m = /^label_values\((?:(.+),\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\)\s*$/.exec(query))) {
      return m[1] ? { kind: "series_label", match: m[1], label: m[2] } : { kind: "label_values", label: m[2] };
    }
    if ((m = /^metrics\((.+)\)\s*$/.exec(query))) return { kind: "metrics", regex: m[1] };
    if ((m = /^query_result\((.+)\)\s*$/.exec(query))) return { kind: "query_result", query: m[1] };
    return { kind: "query_result", query: query };
  }

  /* metrics(re): the metric names the regex matches (a substring match, as RegExp.test). */
  function filterMetricNames(names, regex) {
    var re = new RegExp(regex);
    return names.filter(function (n) { return re.test(n); });
  }

  /* The variable's options from the query's values: the regex keeps group 1 (or the named
   * group "value"/"text"), values it does not match are dropped, duplicates removed, then sorted
   * (1 alphabetical asc, 2 desc, 3 numerical asc, 4 desc, 5/6 case-insensitive). */
  function variableOptions(values, regexText, sort) {
    var re = regexText ? stringToJsRegex(regexText) : null;
    var out = [], seen = {};
    values.forEach(function (raw) {
      var text = String(raw), value = text;
      if (re) {
        re.lastIndex = 0;
        var m = re.exec(text);
        if (!m) return;
        if (m.groups && (m.groups.value || m.groups.text)) {
          value = m.groups.value || m.groups.text;
          text = m.groups.text || value;
        } else if (m.length > 1) {
          value = m[1];
          text = m[1];
        } else {
          value = m[0];
          text = m[0];
        }
      }
      if (Object.prototype.hasOwnProperty.call(seen, value)) return;
      seen[value] = true;
      out.push({ text: text, value: value });
    });
    return sortOptions(out, sort || 0);
  }

  function sortOptions(options, sortOrder) {
    if (sortOrder === 0) return options;
    var kind = Math.ceil(sortOrder / 2), reverse = sortOrder % 2 === 0;
    var key;
    if (kind === 1) key = function (o) { return o.text; };
    else if (kind === 2) key = function (o) { var m = /.*?(\d+).*/.exec(o.text); return m ? parseInt(m[1], 10) : -1; };
    else key = function (o) { return o.text.toLowerCase(); };
    var sorted = options.slice().sort(function (a, b) {
      var ka = key(a), kb = key(b);
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
    return reverse ? sorted.reverse() : sorted;
  }

  /* The current option after a refresh: the one with the previous text, else the first. */
  function pickCurrent(options, current) {
    var text = current && current.text;
    for (var i = 0; i < options.length; i++) if (options[i].text === text || options[i].value === (current && current.value)) return options[i];
    if (options.length) return options[0];
    return current && current.text !== undefined ? { text: current.text, value: current.value } : { text: "", value: "" };
  }

  /* renderLegendFormat: {{label}} → the series' label value. */
  function renderLegend(format, labels) {
    return String(format).replace(/\{\{\s*(.+?)\s*\}\}/g, function (_, name) {
      return labels[name] !== undefined ? labels[name] : "";
    });
  }

  function seriesName(labels, legendFormat) {
    if (legendFormat) return renderLegend(legendFormat, labels);
    var name = labels.__name__ || "";
    var parts = Object.keys(labels).filter(function (k) { return k !== "__name__"; }).sort().map(function (k) { return k + '="' + labels[k] + '"'; });
    if (!parts.length) return name || "{}";
    return name + "{" + parts.join(", ") + "}";
  }

  /* A query_range response → one x array (seconds, every step from start to end) and one y
   * array per series, nulls where Prometheus had no sample (as Grafana fills them). */
  function matrixToSeries(data, plan, legendFormat) {
    var xs = [];
    for (var t = plan.start; t <= plan.end; t += plan.step) xs.push(t);
    var index = {};
    xs.forEach(function (x, i) { index[x] = i; });
    var series = [];
    var result = (data && data.data && data.data.result) || [];
    result.forEach(function (r) {
      var ys = new Array(xs.length).fill(null);
      (r.values || []).forEach(function (pt) {
        var i = index[Math.round(Number(pt[0]) * 1000) / 1000];
        if (i === undefined) return;
        var v = parseFloat(pt[1]);
        ys[i] = isFinite(v) ? v : null;
      });
      series.push({ name: seriesName(r.metric || {}, legendFormat), labels: r.metric || {}, values: ys });
    });
    return { x: xs, series: series };
  }

  /* The "short" unit: 1.5 K, 2 Mil, … as Grafana's y axes show it. */
  function formatShort(v, decimals) {
    if (v === null || v === undefined || isNaN(v)) return "";
    var units = ["", " K", " Mil", " Bil", " Tri"];
    var a = Math.abs(v), i = 0;
    while (a >= 1000 && i < units.length - 1) { a /= 1000; v /= 1000; i++; }
    var d = decimals !== undefined ? decimals : a === 0 || a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
    return Number(v.toFixed(d)).toString() + units[i];
  }

  /* Legacy rows → a grid: each row's panels in 12 columns by "span", the row's height. */
  function layoutRows(dashboard) {
    var rows = dashboard.rows || [];
    if (!rows.length && dashboard.panels) {
      return [{ height: 250, showTitle: false, title: "", panels: dashboard.panels.map(function (p) {
        return Object.assign({}, p, { span: p.gridPos ? Math.max(1, Math.round(p.gridPos.w / 2)) : 12 });
      }) }];
    }
    return rows.map(function (row) {
      var h = parseInt(String(row.height || "250"), 10) || 250;
      return {
        height: h, title: row.title || "", showTitle: !!row.showTitle, collapse: !!row.collapse,
        panels: (row.panels || []).map(function (p) { return Object.assign({}, p, { span: p.span || 12 }); }),
      };
    });
  }

  return {
    intervalToMs: intervalToMs, intervalToSeconds: intervalToSeconds, roundInterval: roundInterval,
    msToInterval: msToInterval, calculateInterval: calculateInterval, adjustInterval: adjustInterval,
    alignRange: alignRange, parseTime: parseTime, prometheusTime: prometheusTime, queryPlan: queryPlan,
    interpolate: interpolate, stringToJsRegex: stringToJsRegex, parseVariableQuery: parseVariableQuery,
    filterMetricNames: filterMetricNames, variableOptions: variableOptions, sortOptions: sortOptions,
    pickCurrent: pickCurrent, renderLegend: renderLegend, seriesName: seriesName,
    matrixToSeries: matrixToSeries, formatShort: formatShort, layoutRows: layoutRows,
    prometheusEscape: prometheusEscape,
  };
});
