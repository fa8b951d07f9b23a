"""A stand-in for ``grafana/grafana`` (8.2.2) as the course's labs provision it.

``python -m sluice.lab.backends.grafana`` takes the image's command line (``--config``,
``--homepath``, ``cfg:default.paths.provisioning=…``), reads ``grafana.ini`` (and ``GF_*``
variables), provisions datasources and file-provided dashboards from the provisioning folder,
keeps them in SQLite (``<paths.data>/grafana.db``, as Grafana does) and serves:

- the HTTP API subset the labs use: ``/api/health``, ``/api/datasources`` (by id, name, uid),
  ``/api/datasources/proxy/<id>/…`` (forwarded to the datasource URL), ``/api/search``,
  ``/api/dashboards/uid/<uid>``, ``/login``, ``/metrics``;
- the dashboard page ``/d/<uid>[/slug]``: legacy ``rows`` of graph panels drawn with uPlot
  (vendored in ``static/``), template variables, ``$__interval``, legends, time range and refresh,
  all computed in the browser as Grafana's front end does (``static/core.js``).

Paths are container paths, mapped through ``SLUICE_FS_ROOT``/``SLUICE_FS_MOUNTS`` when the lab
runner starts it (:mod:`.fs`). Nothing here imports the data plane.
"""

VERSION = "8.2.2"
COMMIT = "sluice-lab"
