"""Link speed of the interface routing to the target: iproute2's JSON and sysfs's speed file."""

from __future__ import annotations

from pathlib import Path

from probes.bandwidth.link import link_speed_mbps, parse_speed, route_interface

# `ip -j route get 198.18.3.2` (iproute2 6.x) inside a lab namespace.
IP_ROUTE_GET = (
    '[{"dst":"198.18.3.2","dev":"v0a1b2c","prefsrc":"198.18.3.1","flags":[],"uid":0,"cache":[]}]'
)


def test_route_interface() -> None:
    assert route_interface(IP_ROUTE_GET) == "v0a1b2c"
    assert route_interface("[]") is None
    assert route_interface("RTNETLINK answers: Network is unreachable") is None
    assert route_interface('[{"dst":"1.2.3.4"}]') is None


def test_parse_speed() -> None:
    assert parse_speed("1000\n") == 1000.0
    assert parse_speed("2500") == 2500.0
    assert parse_speed("-1\n") is None  # no carrier, or a Wi-Fi interface
    assert parse_speed("") is None


def test_loopback_has_no_link_speed(tmp_path: Path) -> None:
    assert link_speed_mbps("127.0.0.1", sys_net=tmp_path) is None
