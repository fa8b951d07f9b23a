"""``envoy.filters.http.cors``: answers CORS preflights and decorates CORS responses from the
route's policies (``config.py`` holds the stats, ``filter.py`` is the per-stream filter; the
policies themselves are parsed with the route table, ``sluice/route/cors_policy.py``)."""
