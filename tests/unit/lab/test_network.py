"""Loopback addresses and the lab's hosts table."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from sluice.lab import compose, network

SEED = Path(__file__).resolve().parents[3] / "labs"


def test_course_addresses_map_predictably() -> None:
    assert network.map_address("172.31.55.10") == "127.31.55.10"
    assert network.map_address("10.1.2.3") == "127.1.2.3"
    assert str(network.map_subnet("172.31.55.0/24")) == "127.31.55.0/24"
    assert str(network.map_subnet("192.168.0.0/16")) == "127.168.0.0/16"


def test_derived_subnet_is_deterministic_and_loopback() -> None:
    a = network.derived_subnet("mylab", "default")
    assert a == network.derived_subnet("mylab", "default")
    assert a != network.derived_subnet("otherlab", "default")
    assert a.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")) and a.prefixlen == 24
    assert 200 <= int(str(a.network_address).split(".")[1]) < 250


def test_traffic_shifting_addresses_and_names() -> None:
    project = compose.load(SEED / "http-traffic-shifting", environ={})
    ad = network.allocate(project)
    assert ad.addresses["front-envoy"] == "127.31.55.10"
    assert [ad.addresses[f"demoapp-v1.0-{i}"] for i in (1, 2, 3)] == ["127.31.55.2", "127.31.55.3", "127.31.55.4"]
    assert ad.names["demoappv10"] == ["127.31.55.2", "127.31.55.3", "127.31.55.4"]
    assert ad.names["demoappv11"] == ["127.31.55.5", "127.31.55.6"]
    assert ad.names["demoapp-v1.0-2"] == ["127.31.55.3"]  # hostname (and service name)
    assert ad.names["http-traffic-shifting-front-envoy-1"] == ["127.31.55.10"]  # compose's container name
    assert ad.hostnames["demoapp-v1.1-1"] == "demoapp-v1.1-1"
    assert ad.hostnames["front-envoy"] == network.container_id("http-traffic-shifting", "front-envoy")


def test_fixed_addresses_are_skipped_and_shared_names_resolve_to_all() -> None:
    project = compose.load(SEED / "statsd-sink-and-prometheus", environ={})
    ad = network.allocate(project)
    assert ad.names["myservice"] == ["127.31.68.11", "127.31.68.12", "127.31.68.13"]
    assert ad.names["statsd_exporter"] == ["127.31.68.6"]
    project = compose.load(SEED / "access-log", environ={})
    ad = network.allocate(project)
    assert ad.addresses["front-envoy"] == "127.31.73.10"
    assert ad.names["colored"] == ["127.31.73.2", "127.31.73.3", "127.31.73.4"]


def test_network_mode_service_shares_the_address_and_has_no_name() -> None:
    project = compose.load(SEED / "jaeger-tracing", environ={})
    ad = network.allocate(project)
    assert ad.addresses["service_a"] == ad.addresses["service_a_envoy"]
    assert "service_a" not in ad.names
    assert ad.names["service-a-envoy"] == [ad.addresses["service_a_envoy"]]
    assert ad.names["zipkin"] == ["127.31.88.15"]


def test_is_free_skips_busy_addresses() -> None:
    project = compose.load(SEED / "http-traffic-shifting", environ={})
    ad = network.allocate(project, is_free=lambda svc, addr: addr != "127.31.55.3")
    assert ad.addresses["demoapp-v1.0-2"] == "127.31.55.4"
    assert "127.31.55.3" not in ad.addresses.values()


def test_fixed_address_outside_subnet_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yaml").write_text(
        "services:\n  a:\n    image: x\n    networks:\n      n:\n        ipv4_address: 172.31.9.9\n"
        "networks:\n  n:\n    ipam:\n      config:\n        - subnet: 172.31.8.0/24\n"
    )
    with pytest.raises(network.NetworkError, match=r"service 'a': networks.n.ipv4_address: 172.31.9.9 is outside"):
        network.allocate(compose.load(tmp_path, environ={}))


def test_hosts_files() -> None:
    names = {"front": ["127.31.55.10"], "demoappv10": ["127.31.55.2", "127.31.55.3"], "d1": ["127.31.55.2"]}
    text = network.render_hosts(names, "lab x")
    assert text.splitlines() == ["# lab x", "127.31.55.2\tdemoappv10 d1", "127.31.55.3\tdemoappv10", "127.31.55.10\tfront"]
    own = network.service_hosts("127.31.55.2", "d1", names)
    assert own.splitlines()[0] == "127.31.55.2\tlocalhost d1"


def test_bind_error_and_owner() -> None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        err = network.bind_error("127.0.0.1", port)
        assert err is not None
        owner = network.port_owner("127.0.0.1", port)
        assert owner is not None and owner.startswith("pid ")
        assert network.accepting("127.0.0.1", port)
    finally:
        s.close()
    assert network.bind_error("10.0.0.1", port) is not None  # never anything but loopback
