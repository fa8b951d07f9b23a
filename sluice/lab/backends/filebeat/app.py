"""The beat: command line, start-up checks, and the run (inputs → pipeline → output → registry).

Command line (Filebeat's own flags; the image runs ``filebeat`` from ``/usr/share/filebeat``):

    python -m sluice.lab.backends.filebeat [-e] [-c filebeat.yml] [--path.home DIR] [--path.config DIR]
        [--path.data DIR] [--path.logs DIR] [-E key=value]... [--strict.perms=false] [--once]
        [--root DIR] [--mount CPATH=HPATH]...

``-c`` is relative to ``path.config`` (default ``path.home``, itself ``/usr/share/filebeat`` in a
lab and the working directory outside one); ``path.data`` defaults to ``path.home/data``. All of
them are container paths: ``--root`` (or ``SLUICE_FS_ROOT``) and ``--mount`` (or the JSON object
``SLUICE_FS_MOUNTS``) say where they live on the host, as the lab runner lays a service out.
Elasticsearch host names are looked up in ``SLUICE_HOSTS_FILE`` first (the lab's hosts file).

Exit status 1 with ``Exiting: <reason>`` for a configuration Filebeat would refuse, or one this
stand-in does not honour; ``SIGTERM``/``SIGINT`` stop it cleanly (acknowledged offsets saved).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import signal
import socket
import stat
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sluice.lab.backends.filebeat import BEAT, ECS_VERSION, VERSION, config, processors
from sluice.lab.backends.filebeat.config import ConfigError, Section
from sluice.lab.backends.filebeat.console import ConsoleWorker
from sluice.lab.backends.filebeat.elasticsearch import ESClient, Worker, es_settings, make_url
from sluice.lab.backends.filebeat.event import Event
from sluice.lab.backends.filebeat.fs import ContainerFS
from sluice.lab.backends.filebeat.idxmgmt import IndexManagement, IndexSelector
from sluice.lab.backends.filebeat.inputs import LogInput
from sluice.lab.backends.filebeat.logs import Log
from sluice.lab.backends.filebeat.pipeline import Acker, Builtins, MemQueue, Pipeline, Stats
from sluice.lab.backends.filebeat.registry import Registrar, RegistryError, Store

HOME_IN_IMAGE = "/usr/share/filebeat"
TOP_LEVEL = {
    "filebeat", "processors", "output", "setup", "logging", "path", "name", "tags", "fields", "fields_under_root", "queue",
    "monitoring", "http", "max_procs", "seccomp", "keystore", "migration", "xpack", "timestamp", "features",
}  # fmt: skip
FILEBEAT_KEYS = {
    "inputs",
    "prospectors",
    "modules",
    "config",
    "registry",
    "shutdown_timeout",
    "overwrite_pipelines",
    "autodiscover",
    "config_dir",
}
INPUT_TYPES = {"log", "container"}
OTHER_INPUTS = {
    "filestream",
    "stdin",
    "udp",
    "tcp",
    "syslog",
    "journald",
    "docker",
    "redis",
    "kafka",
    "http_endpoint",
    "httpjson",
    "s3",
    "aws-s3",
    "netflow",
    "unix",
    "winlog",
    "mqtt",
    "cloudfoundry",
    "gcp-pubsub",
    "azure-eventhub",
}


class Beat:
    def __init__(
        self,
        tree: dict[str, Any],
        *,
        fs: ContainerFS,
        log: Log,
        paths: Mapping[str, str],
        once: bool = False,
        hostname: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.tree = tree
        self.fs = fs
        self.log = log
        self.paths = dict(paths)
        self.once = once
        self.environ = environ if environ is not None else os.environ
        self.hostname = hostname or self.environ.get("HOSTNAME") or socket.gethostname()
        self.stats = Stats()
        self.inputs: list[LogInput] = []
        self.workers: list[Any] = []
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock_fd: int | None = None
        self._stop_requested = False
        self.started = False

    # --- build: everything that can refuse the configuration --------------------------------

    def build(self) -> None:
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release what :meth:`build` took (the data path lock, the registry)."""
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
        self._unlock()

    def _build(self) -> None:
        root = Section(self.tree)
        root.check(TOP_LEVEL, warn=lambda m: self.log.warn("", m))
        fb = root.child("filebeat")
        if fb.has("prospectors"):
            raise ConfigError("1 error: setting 'filebeat.prospectors' has been removed")
        if fb.has("config_dir"):
            raise ConfigError("1 error: setting 'filebeat.config_dir' has been removed")
        fb.check(
            FILEBEAT_KEYS,
            unsupported={
                "modules": "Filebeat modules are not supported by this Filebeat stand-in (configure inputs and processors instead)",
                "autodiscover": "autodiscover is not supported by this Filebeat stand-in "
                "(use a container input on /var/lib/docker/containers/*/*.log)",
            },
            warn=lambda m: self.log.warn("", m),
        )
        self._check_external_config(fb.child("config"))
        self._check_other(root)
        name = root.text("name", "") or self.hostname
        data_dir = self.fs.host(self.paths["data"])
        os.makedirs(data_dir, mode=0o750, exist_ok=True)
        self._lock(data_dir)
        beat_id = self._beat_id(data_dir)
        self.agent = {
            "type": BEAT,
            "version": VERSION,
            "hostname": self.hostname,
            "ephemeral_id": str(uuid.uuid4()),
            "id": beat_id,
            "name": name,
        }
        self.beat_event = Event(
            time.time_ns(), {"agent": dict(self.agent), "ecs": {"version": ECS_VERSION}}, {"beat": BEAT, "version": VERSION}
        )
        self.log.info(
            "instance",
            f"Home path: [{self.paths['home']}] Config path: [{self.paths['config']}] "
            f"Data path: [{self.paths['data']}] Logs path: [{self.paths['logs']}]",
        )
        self.log.info("instance", f"Beat ID: {beat_id}")

        reg = fb.child("registry")
        reg.check({"path", "file_permissions", "flush", "migrate_file"}, warn=lambda m: self.log.warn("registrar", m))
        reg_path = reg.text("path", "registry")
        if not reg_path.startswith("/"):
            reg_path = self.paths["data"].rstrip("/") + "/" + reg_path
        self.registry_dir = reg_path.rstrip("/") + "/" + BEAT
        perms = reg.raw("file_permissions", 0o600)
        perms = int(str(perms), 8) if isinstance(perms, str) else int(perms)
        self.store = Store(self.fs.host(self.registry_dir), permissions=perms & 0o640 or 0o600)
        try:
            self.store.open()
        except (RegistryError, OSError) as exc:
            raise ConfigError(f"Failed to create registrar: {exc}") from None
        self.registrar = Registrar(self.store, self.log, flush_interval=reg.duration("flush", 0.0))
        self.shutdown_timeout = fb.duration("shutdown_timeout", 0.0)

        qcfg = root.child("queue")
        qcfg.check(
            {"mem"},
            unsupported={
                "disk": "the disk queue is not supported by this Filebeat stand-in",
                "spool": "the spool queue is not supported by this Filebeat stand-in",
            },
        )
        mem = qcfg.child("mem")
        flush = mem.child("flush")
        self.queue = MemQueue(
            mem.integer("events", 4096, minimum=1), flush.integer("min_events", 2048, minimum=0), flush.duration("timeout", 1.0)
        )
        self.acker = Acker(self.registrar.apply, self.stats)
        ctx = processors.Context(self.fs, self.log, self.hostname)
        global_procs = processors.build(root.raw("processors"), ctx)
        fields = root.raw("fields")
        if fields is not None and not isinstance(fields, dict):
            raise ConfigError("fields: expects a map")
        self.pipeline = Pipeline(
            self.queue,
            self.acker,
            Builtins(self.agent, ECS_VERSION, name),
            self.log,
            self.stats,
            procs=global_procs,
            fields=fields,
            fields_under_root=root.boolean("fields_under_root", False),
            tags=root.strings("tags"),
        )
        self._build_output(root)
        self._build_inputs(fb, ctx)

    def _check_external_config(self, cfg: Section) -> None:
        inputs = cfg.child("inputs")
        if inputs.text("path", ""):
            raise ConfigError("filebeat.config.inputs: loading inputs from external files is not supported by this Filebeat stand-in")
        modules = cfg.child("modules")
        pattern = modules.text("path", "")
        if pattern:
            enabled = [p for p in self.fs.glob(pattern) if p.endswith(".yml")] if pattern.startswith("/") else []
            if enabled:
                raise ConfigError(
                    f"filebeat.config.modules: modules are enabled ({', '.join(enabled)}); "
                    "Filebeat modules are not supported by this Filebeat stand-in"
                )

    def _check_other(self, root: Section) -> None:
        setup = root.child("setup")
        setup.check({"template", "ilm", "kibana", "dashboards"}, warn=lambda m: self.log.warn("", m))
        if setup.child("dashboards").boolean("enabled", False):
            raise ConfigError("setup.dashboards.enabled: loading Kibana dashboards is not supported by this Filebeat stand-in")
        cloud = root.child("cloud")
        if cloud.text("id", "") or cloud.text("auth", ""):
            raise ConfigError("cloud.id: Elastic Cloud is not supported by this Filebeat stand-in")
        for key in ("monitoring", "http"):
            if root.child(key).boolean("enabled", False):
                self.log.warn("", f"{key}.enabled: ignored (this Filebeat stand-in serves no {key} endpoint)")

    def _lock(self, data_dir: str) -> None:
        path = os.path.join(data_dir, f"{BEAT}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(
                "data path already locked by another beat. "
                "Please make sure that multiple beats are not sharing the same data path (path.data)."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "write_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _beat_id(self, data_dir: str) -> str:
        path = os.path.join(data_dir, "meta.json")
        try:
            with open(path, encoding="utf-8") as f:
                meta = json.load(f)
            if isinstance(meta, dict) and meta.get("uuid"):
                return str(meta["uuid"])
        except (OSError, ValueError):
            pass
        beat_id = str(uuid.uuid4())
        first = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"
        tmp = path + ".new"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"uuid": beat_id, "first_start": first}, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return beat_id

    def _build_output(self, root: Section) -> None:
        out = root.child("output")
        enabled = [k for k, v in out.data.items() if not (isinstance(v, dict) and not Section(v).enabled(True))]
        if not enabled:
            raise ConfigError("No outputs are defined. Please define one under the output section.")
        if len(enabled) > 1:
            raise ConfigError("error unpacking config data: more than one namespace configured accessing 'output' (source:'filebeat.yml')")
        kind = enabled[0]
        cfg = out.child(kind)
        if kind == "console":
            self.workers.append(ConsoleWorker(cfg, self.queue, self.acker, self.stats))
            return
        if kind != "elasticsearch":
            raise ConfigError(f"output.{kind}: this output is not supported by this Filebeat stand-in (elasticsearch and console are)")
        hosts, per_host, bulk, init, maximum = es_settings(cfg)
        self.idx = IndexManagement(root.child("setup"), cfg, self.beat_event, self.log)
        self.idx.load_policy(
            lambda p: open(self.fs.host(p if p.startswith("/") else self.paths["config"] + "/" + p), encoding="utf-8").read()
        )
        selector = IndexSelector(cfg, self.idx)
        hosts_file = self.environ.get("SLUICE_HOSTS_FILE")
        for host in hosts:
            url, hostname, port, prefix = make_url(host, cfg.text("protocol", "http"), cfg.text("path", ""))
            self.log.info("esclientleg", f"Elasticsearch url: {url}")
            for _ in range(per_host):
                client = ESClient(url, hostname, port, prefix, cfg, self.idx, selector, self.log, self.stats, hosts_file)
                self.workers.append(
                    Worker(client, self.queue, self.acker, self.log, bulk_max_size=bulk, backoff_init=init, backoff_max=maximum)
                )

    def _build_inputs(self, fb: Section, ctx: processors.Context) -> None:
        raw = fb.raw("inputs")
        if raw is not None and not isinstance(raw, list):
            raise ConfigError("filebeat.inputs: expects a list of inputs")
        for i, item in enumerate(raw or []):
            sec = Section(item if isinstance(item, dict) else {}, f"filebeat.inputs.{i}")
            if not isinstance(item, dict):
                raise ConfigError(f"{sec.path}: each input is a map")
            if not sec.enabled(True):
                continue
            kind = sec.text("type", "log")
            if kind not in INPUT_TYPES:
                hint = " (use type: container)" if kind == "docker" else ""
                what = "is not supported by this Filebeat stand-in" if kind in OTHER_INPUTS else "does not exist"
                raise ConfigError(
                    f"Error creating runner from config: Error getting input type: input type {kind} {what}{hint} accessing '{sec.path}'"
                )
            self.inputs.append(
                LogInput(
                    sec,
                    fs=self.fs,
                    log=self.log,
                    pipeline=self.pipeline,
                    registrar=self.registrar,
                    stats=self.stats,
                    proc_ctx=ctx,
                    once=self.once,
                )
            )
        if not self.inputs:
            raise ConfigError("no modules or inputs enabled and configuration reloading disabled. What files do you want me to watch?")

    # --- run -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask a running beat to stop (from any thread)."""
        self._stop_requested = True
        loop, event = self._loop, self._stop
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # the run has already ended and closed its loop

    async def run(self, *, metrics: bool = False, metrics_period: float = 30.0) -> int:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        log = self.log
        log.info("instance", f"{BEAT} start running.")
        log.info("registrar", f"Registry file set to: {self.registry_dir}")
        entries = self.registrar.states()
        log.info("registrar", f"States Loaded from registrar: {len(entries)}")
        for inp in self.inputs:
            inp.load_states(entries)
        tasks: list[asyncio.Task[Any]] = []
        loop = self._loop
        for i, w in enumerate(self.workers):
            tasks.append(loop.create_task(w.run(), name=f"output:{i}"))
        log.info("crawler", f"Loading Inputs: {len(self.inputs)}")
        input_tasks = []
        for inp in self.inputs:
            log.info("crawler", f"Starting input (ID: {inp.id})")
            input_tasks.append(loop.create_task(inp.run(), name=f"input:{inp.id}"))
        log.info("crawler", f"Loading and starting Inputs completed. Enabled inputs: {len(self.inputs)}")
        self.started = True
        if metrics:
            tasks.append(loop.create_task(self._metrics(metrics_period), name="metrics"))
        if self.registrar.flush_interval > 0:
            tasks.append(loop.create_task(self._flush_registry(), name="registry-flush"))
        stop_wait = loop.create_task(self._stop.wait(), name="stop")
        try:
            if self.once:
                done_all = loop.create_task(self._inputs_done(), name="inputs-done")
                await asyncio.wait({stop_wait, done_all, *tasks}, return_when=asyncio.FIRST_COMPLETED)
                if not stop_wait.done():
                    await self._drain(None)
                done_all.cancel()
            else:
                await asyncio.wait({stop_wait, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            log.info("", f"Stopping {BEAT}")
            log.info("crawler", "Stopping Crawler")
            log.info("crawler", f"Stopping {len(self.inputs)} inputs")
            for t in input_tasks:
                t.cancel()
            for inp in self.inputs:
                await inp.stop()
            await _cancel_and_wait(input_tasks)
            log.info("crawler", "Crawler stopped")
            if not self.once and self.shutdown_timeout > 0:
                await self._drain(self.shutdown_timeout)
        finally:
            stop_wait.cancel()
            self.queue.close()
            await _cancel_and_wait(tasks)
            for t, result in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
                if isinstance(result, Exception):
                    log.error("", f"{t.get_name()} stopped on an error: {result!r}")
            log.info("registrar", "Stopping Registrar")
            self.registrar.flush()
            log.info("registrar", "Ending Registrar")
            self.close()
            log.info("instance", f"{BEAT} stopped.")
        return 0

    async def _inputs_done(self) -> None:
        for inp in self.inputs:
            await inp.done.wait()

    async def _drain(self, timeout: float | None) -> None:
        """Wait until every queued event is acknowledged (``--once``, ``shutdown_timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self.queue) or self.acker.outstanding:
            if deadline is not None and time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.02)

    async def _flush_registry(self) -> None:
        while True:
            await asyncio.sleep(self.registrar.flush_interval)
            self.registrar.flush()

    async def _metrics(self, period: float) -> None:
        # Deliberate difference: a subset of Filebeat's monitoring counters (events, harvesters,
        # output, queue, registrar), with no Go runtime or process figures.
        last = self.stats.snapshot()
        while True:
            await asyncio.sleep(period)
            now = self.stats.snapshot()
            delta = {k: now[k] - last[k] for k in now}
            last = now
            m: dict[str, Any] = {
                "filebeat": {
                    "events": {
                        "added": delta["published"] + delta["filtered"],
                        "done": delta["acked"] + delta["dropped"] + delta["duplicates"],
                    },
                    "harvester": {
                        "open_files": now["harvesters_running"],
                        "running": now["harvesters_running"],
                        "started": delta["harvesters_started"],
                    },
                },
                "libbeat": {
                    "output": {
                        "events": {
                            "acked": delta["acked"],
                            "batches": delta["batches"],
                            "dropped": delta["dropped"],
                            "duplicates": delta["duplicates"],
                            "failed": delta["retried"],
                        },
                        "write": {"bytes": delta["write_bytes"]},
                    },
                    "pipeline": {
                        "events": {"published": delta["published"], "filtered": delta["filtered"]},
                        "queue": {"acked": delta["acked"]},
                    },
                },
                "registrar": {"states": {"current": len(self.store.entries)}, "writes": {"success": self.registrar.writes}},
            }
            self.log.info(
                "monitoring", f"Non-zero metrics in the last {config.format_duration(period)}", monitoring={"metrics": _nonzero(m)}
            )


async def _cancel_and_wait(tasks: list[asyncio.Task[Any]], recancel_after: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until every one has ended. A task still running
    ``recancel_after`` seconds later is cancelled again: a cancellation can be lost (see
    :mod:`.http11`), and one lost cancellation must not keep the beat from stopping."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=recancel_after)


def _nonzero(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            sub = _nonzero(v)
            if sub:
                out[k] = sub
        elif v:
            out[k] = v
    return out


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=BEAT, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("command", nargs="*", help="run (default), version, test config")
    p.add_argument("-c", "--c", dest="config", default="filebeat.yml", help="configuration file, relative to path.config")
    p.add_argument("-E", dest="overrides", action="append", default=[], help="configuration overwrite (key=value)")
    p.add_argument("-e", dest="stderr", action="store_true", help="log to stderr (always the case here)")
    p.add_argument("-d", dest="selectors", action="append", default=[], help="enable debug output for selectors")
    p.add_argument("-v", dest="verbose", action="store_true", help="log at INFO level")
    p.add_argument("--path.home", dest="home", default=None)
    p.add_argument("--path.config", dest="config_dir", default=None)
    p.add_argument("--path.data", dest="data", default=None)
    p.add_argument("--path.logs", dest="logs", default=None)
    p.add_argument(
        "--strict.perms", dest="strict", default="true", nargs="?", const="true", help="strict permission checking on config files"
    )
    p.add_argument("--once", action="store_true", help="run until every harvester reaches EOF, then exit")
    p.add_argument("-environment", "--environment", dest="environment", default="default")
    for flag in ("--httpprof", "--cpuprofile", "--memprofile", "--system.hostfs"):
        p.add_argument(flag, default=None, help=argparse.SUPPRESS)
    p.add_argument("--root", default=None, help="host folder holding the container's root (SLUICE_FS_ROOT)")
    p.add_argument("--mount", action="append", default=[], help="CPATH=HPATH: a container path mounted from the host")
    return p.parse_args(argv)


def _strict_perms(host_path: str, shown: str) -> None:
    st = os.stat(host_path)
    if st.st_uid not in (0, os.geteuid()):
        raise ConfigError(
            f'error loading config file: config file ("{shown}") must be owned by the user identifier (uid={os.geteuid()}) or root'
        )
    if st.st_mode & 0o022:
        raise ConfigError(
            f'error loading config file: config file ("{shown}") can only be writable by the owner but the permissions are '
            f"\"{stat.filemode(st.st_mode)}\" (to fix the permissions use: 'chmod go-w {shown}')"
        )


def build_beat(argv: list[str], *, environ: Mapping[str, str] | None = None, log: Log | None = None) -> tuple[Beat, dict[str, Any]]:
    """Parse the command line and the configuration; :class:`ConfigError` when refused."""
    env = environ if environ is not None else os.environ
    args = parse_args(argv)
    fs = ContainerFS.from_env(env)
    mounts = dict(fs.mounts)
    for item in args.mount:
        cpath, eq, hpath = item.partition("=")
        if not eq or not cpath.startswith("/"):
            raise ConfigError(f"--mount {item}: expected /container/path=/host/path")
        mounts[cpath] = hpath
    fs = ContainerFS(args.root if args.root is not None else fs.root, mounts)
    home = args.home or (HOME_IN_IMAGE if fs.mapped else os.getcwd())
    cfg_dir = args.config_dir or home
    cfg_file = args.config if args.config.startswith("/") else cfg_dir.rstrip("/") + "/" + args.config
    host_cfg = fs.host(cfg_file)
    try:
        with open(host_cfg, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"error loading config file: open {cfg_file}: {exc.strerror.lower() if exc.strerror else exc}") from None
    if config.parse_bool(args.strict, "--strict.perms"):
        _strict_perms(host_cfg, cfg_file)
    defaults = {"path.home": home, "path.config": cfg_dir, "path.data": home.rstrip("/") + "/data", "path.logs": home.rstrip("/") + "/logs"}
    overrides = list(args.overrides)
    for key, value in (("path.home", args.home), ("path.config", args.config_dir), ("path.data", args.data), ("path.logs", args.logs)):
        if value:
            overrides.append(f"{key}={json.dumps(value)}")
    tree = config.load(text, source=os.path.basename(cfg_file), environ=env, overrides=overrides, defaults=defaults)
    paths = {k: str(config.get_path(tree, f"path.{k}")) for k in ("home", "config", "data", "logs")}
    # Deliberate difference: logs always go to stderr (as the image runs filebeat with -e);
    # logging.to_files / logging.files.* are accepted and not written.
    logcfg = Section(tree.get("logging") if isinstance(tree.get("logging"), dict) else {}, "logging")
    level = "debug" if args.selectors else logcfg.text("level", "info")
    log = log or Log()
    log.configure(as_json=logcfg.boolean("json", False), ecs=logcfg.boolean("ecs", False), level=level)
    beat = Beat(tree, fs=fs, log=log, paths=paths, once=args.once, environ=env)
    opts = {
        "command": args.command,
        "metrics": logcfg.child("metrics").boolean("enabled", True),
        "metrics_period": logcfg.child("metrics").duration("period", 30.0),
    }
    return beat, opts


def main(argv: list[str] | None = None) -> int:
    log = Log()
    args = sys.argv[1:] if argv is None else argv
    if parse_args(args).command[:1] == ["version"]:
        print(f"{BEAT} version {VERSION} (amd64), libbeat {VERSION} [sluice stand-in]")
        return 0
    try:
        beat, opts = build_beat(args, log=log)
        command = opts["command"]
        beat.build()
        if command[:2] == ["test", "config"]:
            print("Config OK")
            return 0
        if command and command[:1] != ["run"]:
            raise ConfigError(f'unknown command "{" ".join(command)}" for "{BEAT}"')
    except ConfigError as exc:
        print(f"Exiting: {exc}", file=sys.stderr)
        return 1

    async def run() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, beat.stop)
        return await beat.run(metrics=opts["metrics"], metrics_period=opts["metrics_period"])

    try:
        import uvloop
    except ImportError:
        return asyncio.run(run())
    return uvloop.run(run())
