"""``python -m sluice.lab.backends.kibana [flags]`` — the image's entrypoint and ``bin/kibana``:

    kibana-docker  (ELASTICSEARCH_HOSTS='["http://myes01:9200"]' → --elasticsearch.hosts=…)
    kibana [-c kibana.yml] [-e http://es:9200] [-H host] [-p 5601] [--setting=value …]

The port opens at once (503 "Kibana server is not ready yet"); once Elasticsearch answers with
a compatible version and the saved-objects indices are in place the log says ``http server
running at http://HOST:PORT`` and ``/api/status`` reports green. SIGTERM/SIGINT stop it
(status 0).

Deliberate difference: the "http server running" line shows the address actually bound (the
service's own, see :mod:`.settings`), not ``0.0.0.0``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import uuid as uuidlib

from sluice.lab.backends.kibana import VERSION, migrations
from sluice.lab.backends.kibana.es import Client, ESUnavailable
from sluice.lab.backends.kibana.logs import Log
from sluice.lab.backends.kibana.migrations import MigrationError, Migrator, wait_for_nodes
from sluice.lab.backends.kibana.server import Kibana
from sluice.lab.backends.kibana.settings import Settings, SettingsError, load

PLUGINS = ["console", "data", "discover", "home", "indexPatternManagement"]
USAGE = f"""Usage: bin/kibana [command=serve] [options]

Kibana is an open and free, browser-based analytics and search dashboard for Elasticsearch.
(Sluice's stand-in for Kibana {VERSION}: index patterns and Discover.)

Options:
  -e, --elasticsearch <uri1,uri2>  Elasticsearch instances
  -c, --config <path>              Path to the config file, use multiple --config args to include multiple config files
  -p, --port <port>                The port to bind to
  -q, --quiet                      Prevent all logging except errors
  -Q, --silent                     Prevent all logging
  --verbose                        Turns on verbose logging
  -H, --host <host>                The host to bind to
  -l, --log-file <path>            The file to log to
  --<setting>=<value>              Any kibana.yml setting (e.g. --elasticsearch.hosts='["http://es:9200"]')
  -V, --version                    output the version number
  -h, --help                       output usage information
"""


def instance_uuid(data_dir: str) -> str:
    """``path.data/uuid``, kept across restarts as Kibana keeps it."""
    path = os.path.join(data_dir, "uuid")
    try:
        with open(path, encoding="ascii") as f:
            value = f.read().strip()
            if value:
                return value
    except OSError:
        pass
    value = str(uuidlib.uuid4())
    try:
        os.makedirs(data_dir, exist_ok=True)
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError:
        pass
    return value


def _log_for(settings: Settings) -> Log:
    dest = str(settings.get("logging.dest") or "stdout")
    stream = None
    if dest != "stdout":
        stream = open(settings.fs.host(dest) if os.path.isabs(dest) else dest, "a", encoding="utf-8")  # noqa: SIM115  (lives as long as the process)
    return Log(as_json=settings.log_json, quiet=settings.flag("logging.quiet"), silent=settings.flag("logging.silent"),
               verbose=settings.flag("logging.verbose"), stream=stream)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "serve":
        args = args[1:]
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    if any(a in ("-V", "--version") for a in args):
        print(VERSION)
        return 0
    try:
        settings = load(args)
        host, port, hosts = settings.host, settings.port, settings.es_hosts
        es = Client(hosts, username=str(settings.get("elasticsearch.username") or ""),
                    password=str(settings.get("elasticsearch.password") or ""), timeout=settings.request_timeout,
                    headers=settings.custom_headers)
    except (SettingsError, ValueError) as exc:
        print(f" FATAL  Error: {exc}", file=sys.stderr)
        return 64
    log = _log_for(settings)
    for warning in settings.warnings:
        log.warning(["config", "deprecation"], warning)
    for key in settings.unused:
        log.warning(["config"], f"setting [{key}] is not used by this stand-in")
    app = Kibana(settings, es, log, uuid=instance_uuid(settings.data_path))
    try:
        bound_host, bound_port = app.bind(host, port)
    except OSError as exc:
        log.error(["fatal", "root"], f"Error: Port {port} is already in use. Another instance of Kibana may be running! ({exc.strerror})")
        return 1
    pid_file = settings.get("pid.file")
    if pid_file:
        with open(settings.fs.host(str(pid_file)), "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = threading.Thread(target=app.serve_forever, name="http", daemon=True)
    server.start()
    code = _start(app, es, log, stop, bound_host, bound_port)
    stop.wait()
    log.info(["plugins-system"], "Stopping all plugins.")
    app.shutdown()
    return code


def _start(app: Kibana, es: Client, log: Log, stop: threading.Event, host: str, port: int) -> int:
    log.info(["plugins-system"], f"Setting up [{len(PLUGINS)}] plugins: [{','.join(PLUGINS)}]")
    log.info(["savedobjects-service"],
             "Waiting until all Elasticsearch nodes are compatible with Kibana before starting saved objects migrations...")
    migrator = Migrator(es, log)
    while not stop.is_set():
        if not wait_for_nodes(es, log, stop):
            return 0
        log.info(["savedobjects-service"], "Starting saved objects migrations")
        try:
            migrator.run(app.settings.index)
            break
        except ESUnavailable as exc:
            log.error(["savedobjects-service"], f"Unable to complete saved object migrations: {exc}; retrying")
            stop.wait(migrations.HEALTH_DELAY)
        except MigrationError as exc:
            log.error(["fatal", "root"], f"Error: Unable to complete saved object migrations for the [{app.settings.index}] index. {exc}")
            stop.set()
            return 1
    if stop.is_set():
        return 0
    log.info(["plugins-system"], f"Starting [{len(PLUGINS)}] plugins: [{','.join(PLUGINS)}]")
    app.mark_ready()
    shown = f"[{host}]" if ":" in host else host
    log.info(["http", "server", "Kibana"], f"http server running at http://{shown}:{port}")
    log.info(["status"], "Kibana is now available (was degraded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
