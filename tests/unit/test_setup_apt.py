"""``ensure_apt_package`` in ``scripts/setup.sh`` (Prometheus for the lab tests and the metrics
labs): skipped when present, installed with one line as root with apt (``apt-get update`` once,
the package's services kept from starting), apt's output only when it fails. ``apt-get`` and
``id`` are stand-ins on PATH, so nothing is installed here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FAKE_APT = """#!/usr/bin/env bash
echo "$* policy=$([ -e "$SLUICE_POLICY_RC_D" ] && echo yes || echo no)" >> "$FAKE_DIR/apt.log"
if [ -e "$FAKE_DIR/fail" ]; then echo "E: Unable to locate package" >&2; exit 100; fi
if [ "$1" = install ] || [ "$3" = install ] || [[ " $* " == *" install "* ]]; then
  printf '#!/bin/sh\\n' > "$FAKE_BINARY"; chmod 755 "$FAKE_BINARY"
fi
echo "Reading package lists... noise"
"""


def run(tmp_path: Path, script: str, uid: int = 0) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "apt-get").write_text(FAKE_APT)
    (bin_dir / "apt-get").chmod(0o755)
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "id").chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        FAKE_DIR=str(tmp_path),
        FAKE_BINARY=str(tmp_path / "prometheus"),
        SLUICE_POLICY_RC_D=str(tmp_path / "policy-rc.d"),
    )
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; . {REPO / 'scripts' / 'setup.sh'}; {script}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def apt_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "apt.log"
    return log.read_text().splitlines() if log.exists() else []


def test_present_binary_is_not_installed_again(tmp_path: Path) -> None:
    (tmp_path / "prometheus").write_text("#!/bin/sh\n")
    (tmp_path / "prometheus").chmod(0o755)
    r = run(tmp_path, f"ensure_apt_package {tmp_path / 'prometheus'} prometheus 'the lab'")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"setup: prometheus is installed ({tmp_path / 'prometheus'})\n", "")
    assert apt_calls(tmp_path) == []


def test_installs_as_root_with_one_line_and_updates_once(tmp_path: Path) -> None:
    binary = tmp_path / "prometheus"
    r = run(tmp_path, f"ensure_apt_package {binary} prometheus 'the lab'; rm {binary}; ensure_apt_package {binary} prometheus 'again'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "setup: installing prometheus for the lab (apt-get install prometheus)",
        "setup: installing prometheus for again (apt-get install prometheus)",
    ]
    assert r.stderr == ""
    calls = apt_calls(tmp_path)
    assert [c.split()[0] for c in calls] == ["update", "install", "install"]
    # Services are kept from starting during the install, and the policy file is removed after.
    assert all(c.endswith("policy=yes") for c in calls)
    assert not (tmp_path / "policy-rc.d").exists()


def test_failure_shows_apts_output(tmp_path: Path) -> None:
    (tmp_path / "fail").touch()
    r = run(tmp_path, f"ensure_apt_package {tmp_path / 'prometheus'} prometheus 'the lab'")
    assert r.returncode == 1
    assert "E: Unable to locate package" in r.stderr
    assert "setup: apt-get install prometheus failed (its output is above)" in r.stderr


def test_not_root_says_how_to_install(tmp_path: Path) -> None:
    r = run(tmp_path, f"ensure_apt_package {tmp_path / 'prometheus'} prometheus 'the lab'", uid=1000)
    assert r.returncode == 0
    assert r.stderr == f"setup: {tmp_path / 'prometheus'} is missing (the lab needs it): apt-get install prometheus\n"
    assert apt_calls(tmp_path) == []
