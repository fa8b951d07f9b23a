"""The layered runtime: layers, admin overrides, Envoy's value parsing."""

from __future__ import annotations

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format

from sluice.errors import ConfigError
from sluice.runtime import Runtime, make_entry


def runtime(layers: list[dict]) -> Runtime:
    msg = json_format.ParseDict({"layers": layers}, bootstrap_pb2.LayeredRuntime())
    return Runtime.from_config(msg)


def test_later_layers_win_and_admin_overrides(tmp_path) -> None:  # type: ignore[no-untyped-def]
    disk = tmp_path / "rt"
    (disk / "routing").mkdir(parents=True)
    (disk / "routing" / "x").write_text("7\n")
    rt = runtime(
        [
            {"name": "static", "static_layer": {"routing": {"x": 1, "y": "a"}, "flag": True}},
            {"name": "disk", "disk_layer": {"symlink_root": str(disk)}},
            {"name": "admin", "admin_layer": {}},
        ]
    )
    assert rt.get("routing.x") == "7"
    assert rt.get("routing.y") == "a"
    assert rt.get("flag") == "true"
    rt.merge_admin({"routing.x": "9"})
    assert rt.get_integer("routing.x", 0) == 9
    rt.merge_admin({"routing.x": ""})  # empty value removes the override
    assert rt.get("routing.x") == "7"
    snap = rt.snapshot_json()
    assert snap["layers"] == ["static", "disk", "admin"]
    assert snap["entries"]["routing.x"] == {"final_value": "7", "layer_values": ["1", "7", ""]}  # type: ignore[index]


def test_no_admin_layer_refuses_modification() -> None:
    rt = runtime([{"name": "static", "static_layer": {}}])
    with pytest.raises(ConfigError):
        rt.merge_admin({"a": "1"})


@pytest.mark.parametrize(
    ("raw", "uint"),
    [("90", 90), ("0.5", 0), ("50.7", 50), (" 30", 30), ("-1", None), ("abc", None), ("", None), ("1e2", 100)],
)
def test_entry_parsing_matches_envoy(raw: str, uint: int | None) -> None:
    assert make_entry(raw).uint == uint


def test_feature_enabled_reads_a_runtime_integer_as_percent() -> None:
    rt = runtime([{"name": "admin", "admin_layer": {}}])
    assert sum(rt.feature_enabled("k", 50, 10_000, rv) for rv in range(10_000)) == 50  # the default: 50/10000
    rt.merge_admin({"k": "5"})
    # Envoy 1.40: a runtime integer is out of 100 even with a TEN_THOUSAND default.
    assert sum(rt.feature_enabled("k", 50, 10_000, rv) for rv in range(10_000)) == 500
    rt.merge_admin({"k": "101"})
    assert all(rt.feature_enabled("k", 0, 100, rv) for rv in range(100))
