/* Discover, after Kibana 7.14's legacy doc table: pick an index pattern and a time range, type a
 * KQL or Lucene query, see the hit count, a histogram of hits over time (uPlot bars; drag across
 * it to zoom into that range) and the newest 500 documents (time + _source summary, or the
 * fields chosen in the sidebar as columns), each row expandable to a table of its fields and
 * to its JSON. State lives in the URL as Kibana keeps it (`#/?_g=(time:…)&_a=(index:…,query:…)`).
 * The server builds and runs the Elasticsearch request (POST /internal/discover/search); this
 * page never talks to Elasticsearch. window.kibanaDiscover exposes what is shown, for tests.
 * Deliberate difference: no filter pills, highlighting, saved searches, sorting by column or
 * field popularity; documents are read from _source (Kibana's "Read fields from _source" mode).
 */
(function () {
  "use strict";
  var esc = Kbn.esc;
  function $(id) { return document.getElementById(id); }

  var META = ["_id", "_index", "_score", "_type"];
  var state = {
    g: { filters: [], refreshInterval: { pause: true, value: 0 }, time: { from: "now-15m", to: "now" } },
    a: { columns: ["_source"], filters: [], index: null, interval: "auto", query: { language: "kuery", query: "" }, sort: [] },
  };
  var patterns = [], fieldTypes = {}, result = null, expanded = {}, details = {}, plot = null, timer = null, seq = 0, inflight = false;
  var shownState = window.kibanaDiscover = {
    ready: false, searches: 0, total: null, rows: 0, buckets: [], interval: null, error: null, request: null,
    chart: { bars: 0, drawn: false }, columns: [], fields: [],
  };

  /* --- state <-> URL <-> controls --------------------------------------------------------- */

  function readUrl() {
    var h = Kbn.readHash(location.hash);
    if (h._g && typeof h._g === "object") {
      if (h._g.time && h._g.time.from && h._g.time.to) state.g.time = { from: String(h._g.time.from), to: String(h._g.time.to) };
      if (h._g.refreshInterval) state.g.refreshInterval = { pause: h._g.refreshInterval.pause !== false, value: Number(h._g.refreshInterval.value) || 0 };
    }
    if (h._a && typeof h._a === "object") {
      if (typeof h._a.index === "string") state.a.index = h._a.index;
      if (Array.isArray(h._a.columns) && h._a.columns.length) state.a.columns = h._a.columns.map(String);
      if (typeof h._a.interval === "string") state.a.interval = h._a.interval;
      if (h._a.query && typeof h._a.query === "object") {
        state.a.query = { language: h._a.query.language === "lucene" ? "lucene" : "kuery", query: String(h._a.query.query || "") };
      }
    }
  }

  function writeUrl() {
    history.replaceState(null, "", location.pathname + Kbn.writeHash({ _g: state.g, _a: state.a }));
  }

  function syncControls() {
    $("queryInput").value = state.a.query.query;
    $("languageSwitch").textContent = state.a.query.language === "kuery" ? "KQL" : "Lucene";
    $("queryInput").placeholder = state.a.query.language === "kuery" ? "Search" : "Search… (e.g. status:200 AND extension:PHP)";
    $("timeFrom").value = state.g.time.from;
    $("timeTo").value = state.g.time.to;
    var quick = state.g.time.from + "|" + state.g.time.to, sel = $("quickRange");
    sel.value = Array.prototype.some.call(sel.options, function (o) { return o.value === quick; }) ? quick : "custom";
    $("refreshInterval").value = state.g.refreshInterval.pause ? "0" : String(state.g.refreshInterval.value);
    if (!$("refreshInterval").value) $("refreshInterval").value = "0";
    $("intervalSelect").value = state.a.interval;
    $("indexPattern").value = state.a.index || "";
  }

  function pattern() {
    for (var i = 0; i < patterns.length; i++) if (patterns[i].id === state.a.index) return patterns[i];
    return null;
  }

  /* --- loading ------------------------------------------------------------------------------ */

  function init() {
    Kbn.header("discover");
    readUrl();
    bind();
    Promise.all([
      Kbn.api("GET", "/api/saved_objects/_find?type=index-pattern&fields=title&fields=timeFieldName&per_page=10000"),
      Kbn.api("GET", "/api/kibana/settings"),
    ]).then(function (res) {
      patterns = res[0].saved_objects.map(function (o) {
        return { id: o.id, title: o.attributes.title, timeFieldName: o.attributes.timeFieldName || null };
      }).sort(function (a, b) { return a.title.localeCompare(b.title); });
      var def = res[1].settings.defaultIndex ? res[1].settings.defaultIndex.userValue : null;
      $("indexPattern").innerHTML = patterns.map(function (p) { return '<option value="' + esc(p.id) + '">' + esc(p.title) + "</option>"; }).join("");
      if (!patterns.length) {
        $("noPatterns").hidden = false;
        shownState.ready = true;
        return;
      }
      if (!pattern()) state.a.index = patterns.some(function (p) { return p.id === def; }) ? def : patterns[0].id;
      syncControls();
      return loadFields().then(search);
    }).catch(showError);
  }

  function loadFields() {
    var p = pattern();
    return Kbn.api("GET", "/api/index_patterns/_fields_for_wildcard?pattern=" + encodeURIComponent(p.title) +
      "&allow_no_index=true&meta_fields=_source&meta_fields=_id&meta_fields=_type&meta_fields=_index&meta_fields=_score")
      .then(function (res) {
        fieldTypes = {};
        res.fields.forEach(function (f) { fieldTypes[f.name] = f; });
      });
  }

  function search() {
    var p = pattern();
    if (!p) return Promise.resolve();
    var mine = ++seq;
    inflight = true;
    writeUrl();
    return Kbn.api("POST", "/internal/discover/search", {
      index: p.id, query: state.a.query, time: state.g.time, interval: state.a.interval, timeZone: Kbn.timeZone(),
    }).then(function (res) {
      if (mine !== seq) return;
      inflight = false;
      result = res;
      expanded = {};
      $("dscError").hidden = true;
      shownState.error = null;
      render();
      shownState.searches++;
      shownState.ready = true;
    }).catch(function (err) {
      if (mine !== seq) return;
      inflight = false;
      showError(err);
    });
  }

  function showError(err) {
    var box = $("dscError");
    var type = err.body && err.body.attributes && err.body.attributes.type;
    box.textContent = (type ? type + ": " : "") + err.message;
    box.hidden = false;
    shownState.error = err.message;
    shownState.ready = true;
  }

  /* --- rendering ------------------------------------------------------------------------------ */

  function render() {
    var raw = result.rawResponse, p = pattern();
    var total = raw.hits.total && typeof raw.hits.total === "object" ? raw.hits.total.value : raw.hits.total;
    $("hits").textContent = Number(total).toLocaleString("en-US");
    $("hitsLabel").textContent = total === 1 ? "hit" : "hits";
    $("noResults").hidden = total !== 0;
    $("inspectRequest").textContent = JSON.stringify(result.request, null, 2);
    shownState.total = total;
    shownState.request = result.request;
    shownState.interval = result.interval;
    renderChart(p);
    renderTable(p);
    renderSidebar();
  }

  function renderChart(p) {
    var box = $("discoverChart"), header = $("chartHeader");
    var agg = result.rawResponse.aggregations && result.rawResponse.aggregations["2"];
    if (!p.timeFieldName || !result.interval || !agg) {
      box.hidden = header.hidden = true;
      $("chartLabel").textContent = "";
      shownState.buckets = [];
      shownState.chart = { bars: 0, drawn: false };
      return;
    }
    box.hidden = header.hidden = false;
    var from = Date.parse(result.timeRange.from), to = Date.parse(result.timeRange.to), iv = result.interval;
    $("timeRangeText").textContent = Kbn.fmtDate(from) + " - " + Kbn.fmtDate(to);
    $("chartLabel").textContent = p.timeFieldName + " per " + iv.description;
    $("scaledWarning").textContent = iv.scaled ? "This interval creates too many buckets to show in the selected time range, so it has been scaled to " +
      iv.description + "." : "";
    var buckets = agg.buckets.map(function (b) { return [b.key, b.doc_count]; });
    shownState.buckets = buckets;
    var xs = [], ys = [];
    if (iv.esParam.fixed_interval && iv.ms > 0) {
      // Fixed buckets: every bucket of the range, empty ones at zero.
      var byKey = {}, phase = buckets.length ? ((buckets[0][0] % iv.ms) + iv.ms) % iv.ms : 0;
      buckets.forEach(function (b) { byKey[b[0]] = b[1]; });
      var first = Math.floor((from - phase) / iv.ms) * iv.ms + phase;
      // null, not 0, so that empty buckets draw no bar at all.
      for (var t = first, n = 0; t <= to && n < 2000; t += iv.ms, n++) { xs.push(t / 1000); ys.push(byKey[t] || null); }
    } else {
      buckets.forEach(function (b) { xs.push(b[0] / 1000); ys.push(b[1]); });
    }
    var width = Math.max(300, box.clientWidth - 2);
    var opts = {
      width: width, height: 180, legend: { show: false },
      scales: { x: { time: true, range: function () { return [from / 1000, to / 1000]; } },
        y: { range: function (u, min, max) { return [0, Math.max(1, Math.ceil((max || 0) * 1.1))]; } } },
      series: [{}, { label: "Count", stroke: "#54b399", fill: "rgba(84,179,153,0.85)", width: 1, points: { show: false },
        paths: uPlot.paths.bars({ size: [0.9, 200], align: 1 }) }],
      axes: [{ grid: { stroke: "#eef0f4" }, values: function (u, splits) { return splits.map(function (v) { return tick(v * 1000, to - from); }); } },
        { size: 48, grid: { stroke: "#eef0f4" } }],
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: {
        setSelect: [function (u) {
          if (u.select.width < 4) return;
          var a = u.posToVal(u.select.left, "x") * 1000, b = u.posToVal(u.select.left + u.select.width, "x") * 1000;
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          setTime(new Date(a).toISOString(), new Date(b).toISOString());
        }],
        draw: [function (u) {
          shownState.chart = { bars: ys.filter(function (y) { return y > 0; }).length,
            drawn: !!(u.series[1]._paths && u.series[1]._paths.fill), width: u.width };
        }],
      },
    };
    if (plot) plot.destroy();
    box.innerHTML = "";
    plot = new uPlot(opts, [xs, ys], box);
  }

  /* Axis labels in the browser's time zone, 24-hour, as Kibana's chart shows them. */
  function tick(ms, span) {
    var d = new Date(ms), hm = ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
    if (span <= 10 * 60000) return hm + ":" + ("0" + d.getSeconds()).slice(-2);
    if (span <= 2 * 86400000) return hm;
    return Kbn.fmtDate(d).split(" @ ")[0].replace(/, \d{4}$/, "") + (span <= 14 * 86400000 ? " " + hm : "");
  }

  function valueOf(hit, flat, name) {
    if (META.indexOf(name) >= 0) return name === "_score" ? hit._score : hit[name];
    for (var i = 0; i < flat.length; i++) if (flat[i][0] === name) return flat[i][1];
    return undefined;
  }

  function sourceColumns() {
    var cols = state.a.columns.filter(function (c) { return c !== "_source"; });
    return cols;
  }

  function renderTable(p) {
    var hits = result.rawResponse.hits.hits, cols = sourceColumns(), time = p.timeFieldName;
    var head = '<tr><th style="width:24px"></th>' + (time ? '<th data-test-subj="docTableHeader-' + esc(time) + '">Time</th>' : "");
    if (!cols.length) head += '<th data-test-subj="docTableHeader-_source">_source</th>';
    cols.forEach(function (c) {
      head += '<th data-test-subj="docTableHeader-' + esc(c) + '">' + esc(c) +
        ' <button class="remove" data-remove="' + esc(c) + '" title="Remove column" data-test-subj="docTableRemoveHeader-' + esc(c) + '">&times;</button></th>';
    });
    $("docTable").querySelector("thead").innerHTML = head + "</tr>";
    var span = 1 + (time ? 1 : 0) + (cols.length || 1);
    var body = hits.map(function (hit, i) {
      var flat = Kbn.flatten(hit._source);
      var row = '<tr class="kbnDocTable__row" data-test-subj="docTableRow"><td><button class="toggle" data-row="' + i +
        '" data-test-subj="docTableExpandToggleColumn" aria-label="Toggle row details">' + (expanded[i] ? "&#9662;" : "&#9656;") + "</button></td>";
      if (time) row += '<td class="time" data-test-subj="docTableField">' + esc(Kbn.fmtDate(valueOf(hit, flat, time))) + "</td>";
      if (!cols.length) {
        var pairs = flat.concat(META.map(function (m) { return [m, valueOf(hit, flat, m)]; }));
        row += '<td data-test-subj="docTableField"><dl class="source">' + pairs.map(function (kv) {
          return "<dt>" + esc(kv[0]) + ":</dt> <dd>" + esc(Kbn.fmtValue(kv[1])) + "</dd>";
        }).join(" ") + "</dl></td>";
      }
      cols.forEach(function (c) {
        var v = valueOf(hit, flat, c);
        row += '<td data-test-subj="docTableField">' + esc(fieldTypes[c] && fieldTypes[c].type === "date" && v ? Kbn.fmtDate(v) : Kbn.fmtValue(v)) + "</td>";
      });
      row += "</tr>";
      if (expanded[i]) row += '<tr class="kbnDocTableDetails__row"><td colspan="' + span + '">' + docDetails(hit, flat, i) + "</td></tr>";
      return row;
    }).join("");
    $("docTable").querySelector("tbody").innerHTML = body;
    shownState.rows = hits.length;
    shownState.columns = cols.length ? cols : ["_source"];
  }

  function docDetails(hit, flat, i) {
    var tab = expanded[i];
    var html = '<div class="docDetails" data-test-subj="docViewer"><div class="tabs">' +
      '<button data-tab="table" data-row="' + i + '" class="' + (tab === "table" ? "active" : "") + '" data-test-subj="docViewerTab-table">Table</button>' +
      '<button data-tab="json" data-row="' + i + '" class="' + (tab === "json" ? "active" : "") + '" data-test-subj="docViewerTab-json">JSON</button></div>';
    if (tab === "json") {
      var doc = { _index: hit._index, _type: hit._type, _id: hit._id, _version: hit._version, _score: hit._score, _source: hit._source };
      if (hit.sort) doc.sort = hit.sort;
      return html + '<pre data-test-subj="kbnJsonCodeBlock">' + esc(JSON.stringify(doc, null, 2)) + "</pre></div>";
    }
    var pairs = flat.concat(META.map(function (m) { return [m, valueOf(hit, flat, m)]; }));
    pairs.sort(function (a, b) { return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0; });
    return html + '<table class="kbnTable" data-test-subj="tableDocViewer"><tbody>' + pairs.map(function (kv) {
      var on = state.a.columns.indexOf(kv[0]) >= 0;
      return '<tr data-test-subj="tableDocViewRow-' + esc(kv[0]) + '"><td style="width:1%"><button class="btn small secondary" data-toggle-column="' +
        esc(kv[0]) + '" title="Toggle column in table" data-test-subj="toggleColumnButton">' + (on ? "&minus;" : "+") + '</button></td><td class="fname">' +
        esc(kv[0]) + '</td><td class="mono" data-test-subj="tableDocViewRow-' + esc(kv[0]) + '-value">' + esc(Kbn.fmtValue(kv[1])) + "</td></tr>";
    }).join("") + "</tbody></table></div>";
  }

  function iconFor(name) {
    var f = fieldTypes[name], t = f ? f.type : "unknown";
    var letter = { string: "t", number: "#", date: "&#9719;", boolean: "b", ip: "ip", geo_point: "g", _source: "s" }[t] || "?";
    return '<span class="fieldIcon ' + esc(t) + '" title="' + esc(t) + '">' + letter + "</span>";
  }

  function renderSidebar() {
    var hits = result ? result.rawResponse.hits.hits : [];
    var present = {}, counts = {};
    hits.forEach(function (hit) {
      Kbn.flatten(hit._source).forEach(function (kv) {
        present[kv[0]] = (present[kv[0]] || 0) + 1;
        var key = kv[0], v = Kbn.fmtValue(kv[1]);
        counts[key] = counts[key] || {};
        counts[key][v] = (counts[key][v] || 0) + 1;
      });
    });
    META.forEach(function (m) { present[m] = hits.length; });
    var filter = $("fieldFilter").value.toLowerCase();
    var selected = sourceColumns();
    var names = Object.keys(present).filter(function (n) {
      var f = fieldTypes[n];
      return !(f && f.subType && f.subType.multi) && selected.indexOf(n) < 0;
    }).sort();
    function item(name, on) {
      if (filter && name.toLowerCase().indexOf(filter) < 0) return "";
      var html = '<li data-test-subj="field-' + esc(name) + '">' + iconFor(name) + '<span class="name" data-field-details="' + esc(name) +
        '" data-test-subj="field-' + esc(name) + '-showDetails">' + esc(name) + '</span><button class="btn small ' + (on ? "secondary" : "") +
        '" data-toggle-column="' + esc(name) + '" data-test-subj="fieldToggle-' + esc(name) + '">' + (on ? "remove" : "add") + "</button></li>";
      if (details[name]) html += fieldDetails(name, counts[name] || {}, present[name] || 0, hits.length);
      return html;
    }
    $("selectedFields").innerHTML = selected.map(function (n) { return item(n, true); }).join("");
    $("availableFields").innerHTML = names.map(function (n) { return item(n, false); }).join("");
    shownState.fields = names;
  }

  function fieldDetails(name, counts, exists, total) {
    var top = Object.keys(counts).map(function (v) { return [v, counts[v]]; }).sort(function (a, b) { return b[1] - a[1]; }).slice(0, 5);
    return '<div class="fieldDetails" data-test-subj="fieldVisualizeContainer"><div class="muted">Top 5 values</div>' + top.map(function (t) {
      var pct = total ? Math.round((t[1] / total) * 1000) / 10 : 0;
      return '<div data-test-subj="fieldVisualizeBucket">' + esc(t[0]) + ' <span class="muted">' + pct + '%</span><div class="bar" style="width:' + pct + '%"></div></div>';
    }).join("") + '<div class="muted">Exists in ' + exists + " / " + total + " records</div></div>";
  }

  /* --- interaction ------------------------------------------------------------------------------ */

  function toggleColumn(name) {
    var cols = sourceColumns(), at = cols.indexOf(name);
    if (at >= 0) cols.splice(at, 1); else cols.push(name);
    state.a.columns = cols.length ? cols : ["_source"];
    writeUrl();
    if (result) { renderTable(pattern()); renderSidebar(); }
  }

  function setTime(from, to) {
    state.g.time = { from: from, to: to };
    syncControls();
    search();
  }

  function applyRefresh() {
    if (timer) clearInterval(timer);
    timer = null;
    var ri = state.g.refreshInterval;
    if (!ri.pause && ri.value > 0) timer = setInterval(function () { if (!inflight) search(); }, ri.value);
  }

  function bind() {
    $("querySubmit").addEventListener("click", function () {
      state.a.query.query = $("queryInput").value;
      state.g.time = { from: $("timeFrom").value.trim() || "now-15m", to: $("timeTo").value.trim() || "now" };
      syncControls();
      search();
    });
    $("queryInput").addEventListener("keydown", function (e) { if (e.key === "Enter") $("querySubmit").click(); });
    ["timeFrom", "timeTo"].forEach(function (id) {
      $(id).addEventListener("keydown", function (e) { if (e.key === "Enter") $("querySubmit").click(); });
    });
    $("languageSwitch").addEventListener("click", function () {
      state.a.query = { language: state.a.query.language === "kuery" ? "lucene" : "kuery", query: $("queryInput").value };
      syncControls();
      search();
    });
    $("quickRange").addEventListener("change", function (e) {
      if (e.target.value === "custom") { $("timeFrom").focus(); return; }
      var parts = e.target.value.split("|");
      setTime(parts[0], parts[1]);
    });
    $("refreshInterval").addEventListener("change", function (e) {
      var v = Number(e.target.value);
      state.g.refreshInterval = { pause: v === 0, value: v };
      writeUrl();
      applyRefresh();
    });
    $("intervalSelect").addEventListener("change", function (e) { state.a.interval = e.target.value; search(); });
    $("indexPattern").addEventListener("change", function (e) {
      state.a.index = e.target.value;
      state.a.columns = ["_source"];
      details = {};
      loadFields().then(search).catch(showError);
    });
    $("fieldFilter").addEventListener("input", renderSidebar);
    document.body.addEventListener("click", function (e) {
      var t = e.target.closest("button, [data-field-details]");
      if (!t) return;
      if (t.hasAttribute("data-toggle-column")) toggleColumn(t.getAttribute("data-toggle-column"));
      else if (t.hasAttribute("data-remove")) toggleColumn(t.getAttribute("data-remove"));
      else if (t.hasAttribute("data-field-details")) {
        var name = t.getAttribute("data-field-details");
        details[name] = !details[name];
        renderSidebar();
      } else if (t.hasAttribute("data-tab")) {
        expanded[t.getAttribute("data-row")] = t.getAttribute("data-tab");
        renderTable(pattern());
      } else if (t.classList.contains("toggle") && t.hasAttribute("data-row")) {
        var i = t.getAttribute("data-row");
        expanded[i] = expanded[i] ? null : "table";
        renderTable(pattern());
      }
    });
    window.addEventListener("resize", function () { if (plot) plot.setSize({ width: Math.max(300, $("discoverChart").clientWidth - 2), height: 180 }); });
    syncControls();
    applyRefresh();
  }

  init();
})();
