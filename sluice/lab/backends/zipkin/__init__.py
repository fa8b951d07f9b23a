"""Stand-ins for ``openzipkin/zipkin`` (2.27) and ``jaegertracing/all-in-one`` (1.27), sharing
one span store, as the tracing labs run them:

- ``model.py``: zipkin2's span model, its normalisation and the V2 JSON writer;
- ``codec.py``: the collector's decoding (JSON v2, proto3) with the server's 400 messages;
- ``store.py``: SQLite, indexed as ``InMemoryStorage`` is (trace id, time, service, names);
- ``query.py``: ``QueryRequest`` and its match semantics;
- ``linker.py``: ``Trace.merge``, the span tree and ``DependencyLinker``;
- ``zipkin_api.py``: ``POST /api/v2/spans`` and the ``/api/v2`` query API, ``/health``,
  ``/zipkin/config.json``;
- ``jaeger_model.py``, ``jaeger_api.py``: Jaeger's translation of Zipkin spans, its adjusters,
  its UI JSON, its Zipkin collector and ``/api`` query API;
- ``ui.py`` and ``static/``: the pages — Zipkin's search, trace timeline and dependencies under
  ``/zipkin/`` (Lens's span merging and tree, ported) and Jaeger's search and trace timeline on
  the query port, one timeline module for both;
- ``http.py``: the HTTP/1.1 server (httptools, the store on one thread);
- ``app.py``: flags, environment, listeners, SIGTERM.

``python -m sluice.lab.backends.zipkin --help`` lists the flags.
"""

ZIPKIN_VERSION = "2.27.1"
JAEGER_VERSION = "1.27.0"
