/*
 * Zipkin Lens's trace model, ported from openzipkin/zipkin zipkin-lens/src/zipkin
 * (span-cleaner.js, span-node.js, span-row.js, trace.js): spans are cleaned and merged by id
 * (parts reported separately become one span; a CLIENT and a SERVER sharing an id stay two,
 * client first), a tree is built (shared servers under their client, children of a shared
 * server found through its endpoint, spans missing their parent attached to the root, a
 * synthetic root when none), children ordered by timestamp; the timeline then merges each server
 * half into its client's row (one row per span id) and pulls its children up.
 *
 * Deliberate difference: Lens corrects clock skew (clock-skew.js) before drawing; this does not
 * (the labs' proxies share one clock).
 */
(function () {
  'use strict';

  var NAMES = {
    cs: 'Client Send', csf: 'Client Send Fragment', cr: 'Client Receive', crf: 'Client Receive Fragment',
    ms: 'Producer Send', mr: 'Consumer Receive', ss: 'Server Send', ssf: 'Server Send Fragment',
    sr: 'Server Receive', srf: 'Server Receive Fragment', ca: 'Client Address', ma: 'Broker Address',
    sa: 'Server Address', ws: 'Wire Send', wr: 'Wire Receive', lc: 'Local Component',
  };

  function padStart(s, n) {
    while (s.length < n) s = '0' + s;
    return s;
  }

  function normalizeTraceId(traceId) {
    if (traceId.length > 16) {
      var result = padStart(traceId, 32);
      return result.indexOf('0000000000000000') === 0 ? result.substring(16) : result;
    }
    return padStart(traceId, 16);
  }

  function isEndpoint(ep) {
    return !!ep && Object.keys(ep).length > 0;
  }

  function compare(a, b) {
    if (!a && !b) return 0;
    if (!a) return -1;
    if (!b) return 1;
    return (a > b) - (a < b);
  }

  // lodash sortBy(unionWith(annotations, isEqual), ['timestamp', 'value'])
  function uniqueSorted(annotations) {
    var seen = {};
    var out = [];
    annotations.forEach(function (a) {
      var key = a.timestamp + '\u0000' + a.value;
      if (!seen[key]) { seen[key] = true; out.push(a); }
    });
    return out.sort(function (x, y) { return (x.timestamp - y.timestamp) || compare(x.value, y.value); });
  }

  function clean(span) {
    var res = { traceId: normalizeTraceId(span.traceId) };
    var id = padStart(span.id, 16);
    if (span.parentId) {
      var parentId = padStart(span.parentId, 16);
      if (parentId !== id) res.parentId = parentId;
    }
    res.id = id;
    if (span.name && span.name !== 'unknown') res.name = span.name;
    if (span.kind) res.kind = span.kind;
    if (span.timestamp) res.timestamp = span.timestamp;
    if (span.duration) res.duration = span.duration;
    if (isEndpoint(span.localEndpoint)) res.localEndpoint = Object.assign({}, span.localEndpoint);
    if (isEndpoint(span.remoteEndpoint)) res.remoteEndpoint = Object.assign({}, span.remoteEndpoint);
    res.annotations = span.annotations ? span.annotations.slice(0) : [];
    if (res.annotations.length > 1) res.annotations = uniqueSorted(res.annotations);
    res.tags = span.tags || {};
    if (span.debug) res.debug = true;
    if (span.shared && span.kind !== 'CLIENT') res.shared = true; // shared is for the server side
    return res;
  }

  function merge(left, right) {
    var res = { traceId: right.traceId.length > 16 ? right.traceId : left.traceId };
    var parentId = left.parentId || right.parentId;
    if (parentId) res.parentId = parentId;
    res.id = left.id;
    var name = left.name || right.name;
    if (name) res.name = name;
    var kind = left.kind || right.kind;
    if (kind) res.kind = kind;
    var timestamp = left.timestamp || right.timestamp;
    if (timestamp) res.timestamp = timestamp;
    var duration = left.duration || right.duration;
    if (duration) res.duration = duration;
    var local = Object.assign({}, left.localEndpoint, right.localEndpoint);
    if (isEndpoint(local)) res.localEndpoint = local;
    var remote = Object.assign({}, left.remoteEndpoint, right.remoteEndpoint);
    if (isEndpoint(remote)) res.remoteEndpoint = remote;
    if (left.annotations.length === 0) res.annotations = right.annotations;
    else if (right.annotations.length === 0) res.annotations = left.annotations;
    else res.annotations = uniqueSorted(left.annotations.concat(right.annotations));
    res.tags = Object.assign({}, left.tags, right.tags);
    if (left.debug || right.debug) res.debug = true;
    if (left.shared || right.shared) res.shared = true;
    return res;
  }

  function compareEndpoint(left, right) {
    if (left === undefined) return -1;
    if (right === undefined) return 1;
    return compare(left.serviceName, right.serviceName) || compare(left.ipv4, right.ipv4) || compare(left.ipv6, right.ipv6);
  }

  function compareShared(left, right) { // false or null first (client first)
    var leftNot = !left.shared;
    var rightNot = !right.shared;
    if (leftNot && rightNot) return left.kind === 'CLIENT' ? -1 : 1;
    if (leftNot) return -1;
    if (rightNot) return 1;
    return 0;
  }

  function cleanupComparator(left, right) {
    return compare(left.id, right.id) || compareShared(left, right) || compareEndpoint(left.localEndpoint, right.localEndpoint);
  }

  function tryMerge(current, ep) {
    if (!ep) return true;
    if (current.serviceName && ep.serviceName && current.serviceName !== ep.serviceName) return false;
    if (current.ipv4 && ep.ipv4 && current.ipv4 !== ep.ipv4) return false;
    if (current.ipv6 && ep.ipv6 && current.ipv6 !== ep.ipv6) return false;
    if (current.port && ep.port && current.port !== ep.port) return false;
    if (!current.serviceName) current.serviceName = ep.serviceName;
    if (!current.ipv4) current.ipv4 = ep.ipv4;
    if (!current.ipv6) current.ipv6 = ep.ipv6;
    if (!current.port) current.port = ep.port;
    return true;
  }

  function spanComparator(a, b) { // root first, client before its shared server, then time, name
    if (!a.parentId && b.parentId) return -1;
    if (a.parentId && !b.parentId) return 1;
    if (a.id === b.id) return compareShared(a, b);
    return compare(a.timestamp, b.timestamp) || compare(a.name, b.name);
  }

  function mergeV2ById(spans) {
    var length = spans.length;
    if (length === 0) return spans;
    var result = [];
    var traceId;
    spans.forEach(function (span) {
      var cleaned = clean(span);
      if (!traceId || traceId.length !== 32) traceId = cleaned.traceId;
      result.push(cleaned);
    });
    if (length <= 1) return result;
    result.sort(cleanupComparator);
    var last;
    for (var i = 0; i < length; i += 1) {
      var span = result[i];
      if (span.traceId.length !== traceId.length) span.traceId = traceId;
      var local = span.localEndpoint ? Object.assign({}, span.localEndpoint) : {};
      while (i + 1 < length) {
        var next = result[i + 1];
        if (next.id !== span.id) break;
        if (span.shared === next.shared && tryMerge(local, next.localEndpoint)) { // sent in pieces
          span = merge(span, next);
          length -= 1;
          result.splice(i + 1, 1);
          continue;
        }
        break;
      }
      if (last && last.id === span.id) {
        if (last.kind === 'CLIENT' && span.kind === 'SERVER' && !span.shared) span.shared = true;
        if (span.shared && !span.parentId && last.parentId) span.parentId = last.parentId;
      }
      last = span;
      result[i] = span;
    }
    var sorted = result.sort(spanComparator);
    if (sorted[0].parentId || !sorted[0].shared) return sorted;
    if (sorted.length === 1 || !sorted[1].shared) delete sorted[0].shared;
    return sorted;
  }

  function SpanNode(span) {
    this.parent = undefined;
    this.span = span; // undefined for a synthetic root
    this.children = [];
  }
  SpanNode.prototype.addChild = function (child) {
    if (child === this) throw new Error('circular dependency');
    child.parent = this;
    this.children.push(child);
  };
  SpanNode.prototype.queueRootMostSpans = function () {
    var queue = this.span === undefined ? this.children.slice(0) : [this];
    if (queue.length === 0) throw new Error('Trace was empty');
    return queue;
  };
  SpanNode.prototype.traverse = function (callback) {
    var queue = this.queueRootMostSpans();
    while (queue.length > 0) {
      var current = queue.shift();
      callback(current.span);
      current.children.forEach(function (c) { queue.push(c); });
    }
  };

  function keyString(id, shared, ep) {
    if (!shared) return id;
    return id + '-' + (ep ? JSON.stringify(ep) : 'x');
  }

  function nodeByTimestamp(a, b) {
    return compare(a.span.timestamp, b.span.timestamp);
  }

  function buildTree(spans) {
    if (spans.length === 0) throw new Error('Trace was empty');
    var cleaned = mergeV2ById(spans);
    var spanToParent = {};
    var keyToNode = {};
    var rootSpan;
    cleaned.forEach(function (span) { // index
      if (span.shared) spanToParent[keyString(span.id, true, span.localEndpoint)] = span.id;
      else spanToParent[span.id] = span.parentId;
    });
    cleaned.forEach(function (span) { // process
      var ep = span.localEndpoint;
      var key = keyString(span.id, span.shared, ep);
      var noEndpointKey = ep ? keyString(span.id, span.shared) : key;
      var parent;
      if (span.shared) {
        parent = span.id;
      } else if (span.parentId) {
        parent = keyString(span.parentId, true, ep); // a child of a shared server on this endpoint
        if (spanToParent[parent]) spanToParent[noEndpointKey] = parent;
        else parent = span.parentId;
      }
      var node = new SpanNode(span);
      if (!parent && !rootSpan) { // the first root is the real root; other roots attach to it
        rootSpan = node;
        delete spanToParent[noEndpointKey];
      } else if (span.shared) {
        keyToNode[key] = node;
        keyToNode[noEndpointKey] = node;
      } else {
        keyToNode[noEndpointKey] = node;
      }
    });
    if (!rootSpan) rootSpan = new SpanNode(); // headless trace: a synthetic root
    Object.keys(spanToParent).forEach(function (key) {
      var child = keyToNode[key];
      var parent = keyToNode[spanToParent[key]];
      if (!child) return;
      (parent || rootSpan).addChild(child); // spans missing their parent go under the root
    });
    var queue = [rootSpan];
    while (queue.length > 0) {
      var current = queue.shift();
      current.children.sort(nodeByTimestamp);
      current.children.forEach(function (c) { queue.push(c); });
    }
    return rootSpan;
  }

  function getErrorType(span, current) {
    if (current === 'critical') return current;
    if (span.tags.error !== undefined) return 'critical';
    if (span.annotations.some(function (a) { return a.value === 'error'; })) return 'transient';
    return current;
  }

  function formatEndpoint(ep) {
    if (!ep) return undefined;
    if (ep.ipv4 || ep.ipv6) {
      var ip = ep.ipv6 ? '[' + ep.ipv6 + ']' : ep.ipv4;
      return ip + (ep.port ? ':' + ep.port : '') + (ep.serviceName ? ' (' + ep.serviceName + ')' : '');
    }
    return ep.serviceName || '';
  }

  function addTimestamps(span, timestamps) {
    if (!span || !span.timestamp) return;
    timestamps.push(span.timestamp);
    if (span.duration) timestamps.push(span.timestamp + span.duration);
  }

  function maxDuration(timestamps) {
    if (timestamps.length < 2) return 0;
    timestamps.sort(function (a, b) { return a - b; });
    return timestamps[timestamps.length - 1] - timestamps[0];
  }

  // Lens's rootServiceAndSpanName: the root-most span's own (local) service and name, what a
  // search result is titled with (the trace page's header prefers the server half instead).
  function rootServiceAndSpanName(root) {
    var span = root.span || (root.children[0] && root.children[0].span);
    if (!span) return { serviceName: 'unknown', spanName: 'unknown' };
    var local = span.localEndpoint && span.localEndpoint.serviceName;
    var remote = span.remoteEndpoint && span.remoteEndpoint.serviceName;
    return { serviceName: local || remote || 'unknown', spanName: span.name || 'unknown' };
  }

  // trace.js traceSummary + getServiceSummaries: what a search result shows.
  function traceSummary(root) {
    var timestamps = [];
    var grouped = {};
    var spanCount = 0;
    var errorType = 'none';
    var traceId;
    root.traverse(function (span) {
      spanCount += 1;
      traceId = span.traceId;
      errorType = getErrorType(span, errorType);
      addTimestamps(span, timestamps);
      var value = { timestamp: span.timestamp || 0, duration: span.duration || 0 };
      [span.localEndpoint, span.remoteEndpoint].forEach(function (ep) {
        if (ep && ep.serviceName) (grouped[ep.serviceName] = grouped[ep.serviceName] || []).push(value);
      });
    });
    if (timestamps.length === 0) throw new Error('Trace ' + traceId + ' is missing a timestamp');
    var timestamp = Math.min.apply(null, timestamps);
    var services = Object.keys(grouped).map(function (name) {
      return { serviceName: name, spanCount: grouped[name].length,
        maxSpanDuration: Math.max.apply(null, grouped[name].map(function (t) { return t.duration; })) };
    }).sort(function (a, b) { return (b.maxSpanDuration - a.maxSpanDuration) || compare(a.serviceName, b.serviceName); });
    return { traceId: traceId, timestamp: timestamp, duration: maxDuration(timestamps), errorType: errorType,
      spanCount: spanCount, serviceSummaries: services };
  }

  function annotationRows(span) {
    var local = formatEndpoint(span.localEndpoint) || undefined;
    var startTs = span.timestamp || 0;
    var endTs = startTs && span.duration ? startTs + span.duration : 0;
    var kind = span.kind;
    var extra = [];
    var begin;
    var end;
    var special = {};
    span.annotations.forEach(function (a) {
      switch (a.value) {
        case 'cs': case 'sr':
          kind = a.value === 'cs' ? 'CLIENT' : 'SERVER';
          if (a.timestamp <= startTs) startTs = a.timestamp; else extra.push(a);
          break;
        case 'ss': case 'cr':
          kind = a.value === 'cr' ? 'CLIENT' : 'SERVER';
          if (a.timestamp >= endTs) endTs = a.timestamp; else extra.push(a);
          break;
        case 'ms': kind = 'PRODUCER'; special.ms = a.timestamp; break;
        case 'mr': kind = 'CONSUMER'; special.mr = a.timestamp; break;
        case 'ws': case 'wr': special[a.value] = a.timestamp; break;
        default: extra.push(a);
      }
    });
    if (kind === 'CLIENT') { begin = 'Client Start'; end = 'Client Finish'; }
    if (kind === 'SERVER') { begin = 'Server Start'; end = 'Server Finish'; }
    if (kind === 'PRODUCER') {
      begin = 'Producer Start'; end = 'Producer Finish';
      if (startTs === 0 || (special.ms && special.ms < startTs)) { startTs = special.ms; delete special.ms; }
      if (endTs === 0 || (special.ws && special.ws > endTs)) { endTs = special.ws; delete special.ws; }
    }
    if (kind === 'CONSUMER') {
      if (startTs === 0 || (special.wr && special.wr < startTs)) { startTs = special.wr; delete special.wr; }
      if (endTs === 0 || (special.mr && special.mr > endTs)) { endTs = special.mr; delete special.mr; }
      begin = 'Consumer Start';
      if (endTs || special.wr) end = 'Consumer Finish';
    }
    ['ms', 'ws', 'wr', 'mr'].forEach(function (v) { if (special[v]) extra.push({ timestamp: special[v], value: v }); });
    var rows = [];
    var row = function (value, timestamp, derived) {
      return { value: NAMES[value] || value, timestamp: timestamp, endpoint: local, isDerived: derived };
    };
    if (startTs && begin) rows.push(row(begin, startTs, true));
    extra.forEach(function (a) {
      if ((startTs && begin && a.value === begin) || (endTs && end && a.value === end)) return;
      rows.push(row(a.value, a.timestamp, false));
    });
    if (endTs && end) rows.push(row(end, endTs, true));
    return rows;
  }

  function tagRows(span) {
    var local = formatEndpoint(span.localEndpoint) || undefined;
    var keys = Object.keys(span.tags);
    var rows = keys.map(function (key) {
      return { key: NAMES[key] || key, value: span.tags[key], endpoints: local ? [local] : [] };
    });
    if (!span.kind && span.annotations.length === 0 && local && keys.length === 0) {
      rows.push({ key: 'Local Address', value: local, endpoints: [] });
    }
    var addr = { CLIENT: 'Server Address', SERVER: 'Client Address', PRODUCER: 'Broker Address', CONSUMER: 'Broker Address' };
    if (span.remoteEndpoint) rows.push({ key: addr[span.kind] || 'Server Address', value: formatEndpoint(span.remoteEndpoint), endpoints: [] });
    return rows;
  }

  // span-row.js newSpanRow: one row for a span id (the client and its shared server).
  function newSpanRow(spans, isLeaf) {
    var res = { id: spans[0].id, serviceNames: [], annotations: [], tags: [], errorType: 'none' };
    var sharedTimestamp;
    var sharedDuration;
    spans.forEach(function (next) {
      if (next.parentId) res.parentId = next.parentId;
      if (next.name && (!res.name || next.kind === 'SERVER')) res.name = next.name; // prefer the server's name
      if (next.shared) {
        if (!sharedTimestamp) sharedTimestamp = next.timestamp;
        if (!sharedDuration) sharedDuration = next.duration;
      } else {
        if (!res.timestamp && next.timestamp) res.timestamp = next.timestamp;
        if (!res.duration && next.duration) res.duration = next.duration;
      }
      var localName = next.localEndpoint && next.localEndpoint.serviceName;
      var remoteName = next.remoteEndpoint && next.remoteEndpoint.serviceName;
      if (localName && next.kind === 'SERVER') res.serviceName = localName;
      else if (isLeaf && remoteName && next.kind === 'CLIENT' && !res.serviceName) res.serviceName = remoteName;
      else if (localName && !res.serviceName) res.serviceName = localName;
      [localName, remoteName].forEach(function (n) { if (n && res.serviceNames.indexOf(n) === -1) res.serviceNames.push(n); });
      annotationRows(next).forEach(function (a) {
        if (!res.annotations.some(function (b) { return a.timestamp === b.timestamp && a.value === b.value; })) res.annotations.push(a);
      });
      tagRows(next).forEach(function (t) {
        var same = res.tags.filter(function (b) { return b.key === t.key && b.value === t.value; });
        if (same.length === 0) { res.tags.push(t); return; }
        same.forEach(function (s) {
          t.endpoints.forEach(function (ep) { if (s.endpoints.indexOf(ep) === -1) s.endpoints.push(ep); });
        });
      });
      res.errorType = getErrorType(next, res.errorType);
    });
    if (!res.timestamp && sharedTimestamp) res.timestamp = sharedTimestamp;
    if (!res.duration && sharedDuration) res.duration = sharedDuration;
    res.duration = res.duration || 0;
    res.name = res.name || 'unknown';
    res.serviceName = res.serviceName || 'unknown';
    res.annotations.forEach(function (a) { if (!a.endpoint) a.endpoint = 'unknown'; });
    res.serviceNames.sort();
    res.annotations.sort(function (a, b) { return a.timestamp - b.timestamp; });
    res.error = res.errorType !== 'none';
    return res;
  }

  // trace.js detailedTraceSummary: the rows, depth (distinct span ids above) and header counts.
  function detailedTrace(root) {
    var queue = root.queueRootMostSpans();
    var timestamps = [];
    root.traverse(function (span) { addTimestamps(span, timestamps); });
    var start = timestamps.length ? Math.min.apply(null, timestamps) : 0;
    var duration = maxDuration(timestamps);
    var model = { traceId: queue[0].span.traceId, start: start, duration: duration, depth: 0, rows: [] };
    if (!start) throw new Error('Trace ' + model.traceId + ' is missing a timestamp');
    var counts = {};
    while (queue.length > 0) {
      var current = queue.shift();
      var toMerge = [current.span];
      var children = [];
      current.children.forEach(function (child) {
        if (current.span.id === child.span.id) { // the shared server: same row, its children pulled up
          toMerge.push(child.span);
          child.children.forEach(function (g) { children.push(g); });
        } else {
          children.push(child);
        }
      });
      children.sort(nodeByTimestamp);
      queue = children.concat(queue);
      var depth = 1;
      var up = current;
      while (up.parent && up.parent.span) {
        if (up.parent.span.id !== up.span.id) depth += 1;
        up = up.parent;
      }
      if (depth > model.depth) model.depth = depth;
      var row = newSpanRow(toMerge, children.length === 0);
      row.depth = depth;
      row.timestamp = row.timestamp || start;
      row.serviceNames.forEach(function (n) { counts[n] = (counts[n] || 0) + 1; });
      model.rows.push(row);
    }
    model.rootSpan = { serviceName: model.rows[0].serviceName, spanName: model.rows[0].name };
    model.serviceCounts = Object.keys(counts).sort().map(function (n) { return { serviceName: n, spanCount: counts[n] }; });
    return model;
  }

  window.ZipkinModel = {
    normalizeTraceId: normalizeTraceId,
    mergeV2ById: mergeV2ById,
    buildTree: buildTree,
    traceSummary: traceSummary,
    rootServiceAndSpanName: rootServiceAndSpanName,
    detailedTrace: detailedTrace,
  };
}());
