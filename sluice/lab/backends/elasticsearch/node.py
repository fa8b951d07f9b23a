"""A node: the store, the REST application and the HTTP listener, started on a running loop
(tests start one in-process; ``__main__`` runs one until a signal).

Thread layout: the event loop reads and writes sockets; ``workers`` threads run handlers (SQLite
releases the GIL while it works, so a search proceeds while a bulk commits). Writes serialize on
the store's lock.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from concurrent.futures import ThreadPoolExecutor

from sluice.lab.backends.elasticsearch.app import App, Log
from sluice.lab.backends.elasticsearch.settings import NodeSettings, SettingsError
from sluice.lab.backends.elasticsearch.store import Store
from sluice.lab.backends.elasticsearch.web import HttpServer

TICK = 0.2


class Node:
    def __init__(self, settings: NodeSettings, log: Log | None = None, *, workers: int = 4, refresher_process: bool = True) -> None:
        self.refresher_process = refresher_process
        self.settings = settings
        self.log: Log = log or (lambda *a, **k: None)
        self.store: Store | None = None
        self.app: App | None = None
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="es-worker")
        self.server: asyncio.Server | None = None
        self.http: HttpServer | None = None
        self.host = ""
        self.port = 0
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.store = await loop.run_in_executor(self.executor, Store, self.settings.data_path)
        if self.refresher_process:
            self.store.start_refresher()
        self.app = App(self.settings, self.store, self.log)
        http = self.http = HttpServer(self.app.handle, self.executor, max_content_length=self.settings.max_content_length)
        host = self.settings.host
        last: OSError | None = None
        for port in self.settings.ports:
            try:
                self.server = await http.listen(host, port)
                break
            except OSError as exc:
                last = exc
                if exc.errno != errno.EADDRINUSE:
                    break
        if self.server is None:
            await self.stop()
            if last is None:
                raise SettingsError("no port to bind")
            raise last
        sock = self.server.sockets[0].getsockname()
        self.host, self.port = str(sock[0]), int(sock[1])
        self.app.http_address = f"{self.host}:{self.port}"
        self._refresher = threading.Thread(target=self._refresh_loop, name="es-refresh", daemon=True)
        self._refresher.start()
        return self.host, self.port

    def _refresh_loop(self) -> None:
        """Publish the refresher's progress: refreshed documents become searchable here."""
        while not self._stop.wait(TICK):
            store = self.store
            if store is None or store.closed:
                return
            try:
                store.load_refreshed()
            except Exception as exc:  # noqa: BLE001 - keep watching; the next tick retries
                self.log("warn", "o.e.i.s.IndexShard", f"reading refresh state failed: {exc!r}")

    async def stop(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._refresher.join)
            self._refresher = None
        if self.server is not None:
            self.server.close()
            for conn in list(self.http.connections if self.http else ()):
                conn.close_now()
            await self.server.wait_closed()
            self.server = None
        loop = asyncio.get_running_loop()
        store = self.store
        self.store = None
        if store is not None:
            await loop.run_in_executor(self.executor, store.close)
        self.executor.shutdown(wait=False)
