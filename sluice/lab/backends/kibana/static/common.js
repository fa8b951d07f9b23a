/* Shared by the Kibana stand-in's pages: the API helper (every state-changing call carries
 * kbn-xsrf, as Kibana's http service does), rison (Kibana keeps app state in the URL as
 * `#/?_g=(…)&_a=(…)`), date formatting in Kibana's default `dateFormat`
 * (`MMM D, YYYY @ HH:mm:ss.SSS`, browser time zone), and the page header.
 * Loaded as window.Kbn; also `module.exports` so node can test it.
 */
(function (root, factory) {
  var api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.Kbn = api;
})(this, function () {
  "use strict";

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function api(method, path, body) {
    var opts = { method: method, headers: { "kbn-xsrf": "true", Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = { message: text }; }
        if (!r.ok) {
          var err = new Error((data && data.message) || r.status + " " + r.statusText);
          err.status = r.status;
          err.body = data;
          throw err;
        }
        return data;
      });
    });
  }

  /* --- rison (https://github.com/Nanonid/rison), as Kibana's URLs use it --------------- */

  var ID_OK = /^[^\-0-9 '!:(),*@$][^ '!:(),*@$]*$/;

  function risonEncode(v) {
    if (v === null || v === undefined) return "!n";
    if (v === true) return "!t";
    if (v === false) return "!f";
    if (typeof v === "number") return isFinite(v) ? String(v).replace(/\+/, "") : "!n";
    if (typeof v === "string") {
      if (v !== "" && ID_OK.test(v)) return v;
      return "'" + v.replace(/['!]/g, function (c) { return "!" + c; }) + "'";
    }
    if (Array.isArray(v)) return "!(" + v.map(risonEncode).join(",") + ")";
    return "(" + Object.keys(v).sort().filter(function (k) { return v[k] !== undefined; }).map(function (k) {
      return risonEncode(k) + ":" + risonEncode(v[k]);
    }).join(",") + ")";
  }

  function risonDecode(text) {
    var s = String(text), i = 0;
    function fail(msg) { throw new Error("rison: " + msg + " at " + i + " in " + s); }
    function value() {
      var c = s.charAt(i);
      if (c === "!") {
        var n = s.charAt(i + 1);
        i += 2;
        if (n === "t") return true;
        if (n === "f") return false;
        if (n === "n") return null;
        if (n === "(") return list();
        fail("unknown literal !" + n);
      }
      if (c === "(") { i++; return object(); }
      if (c === "'") return quoted();
      return bare();
    }
    function list() {
      var out = [];
      if (s.charAt(i) === ")") { i++; return out; }
      for (;;) {
        out.push(value());
        var c = s.charAt(i++);
        if (c === ")") return out;
        if (c !== ",") fail("expected , or )");
      }
    }
    function object() {
      var out = {};
      if (s.charAt(i) === ")") { i++; return out; }
      for (;;) {
        var k = s.charAt(i) === "'" ? quoted() : bare();
        if (s.charAt(i++) !== ":") fail("expected :");
        out[k] = value();
        var c = s.charAt(i++);
        if (c === ")") return out;
        if (c !== ",") fail("expected , or )");
      }
    }
    function quoted() {
      i++;
      var out = "";
      for (;;) {
        var c = s.charAt(i++);
        if (c === "") fail("unterminated string");
        if (c === "'") return out;
        if (c === "!") { c = s.charAt(i++); if (c !== "!" && c !== "'") fail("bad escape"); }
        out += c;
      }
    }
    function bare() {
      var start = i;
      while (i < s.length && " '!:(),*@$".indexOf(s.charAt(i)) < 0) i++;
      var word = s.slice(start, i);
      if (word === "") fail("expected a value");
      if (/^-?\d/.test(word)) { var num = Number(word); if (!isNaN(num)) return num; }
      return word;
    }
    var out = value();
    if (i !== s.length) fail("trailing characters");
    return out;
  }

  /* Kibana writes rison into the hash with most punctuation left readable. */
  function urlEncodeRison(v) {
    return encodeURIComponent(risonEncode(v)).replace(/%3A/g, ":").replace(/%2C/g, ",").replace(/%40/g, "@").replace(/%24/g, "$").replace(/%2F/g, "/");
  }

  /* "#/?_g=(…)&_a=(…)" → {_g: {…}, _a: {…}} (bad parts are dropped). */
  function readHash(hash) {
    var out = {};
    var q = String(hash || "").replace(/^#\/?\??/, "");
    q.split("&").forEach(function (pair) {
      var eq = pair.indexOf("=");
      if (eq < 1) return;
      try { out[pair.slice(0, eq)] = risonDecode(decodeURIComponent(pair.slice(eq + 1))); } catch (e) { /* ignored, as Kibana resets bad state */ }
    });
    return out;
  }

  function writeHash(state) {
    return "#/?" + Object.keys(state).map(function (k) { return k + "=" + urlEncodeRison(state[k]); }).join("&");
  }

  /* --- dates ----------------------------------------------------------------------------- */

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  function pad(n, w) { n = String(n); while (n.length < (w || 2)) n = "0" + n; return n; }

  function fmtDate(value) {
    var d = value instanceof Date ? value : new Date(value);
    if (isNaN(d.getTime())) return String(value);
    return MONTHS[d.getMonth()] + " " + d.getDate() + ", " + d.getFullYear() + " @ " + pad(d.getHours()) + ":" +
      pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  }

  function timeZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { return "UTC"; }
  }

  /* --- documents --------------------------------------------------------------------------- */

  /* _source → [[dotted name, value], …] in document order; arrays of objects stay values. */
  function flatten(obj, prefix, out) {
    out = out || [];
    Object.keys(obj || {}).forEach(function (k) {
      var v = obj[k], name = prefix ? prefix + "." + k : k;
      if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, name, out);
      else out.push([name, v]);
    });
    return out;
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return "-";
    if (Array.isArray(v)) return v.map(fmtValue).join(", ");
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  /* --- page chrome ------------------------------------------------------------------------- */

  function header(active) {
    var el = document.getElementById("kbnHeader");
    if (!el) return;
    var links = [["home", "/app/home", "Home"], ["discover", "/app/discover", "Discover"],
      ["management", "/app/management/kibana/indexPatterns", "Stack Management"]];
    el.innerHTML = '<a class="kbnLogo" href="/app/home" data-test-subj="logo">elastic <b>Kibana</b></a><nav>' +
      links.map(function (l) {
        return '<a href="' + l[1] + '" data-test-subj="navLink-' + l[0] + '"' + (l[0] === active ? ' class="active"' : "") + ">" + l[2] + "</a>";
      }).join("") + "</nav>";
  }

  return {
    esc: esc, api: api, risonEncode: risonEncode, risonDecode: risonDecode, readHash: readHash, writeHash: writeHash,
    fmtDate: fmtDate, timeZone: timeZone, flatten: flatten, fmtValue: fmtValue, header: header,
  };
});
