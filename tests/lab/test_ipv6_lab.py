"""IPv6 readiness measured for real: the probe runs as a process in the client namespace of
``ipv6_lab``'s topologies (real RAs, real unbound with DNS64, a real tayga NAT64, a real PMTUD
black hole), and each topology must give its checks, score and verdicts. Ground truth is checked
beside the probe: the web server's log (which address each request came from) and ping."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.lab.ipv6_lab import NAT64_PREFIX, Ipv6Lab, build, missing_tools, remove_resolv
from tests.lab.netns import Lab, lab_available

pytestmark = [pytest.mark.lab]

# Short limits keep the lab fast; every fetch in it takes milliseconds unless black-holed.
OPTIONS = ("check_timeout_s=3", "slow_s=2.5", "ra_wait_s=1.5")


@pytest.fixture(autouse=True)
def _needs_lab() -> None:
    why = lab_available()
    if why:
        pytest.fail(why) if shutil.which("ip") else pytest.skip(why)
    missing = missing_tools()
    if missing:
        pytest.fail(missing)


@contextmanager
def topology(tmp_path: Path, name: str, *, pref64: bool = False) -> Iterator[Ipv6Lab]:
    with Lab() as lab:
        ipv6_lab = build(lab, name, tmp_path, pref64=pref64)
        try:
            yield ipv6_lab
        finally:
            remove_resolv(ipv6_lab)


def measure(ipv6_lab: Ipv6Lab) -> dict[str, Any]:
    done = ipv6_lab.probe(*OPTIONS)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["kind"] == "ipv6" and result["status"] == "ok"
    assert result["target"] == "hamletnet.test" and result["engine"] == "readiness"
    return result


def client_global_address(ipv6_lab: Ipv6Lab) -> str:
    out = ipv6_lab.lab.run(ipv6_lab.cli, "ip", "-6", "-o", "addr", "show", "scope", "global")
    return out.stdout.split()[3].split("/")[0]


def test_ipv4_only_access(tmp_path: Path) -> None:
    with topology(tmp_path, "ipv4_only") as lab:
        r = measure(lab)
    assert r["global_address"] is False and r["default_route"] is False
    assert r["ra_seen"] is False and "no Router Advertisement" in r["reasons"]["ra_seen"]
    assert r["aaaa_resolves"] is True  # the DNS has AAAA records; the line cannot use them
    assert r["icmpv6_echo"] is False and "unreachable" in r["reasons"]["icmpv6_echo"]
    assert r["http_over_ipv6"] is False
    assert r["dual_stack_family"] == "ipv4" and r["ipv6_preferred"] is False
    assert r["ipv4_site_loads"] is True and r["ipv6_capable"] is False
    assert r["large_packets_ok"] is False
    # The ISP resolver has no IPv6 (unbound do-ip6: no): the IPv6-only DNS server is out of reach.
    assert r["resolver_reaches_ipv6_only"] is False
    assert r["nat64_detected"] is False and r["ipv4_only_reachable_via_nat64"] is False
    assert r["symptoms"] == ["ipv4_only", "resolver_lacks_ipv6"]
    assert (r["score_transition"], r["score_strict"]) == (10, 0)
    assert r["ipv6_ready"] is False and r["ipv6_only_ready"] is False
    assert r["reasons"]["ipv6_ready"].startswith("not met: ra_seen, global_address, default_route")
    assert r["probe_tests_over_ipv6_pct"] == 0


def test_dual_stack_access(tmp_path: Path) -> None:
    with topology(tmp_path, "dual_stack") as lab:
        r = measure(lab)
        client = client_global_address(lab)
        served = (tmp_path / "http.log").read_text()
    for check in (
        "global_address",
        "default_route",
        "ra_seen",
        "aaaa_resolves",
        "icmpv6_echo",
        "http_over_ipv6",
        "large_packets_ok",
        "resolver_reaches_ipv6_only",
        "ipv4_site_loads",
        "ipv6_capable",
        "ipv6_preferred",
    ):
        assert r[check] is True, (check, r["reasons"])
    assert r["ra_prefixes"] == ["2001:db8:1::/64"]
    assert (r["ra_managed"], r["ra_other_config"], r["ra_router_lifetime_s"]) == (False, True, 600)
    # Happy Eyeballs took IPv6, and the server saw the client's SLAAC address.
    assert r["dual_stack_family"] == "ipv6"
    assert f"{client} - - " in served
    assert r["symptoms"] == ["dual_stack"]
    assert (r["score_transition"], r["score_strict"]) == (10, 10)
    assert r["ipv6_ready"] is True
    assert r["ipv6_only_ready"] is False
    assert r["reasons"]["ipv6_only_ready"] == (
        "not met: nat64_detected, ipv4_only_reachable_via_nat64"
    )
    # Of the fetches whose family the OS chose (ipv4., ipv6., ds.), two of three used IPv6.
    assert r["probe_tests_over_ipv6_pct"] == pytest.approx(66.7)


@pytest.mark.parametrize("pref64", [False, True], ids=["dns64", "ra_pref64"])
def test_ipv6_only_access_with_dns64_and_nat64(tmp_path: Path, pref64: bool) -> None:
    with topology(tmp_path, "ipv6_only", pref64=pref64) as lab:
        r = measure(lab)
        served = (tmp_path / "http.log").read_text()
    for check in (
        "global_address",
        "default_route",
        "ra_seen",
        "aaaa_resolves",
        "icmpv6_echo",
        "http_over_ipv6",
        "large_packets_ok",
        "resolver_reaches_ipv6_only",
        "nat64_detected",
        "ipv4_only_reachable_via_nat64",
        "ipv4_site_loads",
    ):
        assert r[check] is True, (check, r["reasons"])
    assert r["nat64_prefix"] == NAT64_PREFIX
    # RA PREF64 first (RFC 9872), else RFC 7050 through unbound's DNS64.
    assert r["nat64_prefix_source"] == ("ra_pref64" if pref64 else "dns64")
    assert r["dual_stack_family"] == "ipv6"
    # The IPv4-only site was reached through tayga: the server saw its IPv4 pool, not the client.
    assert "::ffff:198.18.254." in served
    # IPv4 names load, IPv4 literals cannot (no IPv4 at all): "no direct IPv4", 9/10.
    assert r["symptoms"] == ["dual_stack", "no_direct_ipv4"]
    assert (r["score_transition"], r["score_strict"]) == (9, 10)
    assert r["ipv6_ready"] is True and r["ipv6_only_ready"] is True
    assert r["reasons"] is None
    assert r["probe_tests_over_ipv6_pct"] == 100


def test_pmtud_black_hole(tmp_path: Path) -> None:
    with topology(tmp_path, "mtu_blackhole") as lab:
        client = client_global_address(lab)
        # Ground truth: from the server, full-size packets to the client vanish without a
        # Packet Too Big, while 1000-byte ones arrive.
        big = lab.lab.run(
            lab.srv, "ping", "-6", "-c2", "-W1", "-s", "1400", "-M", "do", client, check=False
        )
        small = lab.lab.run(lab.srv, "ping", "-6", "-c1", "-W1", "-s", "1000", client, check=False)
        assert " 0 received" in big.stdout and "too big" not in big.stdout.lower(), big.stdout
        assert " 1 received" in small.stdout, small.stdout
        r = measure(lab)
        served = (tmp_path / "http.log").read_text()
    assert "GET /large" in served  # the request arrived; the answer did not
    assert r["large_packets_ok"] is False
    assert "no complete answer in 3 s" in r["reasons"]["large_packets_ok"]
    for check in (
        "global_address",
        "default_route",
        "ra_seen",
        "http_over_ipv6",
        "ipv6_capable",
        "icmpv6_echo",
        "resolver_reaches_ipv6_only",
    ):
        assert r[check] is True, (check, r["reasons"])
    assert r["dual_stack_family"] == "ipv6"
    assert r["symptoms"] == ["dual_stack", "ipv6_mtu"]
    assert (r["score_transition"], r["score_strict"]) == (1, 1)
    assert r["ipv6_ready"] is False
    assert r["reasons"]["ipv6_ready"] == "not met: large_packets_ok"
