"""``sluice lab``: run the course's docker-compose labs on loopback, without Docker.

    sluice lab up [DIR|NAME] [-d]      start a lab (foreground: stream logs; Ctrl-C stops it)
    sluice lab ps [DIR|NAME]           services, state, addresses and ports
    sluice lab logs [-f] [SERVICE…]    service output, prefixed like compose
    sluice lab down [DIR|NAME] [-v]    stop everything, free every port
    sluice lab hosts [DIR|NAME]        the lab's name → address table
    sluice lab ls                      running labs

``NAME`` is one of the labs under the project's ``labs/`` folder; ``DIR`` any folder with a
docker-compose.yaml/.yml. Without either: the lab in the current folder, else the only running
lab. ``--state-dir`` puts the lab's state elsewhere (the default is ``<lab>/.sluice-lab``, or a
folder under ``$XDG_RUNTIME_DIR``/``/tmp`` for a read-only lab folder).

``up`` exits 1 when a service fails to start (each one named, with its last log lines) and
stops the lab; ``down`` with nothing running says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from sluice.lab import compose, network, report, state
from sluice.lab.plan import PlanError, make_plan, prepare
from sluice.lab.spec import Plan, ServicePlan
from sluice.lab.supervisor import EVENT_MARK, STOP_TIMEOUT


class LabError(Exception):
    pass


class NothingRunning(LabError):
    """No lab was named and none is running (an error for ps/logs, a no-op for down)."""

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(what + hint)
        self.what = what


def labs_roots() -> list[Path]:
    """Where the project's labs are: ``$SLUICE_LABS_DIR``, the source tree's ``labs/``, ``./labs``."""
    env = os.environ.get("SLUICE_LABS_DIR")
    roots = [Path(env)] if env else []
    roots += [Path(__file__).resolve().parents[2] / "labs", Path.cwd() / "labs"]
    return [r for r in roots if r.is_dir()]


def shipped_lab(name: str) -> Path | None:
    for root in labs_roots():
        p = root / name
        if p.is_dir() and compose.find_compose_file(p):
            return p.resolve()
    return None


def shipped_labs() -> list[str]:
    names = {p.name for root in labs_roots() for p in root.iterdir() if p.is_dir() and compose.find_compose_file(p)}
    return sorted(names)


def resolve_lab(arg: str | None) -> Path | None:
    """A lab folder from ``DIR|NAME``, or the current folder when it is a lab; None otherwise."""
    if arg:
        p = Path(arg).expanduser()
        if p.is_file() and p.name in compose.COMPOSE_FILES:
            return p.parent.resolve()
        if p.is_dir() and compose.find_compose_file(p):
            return p.resolve()
        shipped = shipped_lab(arg) if "/" not in arg else None
        if shipped is not None:
            return shipped
        names = ", ".join(shipped_labs()) or "(none found)"
        raise LabError(f"no lab '{arg}': not a folder with a docker-compose.yaml, nor one of the project's labs: {names}")
    cwd = Path.cwd()
    if compose.find_compose_file(cwd):
        return cwd.resolve()
    return None


def select_running(arg: str | None, state_dir: str | None) -> tuple[Path, Path]:
    """(lab dir, state dir) for ps/logs/down/hosts."""
    lab = resolve_lab(arg)
    if state_dir:
        sd = Path(state_dir).resolve()
        if lab is None:
            data = state.read_json(sd / "plan.json")
            if not data:
                raise NothingRunning(f"no lab is running with state in {sd}")
            lab = Path(data["lab_dir"])
        return lab, sd
    if lab is not None:
        entry = state.find_running(lab)
        if entry:
            return lab, entry.state_dir
        return lab, state.default_state_dir(lab, compose.load(lab).name)
    running = state.running_labs()
    if len(running) == 1:
        return running[0].lab_dir, running[0].state_dir
    if not running:
        raise NothingRunning(
            "no lab is running", " (and the current folder has no docker-compose.yaml): name one, e.g. sluice lab up http-traffic-shifting"
        )
    listing = "\n".join(f"  {e.project}: {e.lab_dir}" for e in running)
    raise LabError(f"several labs are running; name one:\n{listing}")


# --- output --------------------------------------------------------------------------------

_COLORS = ("36", "33", "32", "35", "34", "91", "96", "93", "92", "95", "94")


class Printer:
    """Compose-style prefixes: ``<project>-<service>-1  | line``."""

    def __init__(self, prefixes: list[str], out: TextIO = sys.stdout, color: bool | None = None) -> None:
        self.width = max((len(p) for p in prefixes), default=0)
        self.out = out
        if color is None:
            color = out.isatty() and not os.environ.get("NO_COLOR")
        self.colors = {p: _COLORS[i % len(_COLORS)] for i, p in enumerate(prefixes)} if color else {}

    def line(self, prefix: str, text: str) -> None:
        if text.startswith(EVENT_MARK):
            text = text[len(EVENT_MARK) :].strip()
            if text.startswith(prefix):
                self._write(self._paint(prefix, text))
                return
        head = self._paint(prefix, f"{prefix:<{self.width}}  |")
        self._write(f"{head} {text}")

    def _paint(self, prefix: str, text: str) -> str:
        c = self.colors.get(prefix)
        return f"\033[{c}m{text}\033[0m" if c else text

    def _write(self, s: str) -> None:
        try:
            self.out.write(s + "\n")
            self.out.flush()
        except BrokenPipeError:
            raise SystemExit(0) from None


class LogTail:
    """Reads each service's log file from where it last stopped, whole lines only."""

    def __init__(self, files: dict[str, str], from_end: bool = False, last: int | None = None) -> None:
        self.files = files
        self.pos: dict[str, int] = {}
        self.partial: dict[str, bytes] = {p: b"" for p in files}
        for prefix, path in files.items():
            try:
                size = os.path.getsize(path)
            except OSError:
                size = 0
            self.pos[prefix] = size if from_end else 0
            if last is not None and not from_end:
                self.pos[prefix] = _offset_of_last_lines(path, last)

    def read(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for prefix, path in self.files.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self.pos[prefix])
                    data = f.read()
            except OSError:
                continue
            if not data:
                continue
            self.pos[prefix] += len(data)
            data = self.partial[prefix] + data
            *lines, rest = data.split(b"\n")
            self.partial[prefix] = rest
            out.extend((prefix, ln.decode(errors="replace").rstrip("\r")) for ln in lines)
        return out

    def flush_partial(self) -> list[tuple[str, str]]:
        out = [(p, b.decode(errors="replace")) for p, b in self.partial.items() if b]
        self.partial = {p: b"" for p in self.files}
        return out


def _offset_of_last_lines(path: str, n: int) -> int:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return 0
    idx = len(data)
    if data.endswith(b"\n"):
        idx -= 1
    for _ in range(n):
        idx = data.rfind(b"\n", 0, idx)
        if idx < 0:
            return 0
    return idx + 1


def warn(msg: str) -> None:
    print(f"sluice lab: {msg}", file=sys.stderr, flush=True)


# --- commands ------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    lab = resolve_lab(args.lab)
    if lab is None:
        names = ", ".join(shipped_labs()) or "(none)"
        raise LabError(f"no docker-compose.yaml in {Path.cwd()}: name a lab folder or one of the project's labs: {names}")
    try:
        project = compose.load(lab)
    except compose.ComposeError as exc:
        raise LabError(str(exc)) from exc
    entry = state.find_running(lab)
    if entry is not None:
        print(
            f"lab '{entry.project}' is already running (state in {entry.state_dir}); `sluice lab ps` shows it, `sluice lab down` stops it"
        )
        if args.detach:
            return 0
        return _attach(entry.lab_dir, entry.state_dir, Plan.from_json(state.read_json(entry.state_dir / "plan.json")), None)
    state_dir = Path(args.state_dir).resolve() if args.state_dir else state.default_state_dir(lab, project.name)
    state_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        plan = make_plan(lab, state_dir, project=project, note=lambda m: print(m, flush=True))
    except PlanError as exc:
        for m in exc.messages:
            warn(f"error: {m}")
        warn("nothing was started")
        return 1
    for p in plan.problems:
        warn(f"not honoured: {p}")
    prepare(plan)
    state.write_json(state_dir / "plan.json", plan.to_json())
    state.register(plan.project, lab, state_dir)
    nets = ", ".join(f"{n} {s}" for n, s in plan.subnets.items())
    print(f"[+] Running lab {plan.project} on loopback ({nets}); state in {state_dir}", flush=True)
    sup = subprocess.Popen(
        [sys.executable, "-m", "sluice.lab.supervisor", str(state_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=str(state_dir),
    )
    ok, detail = _read_progress(sup)
    if not ok:
        return _startup_failed(lab, state_dir, plan, sup, detail)
    elapsed = time.monotonic() - t0
    _summary(plan, elapsed)
    if args.detach:
        return 0
    return _attach(lab, state_dir, plan, sup)


def _read_progress(sup: subprocess.Popen[bytes]) -> tuple[bool, str]:
    assert sup.stdout is not None
    try:
        for raw in sup.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("@@ready"):
                return True, line
            if line.startswith("@@failed"):
                return False, line[len("@@failed") :].strip()
            print(line, flush=True)
    except KeyboardInterrupt:
        sup.send_signal(signal.SIGTERM)
        return False, "interrupted"
    finally:
        sup.stdout.close()
    return False, f"the supervisor exited ({sup.wait()}) before the lab was ready"


def _startup_failed(lab: Path, state_dir: Path, plan: Plan, sup: subprocess.Popen[bytes], detail: str) -> int:
    """Name what failed with its last log lines, stop the whole lab, check that nothing is left.

    Unlike ``docker compose up``, a lab with a service that could not start is stopped (the
    supervisor already does so on its own): its proxy is usually the service that failed, and
    a half-started lab would let the failure scroll by unnoticed.
    """
    failed = report.failures(plan, state.read_json(state_dir / "status.json"))
    warn(f"error: {report.headline(failed) if failed else detail}")
    if failed:
        print("\n".join(report.render(failed)), file=sys.stderr, flush=True)
    warn(f"stopping the lab (each service's whole log stays in {state_dir / 'logs'})")
    busy = _teardown(lab, state_dir, plan, quiet=True)
    try:
        sup.wait(timeout=5)
    except subprocess.TimeoutExpired:
        sup.kill()
        sup.wait()
    leftovers = state.any_process_alive(state_dir)
    if busy or leftovers:
        warn("some of the lab could not be stopped: see above, and `sluice lab down` to retry")
    else:
        warn("nothing is left running")
    return 1


def _summary(plan: Plan, elapsed: float) -> None:
    status = (state.read_json(Path(plan.state_dir) / "status.json") or {}).get("services", {})
    down = [s for s in plan.services if s.not_running]
    exited = [(s, status.get(s.name, {})) for s in plan.services if not s.not_running and status.get(s.name, {}).get("state") != "running"]
    up = len(plan.services) - len(down) - len(exited)
    print(f"[+] {up}/{len(plan.services)} services running, ready in {elapsed:.2f}s", flush=True)
    for s, st in exited:
        print(f"[!] {s.name}: {st.get('reason') or st.get('state')} (sluice lab logs {s.name})", flush=True)
    if down:
        print(f"[!] {len(down)} not running:", flush=True)
        for s in down:
            print(f"    {s.name}: {s.not_running}", flush=True)


def _attach(lab: Path, state_dir: Path, plan: Plan, sup: subprocess.Popen[bytes] | None) -> int:
    """Stream every service's output until the lab stops; Ctrl-C stops it gracefully."""
    prefixes = {s.prefix: s.log for s in plan.services}
    printer = Printer(list(prefixes))
    print(f"Attaching to {', '.join(prefixes)}", flush=True)
    logs = LogTail(prefixes)
    interrupts = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal interrupts
        interrupts += 1

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    stopping_at = 0
    try:
        while True:
            for prefix, text in logs.read():
                printer.line(prefix, text)
            if interrupts == 1 and not stopping_at:
                print("Gracefully stopping... (press Ctrl+C again to force)", flush=True)
                _signal_supervisor(state_dir, signal.SIGTERM)
                stopping_at = 1
            elif interrupts >= 2 and stopping_at == 1:
                print("Forcing stop...", flush=True)
                _kill_everything(state_dir)
                stopping_at = 2
            if not state.supervisor_alive(state_dir) and (sup is None or sup.poll() is not None):
                for prefix, text in logs.read() + logs.flush_partial():
                    printer.line(prefix, text)
                break
            time.sleep(0.1)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    _teardown(lab, state_dir, plan, quiet=False, verb="Stopped")
    return 0


def _signal_supervisor(state_dir: Path, sig: int) -> bool:
    rec = state.supervisor_record(state_dir)
    if rec is None or not state.alive(*rec):
        return False
    try:
        os.kill(rec[0], sig)
    except ProcessLookupError:
        return False
    return True


def _kill_everything(state_dir: Path) -> int:
    """SIGKILL the supervisor and every process group it recorded; how many were alive."""
    n = 0
    rec = state.supervisor_record(state_dir)
    if rec is not None and state.alive(*rec):
        n += 1
        try:
            os.kill(rec[0], signal.SIGKILL)
        except ProcessLookupError:
            pass
    for _, pid, started in state.recorded_processes(state_dir):
        if state.alive(pid, started):
            n += 1
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    return n


def _teardown(lab: Path, state_dir: Path, plan: Plan | None, *, quiet: bool, verb: str = "Removed") -> list[str]:
    """Stop the supervisor (gracefully, then by force), kill leftovers, verify the ports."""
    if _signal_supervisor(state_dir, signal.SIGTERM):
        deadline = time.monotonic() + STOP_TIMEOUT + 5
        while state.supervisor_alive(state_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
    forced = _kill_everything(state_dir)
    if forced:
        deadline = time.monotonic() + 5
        while (state.supervisor_alive(state_dir) or state.any_process_alive(state_dir)) and time.monotonic() < deadline:
            time.sleep(0.05)
    busy = _busy_ports(plan) if plan else []
    state.unregister(lab)
    if not quiet and plan is not None:
        for s in reversed(plan.services):
            print(f" - Container {s.prefix}  {verb}", flush=True)
    for b in busy:
        warn(f"port still in use after stopping: {b}")
    return busy


def _busy_ports(plan: Plan, wait: float = 5.0) -> list[str]:
    wanted: list[tuple[str, int, str]] = []
    for s in plan.services:
        if s.not_running:
            continue
        for p in s.processes:
            wanted += [(a, port, s.name) for a, port, _ in p.ports]
        wanted += [(f.listen[0], f.listen[1], s.name) for f in s.forwards]
    deadline = time.monotonic() + wait
    while True:
        busy = [f"{a}:{p} ({svc})" for a, p, svc in wanted if network.accepting(a, p, 0.1)]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.1)


def cmd_down(args: argparse.Namespace) -> int:
    # As `docker compose down`: stopping what is not running is done already, not an error.
    try:
        lab, state_dir = select_running(args.lab, args.state_dir)
    except NothingRunning as exc:
        print(exc.what)
        return 0
    data = state.read_json(state_dir / "plan.json")
    plan = Plan.from_json(data) if data else None
    was_running = state.supervisor_alive(state_dir) or state.any_process_alive(state_dir)
    if not was_running:
        state.unregister(lab)
        print(f"lab {plan.project if plan else lab.name} is not running")
        # Nothing of ours holds its ports: someone else's listener there is not ours to report.
        plan = None
    busy = _teardown(lab, state_dir, plan, quiet=not was_running)
    if args.volumes:
        shutil.rmtree(state_dir / "volumes", ignore_errors=True)
        print(" - Volumes removed", flush=True)
    return 1 if busy else 0


def cmd_ps(args: argparse.Namespace) -> int:
    lab, state_dir = select_running(args.lab, args.state_dir)
    data = state.read_json(state_dir / "plan.json")
    supervised = state.supervisor_alive(state_dir)
    running = supervised or state.any_process_alive(state_dir)
    if data and running and not supervised:
        warn("the lab's supervisor is gone (no restarts, no published ports); `sluice lab down` stops what is left")
    if not data or not running:
        print(f"lab {lab.name} is not running")
        _table(["NAME", "SERVICE", "PROGRAM", "STATUS", "ADDRESS", "PORTS"], [])
        return 0
    plan = Plan.from_json(data)
    status = (state.read_json(state_dir / "status.json") or {}).get("services", {})
    rows = []
    for s in plan.services:
        st = status.get(s.name, {})
        rows.append([s.prefix, s.name, s.program, _status_text(s.not_running, st), s.address, _ports_text(s)])
    _table(["NAME", "SERVICE", "PROGRAM", "STATUS", "ADDRESS", "PORTS"], rows)
    return 0


def _status_text(not_running: str | None, st: dict[str, object]) -> str:
    if not_running:
        return f"not running: {not_running}"
    s = str(st.get("state", "?"))
    if s == "running":
        pids = ",".join(str(p["pid"]) for p in st.get("processes", []))  # type: ignore[attr-defined]
        extra = f", restarts {st['restarts']}" if st.get("restarts") else ""
        return f"running (pid {pids}{extra})"
    if s == "exited":
        return f"exited ({st.get('exit_code')})"
    if s == "restarting":
        return f"restarting (exited {st.get('exit_code')}, restarts {st.get('restarts')})"
    return s


def _ports_text(s: ServicePlan) -> str:
    ports = sorted({p for pr in s.processes for a, p, _ in pr.ports if a == s.address})
    parts = [", ".join(str(p) for p in ports)] if ports else []
    parts += [f"{f.listen[0]}:{f.listen[1]}->{f.target[1]}/tcp" for f in s.forwards]
    return ", ".join(parts)


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def cmd_logs(args: argparse.Namespace) -> int:
    lab, state_dir = select_running(args.lab, args.state_dir)
    data = state.read_json(state_dir / "plan.json")
    if not data:
        raise LabError(f"lab {lab.name} has no logs (never started here)")
    plan = Plan.from_json(data)
    by_name = {s.name: s for s in plan.services}
    by_prefix = {s.prefix: s for s in plan.services}
    chosen = []
    for name in args.services:
        svc = by_name.get(name) or by_prefix.get(name)
        if svc is None:
            raise LabError(f"no service '{name}' in lab {plan.project}: {', '.join(by_name)}")
        chosen.append(svc)
    chosen = chosen or plan.services
    files = {s.prefix: s.log for s in chosen}
    printer = Printer(list(files), color=None if not args.no_color else False)
    logs = LogTail(files, last=args.tail)
    try:
        while True:
            for prefix, text in logs.read():
                printer.line(prefix, text)
            if not args.follow or not state.supervisor_alive(state_dir):
                for prefix, text in logs.read() + logs.flush_partial():
                    printer.line(prefix, text)
                return 0
            time.sleep(0.1)
    except KeyboardInterrupt:
        return 0


def cmd_hosts(args: argparse.Namespace) -> int:
    lab, state_dir = select_running(args.lab, args.state_dir)
    data = state.read_json(state_dir / "plan.json") if state.supervisor_alive(state_dir) else None
    if data:
        names: dict[str, list[str]] = data["names"]
        subnets: dict[str, str] = data["subnets"]
        project = compose.load(lab)
        note = ""
    else:
        project = compose.load(lab)
        addressing = network.allocate(project)
        names = addressing.names
        subnets = {n: str(s) for n, s in addressing.subnets.items()}
        note = " (not running: addresses as `up` would give them when free)"
    ids = {network.container_id(project.name, s) for s in project.services}
    for net, subnet in subnets.items():
        written = project.networks[net].subnet if net in project.networks else None
        course = f" (the compose file's {written})" if written else ""
        print(f"lab {project.name}, network {net}: {subnet}{course}{note}")
    rows = [[n, " ".join(a)] for n, a in names.items() if args.all or n not in ids]
    _table(["NAME", "ADDRESSES"], rows)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    rows = [[e.project, str(e.lab_dir), str(e.state_dir)] for e in state.running_labs()]
    _table(["PROJECT", "LAB", "STATE"], rows)
    if not rows and shipped_labs():
        print(f"\nno lab running; the project's labs: {', '.join(shipped_labs())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sluice lab", description="Run the course's docker-compose labs on loopback, without Docker.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp: argparse.ArgumentParser, positional: bool = True) -> None:
        if positional:
            sp.add_argument("lab", nargs="?", metavar="DIR|NAME", help="a lab folder, or the name of one of the project's labs")
        else:
            sp.add_argument("--lab", metavar="DIR|NAME", help="a lab folder, or the name of one of the project's labs")
        sp.add_argument("--state-dir", help="where the lab's state lives (pids, logs, service folders)")

    up = sub.add_parser("up", help="start a lab")
    common(up)
    up.add_argument("-d", "--detach", action="store_true", help="run in the background")
    up.set_defaults(func=cmd_up)

    ps = sub.add_parser("ps", help="list the lab's services")
    common(ps)
    ps.set_defaults(func=cmd_ps)

    logs = sub.add_parser("logs", help="show service output")
    common(logs, positional=False)
    logs.add_argument("services", nargs="*", metavar="SERVICE")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--tail", type=int, default=None, help="only the last N lines of each service")
    logs.add_argument("--no-color", action="store_true")
    logs.set_defaults(func=cmd_logs)

    down = sub.add_parser("down", help="stop the lab; no process is left and every port is freed")
    common(down)
    down.add_argument("-v", "--volumes", action="store_true", help="also remove named volumes")
    down.set_defaults(func=cmd_down)

    hosts = sub.add_parser("hosts", help="the lab's name → address table")
    common(hosts)
    hosts.add_argument("--all", action="store_true", help="include the pseudo container ids")
    hosts.set_defaults(func=cmd_hosts)

    ls = sub.add_parser("ls", help="list running labs")
    ls.set_defaults(func=cmd_ls)
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (LabError, compose.ComposeError, network.NetworkError) as exc:
        warn(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `sluice lab hosts | head`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
