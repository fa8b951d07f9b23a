/* Stack Management › Index patterns, as Kibana 7.14 lays it out:
 *   /app/management/kibana/indexPatterns            the list (default pattern starred)
 *   /app/management/kibana/indexPatterns/create     the two-step wizard
 *   /app/management/kibana/indexPatterns/patterns/ID a pattern's fields, set as default, delete
 * Everything goes through Kibana's own API (saved objects, _fields_for_wildcard, resolve_index,
 * advanced settings' defaultIndex).
 */
(function () {
  "use strict";
  var esc = Kbn.esc;
  var app = document.getElementById("mgmtApp");
  var BASE = "/app/management/kibana/indexPatterns";
  var ILLEGAL = /[\\\/?"<>| ]/;

  Kbn.header("management");
  window.kibanaManagement = { view: null, ready: false, error: null };

  function setView(name) {
    window.kibanaManagement.view = name;
    window.kibanaManagement.ready = true;
  }

  function fail(err) {
    window.kibanaManagement.error = err.message;
    app.insertAdjacentHTML("afterbegin", '<div class="callout danger" data-test-subj="managementError">' + esc(err.message) + "</div>");
  }

  function defaultIndex() {
    return Kbn.api("GET", "/api/kibana/settings").then(function (s) {
      return s.settings.defaultIndex ? s.settings.defaultIndex.userValue : null;
    });
  }

  function setDefault(id) {
    return Kbn.api("POST", "/api/kibana/settings", { changes: { defaultIndex: id } });
  }

  function route() {
    var path = location.pathname.replace(/\/+$/, "");
    if (path === "/app/management" || path === "/app/management/kibana") {
      history.replaceState(null, "", BASE);
      path = BASE;
    }
    if (path === BASE) return list();
    if (path === BASE + "/create") return create();
    var m = /\/patterns\/([^\/]+)$/.exec(path);
    if (path.indexOf(BASE + "/patterns/") === 0 && m) return pattern(decodeURIComponent(m[1]));
    app.innerHTML = "<h1>Stack Management</h1><p>Nothing here. <a href=\"" + BASE + "\">Index patterns</a></p>";
    setView("unknown");
  }

  /* --- list ------------------------------------------------------------------------------ */

  function list() {
    Promise.all([Kbn.api("GET", "/api/saved_objects/_find?type=index-pattern&fields=title&fields=timeFieldName&per_page=10000"), defaultIndex()])
      .then(function (res) {
        var found = res[0], def = res[1];
        var objs = found.saved_objects.slice().sort(function (a, b) { return a.attributes.title.localeCompare(b.attributes.title); });
        var html = '<div class="panel"><div style="display:flex;justify-content:space-between;align-items:center">' +
          "<div><h1>Index patterns</h1><p class=\"muted\">Create and manage the index patterns that help you retrieve your data from Elasticsearch.</p></div>" +
          '<a class="btn" href="' + BASE + '/create" data-test-subj="createIndexPatternButton">+ Create index pattern</a></div>';
        if (!objs.length) {
          html += '<div class="callout" data-test-subj="emptyIndexPatternPrompt">You have data in Elasticsearch. Now, create an index pattern.</div>';
        } else {
          html += '<table class="kbnTable" data-test-subj="indexPatternTable"><thead><tr><th>Pattern</th><th>Time field</th></tr></thead><tbody>' +
            objs.map(function (o) {
              return '<tr data-test-subj="indexPatternRow"><td><a data-test-subj="indexPatternLink" href="' + BASE + "/patterns/" +
                encodeURIComponent(o.id) + '">' + esc(o.attributes.title) + "</a>" +
                (o.id === def ? '<span class="badge primary" data-test-subj="defaultIndexPatternBadge">Default</span>' : "") +
                "</td><td>" + esc(o.attributes.timeFieldName || "") + "</td></tr>";
            }).join("") + "</tbody></table>";
        }
        app.innerHTML = html + "</div>";
        setView("list");
      }).catch(fail);
  }

  /* --- the creation wizard --------------------------------------------------------------- */

  function create() {
    var state = { query: "", hidden: false, appendedWildcard: false, seq: 0, matches: [] };
    app.innerHTML = '<div class="panel" data-test-subj="createIndexPatternStep1">' +
      "<h1>Create index pattern</h1><p class=\"muted\">An index pattern can match a single source, for example, <code>filebeat-4-3-22</code>, " +
      "or multiple data sources, <code>filebeat-*</code>.</p>" +
      '<h2>Step 1 of 2: Define an index pattern</h2><label for="indexPatternName"><b>Index pattern name</b></label><br>' +
      '<input type="text" id="indexPatternName" data-test-subj="createIndexPatternNameInput" placeholder="index-name-*" style="width:420px" autocomplete="off">' +
      ' <button class="btn" id="goStep2" data-test-subj="createIndexPatternGoToStep2Button" disabled>Next step &gt;</button>' +
      '<div class="muted" style="font-size:12px;margin-top:4px">Use an asterisk (*) to match multiple indices. Spaces and the characters \\, /, ?, ", &lt;, &gt;, | are not allowed.</div>' +
      '<div id="nameError" class="field-error"></div>' +
      '<p><label><input type="checkbox" id="includeHidden" data-test-subj="showHiddenIndicesToggle"> Include system and hidden indices</label></p>' +
      '<div id="matchStatus" data-test-subj="createIndexPatternStatusMessage"></div>' +
      '<table class="kbnTable" id="indicesList" data-test-subj="indicesList"><tbody></tbody></table></div>';
    var input = document.getElementById("indexPatternName");
    var next = document.getElementById("goStep2");
    input.addEventListener("input", function () {
      var q = input.value;
      // Kibana appends a wildcard on the first keystroke and keeps the cursor before it.
      if (q.length === 1 && q !== "*") {
        input.value = q + "*";
        input.setSelectionRange(1, 1);
        state.appendedWildcard = true;
      } else if (q === "*" && state.appendedWildcard) {
        input.value = "";
        state.appendedWildcard = false;
      }
      state.query = input.value;
      refresh();
    });
    document.getElementById("includeHidden").addEventListener("change", function (e) {
      state.hidden = e.target.checked;
      refresh();
    });
    next.addEventListener("click", function () { step2(state.query); });
    input.focus();
    refresh();

    function refresh() {
      var q = state.query.trim(), seq = ++state.seq;
      var err = document.getElementById("nameError");
      err.textContent = ILLEGAL.test(q) ? 'Spaces and the characters \\, /, ?, ", <, >, | are not allowed.' : "";
      var wild = state.hidden ? "all" : "open";
      var asked = q && !ILLEGAL.test(q) ? q : "*";
      Promise.all([
        Kbn.api("GET", "/internal/index-pattern-management/resolve_index/" + encodeURIComponent(asked) + "?expand_wildcards=" + wild),
        asked === "*" ? null : Kbn.api("GET", "/internal/index-pattern-management/resolve_index/*?expand_wildcards=" + wild),
      ]).then(function (res) {
        if (seq !== state.seq) return;
        var matched = sources(res[0]), all = res[1] ? sources(res[1]) : matched;
        state.matches = q ? matched : [];
        var status = document.getElementById("matchStatus");
        var shown = q && matched.length ? matched : all;
        if (!q) {
          status.className = "callout";
          status.textContent = "Your index pattern can match any of your " + all.length + " sources below.";
        } else if (matched.length) {
          status.className = "callout success";
          status.innerHTML = "<b>Success!</b> Your index pattern matches <b>" + matched.length + " source" + (matched.length === 1 ? "" : "s") + "</b>.";
        } else {
          status.className = "callout warning";
          status.textContent = "The index pattern you've entered doesn't match any indices. You can match any of your " + all.length + " sources, below.";
        }
        document.querySelector("#indicesList tbody").innerHTML = shown.map(function (s) {
          return '<tr data-test-subj="indexRow"><td>' + esc(s.name) + '</td><td><span class="badge">' + s.kind + "</span></td></tr>";
        }).join("");
        next.disabled = !(q && matched.length && !ILLEGAL.test(q));
        window.kibanaManagement.matches = state.matches.map(function (s) { return s.name; });
        window.kibanaManagement.query = q;
        setView("create-step1");
      }).catch(fail);
    }
  }

  function sources(resolved) {
    var out = resolved.indices.map(function (i) { return { name: i.name, kind: "Index" }; });
    resolved.aliases.forEach(function (a) { out.push({ name: a.name, kind: "Alias" }); });
    (resolved.data_streams || []).forEach(function (d) { out.push({ name: d.name, kind: "Data stream" }); });
    return out.sort(function (a, b) { return a.name.localeCompare(b.name); });
  }

  function step2(title) {
    window.kibanaManagement.ready = false;
    Kbn.api("GET", "/api/index_patterns/_fields_for_wildcard?pattern=" + encodeURIComponent(title) + "&meta_fields=_source&meta_fields=_id&meta_fields=_type&meta_fields=_index&meta_fields=_score")
      .then(function (res) {
        var dates = res.fields.filter(function (f) { return f.type === "date"; }).map(function (f) { return f.name; });
        app.innerHTML = '<div class="panel" data-test-subj="createIndexPatternStep2"><h1>Create index pattern</h1>' +
          "<h2>Step 2 of 2: Configure settings</h2><p>Specify settings for your <b>" + esc(title) + "</b> index pattern.</p>" +
          "<p class=\"muted\">Select a primary time field for use with the global time filter.</p>" +
          '<label for="timeField"><b>Time field</b></label><br><select id="timeField" data-test-subj="createIndexPatternTimeFieldSelect" style="width:420px">' +
          (dates.length ? "" : '<option value="">--- No time fields ---</option>') +
          dates.map(function (d) { return '<option value="' + esc(d) + '"' + (d === "@timestamp" ? " selected" : "") + ">" + esc(d) + "</option>"; }).join("") +
          '<option value="">I don\'t want to use the time filter</option></select>' +
          '<p style="margin-top:24px"><button class="btn secondary" id="back" data-test-subj="createIndexPatternGoToStep1Button">&lt; Back</button> ' +
          '<button class="btn" id="create" data-test-subj="createIndexPatternButton">Create index pattern</button></p></div>';
        document.getElementById("back").addEventListener("click", create);
        document.getElementById("create").addEventListener("click", function (e) {
          e.target.disabled = true;
          var timeField = document.getElementById("timeField").value;
          var attributes = { title: title, fields: "[]", fieldAttrs: "{}", runtimeFieldMap: "{}" };
          if (timeField) attributes.timeFieldName = timeField;
          Kbn.api("POST", "/api/saved_objects/index-pattern", { attributes: attributes }).then(function (obj) {
            return defaultIndex().then(function (def) { return def ? null : setDefault(obj.id); }).then(function () {
              history.pushState(null, "", BASE + "/patterns/" + encodeURIComponent(obj.id) + "#/?_a=(tab:indexedFields)");
              route();
            });
          }).catch(function (err) { e.target.disabled = false; fail(err); });
        });
        setView("create-step2");
      }).catch(fail);
  }

  /* --- one pattern --------------------------------------------------------------------- */

  function pattern(id) {
    Promise.all([Kbn.api("GET", "/api/saved_objects/index-pattern/" + encodeURIComponent(id)), defaultIndex()]).then(function (res) {
      var obj = res[0], def = res[1], title = obj.attributes.title, timeField = obj.attributes.timeFieldName;
      var discover = "/app/discover#/?_a=" + encodeURIComponent(Kbn.risonEncode({ index: id }));
      app.innerHTML = '<div class="panel" data-test-subj="indexPatternDetail"><div style="display:flex;justify-content:space-between">' +
        '<div><h1 data-test-subj="indexPatternTitle">' + esc(title) + (id === def ? '<span class="badge primary">Default</span>' : "") + "</h1>" +
        (timeField ? '<p>Time field: <code data-test-subj="indexPatternTimeField">' + esc(timeField) + "</code></p>" : "<p class=\"muted\">No time field</p>") +
        '<p><a data-test-subj="discoverLink" href="' + discover + '">Open in Discover</a></p></div><div>' +
        (id === def ? "" : '<button class="btn secondary" id="setDefault" data-test-subj="setDefaultIndexPatternButton">Set as default index</button> ') +
        '<button class="btn danger" id="delete" data-test-subj="deleteIndexPatternButton">Delete index pattern</button></div></div>' +
        '<h2>Fields (<span id="fieldCount">…</span>)</h2><p class="muted">Every field in the <b>' + esc(title) +
        "</b> index pattern and the field's core type as recorded by Elasticsearch.</p>" +
        '<table class="kbnTable" data-test-subj="indexedFieldsTable"><thead><tr><th>Name</th><th>Type</th><th>Searchable</th><th>Aggregatable</th></tr></thead><tbody id="fieldRows"></tbody></table></div>';
      var sd = document.getElementById("setDefault");
      if (sd) sd.addEventListener("click", function () { setDefault(id).then(function () { pattern(id); }).catch(fail); });
      document.getElementById("delete").addEventListener("click", function () { confirmDelete(id, title, def); });
      return Kbn.api("GET", "/api/index_patterns/_fields_for_wildcard?pattern=" + encodeURIComponent(title) + "&allow_no_index=true&meta_fields=_source&meta_fields=_id&meta_fields=_type&meta_fields=_index&meta_fields=_score")
        .then(function (res2) {
          document.getElementById("fieldCount").textContent = res2.fields.length;
          document.getElementById("fieldRows").innerHTML = res2.fields.map(function (f) {
            return '<tr data-test-subj="indexedFieldRow"><td>' + esc(f.name) + (f.name === timeField ? ' <span class="badge">time</span>' : "") +
              "</td><td>" + esc(f.type) + "</td><td>" + (f.searchable ? "✓" : "") + "</td><td>" + (f.aggregatable ? "✓" : "") + "</td></tr>";
          }).join("");
          window.kibanaManagement.fields = res2.fields.map(function (f) { return f.name; });
          setView("pattern");
        });
    }).catch(function (err) {
      if (err.status === 404) {
        app.innerHTML = '<div class="callout danger" data-test-subj="indexPatternNotFound">Index pattern ' + esc(id) + " not found.</div>";
        setView("pattern-missing");
      } else fail(err);
    });
  }

  function confirmDelete(id, title, def) {
    var back = document.createElement("div");
    back.className = "modal-backdrop";
    back.innerHTML = '<div class="modal" data-test-subj="confirmModal"><h2>Delete index pattern?</h2><p>' + esc(title) +
      ' will be deleted. Saved searches using it stop working.</p><div class="actions">' +
      '<button class="btn secondary" data-test-subj="confirmModalCancelButton">Cancel</button>' +
      '<button class="btn danger" data-test-subj="confirmModalConfirmButton">Delete</button></div></div>';
    document.body.appendChild(back);
    back.querySelector("[data-test-subj=confirmModalCancelButton]").addEventListener("click", function () { back.remove(); });
    back.querySelector("[data-test-subj=confirmModalConfirmButton]").addEventListener("click", function () {
      window.kibanaManagement.ready = false;
      Kbn.api("DELETE", "/api/saved_objects/index-pattern/" + encodeURIComponent(id)).then(function () {
        // Kibana clears defaultIndex when the default pattern goes.
        return id === def ? setDefault(null) : null;
      }).then(function () {
        back.remove();
        history.pushState(null, "", BASE);
        route();
      }).catch(function (err) { back.remove(); fail(err); });
    });
  }

  window.addEventListener("popstate", route);
  route();
})();
