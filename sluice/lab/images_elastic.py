"""The Elastic stack's images for the log labs (course part 4):

- ``docker.elastic.co/beats/filebeat*`` → :mod:`sluice.lab.backends.filebeat` with the image's
  home (``/usr/share/filebeat``, where the labs mount ``filebeat.yml``) and the service's
  ``command:`` flags. Container paths (the config, ``/logs/envoy``, ``data/``) resolve through
  the service's mounts and folder (``SLUICE_FS_ROOT``/``SLUICE_FS_MOUNTS`` from
  :func:`~sluice.lab.images.base_env`); ``elasticsearch`` resolves through the lab's hosts file.

Registered by :mod:`sluice.lab.images` (imported at its end).
"""

from __future__ import annotations

from sluice.lab.images import Decision, ImageContext, Process, register

FILEBEAT_HOME = "/usr/share/filebeat"


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


register("docker.elastic.co/beats/filebeat*", _filebeat, first=False)
