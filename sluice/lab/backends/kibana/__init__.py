"""A stand-in for ``docker.elastic.co/kibana/kibana:7.14.2`` as the course's EFK labs use it:
open ``http://IP:5601``, create the index pattern ``filebeat-*`` on ``@timestamp``, read the
proxy's access-log documents in Discover.

``python -m sluice.lab.backends.kibana`` is the image's entrypoint (``kibana-docker``: variables
such as ``ELASTICSEARCH_HOSTS`` become ``--elasticsearch.hosts=…``) and ``bin/kibana``'s own
flags. It talks to Elasticsearch only through its HTTP API, so the Sluice stand-in and a real
cluster serve alike. Theory of operation, bottom up:

- :mod:`.settings` — ``kibana.yml``, the image's variables, ``--key=value`` and the short flags;
- :mod:`.logs` — Kibana's legacy log lines (JSON in a container, text on a terminal);
- :mod:`.es` — the Elasticsearch client (hosts list, lab hosts file, basic auth, product check);
- :mod:`.migrations` — the start-up handshake (node versions) and the saved-objects indices
  (``.kibana_7.14.2_001`` behind the ``.kibana`` alias, and the task manager's);
- :mod:`.saved_objects` — index patterns and the ``config`` object, stored in ``.kibana`` as
  Kibana stores them (``index-pattern:<id>`` documents);
- :mod:`.index_patterns` — ``_fields_for_wildcard`` from ``_field_caps`` and the creation
  wizard's index list;
- :mod:`.kql`, :mod:`.esquery`, :mod:`.datemath`, :mod:`.discover` — KQL and Lucene queries to the
  query DSL as ``@kbn/es-query`` builds it, time ranges, the histogram's auto interval, the
  Discover request;
- :mod:`.server`, :mod:`.api` — the HTTP server (503 "Kibana server is not ready yet" until the
  migrations are done, ``kbn-xsrf`` checks, response logs) and the routes;
- ``static/`` — the pages (home, index pattern management, Discover) in plain HTML and
  JavaScript; the histogram is drawn with uPlot, served from the Grafana stand-in's vendored copy.

Each deliberate difference from Kibana is marked in the code with a comment starting
"Deliberate difference:". Nothing here imports the data plane or the Elasticsearch stand-in.
"""

VERSION = "7.14.2"
# Deliberate difference: the stand-in's own build identity, not a real Kibana build.
BUILD_HASH = "sluice-lab"
BUILD_NUMBER = 0
