"""Container paths map into a service's folder or through its volumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice import paths


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    root = tmp_path / "svc"
    logs = tmp_path / "logs" / "envoy"
    cfg = tmp_path / "front-envoy.yaml"
    monkeypatch.setenv("SLUICE_FS_ROOT", str(root))
    monkeypatch.setenv("SLUICE_FS_MOUNTS", json.dumps({"/etc/envoy/envoy.yaml": str(cfg), "/logs/envoy": str(logs), "/logs": str(tmp_path / "other")}))
    paths.reset_cache()
    yield root, logs, cfg
    paths.reset_cache()


def test_mounts_and_root(lab_env) -> None:  # type: ignore[no-untyped-def]
    root, logs, cfg = lab_env
    assert paths.host_path("/etc/envoy/envoy.yaml") == str(cfg)
    assert paths.host_path("/logs/envoy/front.log") == str(logs / "front.log")  # longest mount wins
    written = paths.host_path("/tmp/admin_access.log", for_write=True)
    assert written == str(root / "tmp" / "admin_access.log")
    assert (root / "tmp").is_dir()
    assert paths.host_path("/dev/null") == "/dev/null"
    assert paths.host_path("relative.yaml") == "relative.yaml"


def test_no_lab_means_paths_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_FS_ROOT", raising=False)
    monkeypatch.delenv("SLUICE_FS_MOUNTS", raising=False)
    paths.reset_cache()
    assert paths.host_path("/tmp/x.log") == "/tmp/x.log"
    paths.reset_cache()


def test_localhost_alias_maps_loopback_to_the_service_address(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from sluice.upstream.resolver import local_alias, resolve

    monkeypatch.setenv("SLUICE_LOCALHOST_ADDRESS", "127.31.62.11")
    paths.reset_cache()  # (the environment is read once)
    assert local_alias("127.0.0.1") == "127.31.62.11"
    assert local_alias("localhost") == "127.31.62.11"
    assert local_alias("10.0.0.1") == "10.0.0.1"
    assert asyncio.run(resolve("localhost")) == ["127.31.62.11"]
    monkeypatch.delenv("SLUICE_LOCALHOST_ADDRESS")
    paths.reset_cache()
    assert local_alias("127.0.0.1") == "127.0.0.1"


def test_lab_options_are_read_once_and_bad_mounts_are_named() -> None:
    from sluice.options import LabOptions

    opts = LabOptions.from_environ({"SLUICE_FS_MOUNTS": '{"/logs": "/a", "/logs/envoy/": "/b"}', "SLUICE_BIND_ADDRESS": "127.9.9.9"})
    assert opts.fs_mounts == (("/logs/envoy", "/b"), ("/logs", "/a")) and opts.bind_address == "127.9.9.9"
    assert LabOptions.from_environ({}) == LabOptions()
    with pytest.raises(ValueError, match="SLUICE_FS_MOUNTS"):
        LabOptions.from_environ({"SLUICE_FS_MOUNTS": "[1]"})
    with pytest.raises(ValueError, match="SLUICE_FS_MOUNTS"):
        LabOptions.from_environ({"SLUICE_FS_MOUNTS": "{"})
