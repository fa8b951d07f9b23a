"""A stand-in for ``docker.elastic.co/elasticsearch/elasticsearch:7.14.2`` as the course's EFK labs
run it (single node): the REST API Filebeat, Kibana and ``curl`` use, on an embedded SQLite
store that indexes each document as it is written and keeps it across restarts.

Theory of operation, bottom up:

- :mod:`.store` — one SQLite database (WAL) under ``path.data``; per index a document table
  (``_source`` as sent, plus one column of doc values per field), an FTS5 table of its terms
  and a B-tree on every date column. One writer, many readers; index metadata is published as
  immutable snapshots after each commit.
- :mod:`.mapping`, :mod:`.documents`, :mod:`.analysis` — ES's mapping (dynamic rules, templates,
  multi-fields), how a document becomes doc values and terms, the standard analyzer.
- :mod:`.writer`, :mod:`.bulk`, :mod:`.indices` — ``_bulk`` and the document APIs (versions,
  ``_seq_no``, conflicts, auto-created indices), index administration.
- :mod:`.dsl`, :mod:`.lucene`, :mod:`.compile`, :mod:`.planner` — the query DSL and ``q=``
  syntax, compiled per index to SQL; the planner picks the indexed way in (FTS5 or a date range).
- :mod:`.request`, :mod:`.search`, :mod:`.aggs` — ``_search``/``_count``/``_msearch``: paging,
  sorting, ``_source``/``fields``, ``track_total_hits``, aggregations; shard failures as ES reports.
- :mod:`.cat`, :mod:`.rest_cluster`, :mod:`.rest_data`, :mod:`.routes`, :mod:`.app`, :mod:`.web`,
  :mod:`.node` — ``_cat`` tables, the REST handlers and routing, the asyncio HTTP server (SQLite
  work runs on worker threads), a node's lifecycle; :mod:`.settings` and ``__main__`` — the
  image's command line, ``elasticsearch.yml`` and environment settings, ES's JSON log lines.

Each deliberate difference from Elasticsearch is marked in the code with a comment starting
"Deliberate difference:". Nothing here imports the data plane.
"""
