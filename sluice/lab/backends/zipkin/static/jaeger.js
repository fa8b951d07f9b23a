/*
 * The Jaeger UI pages (1.27's search and trace screens, simplified) over the query service's
 * /api: /search (and /) with the form in the URL as Jaeger writes it (service, operation, tags as
 * JSON, lookback, start/end in µs, minDuration/maxDuration as Go durations, limit), /trace/{id}
 * with the timeline built from CHILD_OF references (a span whose parent is not in the trace is a
 * root, children ordered by start time) and each span's process service name.
 *
 * Deliberate differences from Jaeger UI: no scatter plot of results, no trace comparison, no
 * span collapse/expand or minimap, no deep-dependency graph; the tags field takes logfmt as
 * Jaeger's does but without its quoting edge cases. window.jaegerUi holds what the page shows.
 */
(function () {
  'use strict';

  var T = window.SluiceTimeline;
  var el = T.el;
  var fmt = T.jaegerDuration;
  var LOOKBACKS = [['5m', 'Last 5 Minutes'], ['15m', 'Last 15 Minutes'], ['30m', 'Last 30 Minutes'], ['1h', 'Last Hour'],
    ['2h', 'Last 2 Hours'], ['3h', 'Last 3 Hours'], ['6h', 'Last 6 Hours'], ['12h', 'Last 12 Hours'], ['24h', 'Last 24 Hours'],
    ['2d', 'Last 2 Days'], ['7d', 'Last 7 Days']];
  var UNIT_US = { m: 60e6, h: 3600e6, d: 86400e6 };
  var state = window.jaegerUi = { view: null, ready: false, error: null, traces: [], searches: 0 };
  var app = document.getElementById('app');

  function getJson(url) {
    return fetch(url, { headers: { Accept: 'application/json' } }).then(function (r) {
      return r.text().then(function (text) {
        var body = null;
        try { body = JSON.parse(text); } catch (e) { body = null; }
        if (!r.ok) {
          var msg = body && body.errors && body.errors[0] ? body.errors[0].msg : text;
          var err = new Error(msg || r.statusText);
          err.status = r.status;
          throw err;
        }
        return body;
      });
    });
  }

  function lookbackUs(code) {
    var m = /^(\d+)([mhd])$/.exec(code || '');
    return m ? parseInt(m[1], 10) * UNIT_US[m[2]] : 3600e6;
  }

  // logfmt "k=v k2=\"a b\"" → {k: "v", k2: "a b"}; null when it does not parse.
  function parseLogfmt(text) {
    var out = {};
    var re = /\s*([^\s=]+)=("((?:[^"\\]|\\.)*)"|\S*)/g;
    var pos = 0;
    var m;
    text = text.trim();
    while (pos < text.length) {
      re.lastIndex = pos;
      m = re.exec(text);
      if (!m || m.index !== pos) return null;
      out[m[1]] = m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : m[2];
      pos = re.lastIndex;
    }
    return out;
  }

  function toLogfmt(json) {
    try {
      var tags = JSON.parse(json);
      return Object.keys(tags).map(function (k) {
        var v = String(tags[k]);
        return k + '=' + (/[\s"]/.test(v) ? '"' + v.replace(/"/g, '\\"') + '"' : v);
      }).join(' ');
    } catch (e) {
      return '';
    }
  }

  function setView(view) {
    state.view = view;
    state.ready = false;
    state.error = null;
    document.body.setAttribute('data-view', view);
  }

  function fail(where, err) {
    state.error = String(err && err.message || err);
    state.ready = true;
    T.clear(where).appendChild(el('div', { cls: 'message error-message', id: 'error', text: state.error }));
  }

  function field(label, control) {
    return el('label', { cls: 'field' }, el('span', { cls: 'field-label', text: label }), control);
  }

  function isError(span) {
    return span.tags.some(function (t) { return t.key === 'error' && (t.value === true || t.value === 'true'); });
  }

  // The tree: parent = the CHILD_OF (else FOLLOWS_FROM) reference found in the trace.
  function buildRows(trace) {
    var byId = {};
    trace.spans.forEach(function (s) { byId[s.spanID] = { span: s, children: [] }; });
    var roots = [];
    trace.spans.forEach(function (s) {
      var refs = (s.references || []).slice(0).sort(function (a, b) {
        return (a.refType === 'CHILD_OF' ? 0 : 1) - (b.refType === 'CHILD_OF' ? 0 : 1);
      });
      var parent = null;
      for (var i = 0; i < refs.length; i += 1) {
        if (refs[i].spanID !== s.spanID && byId[refs[i].spanID]) { parent = byId[refs[i].spanID]; break; }
      }
      (parent ? parent.children : roots).push(byId[s.spanID]);
    });
    var byStart = function (a, b) { return a.span.startTime - b.span.startTime; };
    var rows = [];
    var walk = function (node, depth) {
      var s = node.span;
      var proc = trace.processes[s.processID] || { serviceName: 'unknown', tags: [] };
      rows.push({ id: s.spanID, depth: depth, serviceName: proc.serviceName, serviceNames: [proc.serviceName],
        name: s.operationName, timestamp: s.startTime, duration: s.duration, error: isError(s), span: s, process: proc });
      node.children.sort(byStart).forEach(function (c) { walk(c, depth + 1); });
    };
    roots.sort(byStart).forEach(function (r) { walk(r, 1); });
    return rows;
  }

  function summarize(trace) {
    var rows = buildRows(trace);
    var start = Math.min.apply(null, trace.spans.map(function (s) { return s.startTime; }));
    var end = Math.max.apply(null, trace.spans.map(function (s) { return s.startTime + s.duration; }));
    var services = {};
    rows.forEach(function (r) { services[r.serviceName] = (services[r.serviceName] || 0) + 1; });
    var root = rows[0];
    return { traceId: trace.traceID, name: root ? root.serviceName + ': ' + root.name : '<trace-without-root-span>',
      rows: rows, start: start, duration: end - start, spanCount: trace.spans.length,
      errors: rows.filter(function (r) { return r.error; }).length,
      depth: Math.max.apply(null, rows.map(function (r) { return r.depth; })),
      services: Object.keys(services).sort().map(function (n) { return { serviceName: n, spanCount: services[n] }; }) };
  }

  // --- search ---------------------------------------------------------------------------------

  function searchPage() {
    setView('search');
    var q = new URLSearchParams(location.search);
    var service = el('select', { id: 'service', name: 'service' });
    var operation = el('select', { id: 'operation', name: 'operation' });
    var tags = el('input', { id: 'tags', name: 'tags', placeholder: 'http.status_code=200 error=true', value: toLogfmt(q.get('tags') || '') });
    var lookback = el('select', { id: 'lookback', name: 'lookback' });
    LOOKBACKS.forEach(function (l) { lookback.appendChild(el('option', { value: l[0], text: l[1], selected: l[0] === (q.get('lookback') || '1h') })); });
    var minD = el('input', { id: 'minDuration', name: 'minDuration', placeholder: 'e.g. 1.2s, 100ms, 500us', value: q.get('minDuration') || '' });
    var maxD = el('input', { id: 'maxDuration', name: 'maxDuration', placeholder: 'e.g. 1.1s', value: q.get('maxDuration') || '' });
    var limit = el('input', { id: 'limit', name: 'limit', type: 'number', min: '1', value: q.get('limit') || '20' });
    var run = el('button', { id: 'findTraces', type: 'submit', cls: 'primary', text: 'Find Traces' });
    var results = el('div', { id: 'results' });
    var form = el('form', { id: 'searchForm', cls: 'search-form' }, field('Service', service), field('Operation', operation),
      field('Tags', tags), field('Lookback', lookback), field('Min Duration', minD), field('Max Duration', maxD), field('Limit Results', limit), run);
    T.clear(app);
    app.appendChild(el('section', { cls: 'panel' }, form));
    app.appendChild(results);

    function loadOperations(keep) {
      T.clear(operation).appendChild(el('option', { value: '', text: 'all' }));
      if (!service.value) return Promise.resolve();
      return getJson('/api/services/' + encodeURIComponent(service.value) + '/operations').then(function (body) {
        (body.data || []).forEach(function (op) {
          operation.appendChild(el('option', { value: op, text: op, selected: keep && op === q.get('operation') }));
        });
      });
    }
    service.addEventListener('change', function () { loadOperations(false); });
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var parsed = tags.value.trim() ? parseLogfmt(tags.value) : {};
      if (parsed === null) {
        fail(results, new Error('Tags must be in logfmt: key=value key2="value with spaces"'));
        return;
      }
      var end = Date.now() * 1000;
      var p = new URLSearchParams();
      p.set('end', String(end));
      p.set('limit', limit.value || '20');
      p.set('lookback', lookback.value);
      if (maxD.value.trim()) p.set('maxDuration', maxD.value.trim());
      if (minD.value.trim()) p.set('minDuration', minD.value.trim());
      if (operation.value) p.set('operation', operation.value);
      p.set('service', service.value);
      p.set('start', String(end - lookbackUs(lookback.value)));
      if (Object.keys(parsed).length) p.set('tags', JSON.stringify(parsed));
      history.pushState(null, '', '/search?' + p.toString());
      q = p;
      query(p, results);
    });

    return getJson('/api/services').then(function (body) {
      var services = body.data || [];
      T.clear(service);
      if (!services.length) service.appendChild(el('option', { value: '', text: 'No services' }));
      services.forEach(function (s) { service.appendChild(el('option', { value: s, text: s, selected: s === q.get('service') })); });
      return loadOperations(true);
    }).then(function () {
      if (q.get('service')) return query(q, results);
      state.ready = true;
      return null;
    }).catch(function (err) { fail(results, err); });
  }

  function query(p, results) {
    var api = new URLSearchParams(p.toString());
    if (!api.get('end')) {
      api.set('end', String(Date.now() * 1000));
      api.set('start', String(Date.now() * 1000 - lookbackUs(p.get('lookback'))));
    }
    state.ready = false;
    state.request = '/api/traces?' + api.toString();
    T.clear(results).appendChild(el('div', { cls: 'message', text: 'Searching…' }));
    return getJson(state.request).then(function (body) {
      state.searches += 1;
      state.traces = (body.data || []).map(summarize);
      show(results, state.traces);
    }).catch(function (err) { fail(results, err); });
  }

  function show(results, traces) {
    T.clear(results);
    results.appendChild(el('div', { cls: 'results-count', id: 'resultsCount', text: traces.length + ' Trace' + (traces.length === 1 ? '' : 's') }));
    var longest = Math.max.apply(null, [1].concat(traces.map(function (t) { return t.duration; })));
    var list = el('ul', { cls: 'trace-list' });
    traces.forEach(function (t) {
      list.appendChild(el('li', { cls: 'trace-result' + (t.errors ? ' has-error' : ''), 'data-trace-id': t.traceId },
        el('a', { href: '/trace/' + t.traceId, cls: 'trace-link' },
          el('div', { cls: 'trace-top' },
            el('span', { cls: 'trace-root', text: t.name }),
            el('span', { cls: 'trace-id', text: t.traceId.slice(0, 7) }),
            el('span', { cls: 'trace-duration', text: fmt(t.duration) })),
          el('div', { cls: 'trace-bar', style: 'width:' + Math.max(1, Math.round((t.duration / longest) * 100)) + '%' }),
          el('div', { cls: 'trace-bottom' },
            el('span', { cls: 'trace-spans', text: t.spanCount + ' Spans' }),
            t.errors ? el('span', { cls: 'error-mark', text: t.errors + ' Error' + (t.errors === 1 ? '' : 's') }) : null,
            el('span', { cls: 'service-counts' }, t.services.map(function (s) {
              return el('span', { cls: 'badge', 'data-service': s.serviceName, text: s.serviceName + ' (' + s.spanCount + ')' });
            })),
            el('span', { cls: 'trace-start', text: T.formatTime(t.start) })))));
    });
    results.appendChild(list);
    state.ready = true;
  }

  // --- trace ----------------------------------------------------------------------------------

  function kvValue(kv) {
    return kv.type === 'binary' ? String(kv.value) : (typeof kv.value === 'string' ? kv.value : JSON.stringify(kv.value));
  }

  function detail(row, start) {
    var s = row.span;
    return el('div', { cls: 'span-detail' },
      el('div', { cls: 'detail-title', text: row.serviceName + ' · ' + row.name + ' · ' + fmt(row.duration) }),
      el('div', { cls: 'detail-ids', text: 'Span ID ' + s.spanID + '  Start ' + fmt(s.startTime - start) }),
      el('h4', { text: 'Tags' }),
      T.kvTable('tags', ['Key', 'Value', 'Type'], s.tags.map(function (t) { return [t.key, kvValue(t), t.type]; })),
      el('h4', { text: 'Process' }),
      T.kvTable('process', ['Key', 'Value', 'Type'], row.process.tags.map(function (t) { return [t.key, kvValue(t), t.type]; })),
      el('h4', { text: 'Logs (' + (s.logs || []).length + ')' }),
      (s.logs || []).map(function (log) {
        return el('div', { cls: 'log' }, el('div', { cls: 'log-time', text: fmt(log.timestamp - start) || '0μs' }),
          T.kvTable('log-fields', ['Key', 'Value'], log.fields.map(function (f) { return [f.key, kvValue(f)]; })));
      }),
      (s.warnings || []).map(function (w) { return el('div', { cls: 'warning', text: w }); }));
  }

  function tracePage(traceId) {
    setView('trace');
    T.clear(app).appendChild(el('div', { cls: 'message', text: 'Loading trace ' + traceId + '…' }));
    return getJson('/api/traces/' + encodeURIComponent(traceId)).then(function (body) {
      var t = summarize(body.data[0]);
      state.trace = { traceId: t.traceId, rows: t.rows.length, depth: t.depth, duration: t.duration, services: t.services.length };
      document.title = t.name + ' · Jaeger UI';
      var header = el('section', { cls: 'panel trace-header', id: 'traceHeader' },
        el('h2', { cls: 'trace-title', text: t.name }), el('span', { cls: 'trace-id', text: t.traceId }),
        el('div', { cls: 'trace-stats' },
          stat('Trace Start', T.formatTime(t.start), 'statStart'), stat('Duration', fmt(t.duration), 'statDuration'),
          stat('Services', t.services.length, 'statServices'), stat('Depth', t.depth, 'statDepth'),
          stat('Total Spans', t.spanCount, 'statSpans')));
      var timeline = el('section', { cls: 'panel', id: 'timeline' });
      T.clear(app);
      app.appendChild(header);
      app.appendChild(timeline);
      T.render(timeline, { start: t.start, duration: t.duration, rows: t.rows }, {
        formatDuration: fmt, nameHeading: 'Service & Operation',
        detail: function (row) { return detail(row, t.start); },
      });
      state.ready = true;
    }).catch(function (err) {
      if (err.status === 404) {
        state.error = 'not found';
        state.ready = true;
        T.clear(app).appendChild(el('div', { cls: 'message error-message', id: 'traceNotFound', text: 'Error: trace not found (' + traceId + ')' }));
        return;
      }
      fail(app, err);
    });
  }

  function stat(label, value, id) {
    return el('span', { cls: 'stat', id: id }, el('span', { cls: 'stat-label', text: label + ': ' }), el('span', { cls: 'stat-value', text: String(value) }));
  }

  function route() {
    var m = /^\/trace\/([^/]+)\/?$/.exec(location.pathname);
    if (m) return tracePage(decodeURIComponent(m[1]));
    return searchPage();
  }

  var lookup = document.getElementById('traceIdLookup');
  document.getElementById('traceIdForm').addEventListener('submit', function (e) {
    e.preventDefault();
    var id = lookup.value.trim();
    if (id) location.assign('/trace/' + encodeURIComponent(id));
  });
  window.addEventListener('popstate', route);
  route();
}());
