/* The home page: links to index pattern creation and Discover, and how many patterns exist. */
(function () {
  "use strict";
  Kbn.header("home");
  Kbn.api("GET", "/api/saved_objects/_find?type=index-pattern&fields=title&per_page=10000").then(function (found) {
    var n = found.total;
    document.getElementById("patternCount").textContent = n === 0
      ? "No index patterns yet: create one to explore your data in Discover."
      : n + " index pattern" + (n === 1 ? "" : "s") + ": " + found.saved_objects.map(function (o) { return o.attributes.title; }).join(", ");
  }).catch(function () { /* the links work without the count */ });
})();
