"""A stand-in for ``prom/statsd-exporter`` (v0.22.3) with no mapping file, as the labs run it.

StatsD lines over UDP and TCP (``:9125``) become Prometheus metrics served at ``/metrics``
(``:9102``) in the text exposition format, as the real exporter does by default:

- ``line.py``: the line grammar (``name:value|type[|@rate][|#tags]``, several samples per line,
  DogStatsD / InfluxDB / Librato / SignalFx tags) and the name escaping;
- ``registry.py``: metric families, type conflicts (dropped and counted), the exporter's own
  ``statsd_exporter_*`` counters, a bound on the number of series;
- ``summary.py``: timers and histograms as summaries (quantiles 0.5/0.9/0.99 over a 10-minute
  window of 5 age buckets, targeted-quantile streams);
- ``exposition.py``: the text format (Go's float formatting, escaping);
- ``listener.py``: the asyncio UDP and TCP listeners and the event queue (flushed every 200 ms or
  1000 events);
- ``web.py``: ``/metrics``, ``/-/healthy``, ``/-/ready``, ``/``.

``python -m sluice.lab.backends.statsd_exporter --help`` lists the flags (the real ones).
"""
