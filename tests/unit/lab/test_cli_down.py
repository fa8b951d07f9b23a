"""``sluice lab down`` with nothing running is done already: exit 0 and say so, as compose does."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.lab import cli


@pytest.fixture
def nothing_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty registry of running labs, and a current folder that is no lab."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path


def test_down_without_a_running_lab(nothing_running: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["down"]) == 0
    out, err = capsys.readouterr()
    assert out == "no lab is running\n" and err == ""


def test_down_of_a_lab_never_started(nothing_running: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = nothing_running / "mylab"
    lab.mkdir()
    (lab / "docker-compose.yaml").write_text("services:\n  app:\n    image: ikubernetes/demoapp:v1.0\n")
    assert cli.main(["down", str(lab), "--state-dir", str(nothing_running / "state")]) == 0
    assert capsys.readouterr().out == "lab mylab is not running\n"
    assert cli.main(["down", str(lab)]) == 0
    assert capsys.readouterr().out == "lab mylab is not running\n"


def test_down_with_an_empty_state_dir(nothing_running: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["down", "--state-dir", str(nothing_running / "nowhere")]) == 0
    assert capsys.readouterr().out == f"no lab is running with state in {nothing_running / 'nowhere'}\n"


def test_ps_without_a_running_lab_is_still_an_error(nothing_running: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ps"]) == 1
    assert "error: no lab is running (and the current folder has no docker-compose.yaml)" in capsys.readouterr().err
