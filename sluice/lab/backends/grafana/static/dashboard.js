/* The dashboard page (/d/<uid>): loads the dashboard from the API, resolves its template
 * variables through the datasource proxy, lays out its rows of panels and draws each graph panel
 * with uPlot from /api/v1/query_range, refreshing on the dashboard's interval. What Grafana
 * computes (intervals, steps, variables, legends) comes from core.js.
 *
 * window.grafanaDashboard exposes what was drawn (for tests and curious users):
 *   { ready, refreshes, variables: {name: value}, panels: {title: {uplot, series, points, queries, error}} }
 */
(function () {
  "use strict";
  var C = window.GrafanaCore;
  var PALETTE = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9", "#705DA0",
    "#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477"];
  var TIME_LABELS = { m: "minute", h: "hour", d: "day", w: "week", M: "month", y: "year" };
  var state = { dashboard: null, meta: null, datasources: [], variables: [], panels: [], timer: null,
    from: "now-1h", to: "now", refresh: "", busy: false };
  var exposed = window.grafanaDashboard = { ready: false, refreshes: 0, variables: {}, panels: {}, errors: [] };

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (r.status === 401) {
        location.href = "/login";
        throw new Error("Unauthorized");
      }
      return r.text().then(function (body) {
        var data;
        try { data = body ? JSON.parse(body) : null; } catch (e) { data = null; }
        if (!r.ok) {
          var msg = (data && (data.error || data.message)) || body || r.statusText;
          throw new Error(r.status + " " + msg);
        }
        return data;
      });
    });
  }

  function datasourceFor(name) {
    if (name && typeof name === "object") name = name.uid || name.name;
    var list = state.datasources;
    if (!name || name === "default") return list.filter(function (d) { return d.isDefault; })[0] || list[0];
    return list.filter(function (d) { return d.name === name || d.uid === name; })[0];
  }

  function dsBase(ds) {
    return ds.access === "direct" ? ds.url.replace(/\/$/, "") : "/api/datasources/proxy/" + ds.id;
  }

  function timeRange() {
    var now = Date.now();
    return { from: C.parseTime(state.from, false, now), to: C.parseTime(state.to, true, now) };
  }

  function varValues() {
    var out = {};
    state.variables.forEach(function (v) { out[v.name] = v.current ? v.current.value : ""; });
    return out;
  }

  // --- template variables ------------------------------------------------------------------

  function loadVariable(v) {
    if (v.type === "custom") {
      v.options = String(v.query || "").split(/,(?![^{]*})/).map(function (s) { s = s.trim(); return { text: s, value: s }; });
      return Promise.resolve();
    }
    if (v.type === "constant" || v.type === "textbox") {
      v.options = [{ text: v.query || "", value: v.query || "" }];
      return Promise.resolve();
    }
    if (v.type === "interval") {
      v.options = String(v.query || "").split(",").map(function (s) { s = s.trim(); return { text: s, value: s }; });
      return Promise.resolve();
    }
    if (v.type !== "query") {
      v.options = v.options || [];
      return Promise.resolve();
    }
    var ds = datasourceFor(v.datasource);
    if (!ds) return Promise.reject(new Error("Datasource " + v.datasource + " was not found"));
    var q = C.parseVariableQuery(C.interpolate(v.query, varValues(), {}));
    var range = timeRange();
    var span = "start=" + C.prometheusTime(range.from) + "&end=" + C.prometheusTime(range.to);
    var base = dsBase(ds);
    var p;
    if (q.kind === "metrics") {
      p = getJSON(base + "/api/v1/label/__name__/values?" + span).then(function (r) { return C.filterMetricNames(r.data || [], q.regex); });
    } else if (q.kind === "label_values") {
      p = getJSON(base + "/api/v1/label/" + encodeURIComponent(q.label) + "/values?" + span).then(function (r) { return r.data || []; });
    } else if (q.kind === "label_names") {
      p = getJSON(base + "/api/v1/labels?" + span).then(function (r) { return r.data || []; });
    } else if (q.kind === "series_label") {
      p = getJSON(base + "/api/v1/series?match[]=" + encodeURIComponent(q.match) + "&" + span).then(function (r) {
        return (r.data || []).map(function (s) { return s[q.label]; }).filter(function (x) { return x !== undefined; });
      });
    } else {
      p = getJSON(base + "/api/v1/query?query=" + encodeURIComponent(q.query) + "&time=" + C.prometheusTime(range.to)).then(function (r) {
        return ((r.data && r.data.result) || []).map(function (s) {
          return C.seriesName(s.metric || {}, "") + " " + (s.value ? s.value[1] : "") + " " + (s.value ? s.value[0] * 1000 : "");
        });
      });
    }
    return p.then(function (values) { v.options = C.variableOptions(values, v.regex, v.sort); });
  }

  function loadVariables(params) {
    var chain = Promise.resolve();
    state.variables.forEach(function (v) {
      chain = chain.then(function () {
        return loadVariable(v).catch(function (err) {
          v.error = String(err.message || err);
          exposed.errors.push("variable " + v.name + ": " + v.error);
          v.options = v.options || [];
        }).then(function () {
          var fromUrl = params.get("var-" + v.name);
          var wanted = fromUrl !== null ? { text: fromUrl, value: fromUrl } : v.current;
          v.current = C.pickCurrent(v.options, wanted);
        });
      });
    });
    return chain;
  }

  function renderVariables() {
    var bar = document.getElementById("submenu");
    bar.innerHTML = "";
    state.variables.forEach(function (v) {
      if (v.hide === 2) return;
      var select = el("select", { class: "variable-select", id: "var-" + v.name, "aria-label": "Template variable " + v.name });
      var opts = v.options.length ? v.options : [v.current];
      opts.forEach(function (o) {
        var opt = el("option", { value: o.value, text: o.text });
        if (v.current && o.value === v.current.value) opt.selected = true;
        select.appendChild(opt);
      });
      select.addEventListener("change", function () {
        v.current = v.options.filter(function (o) { return o.value === select.value; })[0] || { text: select.value, value: select.value };
        updateUrl();
        refreshPanels();
      });
      var label = v.hide === 1 ? null : el("label", { class: "variable-label", for: "var-" + v.name, text: v.label || v.name });
      bar.appendChild(el("div", { class: "variable-link-wrapper" + (v.error ? " has-error" : ""), title: v.error || "" }, [label, select]));
    });
    exposed.variables = varValues();
  }

  // --- layout and panels -------------------------------------------------------------------

  function renderLayout() {
    var body = document.getElementById("dashboard");
    body.innerHTML = "";
    C.layoutRows(state.dashboard).forEach(function (row) {
      if (row.showTitle) body.appendChild(el("div", { class: "dashboard-row-title", text: C.interpolate(row.title, varValues(), {}) }));
      if (row.collapse) return;
      var grid = el("div", { class: "dashboard-row" });
      grid.style.setProperty("--row-height", row.height + "px");
      row.panels.forEach(function (p) {
        var panel = { model: p, uplot: null, seriesKey: "" };
        var title = el("div", { class: "panel-title", text: C.interpolate(p.title || "", varValues(), {}) });
        var status = el("span", { class: "panel-status" });
        var plot = el("div", { class: "panel-plot" });
        var empty = el("div", { class: "panel-empty", text: "No data" });
        var box = el("div", { class: "panel-container" + (p.transparent ? " panel-transparent" : ""),
          "data-panel-id": String(p.id), "data-panel-title": p.title || "" },
          [el("div", { class: "panel-header" }, [status, title]), el("div", { class: "panel-content" }, [plot, empty])]);
        box.style.gridColumn = "span " + Math.max(1, Math.min(12, p.span));
        grid.appendChild(box);
        panel.box = box; panel.plot = plot; panel.status = status; panel.empty = empty;
        state.panels.push(panel);
        exposed.panels[p.title || String(p.id)] = { uplot: null, series: [], points: 0, queries: [], error: null };
        if (p.type !== "graph" && p.type !== "timeseries") {
          empty.textContent = p.type === "text" ? String(p.content || "") : "Panel type " + p.type + " is not drawn by this stand-in";
          panel.unsupported = true;
        }
      });
      body.appendChild(grid);
    });
  }

  function axisValues(u, splits) {
    return splits.map(function (v) { return C.formatShort(v); });
  }

  /* "2026-12-02 01:40:30", as Grafana's tooltips show a time. */
  function fullTime(ts, utc) {
    var d = new Date(ts * 1000);
    var iso = utc ? d.toISOString() : new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString();
    return iso.slice(0, 10) + " " + iso.slice(11, 19);
  }

  /* Grafana's time axis labels: 24-hour clock, more detail for shorter ranges. */
  function timeValues(utc) {
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return function (u, splits) {
      var span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0;
      return splits.map(function (ts) {
        var d = new Date(ts * 1000);
        var Y = utc ? d.getUTCFullYear() : d.getFullYear(), M = two((utc ? d.getUTCMonth() : d.getMonth()) + 1);
        var D = two(utc ? d.getUTCDate() : d.getDate()), h = two(utc ? d.getUTCHours() : d.getHours());
        var m = two(utc ? d.getUTCMinutes() : d.getMinutes()), s = two(utc ? d.getUTCSeconds() : d.getSeconds());
        if (span <= 120) return h + ":" + m + ":" + s;
        if (span <= 86400) return h + ":" + m;
        if (span <= 86400 * 365) return M + "/" + D + " " + h + ":" + m;
        return Y + "-" + M;
      });
    };
  }

  function buildOptions(panel, names, width, height) {
    var p = panel.model;
    var utc = (state.dashboard.timezone || "") === "utc";
    var y = (p.yaxes && p.yaxes[0]) || {};
    var fillAlpha = Math.max(0, Math.min(10, p.fill === undefined ? 1 : p.fill)) / 10;
    var series = [{}].concat(names.map(function (name, i) {
      var color = (p.aliasColors && p.aliasColors[name]) || PALETTE[i % PALETTE.length];
      return {
        label: name, stroke: color, width: p.lines === false ? 0 : (p.linewidth || 1),
        fill: fillAlpha > 0 ? hexAlpha(color, fillAlpha) : undefined,
        spanGaps: p.nullPointMode === "connected",
        points: { show: !!p.points, size: (p.pointradius || 2) * 2 },
        value: function (u, v) { return v === null || v === undefined ? "" : C.formatShort(v); },
      };
    }));
    var yRange = function (u, min, max) {
      var lo = y.min !== null && y.min !== undefined && y.min !== "" ? Number(y.min) : min;
      var hi = y.max !== null && y.max !== undefined && y.max !== "" ? Number(y.max) : max;
      if (hi === null || hi === undefined || isNaN(hi) || hi <= lo) hi = (lo || 0) + 1;
      return uPlot.rangeNum(lo, hi, 0.1, true);
    };
    return {
      width: width, height: height, series: series,
      tzDate: utc ? function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); } : undefined,
      legend: { show: !(p.legend && p.legend.show === false), live: false },
      cursor: { drag: { x: false, y: false } },
      hooks: { setCursor: [function (u) { showTooltip(panel, u, utc); }] },
      scales: { x: { time: true }, y: { range: yRange } },
      axes: [
        { stroke: "#8e8e8e", grid: { stroke: "rgba(255,255,255,0.08)", width: 1 }, ticks: { stroke: "rgba(255,255,255,0.08)" },
          values: timeValues(utc), space: 60 },
        { stroke: "#8e8e8e", grid: { stroke: "rgba(255,255,255,0.08)", width: 1 }, ticks: { show: false }, values: axisValues, size: 50 },
      ],
    };
  }

  /* The graph panel's shared tooltip: the time and every series' value under the cursor. */
  function showTooltip(panel, u, utc) {
    var tip = panel.tooltip;
    if (!tip) {
      tip = panel.tooltip = el("div", { class: "graph-tooltip" });
      panel.plot.parentNode.appendChild(tip);
    }
    var idx = u.cursor.idx;
    if (idx === null || idx === undefined || u.cursor.left < 0) {
      tip.style.display = "none";
      return;
    }
    var ts = u.data[0][idx];
    var rows = [el("div", { class: "graph-tooltip-time", text: fullTime(ts, utc) })];
    for (var i = 1; i < u.series.length; i++) {
      var v = u.data[i][idx];
      if (v === null || v === undefined) continue;
      var mark = el("span", { class: "graph-tooltip-marker" });
      mark.style.background = u.series[i].stroke();
      rows.push(el("div", { class: "graph-tooltip-row" }, [mark, el("span", { text: u.series[i].label + ": " }),
        el("b", { text: C.formatShort(v) })]));
    }
    tip.innerHTML = "";
    rows.forEach(function (r) { tip.appendChild(r); });
    var left = u.cursor.left + u.over.offsetLeft + 12;
    if (left + 160 > panel.plot.clientWidth) left = Math.max(0, left - 184);
    tip.style.left = left + "px";
    tip.style.top = (u.cursor.top + u.over.offsetTop) + "px";
    tip.style.display = rows.length > 1 ? "block" : "none";
  }

  function hexAlpha(hex, alpha) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16 & 255) + "," + (n >> 8 & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function queryPanel(panel, range, values) {
    var p = panel.model;
    var ds = datasourceFor(p.datasource);
    var info = exposed.panels[p.title || String(p.id)];
    if (!ds) return Promise.reject(new Error("Datasource " + p.datasource + " was not found"));
    var width = Math.max(100, panel.plot.clientWidth || 400);
    var targets = (p.targets || []).filter(function (t) { return !t.hide && t.expr; });
    info.queries = [];
    return Promise.all(targets.map(function (t) {
      var plan = C.queryPlan({
        from: range.from, to: range.to, maxDataPoints: p.maxDataPoints || width,
        panelInterval: p.interval ? C.interpolate(p.interval, values, {}) : "",
        datasourceInterval: (ds.jsonData && ds.jsonData.timeInterval) || "15s",
        target: t, variables: values,
      });
      var url = dsBase(ds) + "/api/v1/query_range?query=" + encodeURIComponent(plan.expr) +
        "&start=" + plan.start + "&end=" + plan.end + "&step=" + plan.step;
      info.queries.push({ expr: plan.expr, start: plan.start, end: plan.end, step: plan.step, interval: plan.interval });
      return getJSON(url).then(function (data) {
        return C.matrixToSeries(data, plan, C.interpolate(t.legendFormat || "", values, {}));
      });
    }));
  }

  function mergeFrames(frames) {
    var xsSet = {};
    frames.forEach(function (f) { f.x.forEach(function (x) { xsSet[x] = true; }); });
    var xs = Object.keys(xsSet).map(Number).sort(function (a, b) { return a - b; });
    var pos = {};
    xs.forEach(function (x, i) { pos[x] = i; });
    var names = [], cols = [];
    frames.forEach(function (f) {
      f.series.forEach(function (s) {
        var col = new Array(xs.length).fill(null);
        f.x.forEach(function (x, i) { col[pos[x]] = s.values[i]; });
        names.push(s.name);
        cols.push(col);
      });
    });
    return { xs: xs, names: names, cols: cols };
  }

  function draw(panel, merged) {
    var p = panel.model;
    var info = exposed.panels[p.title || String(p.id)];
    var cols = merged.cols;
    if (p.nullPointMode === "null as zero") cols = cols.map(function (c) { return c.map(function (v) { return v === null ? 0 : v; }); });
    var data = [merged.xs].concat(cols);
    var key = merged.names.join("\u0000");
    var width = Math.max(100, panel.plot.clientWidth || 400);
    var legendRoom = p.legend && p.legend.show === false ? 0 : 28 * Math.min(3, Math.max(1, Math.ceil(merged.names.length / 4)));
    var height = Math.max(80, panel.box.clientHeight - 34 - legendRoom - 10);
    if (!panel.uplot || panel.seriesKey !== key) {
      if (panel.uplot) panel.uplot.destroy();
      panel.plot.innerHTML = "";
      panel.uplot = new uPlot(buildOptions(panel, merged.names, width, height), data, panel.plot);
      panel.seriesKey = key;
    } else {
      panel.uplot.setData(data);
    }
    var points = 0;
    cols.forEach(function (c) { c.forEach(function (v) { if (v !== null) points++; }); });
    panel.empty.style.display = merged.names.length && points ? "none" : "flex";
    info.uplot = panel.uplot;
    info.series = merged.names;
    info.points = points;
  }

  function refreshPanels() {
    if (state.busy) return Promise.resolve();
    state.busy = true;
    var range = timeRange();
    var values = varValues();
    exposed.variables = values;
    return Promise.all(state.panels.map(function (panel) {
      if (panel.unsupported) return null;
      var info = exposed.panels[panel.model.title || String(panel.model.id)];
      panel.status.className = "panel-status loading";
      return queryPanel(panel, range, values).then(function (frames) {
        info.error = null;
        panel.status.className = "panel-status";
        panel.status.removeAttribute("title");
        panel.status.textContent = "";
        draw(panel, mergeFrames(frames));
      }).catch(function (err) {
        info.error = String(err.message || err);
        panel.status.className = "panel-status error";
        panel.status.title = info.error;
        panel.status.textContent = "!";
      });
    })).then(function () {
      state.busy = false;
      exposed.refreshes++;
      exposed.ready = true;
      document.body.setAttribute("data-refreshes", String(exposed.refreshes));
    });
  }

  // --- time picker, refresh, URL -----------------------------------------------------------

  function rangeLabel(from, to) {
    var m = /^now-(\d+)([mhdwMy])$/.exec(from);
    if (m && to === "now") return "Last " + m[1] + " " + TIME_LABELS[m[2]] + (m[1] === "1" ? "" : "s");
    return from + " to " + to;
  }

  function renderToolbar() {
    var picker = state.dashboard.timepicker || {};
    var options = picker.time_options || ["5m", "15m", "1h", "6h", "12h", "24h", "2d", "7d", "30d"];
    var timeSel = el("select", { id: "time-range", "aria-label": "Time range" });
    var choices = options.map(function (o) { return "now-" + o; });
    if (choices.indexOf(state.from) < 0 || state.to !== "now") choices.unshift(state.from);
    choices.forEach(function (from) {
      var opt = el("option", { value: from, text: rangeLabel(from, from === state.from ? state.to : "now") });
      if (from === state.from) opt.selected = true;
      timeSel.appendChild(opt);
    });
    timeSel.addEventListener("change", function () { state.from = timeSel.value; state.to = "now"; updateUrl(); refreshPanels(); });
    var refreshSel = el("select", { id: "refresh-picker", "aria-label": "Auto refresh" });
    [""].concat(picker.refresh_intervals || ["5s", "10s", "30s", "1m", "5m", "15m", "30m", "1h", "2h", "1d"]).forEach(function (r) {
      var opt = el("option", { value: r, text: r || "Off" });
      if (r === state.refresh) opt.selected = true;
      refreshSel.appendChild(opt);
    });
    refreshSel.addEventListener("change", function () { setRefresh(refreshSel.value); updateUrl(); });
    var button = el("button", { id: "refresh-button", class: "btn", title: "Refresh dashboard", text: "\u21bb" });
    button.addEventListener("click", function () { refreshPanels(); });
    var tools = document.getElementById("toolbar");
    tools.innerHTML = "";
    tools.appendChild(timeSel);
    tools.appendChild(button);
    tools.appendChild(refreshSel);
  }

  function setRefresh(r) {
    state.refresh = r;
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    var ms = r ? C.intervalToMs(r) : 0;
    if (ms > 0) state.timer = setInterval(refreshPanels, Math.max(1000, ms));
  }

  function updateUrl() {
    var q = new URLSearchParams();
    q.set("orgId", "1");
    q.set("from", state.from);
    q.set("to", state.to);
    state.variables.forEach(function (v) { if (v.current) q.set("var-" + v.name, v.current.value); });
    if (state.refresh) q.set("refresh", state.refresh);
    history.replaceState(null, "", location.pathname + "?" + q.toString());
  }

  function fatal(err) {
    var body = document.getElementById("dashboard");
    body.innerHTML = "";
    body.appendChild(el("div", { class: "alert-error", text: String(err.message || err) }));
    exposed.errors.push(String(err.message || err));
    exposed.failed = true;
  }

  function start() {
    var parts = location.pathname.split("/");
    var uid = decodeURIComponent(parts[2] || "");
    var params = new URLSearchParams(location.search);
    Promise.all([getJSON("/api/dashboards/uid/" + encodeURIComponent(uid)), getJSON("/api/datasources")]).then(function (res) {
      state.dashboard = res[0].dashboard;
      state.meta = res[0].meta;
      state.datasources = res[1];
      var d = state.dashboard;
      document.title = d.title + " - Grafana";
      document.getElementById("dash-title").textContent = d.title;
      document.getElementById("dash-folder").textContent = (state.meta.folderTitle || "General") + " / ";
      state.from = params.get("from") || (d.time && d.time.from) || "now-6h";
      state.to = params.get("to") || (d.time && d.time.to) || "now";
      state.refresh = params.has("refresh") ? params.get("refresh") : (d.refresh || "");
      state.variables = ((d.templating && d.templating.list) || []).map(function (v) { return Object.assign({ options: [] }, v); });
      renderToolbar();
      return loadVariables(params).then(function () {
        renderVariables();
        renderLayout();
        updateUrl();
        setRefresh(state.refresh);
        return refreshPanels();
      });
    }).catch(fatal);
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () {
        state.panels.forEach(function (panel) { if (panel.uplot) { panel.uplot.destroy(); panel.uplot = null; } });
        refreshPanels();
      }, 200);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
