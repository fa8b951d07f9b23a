"""The Elastic stack's images for the log labs (course part 4):

- ``docker.elastic.co/elasticsearch/elasticsearch*`` → :mod:`sluice.lab.backends.elasticsearch`
  (an Elasticsearch 7.14-compatible store on SQLite) with the compose ``environment:`` as the
  image reads it (``cluster.name``, ``node.name``, ``discovery.type`` …), its data in the
  ``/usr/share/elasticsearch/data`` volume, HTTP on the service's address, port 9200;
- ``docker.elastic.co/beats/filebeat*`` → :mod:`sluice.lab.backends.filebeat` with the image's
  home (``/usr/share/filebeat``, where the labs mount ``filebeat.yml``) and the service's
  ``command:`` flags. Container paths (the config, ``/logs/envoy``, ``data/``) resolve through
  the service's mounts and folder (``SLUICE_FS_ROOT``/``SLUICE_FS_MOUNTS`` from
  :func:`~sluice.lab.images.base_env`); ``elasticsearch`` resolves through the lab's hosts file.

- ``docker.elastic.co/kibana/kibana*`` → :mod:`sluice.lab.backends.kibana` (Kibana's API, index
  patterns kept in Elasticsearch's ``.kibana`` index, the Discover page) on port 5601, reading
  ``ELASTICSEARCH_HOSTS`` from the compose environment as the image does.

Registered by :mod:`sluice.lab.images` (imported at its end).
"""

from __future__ import annotations

import re

from sluice.lab.images import Decision, ImageContext, Port, Process, register

FILEBEAT_HOME = "/usr/share/filebeat"
_SETTING = re.compile(r"^[a-z0-9_]+\.[a-z0-9_.]+$")


def _filebeat(ctx: ImageContext, tag: str) -> Decision:
    args = list(ctx.service.command or ())
    if args and not args[0].startswith("-"):
        # The image's ENTRYPOINT runs filebeat; a command naming it again is the same program.
        if args[0].rsplit("/", 1)[-1] != "filebeat":
            return Decision(f"filebeat {tag}", not_running=f"command: '{' '.join(args)}' is not a filebeat command line")
        args = args[1:]
    # The image's entrypoint adds -e (log to stderr) and runs from its home.
    argv = [ctx.python, "-m", "sluice.lab.backends.filebeat", "-e", f"--path.home={FILEBEAT_HOME}", *args]
    return Decision(f"filebeat stand-in ({tag})", [Process("filebeat", argv)])


def _elasticsearch(ctx: ImageContext, tag: str) -> Decision:
    args = list(ctx.service.command or ())
    if args and not args[0].startswith("-"):
        if args[0].rsplit("/", 1)[-1] not in ("elasticsearch", "eswrapper"):
            return Decision(f"elasticsearch {tag}", not_running=f"command: '{' '.join(args)}' is not an elasticsearch command line")
        args = args[1:]
    # The image's entrypoint turns environment variables named like settings (cluster.name=…)
    # into -E options; so do we (a shell would drop names with dots from the environment).
    settings = [f"-E{k}={v}" for k, v in ctx.service.environment.items() if _SETTING.match(k)]
    argv = [ctx.python, "-m", "sluice.lab.backends.elasticsearch", *settings, *args]
    # (http.port from -E or the environment is read by the stand-in; the course's labs use 9200)
    return Decision(f"elasticsearch stand-in ({tag})", [Process("elasticsearch", argv, ports=[Port(ctx.address, 9200, "http.port")])])


def _kibana(ctx: ImageContext, tag: str) -> Decision:
    if ctx.service.command:
        return Decision(f"kibana {tag}", not_running="command: not honoured for the kibana image (its stand-in starts as the image does)")
    argv = [ctx.python, "-m", "sluice.lab.backends.kibana", "--host", ctx.address, "--port", "5601"]
    return Decision(f"kibana stand-in ({tag})", [Process("kibana", argv, ports=[Port(ctx.address, 5601, "server.port")])])


register("docker.elastic.co/elasticsearch/elasticsearch*", _elasticsearch, first=False)
register("docker.elastic.co/kibana/kibana*", _kibana, first=False)
register("docker.elastic.co/beats/filebeat*", _filebeat, first=False)
