"""``scripts/setup.sh`` (sourced by the README's two commands): one line per step, the install
skipped while pyproject.toml is unchanged, pip's output shown only when it fails.

The venv's python is a stand-in that records each ``pip install`` it is asked for, so the
script's own logic is what is tested, in a folder of its own, in well under a second.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../calls.log"
if [ -e "$(dirname "$0")/../fail" ]; then echo "ERROR: pip noise that matters" >&2; exit 1; fi
echo "Collecting lots of noise"
"""


def project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    return tmp_path


def ensure(root: Path, extras: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f". scripts/setup.sh && ensure_venv {extras}"], cwd=root, capture_output=True, text=True, timeout=30
    )


def calls(root: Path) -> list[str]:
    log = root / ".venv" / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_installs_once_then_skips_until_pyproject_changes(tmp_path: Path) -> None:
    root = project(tmp_path)
    first = ensure(root, "test")
    assert first.returncode == 0
    assert first.stdout == "setup: installing sluice and its dependencies into .venv (pip install -e '.[test]')\n"
    assert first.stderr == ""  # pip's noise is not shown when it works
    second = ensure(root, "test")
    assert second.stdout == "setup: .venv is up to date (pyproject.toml unchanged since the last install)\n"
    assert len(calls(root)) == 1
    base = ensure(root)  # the lab's install needs nothing a test install lacks
    assert "up to date" in base.stdout and len(calls(root)) == 1
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    assert "installing" in ensure(root, "test").stdout and len(calls(root)) == 2


def test_a_base_install_does_not_count_as_a_test_install(tmp_path: Path) -> None:
    root = project(tmp_path)
    ensure(root)
    assert calls(root) == ["-m pip install --disable-pip-version-check -e ."]
    assert "installing" in ensure(root, "test").stdout
    assert calls(root)[-1] == "-m pip install --disable-pip-version-check -e .[test]"


def test_a_failed_install_shows_pips_output_and_is_retried(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / ".venv" / "fail").touch()
    failed = ensure(root, "test")
    assert failed.returncode != 0
    assert "ERROR: pip noise that matters" in failed.stderr and "failed" in failed.stderr
    (root / ".venv" / "fail").unlink()
    assert "installing" in ensure(root, "test").stdout  # no stamp was left by the failure


def test_a_missing_venv_is_created(tmp_path: Path) -> None:
    root = project(tmp_path)
    shutil.rmtree(root / ".venv")
    result = subprocess.run(
        ["bash", "-c", ". scripts/setup.sh && python3() { mkdir -p .venv/bin && echo 'exit 0' > .venv/bin/python && chmod +x .venv/bin/python; } && ensure_venv"],
        cwd=root, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.stdout.splitlines()[0] == "setup: creating .venv (python3 -m venv)"
    assert result.returncode == 0
