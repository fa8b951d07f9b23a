"""``python -m sluice.lab.backends.grafana`` — ``grafana-server`` as the image runs it:

    grafana-server --homepath=/usr/share/grafana --config=/etc/grafana/grafana.ini \\
        --packaging=docker cfg:default.paths.data=/var/lib/grafana \\
        cfg:default.paths.provisioning=/etc/grafana/provisioning

Logs in Grafana's console format (``t=… lvl=info msg="…" logger=…``), including
``msg="HTTP Server Listen" … address=HOST:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from sluice.lab.backends.grafana import COMMIT, VERSION
from sluice.lab.backends.grafana.fs import ContainerFS
from sluice.lab.backends.grafana.provisioning import (
    ProvisioningError,
    provision_dashboards,
    provision_datasources,
    read_dashboard_providers,
    read_datasources,
)
from sluice.lab.backends.grafana.server import Grafana
from sluice.lab.backends.grafana.settings import SettingsError, load
from sluice.lab.backends.grafana.store import Store

_LOCK = threading.Lock()


def log(msg: str, *, lvl: str = "info", logger: str = "server", **kv: object) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime())
    parts = [f"t={stamp}", f"lvl={lvl}", f"msg={_val(msg)}", f"logger={logger}"]
    parts += [f"{k}={_val(str(v))}" for k, v in kv.items()]
    with _LOCK:
        print(" ".join(parts), flush=True)


def _val(v: str) -> str:
    return '"' + v.replace('"', '\\"') + '"' if (not v or any(c in v for c in ' ="')) else v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="grafana-server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="path to config file (a container path in a lab)")
    p.add_argument("--homepath", default=".", help="path to Grafana install/home path")
    p.add_argument("--packaging", default="unknown")
    p.add_argument("--pidfile", default="")
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    p.add_argument("cfg", nargs="*", help="cfg:section.key=value overrides (cfg:default.section.key=value for defaults)")
    args = p.parse_args(argv)
    if args.version:
        print(f"Version {VERSION} (commit: {COMMIT}, branch: HEAD)")
        return 0
    fs = ContainerFS.from_env()

    def read(path: str) -> str:
        with open(fs.host(path), encoding="utf-8") as f:
            return f.read()

    try:
        settings = load(args.config, homepath=args.homepath, args=args.cfg, read=read)
        settings.http_port  # noqa: B018  (validates it)
    except SettingsError as exc:
        print(f"Failed to start grafana. error: {exc}", file=sys.stderr)
        return 1
    log("Starting Grafana", logger="server", version=VERSION, commit=COMMIT, branch="HEAD")
    log("Config loaded from", logger="settings", file=args.config or "(defaults)")
    for name in ("data", "logs", "plugins", "provisioning"):
        log(f"Path {name.capitalize()}", logger="settings", path=settings.path(name))

    data_dir = fs.host(settings.path("data"))
    os.makedirs(data_dir, exist_ok=True)
    db_path = settings.get("database", "path", "grafana.db")
    db_file = fs.host(db_path) if os.path.isabs(db_path) else os.path.join(data_dir, db_path)
    log("Connecting to DB", logger="sqlstore", dbtype="sqlite3")
    store = Store(db_file)
    provisioning = settings.path("provisioning")
    try:
        provision_datasources(store, read_datasources(fs, provisioning), log)
        providers = read_dashboard_providers(fs, provisioning)
        for provider in providers:
            provision_dashboards(store, fs, provider, log)
    except ProvisioningError as exc:
        log("Failed to provision", logger="server", lvl="eror", error=str(exc))
        print(f"Server shutdown error=\"{exc}\"", file=sys.stderr)
        return 1

    app = Grafana(settings, store, log=log)
    try:
        host, port = app.bind()
    except OSError as exc:
        where = f"{settings.http_addr}:{settings.http_port}"
        log("Stopped Server", logger="server", lvl="eror", reason=f"failed to open listener on address {where}: {exc.strerror}")
        return 1
    stop = threading.Event()

    def watch() -> None:
        # Grafana re-reads the provider folders every updateIntervalSeconds (10 by default).
        interval = min([pr.update_interval for pr in providers] or [10.0])
        while not stop.wait(max(1.0, interval)):
            for provider in providers:
                try:
                    provision_dashboards(store, fs, provider, log)
                except (OSError, ProvisioningError) as exc:
                    log("failed to provision dashboards", logger="provisioning.dashboard", lvl="eror", error=str(exc))

    threading.Thread(target=watch, daemon=True, name="provisioning").start()

    def on_signal(signum: int, frame: object) -> None:
        log("Shutdown started", logger="server", reason=f"System signal: {signal.Signals(signum).name.lower()}")
        stop.set()
        threading.Thread(target=app.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    log("HTTP Server Listen", logger="http.server", address=shown, protocol="http", subUrl="", socket="")
    app.serve_forever()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
