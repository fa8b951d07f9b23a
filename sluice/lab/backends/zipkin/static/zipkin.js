/*
 * The Zipkin UI pages (Lens's screens, simplified): the search page (/zipkin/), the trace page
 * (/zipkin/traces/{id}) and the dependencies page (/zipkin/dependency), routed on the client as
 * Lens does, over the server's /api/v2 API. The search form lives in the URL's query string (the
 * API's own parameter names, lookback as Lens writes it: 15m, 1h, …), so a URL reproduces a search.
 *
 * Deliberate differences from Lens: no autocomplete-key pickers, no trace archive/upload, no
 * dependency graph (a table instead), results sorted with a select rather than column headers.
 * window.zipkinUi holds what the page shows, for the browser test.
 */
(function () {
  'use strict';

  var T = window.SluiceTimeline;
  var M = window.ZipkinModel;
  var el = T.el;
  var fmt = T.zipkinDuration;
  var BASE = '/zipkin';
  var LOOKBACKS = [['15m', 900000, 'Last 15 minutes'], ['30m', 1800000, 'Last 30 minutes'], ['1h', 3600000, 'Last hour'],
    ['2h', 7200000, 'Last 2 hours'], ['6h', 21600000, 'Last 6 hours'], ['12h', 43200000, 'Last 12 hours'],
    ['1d', 86400000, 'Last day'], ['2d', 172800000, 'Last 2 days'], ['7d', 604800000, 'Last 7 days']];
  var state = window.zipkinUi = { view: null, ready: false, error: null, traces: [], searches: 0 };
  var app = document.getElementById('app');

  function getJson(url) {
    return fetch(url, { headers: { Accept: 'application/json' } }).then(function (r) {
      if (!r.ok) {
        return r.text().then(function (t) {
          var e = new Error(t || r.statusText);
          e.status = r.status;
          throw e;
        });
      }
      return r.json();
    });
  }

  function lookbackMs(code) {
    for (var i = 0; i < LOOKBACKS.length; i += 1) if (LOOKBACKS[i][0] === code) return LOOKBACKS[i][1];
    return /^\d+$/.test(code || '') ? parseInt(code, 10) : null;
  }

  function lookbackCode(ms) {
    for (var i = 0; i < LOOKBACKS.length; i += 1) if (LOOKBACKS[i][1] === ms) return LOOKBACKS[i][0];
    return String(ms);
  }

  function options(select, values, chosen, allLabel) {
    T.clear(select);
    if (allLabel) select.appendChild(el('option', { value: '', text: allLabel }));
    values.forEach(function (v) { select.appendChild(el('option', { value: v, text: v, selected: v === chosen })); });
    if (chosen && values.indexOf(chosen) === -1) select.appendChild(el('option', { value: chosen, text: chosen, selected: true }));
  }

  function field(label, control) {
    return el('label', { cls: 'field' }, el('span', { cls: 'field-label', text: label }), control);
  }

  function setView(view) {
    state.view = view;
    state.ready = false;
    state.error = null;
    document.body.setAttribute('data-view', view);
    document.querySelectorAll('.nav a').forEach(function (a) {
      a.classList.toggle('active', a.getAttribute('data-nav') === view);
    });
  }

  function fail(where, err) {
    state.error = String(err && err.message || err);
    state.ready = true;
    T.clear(where).appendChild(el('div', { cls: 'message error-message', id: 'error', text: state.error }));
  }

  // --- search ---------------------------------------------------------------------------------

  function searchPage(config) {
    setView('search');
    var q = new URLSearchParams(location.search);
    var service = el('select', { id: 'serviceName', name: 'serviceName' });
    var spanName = el('select', { id: 'spanName', name: 'spanName' });
    var remote = el('select', { id: 'remoteServiceName', name: 'remoteServiceName' });
    var tags = el('input', { id: 'annotationQuery', name: 'annotationQuery', placeholder: 'e.g. http.status_code=503 and error',
      value: q.get('annotationQuery') || '' });
    var minD = el('input', { id: 'minDuration', name: 'minDuration', type: 'number', min: '0', placeholder: 'μs', value: q.get('minDuration') || '' });
    var maxD = el('input', { id: 'maxDuration', name: 'maxDuration', type: 'number', min: '0', placeholder: 'μs', value: q.get('maxDuration') || '' });
    var lookback = el('select', { id: 'lookback', name: 'lookback' });
    var chosenLookback = q.get('lookback') || lookbackCode(config.defaultLookback || 900000);
    LOOKBACKS.forEach(function (l) { lookback.appendChild(el('option', { value: l[0], text: l[2], selected: l[0] === chosenLookback })); });
    if (!lookbackMs(chosenLookback) || LOOKBACKS.every(function (l) { return l[0] !== chosenLookback; })) {
      lookback.appendChild(el('option', { value: chosenLookback, text: chosenLookback + ' ms', selected: true }));
    }
    var limit = el('input', { id: 'limit', name: 'limit', type: 'number', min: '1', value: q.get('limit') || String(config.queryLimit || 10) });
    var sort = el('select', { id: 'sort' });
    [['longest', 'Longest first'], ['shortest', 'Shortest first'], ['newest', 'Newest first'], ['oldest', 'Oldest first']].forEach(function (s) {
      sort.appendChild(el('option', { value: s[0], text: s[1], selected: s[0] === (q.get('sort') || 'longest') }));
    });
    var run = el('button', { id: 'runQuery', type: 'submit', cls: 'primary', text: 'Run query' });
    var results = el('div', { id: 'results' });
    var form = el('form', { id: 'searchForm', cls: 'search-form' },
      field('Service name', service), field('Span name', spanName), field('Remote service', remote),
      field('Tags', tags), field('Min duration', minD), field('Max duration', maxD), field('Lookback', lookback),
      field('Limit', limit), field('Sort', sort), run);
    T.clear(app);
    app.appendChild(el('section', { cls: 'panel' }, form));
    app.appendChild(results);

    function loadNames(which) {
      var svc = service.value;
      if (!svc) {
        options(spanName, [], '', 'all');
        options(remote, [], '', 'all');
        return Promise.resolve();
      }
      var enc = encodeURIComponent(svc);
      return Promise.all([
        getJson('/api/v2/spans?serviceName=' + enc).then(function (names) {
          options(spanName, names, which ? q.get('spanName') || '' : '', 'all');
        }),
        getJson('/api/v2/remoteServices?serviceName=' + enc).then(function (names) {
          options(remote, names, which ? q.get('remoteServiceName') || '' : '', 'all');
        }),
      ]);
    }

    service.addEventListener('change', function () { loadNames(false); });
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var p = new URLSearchParams();
      [service, spanName, remote, tags, minD, maxD, lookback, limit].forEach(function (c) {
        if (c.value) p.set(c.name, c.value.trim());
      });
      p.set('endTs', String(Date.now()));
      if (sort.value !== 'longest') p.set('sort', sort.value);
      history.pushState(null, '', BASE + '/?' + p.toString());
      q = p;
      query(p, results);
    });
    sort.addEventListener('change', function () { showResults(results, state.traces, sort.value); });

    return getJson('/api/v2/services').then(function (services) {
      options(service, services, q.get('serviceName') || '', 'all');
      return loadNames(true);
    }).then(function () {
      if (q.has('serviceName') || q.has('endTs') || q.has('annotationQuery')) return query(q, results);
      state.ready = true;
      return null;
    }).catch(function (err) { fail(results, err); });
  }

  function query(p, results) {
    var api = new URLSearchParams();
    ['serviceName', 'spanName', 'remoteServiceName', 'annotationQuery', 'minDuration', 'maxDuration', 'limit'].forEach(function (k) {
      if (p.get(k)) api.set(k, p.get(k));
    });
    var end = parseInt(p.get('endTs') || '', 10) || Date.now();
    api.set('endTs', String(end));
    api.set('lookback', String(lookbackMs(p.get('lookback') || '') || 900000));
    state.ready = false;
    state.request = '/api/v2/traces?' + api.toString();
    T.clear(results).appendChild(el('div', { cls: 'message', text: 'Searching…' }));
    return getJson(state.request).then(function (traces) {
      state.searches += 1;
      state.traces = traces.map(function (spans) {
        var tree = M.buildTree(spans);
        var s = M.traceSummary(tree);
        var root = M.rootServiceAndSpanName(tree);
        s.rootServiceName = root.serviceName;
        s.rootSpanName = root.spanName;
        return s;
      });
      showResults(results, state.traces, p.get('sort') || 'longest');
    }).catch(function (err) { fail(results, err); });
  }

  function showResults(results, traces, order) {
    var sorted = traces.slice(0).sort(function (a, b) {
      if (order === 'newest') return b.timestamp - a.timestamp;
      if (order === 'oldest') return a.timestamp - b.timestamp;
      var d = order === 'shortest' ? a.duration - b.duration : b.duration - a.duration;
      return d || (a.traceId < b.traceId ? -1 : 1);
    });
    var longest = Math.max.apply(null, [1].concat(traces.map(function (t) { return t.duration; })));
    T.clear(results);
    results.appendChild(el('div', { cls: 'results-count', id: 'resultsCount', text: traces.length + ' result' + (traces.length === 1 ? '' : 's') }));
    var list = el('ul', { cls: 'trace-list' });
    sorted.forEach(function (t) {
      list.appendChild(el('li', { cls: 'trace-result' + (t.errorType !== 'none' ? ' has-error' : ''), 'data-trace-id': t.traceId },
        el('a', { href: BASE + '/traces/' + t.traceId, cls: 'trace-link' },
          el('div', { cls: 'trace-top' },
            el('span', { cls: 'trace-root', text: t.rootServiceName + ': ' + t.rootSpanName }),
            t.errorType !== 'none' ? el('span', { cls: 'error-mark', title: t.errorType + ' error', text: 'error' }) : null,
            el('span', { cls: 'trace-duration', text: fmt(t.duration) })),
          el('div', { cls: 'trace-bar', style: 'width:' + Math.max(1, Math.round((t.duration / longest) * 100)) + '%' }),
          el('div', { cls: 'trace-bottom' },
            el('span', { cls: 'trace-spans', text: t.spanCount + ' spans' }),
            el('span', { cls: 'trace-start', text: T.formatTime(t.timestamp) }),
            el('span', { cls: 'trace-id', text: t.traceId }),
            el('span', { cls: 'service-counts' }, t.serviceSummaries.map(function (s) {
              return el('span', { cls: 'badge', 'data-service': s.serviceName, text: s.serviceName + ' ' + s.spanCount });
            }))))));
    });
    results.appendChild(list);
    state.ready = true;
  }

  // --- trace ----------------------------------------------------------------------------------

  function tracePage(traceId) {
    setView('trace');
    T.clear(app).appendChild(el('div', { cls: 'message', text: 'Loading trace ' + traceId + '…' }));
    return getJson('/api/v2/trace/' + encodeURIComponent(traceId)).then(function (spans) {
      var model = M.detailedTrace(M.buildTree(spans));
      state.trace = { traceId: model.traceId, rows: model.rows.length, depth: model.depth, duration: model.duration,
        services: model.serviceCounts.length };
      document.title = 'Zipkin - ' + model.rootSpan.serviceName + ': ' + model.rootSpan.spanName;
      var header = el('section', { cls: 'panel trace-header', id: 'traceHeader' },
        el('h2', { cls: 'trace-title', text: model.rootSpan.serviceName + ': ' + model.rootSpan.spanName }),
        el('div', { cls: 'trace-stats' },
          stat('Duration', fmt(model.duration), 'statDuration'), stat('Services', model.serviceCounts.length, 'statServices'),
          stat('Depth', model.depth, 'statDepth'), stat('Total spans', model.rows.length, 'statSpans'),
          stat('Trace ID', model.traceId, 'statTraceId')),
        el('div', { cls: 'service-counts' }, model.serviceCounts.map(function (s) {
          return el('span', { cls: 'badge', 'data-service': s.serviceName, text: s.serviceName + ' ' + s.spanCount });
        })));
      var timeline = el('section', { cls: 'panel', id: 'timeline' });
      T.clear(app);
      app.appendChild(header);
      app.appendChild(timeline);
      T.render(timeline, model, {
        formatDuration: fmt,
        label: function (row) {
          return el('span', { cls: 'tl-service', title: row.serviceNames.join(', '), text: row.serviceName });
        },
        detail: function (row) { return detail(row, model.start); },
      });
      state.ready = true;
    }).catch(function (err) {
      if (err.status === 404) {
        state.error = 'not found';
        state.ready = true;
        T.clear(app).appendChild(el('div', { cls: 'message error-message', id: 'traceNotFound',
          text: 'Trace not found: ' + traceId + ' (the server has no spans for this trace ID)' }));
        return;
      }
      fail(app, err);
    });
  }

  function stat(label, value, id) {
    return el('span', { cls: 'stat', id: id }, el('span', { cls: 'stat-label', text: label }), el('span', { cls: 'stat-value', text: String(value) }));
  }

  function detail(row, start) {
    return el('div', { cls: 'span-detail' },
      el('div', { cls: 'detail-title', text: row.serviceNames.join(', ') + ' · ' + row.name + ' · ' + fmt(row.duration) }),
      el('div', { cls: 'detail-ids', text: 'Span ID ' + row.id + (row.parentId ? '  Parent ID ' + row.parentId : '') }),
      el('h4', { text: 'Annotations' }),
      T.kvTable('annotations', ['Annotation', 'Relative time', 'Endpoint'], row.annotations.map(function (a) {
        return [a.value, fmt(a.timestamp - start) || '0μs', a.endpoint];
      })),
      el('h4', { text: 'Tags' }),
      T.kvTable('tags', ['Key', 'Value', 'Endpoints'], row.tags.map(function (t) {
        return [t.key, t.value, t.endpoints.join(', ')];
      })));
  }

  // --- dependencies ---------------------------------------------------------------------------

  function dependencyPage() {
    setView('dependency');
    var lookback = el('select', { id: 'depLookback' });
    LOOKBACKS.forEach(function (l) { lookback.appendChild(el('option', { value: l[0], text: l[2], selected: l[0] === '1d' })); });
    var table = el('div', { id: 'dependencies' });
    var run = el('button', { type: 'submit', cls: 'primary', text: 'Show dependencies' });
    var form = el('form', { cls: 'search-form' }, field('Lookback', lookback), run);
    T.clear(app);
    app.appendChild(el('section', { cls: 'panel' }, form));
    app.appendChild(table);
    function load() {
      state.ready = false;
      var url = '/api/v2/dependencies?endTs=' + Date.now() + '&lookback=' + lookbackMs(lookback.value);
      return getJson(url).then(function (links) {
        state.links = links;
        T.clear(table).appendChild(el('section', { cls: 'panel' }, links.length
          ? T.kvTable('dependency-table', ['Parent', 'Child', 'Calls', 'Errors'], links.map(function (l) {
            return [l.parent, l.child, l.callCount || 0, l.errorCount || 0];
          }))
          : el('div', { cls: 'message', text: 'No dependencies in this time range.' })));
        state.ready = true;
      }).catch(function (err) { fail(table, err); });
    }
    form.addEventListener('submit', function (e) { e.preventDefault(); load(); });
    return load();
  }

  // --- routing ----------------------------------------------------------------------------------

  function route(config) {
    var path = location.pathname.replace(/\/+$/, '');
    var m = /^\/zipkin\/traces\/([^/]+)$/.exec(path);
    if (m) return tracePage(decodeURIComponent(m[1]));
    if (path === BASE + '/dependency') return dependencyPage();
    return searchPage(config);
  }

  var lookup = document.getElementById('traceIdLookup');
  document.getElementById('traceIdForm').addEventListener('submit', function (e) {
    e.preventDefault();
    var id = lookup.value.trim();
    if (id) location.assign(BASE + '/traces/' + encodeURIComponent(id));
  });

  getJson(BASE + '/config.json').catch(function () { return {}; }).then(function (config) {
    state.config = config;
    window.addEventListener('popstate', function () { route(config); });
    return route(config);
  });
}());
