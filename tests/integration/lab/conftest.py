"""Fixtures for ``sluice lab`` end to end.

Every test starts labs through ``python -m sluice lab …`` with ``--state-dir`` in a temporary
folder (the seed is read-only); the ``make_lab`` fixture runs ``down`` afterwards and fails the
test if any process of a lab is left, whatever the test did.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from labkit import MEASUREMENTS, Lab, check_lab_prerequisites  # noqa: E402  (the helpers live next to this file)

from sluice.lab import state  # noqa: E402


@pytest.fixture
def lab_prerequisites() -> None:
    check_lab_prerequisites()


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Any]:
    labs: list[Lab] = []

    def make(directory: Path) -> Lab:
        lab = Lab(directory, tmp_path / f"state-{len(labs)}")
        labs.append(lab)
        return lab

    yield make
    leftovers = []
    for lab in labs:
        if lab.started:
            pids = lab.pids()
            lab.down()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(state.alive(p, st) for p, st in pids):
                time.sleep(0.05)
            leftovers += [p for p, st in pids if state.alive(p, st)]
            for p in leftovers:
                os.kill(p, 9)
    assert not leftovers, f"processes left running after down: {leftovers}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASUREMENTS:
        terminalreporter.section("sluice lab: readiness and memory (measured, not asserted)")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)
