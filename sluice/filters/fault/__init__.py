"""``envoy.filters.http.fault``: delays, aborts and response rate limits (``config.py`` parses
and holds the stats, ``filter.py`` is the per-stream filter, ``rate_limiter.py`` paces bodies)."""
