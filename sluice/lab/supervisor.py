"""The lab's supervisor: one process per running lab that owns every service process.

``python -m sluice.lab.supervisor STATE_DIR`` runs ``STATE_DIR/plan.json``:

1. Services start in dependency order; a service starts once everything in its ``depends_on``
   (and the service whose network it shares) is *ready*, i.e. its ports accept connections.
   Services whose image has no local program are *not running* and count as settled.
2. Each process runs in its own session (``start_new_session``), so a stop signals its whole
   process group; its output goes straight to ``logs/<service>.log`` (the supervisor is not in
   the data path, so output survives a supervisor crash and ``down`` still finds the pids) —
   except in a lab that mounts ``/var/lib/docker``, where the supervisor relays it to that log
   and to the service's Docker json-file log (``docker_logs.py``).
3. Startup progress is written to stdout, which ``sluice lab up`` reads through a pipe; the last
   line is ``@@ready`` or ``@@failed``. After that stdout/stderr go to ``supervisor.log``.
   A service *fails* when it cannot be started, exits before it is ready (a non-zero status, or
   any status while it still has ports to open) and its ``restart`` policy does not bring it back
   within the ready timeout, or is still not accepting on its ports when that timeout passes.
   Its dependants still start (as with compose), so one ``up`` reports every failure; once all
   services have settled, any failure ends startup with ``@@failed`` and the supervisor stops
   the whole lab by itself, unlike compose: a lab whose proxy cannot start is of no use, and a
   half-started lab left behind would only hide the failure. Services whose image has no local
   program are not failures. Each failure is in ``status.json`` (``failure``), for ``up`` to
   print with the service's last log lines.
4. Once ready, an exit is written into the service's log with its status and last lines, and the
   service is restarted when its ``restart`` policy asks (backoff 0.1 s doubling to 5 s).
5. SIGTERM/SIGINT/SIGHUP stop the lab: published-port forwarders close, then services stop
   dependants first — SIGTERM to each process group, SIGKILL after ``STOP_TIMEOUT``.

``status.json`` always reflects the current state (pids with their start times, so ``down``
never signals a recycled pid).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from sluice.lab import state
from sluice.lab.docker_logs import JsonFileLog, container_id, write_config
from sluice.lab.forward import Forwarder
from sluice.lab.spec import Plan, ServicePlan

STOP_TIMEOUT = 10.0
POLL = 0.05
NO_PORT_GRACE = 0.5
EVENT_MARK = "[sluice lab]"

_tasks: set[asyncio.Task[Any]] = set()


def _spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    # The lab imports nothing of the data plane (STYLE §3.1), so not sluice.tasks.spawn: the
    # same habit here — a name and a strong reference until the task ends.
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


def exit_status(returncode: int) -> int:
    """Docker's convention: killed by signal N → 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def tail(path: str, n: int = 8) -> list[str]:
    """The last ``n`` lines a service wrote (the supervisor's own ``[sluice lab]`` lines left out)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            # Room for long lines (a config error names its whole path) and for the event lines
            # that are dropped below.
            f.seek(max(0, size - max(8192, 1024 * n)))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if not ln.startswith(EVENT_MARK)][-n:]


class Proc:
    __slots__ = ("name", "popen", "start", "exited")

    def __init__(self, name: str, popen: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.popen = popen
        self.start = state.start_time(popen.pid)
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(popen.pid)
        except OSError:
            _spawn(self._poll_exit(), f"exit:{popen.pid}")
            return
        loop.add_reader(fd, self._on_exit, fd)

    def _on_exit(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)
        os.close(fd)
        code = self.popen.wait()
        if not self.exited.done():
            self.exited.set_result(exit_status(code))

    async def _poll_exit(self) -> None:
        while (code := self.popen.poll()) is None:
            await asyncio.sleep(0.1)
        if not self.exited.done():
            self.exited.set_result(exit_status(code))

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)


class ServiceRunner:
    def __init__(self, sup: Supervisor, plan: ServicePlan) -> None:
        self.sup = sup
        self.plan = plan
        self.state = "created"
        self.exit_code: int | None = None
        self.restarts = 0
        self.procs: list[Proc] = []
        self.settled = asyncio.Event()
        """Set once the service is ready, not running, or failed: dependants may go on."""
        self.failure: str | None = None
        self.forwarders: list[Forwarder] = []
        self._log = open(plan.log, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._docker_log: JsonFileLog | None = None
        docker_dir = sup.plan.docker_dir
        if docker_dir:
            # The lab mounts /var/lib/docker: this service is also a "container" there.
            pl = sup.plan
            path = write_config(
                Path(docker_dir), cid=container_id(pl.project, plan.name), name=plan.prefix, image=plan.image,
                hostname=plan.hostname, project=pl.project, service=plan.name, working_dir=pl.lab_dir,
                config_file=pl.compose_file,
            )  # fmt: skip
            self._docker_log = JsonFileLog(path)

    def __repr__(self) -> str:
        return f"<ServiceRunner {self.plan.name} {self.state} procs={len(self.procs)} restarts={self.restarts}>"

    def event(self, message: str) -> None:
        with contextlib.suppress(OSError):
            self._log.write(f"{EVENT_MARK} {message}\n".encode())

    def close(self) -> None:
        self._log.close()
        if self._docker_log is not None:
            self._docker_log.close()

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "exit_code": self.exit_code,
            "restarts": self.restarts,
            "reason": self.failure or self.plan.not_running,
            "failure": self.failure,
            "processes": [{"name": p.name, "pid": p.popen.pid, "start": p.start} for p in self.procs if not p.exited.done()],
        }

    def _set(self, st: str) -> None:
        self.state = st
        self.sup.write_status()

    async def run(self) -> None:
        for dep in self.plan.depends_on:
            await self.sup.runners[dep].settled.wait()
        if self.sup.stopping:
            return
        if self.plan.not_running:
            self._set("not running")
            self.sup.progress(f" - Container {self.plan.prefix}  Not running: {self.plan.not_running}")
            self.settled.set()
            return
        backoff = 0.1
        deadline = time.monotonic() + self.sup.plan.ready_timeout
        while not self.sup.stopping:
            if self.settled.is_set():
                # A restart once startup is over gets a window of its own.
                deadline = time.monotonic() + self.sup.plan.ready_timeout
            self._set("starting")
            err = self._spawn_all()
            if err:
                self.event(err)
            started = time.monotonic()
            outcome = await self._until_ready(deadline) if not err else 127
            if isinstance(outcome, str) and self.settled.is_set():
                # Startup is over (the lab is up, or stopping anyway): say so and go on.
                self.event(f"{outcome}; going on")
                outcome = None
            if isinstance(outcome, str) and not self.sup.stopping:
                # Alive but deaf: as useless as a crash, and the lab is about to be stopped.
                self._fail(outcome)
                outcome = await self._any_exit()
            elif outcome is None and not self.sup.stopping:
                self._set("running")
                if not self.settled.is_set():
                    await self._start_forwarders()
                    ports = ", ".join(sorted({f"{a}:{p}" for pr in self.plan.processes for a, p, _ in pr.ports}))
                    self.sup.progress(f" - Container {self.plan.prefix}  Started{f' ({ports})' if ports else ''}")
                    self.settled.set()
                outcome = await self._any_exit()
            if self.sup.stopping:
                return
            code = outcome if isinstance(outcome, int) else 1
            await self._kill_all()
            self.exit_code = code
            self.event(f"{self.plan.prefix} exited with code {code}")
            restart = self._should_restart(code)
            if not self.settled.is_set():
                self._settle_exit(code, err, restart, deadline - backoff)
            if restart:
                self.restarts += 1
                if time.monotonic() - started > 10:
                    backoff = 0.1
                self.event(f"restarting ({self.plan.restart}, restart {self.restarts}) in {backoff:.1f}s")
                self._set("restarting")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._set("exited")
            return

    def _settle_exit(self, code: int, err: str | None, restart: bool, last_restart: float) -> None:
        """An exit before the service was ever ready: done, failed, or (restart) not yet."""
        if code == 0 and not err and not self._has_ports():
            # A one-shot job that did its work: done, not failed (compose's "exited (0)").
            self.sup.progress(f" - Container {self.plan.prefix}  Exited (0)")
            self.settled.set()
        elif not restart or time.monotonic() > last_restart:
            # A restart that would begin after the deadline cannot be ready in time: the exit is
            # the reason, not the deafness of a process that has only just been started.
            again = f" (after {self.restarts} restart{'s' if self.restarts != 1 else ''})" if self.restarts else ""
            self._fail(err or f"exited with code {code} before it was ready{again}")

    def _fail(self, reason: str) -> None:
        """Never ready: the lab will not be either (``Supervisor.run`` stops it once all settle)."""
        self.failure = reason
        self.sup.write_status()
        self.sup.progress(f" ! Container {self.plan.prefix}  Failed: {reason}")
        self.settled.set()

    def _has_ports(self) -> bool:
        return any(pr.ports for pr in self.plan.processes)

    def _spawn_all(self) -> str | None:
        self.procs = []
        for p in self.plan.processes:
            env = {**os.environ, **p.env}
            docker = self._docker_log is not None
            try:
                popen = subprocess.Popen(
                    p.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if docker else self._log,
                    stderr=subprocess.PIPE if docker else subprocess.STDOUT,
                    env=env,
                    cwd=self.plan.root,
                    start_new_session=True,
                )
            except OSError as exc:
                return f"cannot start {p.argv[0]}: {exc}"
            if docker:
                # (Through the supervisor, unlike the other labs: Docker's json-file lines need
                # each stream apart and a time per line.)
                self._relay(popen.stdout, "stdout")
                self._relay(popen.stderr, "stderr")
            self.procs.append(Proc(p.name, popen))
        self.sup.write_status()
        return None

    def _relay(self, pipe: Any, stream: str) -> None:
        """Copy a process's output to the service log and its json-file log as it comes."""
        loop = asyncio.get_running_loop()
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        docker = self._docker_log
        assert docker is not None

        def readable() -> None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                pipe.close()
                docker.flush()
                return
            with contextlib.suppress(OSError):
                self._log.write(data)
                docker.feed(stream, data)

        loop.add_reader(fd, readable)

    async def _until_ready(self, deadline: float) -> int | str | None:
        """None once every port accepts; the exit code if a process exits first; what is still
        not accepting if the deadline passes first."""
        waiting = [(a, p, o) for pr in self.plan.processes for a, p, o in pr.ports]
        exits = [p.exited for p in self.procs]
        if not waiting:
            # Nothing to knock on: a process that dies at once still counts as "never ready".
            done, _ = await asyncio.wait(exits, timeout=NO_PORT_GRACE, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result() if done else None
        while waiting:
            for f in exits:
                if f.done():
                    return f.result()
            still = []
            for a, p, o in waiting:
                if not await _accepting(a, p):
                    still.append((a, p, o))
            waiting = still
            if not waiting:
                break
            if time.monotonic() > deadline:
                deaf = ", ".join(f"{o} {a}:{p}" for a, p, o in waiting)
                why = f"not accepting connections after {self.sup.plan.ready_timeout:g}s: {deaf}"
                self.event(why)
                return why
            done, _ = await asyncio.wait(exits, timeout=POLL, return_when=asyncio.FIRST_COMPLETED)
            if done:
                return next(iter(done)).result()
        for f in exits:
            if f.done():
                return f.result()
        return None

    async def _any_exit(self) -> int:
        done, _ = await asyncio.wait([p.exited for p in self.procs], return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()

    def _should_restart(self, code: int) -> bool:
        policy = self.plan.restart
        if policy in ("always", "unless-stopped"):
            return True
        if policy == "on-failure" and code != 0:
            return self.plan.restart_max == 0 or self.restarts < self.plan.restart_max
        return False

    async def _start_forwarders(self) -> None:
        for f in self.plan.forwards:
            fw = Forwarder(tuple(f.listen), tuple(f.target))  # type: ignore[arg-type]
            try:
                await fw.start()
            except OSError as exc:
                self.event(f"ports '{f.spec}': cannot listen on {f.listen[0]}:{f.listen[1]}: {exc.strerror or exc}")
                continue
            self.forwarders.append(fw)

    async def _kill_all(self, timeout: float = STOP_TIMEOUT) -> None:
        live = [p for p in self.procs if not p.exited.done()]
        for p in live:
            p.signal_group(signal.SIGTERM)
        if live:
            await asyncio.wait([p.exited for p in live], timeout=timeout)
        for p in self.procs:
            # The leader may be gone while something it started lives on in its group.
            p.signal_group(signal.SIGKILL)
        if live:
            await asyncio.wait([p.exited for p in live], timeout=2.0)

    async def stop(self) -> None:
        for fw in self.forwarders:
            await fw.close()
        self.forwarders = []
        if any(not p.exited.done() for p in self.procs):
            self._set("stopping")
            await self._kill_all()
            self.event(f"{self.plan.prefix} stopped")
        if self.state not in ("not running", "exited"):
            self._set("stopped")


class Supervisor:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.state_dir = Path(plan.state_dir)
        self.runners: dict[str, ServiceRunner] = {}
        self.stopping = False
        self.state = "starting"
        self._stop = asyncio.Event()
        self._progress_open = True

    def progress(self, line: str) -> None:
        if not self._progress_open:
            return
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except OSError:
            self._progress_open = False

    def request_stop(self) -> None:
        self._stop.set()

    def write_status(self) -> None:
        data = {
            "supervisor": os.getpid(),
            "state": self.state,
            "updated": time.time(),
            "services": {n: r.status() for n, r in self.runners.items()},
        }
        with contextlib.suppress(OSError):
            state.write_json(self.state_dir / "status.json", data)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.request_stop)
        state.write_supervisor_record(self.state_dir)
        self.runners = {s.name: ServiceRunner(self, s) for s in self.plan.services}
        self.write_status()
        started = time.monotonic()
        tasks = [_spawn(r.run(), f"service:{r.plan.name}") for r in self.runners.values()]
        settled = _spawn(self._all_settled(), "settled")
        stop_wait = _spawn(self._stop.wait(), "stop")
        await asyncio.wait([settled, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        failed = [r.plan.name for r in self.runners.values() if r.failure]
        if self._stop.is_set():
            self.progress("@@failed stopped before the lab was ready")
        elif failed:
            # Stop here rather than leave it to ``up``: whatever happens to the caller (killed,
            # Ctrl-C), a lab that failed to start leaves nothing running.
            self.state = "failed"
            self.write_status()
            self.progress(f"@@failed {len(failed)} service{'s' if len(failed) > 1 else ''} failed to start: {', '.join(failed)}")
            self._stop.set()
        else:
            self.state = "running"
            self.write_status()
            self.progress(f"@@ready {time.monotonic() - started:.2f}")
        self._detach_stdout()
        await self._stop.wait()
        self.stopping = True
        self.state = "stopping"
        self.write_status()
        for t in tasks:
            t.cancel()
        await self._stop_all()
        self.state = "failed" if failed else "stopped"
        self.write_status()
        for r in self.runners.values():
            r.close()
        settled.cancel()
        return 1 if failed else 0

    async def _all_settled(self) -> None:
        for r in self.runners.values():
            await r.settled.wait()

    def _detach_stdout(self) -> None:
        self._progress_open = False
        with contextlib.suppress(OSError):
            fd = os.open(self.state_dir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)

    async def _stop_all(self) -> None:
        """Dependants first: a service stops once everything that depends on it has stopped."""
        level: dict[str, int] = {}

        def depth(name: str) -> int:
            if name not in level:
                deps = self.runners[name].plan.depends_on
                level[name] = 1 + max((depth(d) for d in deps), default=0)
            return level[name]

        for name in self.runners:
            depth(name)
        for lvl in sorted(set(level.values()), reverse=True):
            group = [self.runners[n] for n, v in level.items() if v == lvl]
            await asyncio.gather(*(r.stop() for r in group), return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m sluice.lab.supervisor STATE_DIR", file=sys.stderr)
        return 2
    state_dir = Path(args[0])
    data = state.read_json(state_dir / "plan.json")
    if not data:
        print(f"@@failed no plan in {state_dir}", flush=True)
        return 1
    plan = Plan.from_json(data)
    return asyncio.run(Supervisor(plan).run())


async def _accepting(address: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 0.5)
    except (TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


if __name__ == "__main__":
    sys.exit(main())
