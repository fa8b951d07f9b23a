"""A stand-in for ``docker.elastic.co/beats/filebeat`` (7.14.2) as the course's labs configure it.

``python -m sluice.lab.backends.filebeat`` takes Filebeat's command line (``-c``, ``--path.*``,
``-E``, ``--strict.perms``, ``--once``, ``-e``) plus ``--root``/``--mount`` for the lab's
container paths, reads ``filebeat.yml`` and ships log lines to Elasticsearch's HTTP API as
Filebeat 7.14.2 does (its Elasticsearch output and registry behaviour):

- ``config.py``: the YAML, dotted keys, ``${VAR}`` / ``${VAR:default}`` expansion, ``-E``, typed
  reads, refusal of settings this stand-in does not honour;
- ``fs.py``: container paths → host paths (``SLUICE_FS_ROOT``/``SLUICE_FS_MOUNTS``) and globbing;
- ``harvester.py`` / ``docker_log.py`` / ``inputs.py``: ``type: log`` and ``type: container``
  inputs (scans, offsets, partial lines, rename, truncation, Docker json-file and CRI lines);
- ``event.py``, ``fmtstr.py``, ``conditions.py``, ``processors.py``, ``docker_meta.py``: events,
  format strings (``%{[field]}``, ``%{+yyyy.MM.dd}``), ``when`` conditions and processors;
- ``pipeline.py``: event processing, the memory queue and in-order acknowledgement;
- ``registry.py``: ``data/registry/filebeat`` in Filebeat's memlog format (meta.json, log.json,
  checkpoints), advanced only on acknowledgement;
- ``http11.py``, ``elasticsearch.py``, ``idxmgmt.py``, ``console.py``: the outputs (the
  Elasticsearch handshake, ILM/template set-up, ``_bulk``, retries with backoff);
- ``logs.py``: Filebeat's log lines on stderr; ``app.py``: the command line and the beat.

Nothing here imports the data plane.
"""

VERSION = "7.14.2"
ECS_VERSION = "1.10.0"
BEAT = "filebeat"
