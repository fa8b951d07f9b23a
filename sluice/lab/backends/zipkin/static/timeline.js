/*
 * The trace timeline shared by the Zipkin and the Jaeger pages (Sluice's stand-ins), plus the
 * few DOM helpers both use. Each UI turns its API's spans into the model below (zipkin.js ports
 * Lens's span-cleaner/span-node/span-row rules, jaeger.js builds the tree from CHILD_OF
 * references); this file only lays the rows out, so both draw the same way.
 *
 *   model = { start: µs, duration: µs, rows: [{ id, depth (1 = root), serviceName,
 *             serviceNames: [..], name, timestamp: µs, duration: µs, error: bool }] }
 *   options = { formatDuration(µs) -> text, detail(row) -> Node, label(row) -> Node? }
 *
 * Bars are absolutely positioned percentages of the trace (left = (timestamp - start) /
 * duration, width = duration / trace duration, at least 0.1% as Lens does), so the drawing is
 * plain DOM rather than canvas and the browser test can measure it.
 */
(function () {
  'use strict';

  function el(tag, props) {
    var node = document.createElement(tag);
    var key;
    props = props || {};
    for (key in props) {
      if (!Object.prototype.hasOwnProperty.call(props, key)) continue;
      var value = props[key];
      if (value === undefined || value === null || value === false) continue;
      if (key === 'text') node.textContent = value;
      else if (key === 'cls') node.className = value;
      else if (key === 'style') node.setAttribute('style', value);
      else if (key.slice(0, 2) === 'on') node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : value);
    }
    for (var i = 2; i < arguments.length; i += 1) append(node, arguments[i]);
    return node;
  }

  function append(node, child) {
    if (child === undefined || child === null || child === false) return;
    if (Array.isArray(child)) {
      child.forEach(function (c) { append(node, c); });
    } else if (typeof child === 'string' || typeof child === 'number') {
      node.appendChild(document.createTextNode(String(child)));
    } else {
      node.appendChild(child);
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  // Lens's mkDurationStr (µs in, "1.588ms" out).
  function zipkinDuration(duration) {
    if (!duration) return '';
    if (duration < 1000) return duration.toFixed(0) + 'μs';
    if (duration < 1000000) {
      if (duration % 1000 === 0) return (duration / 1000).toFixed(0) + 'ms';
      return (duration / 1000).toFixed(3) + 'ms';
    }
    return (duration / 1000000).toFixed(3) + 's';
  }

  // Jaeger UI's formatDuration: the largest unit that keeps the value >= 1, two decimals at most.
  function jaegerDuration(duration) {
    if (!duration) return '0μs';
    var units = [[3600e6, 'h'], [60e6, 'm'], [1e6, 's'], [1e3, 'ms'], [1, 'μs']];
    for (var i = 0; i < units.length; i += 1) {
      if (duration >= units[i][0]) {
        return String(Math.round((duration / units[i][0]) * 100) / 100) + units[i][1];
      }
    }
    return String(duration) + 'μs';
  }

  function pad(n, width) {
    var s = String(n);
    while (s.length < width) s = '0' + s;
    return s;
  }

  // Local time, to the millisecond: "2026-11-24 10:28:31.248".
  function formatTime(us) {
    var d = new Date(Math.floor(us / 1000));
    return d.getFullYear() + '-' + pad(d.getMonth() + 1, 2) + '-' + pad(d.getDate(), 2) + ' ' +
      pad(d.getHours(), 2) + ':' + pad(d.getMinutes(), 2) + ':' + pad(d.getSeconds(), 2) + '.' + pad(d.getMilliseconds(), 3);
  }

  // A key/value table: rows are [key, value, extra?]; data-key on each row for lookups.
  function kvTable(cls, headings, rows) {
    return el('table', { cls: 'kv ' + cls },
      el('thead', {}, el('tr', {}, headings.map(function (h) { return el('th', { text: h }); }))),
      el('tbody', {}, rows.map(function (r) {
        return el('tr', { 'data-key': r[0] }, r.map(function (c, i) {
          return el('td', { cls: i === 0 ? 'kv-key' : (i === 1 ? 'kv-value' : 'kv-extra'), text: c === undefined ? '' : String(c) });
        }));
      })));
  }

  function percent(value) {
    return (Math.round(value * 1000) / 1000) + '%';
  }

  function layout(model) {
    var duration = model.duration;
    return model.rows.map(function (row) {
      var width = duration && row.duration ? (row.duration / duration) * 100 : 0;
      return {
        row: row,
        left: duration ? ((row.timestamp - model.start) / duration) * 100 : 0,
        width: width < 0.1 ? 0.1 : width,
      };
    });
  }

  function render(container, model, options) {
    var fmt = options.formatDuration || zipkinDuration;
    var ticks = [0, 0.2, 0.4, 0.6, 0.8, 1].map(function (p) {
      return el('span', { cls: 'tl-tick', style: 'left:' + percent(p * 100) }, fmt(model.duration * p) || '0');
    });
    var head = el('div', { cls: 'tl-head' },
      el('div', { cls: 'tl-name-col', text: options.nameHeading || 'Service / span' }),
      el('div', { cls: 'tl-bar-col' }, ticks));
    var body = el('div', { cls: 'tl-body' });
    var selected = null;

    layout(model).forEach(function (placed, index) {
      var row = placed.row;
      var bar = el('div', {
        cls: 'tl-bar' + (row.error ? ' tl-error' : ''),
        style: 'left:' + percent(placed.left) + ';width:' + percent(placed.width) + ';',
        title: row.name + ' ' + fmt(row.duration),
      }, el('span', { cls: 'tl-bar-label' + (placed.left + placed.width > 85 ? ' tl-label-inside' : ''), text: fmt(row.duration) }));
      var label = options.label ? options.label(row) : el('span', { cls: 'tl-service', text: row.serviceName });
      var line = el('div', {
        cls: 'tl-row' + (row.error ? ' tl-row-error' : ''),
        role: 'button', tabindex: '0',
        'data-index': String(index), 'data-span-id': row.id, 'data-depth': String(row.depth),
        'data-service': row.serviceName, 'data-services': (row.serviceNames || []).join(','), 'data-name': row.name,
      },
      el('div', { cls: 'tl-name-col', style: 'padding-left:' + ((row.depth - 1) * 16 + 6) + 'px' },
        label, el('span', { cls: 'tl-span-name', text: row.name })),
      el('div', { cls: 'tl-bar-col' }, bar));
      var detail = el('div', { cls: 'tl-detail', hidden: true, 'data-span-id': row.id });
      function toggle() {
        var open = detail.hidden;
        if (selected && selected !== detail) {
          selected.hidden = true;
          selected.previousSibling.classList.remove('tl-selected');
        }
        if (open && !detail.firstChild) append(detail, options.detail(row));
        detail.hidden = !open;
        line.classList.toggle('tl-selected', open);
        selected = open ? detail : null;
      }
      line.addEventListener('click', toggle);
      line.addEventListener('keydown', function (e) {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); }
      });
      append(body, [line, detail]);
    });
    clear(container);
    append(container, el('div', { cls: 'timeline' }, head, body));
  }

  window.SluiceTimeline = {
    el: el,
    clear: clear,
    render: render,
    kvTable: kvTable,
    formatTime: formatTime,
    zipkinDuration: zipkinDuration,
    jaegerDuration: jaegerDuration,
  };
}());
