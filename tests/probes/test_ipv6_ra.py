"""Router Advertisement parsing, checked against RAs that scapy builds (an independent
implementation of RFC 4861 / 8106 / 8781)."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet6 import (
    ICMPv6ND_RA,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPREF64,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptRDNSS,
)

from probes.ipv6.ra import RaParseError, acceptance_problem, parse_router_advert

PLC = {96: 0, 64: 1, 56: 2, 48: 3, 40: 4, 32: 5}
u32 = st.integers(0, 2**32 - 1)
addresses = st.builds(IPv6Address, st.integers(0, 2**128 - 1))


@st.composite
def adverts(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    managed, other = draw(st.booleans()), draw(st.booleans())
    lifetime = draw(st.integers(0, 65535))
    packet = ICMPv6ND_RA(M=int(managed), O=int(other), routerlifetime=lifetime, chlim=64, cksum=0)
    expected: dict[str, object] = {"managed": managed, "other_config": other,
                                   "router_lifetime_s": lifetime, "prefixes": [], "pref64": [],
                                   "rdnss": [], "mtu": None}  # fmt: skip
    for _ in range(draw(st.integers(0, 3))):
        length = draw(st.integers(0, 128))
        net = IPv6Network((draw(addresses), length), strict=False)
        on_link, auto = draw(st.booleans()), draw(st.booleans())
        valid, preferred = draw(u32), draw(u32)
        packet = packet / ICMPv6NDOptPrefixInfo(
            prefix=str(net.network_address), prefixlen=length, L=int(on_link), A=int(auto),
            validlifetime=valid, preferredlifetime=preferred,
        )  # fmt: skip
        expected["prefixes"].append((net, on_link, auto, valid, preferred))  # type: ignore[attr-defined]
    if draw(st.booleans()):
        mtu = draw(u32)
        packet = packet / ICMPv6NDOptMTU(mtu=mtu)
        expected["mtu"] = mtu
    servers = draw(st.lists(addresses, max_size=3))
    if servers:
        packet = packet / ICMPv6NDOptRDNSS(lifetime=600, dns=[str(s) for s in servers])
        expected["rdnss"] = servers
    for _ in range(draw(st.integers(0, 2))):
        length = draw(st.sampled_from(sorted(PLC)))
        net = IPv6Network((draw(addresses), length), strict=False)
        scaled = draw(st.integers(0, 8191))
        packet = packet / ICMPv6NDOptPREF64(
            prefix=str(net.network_address), plc=PLC[length], scaledlifetime=scaled
        )
        expected["pref64"].append((net, scaled * 8))  # type: ignore[attr-defined]
    return bytes(packet), expected


@given(adverts())
def test_parses_what_scapy_builds(case: tuple[bytes, dict[str, object]]) -> None:
    data, expected = case
    ra = parse_router_advert(data)
    assert ra.managed == expected["managed"]
    assert ra.other_config == expected["other_config"]
    assert ra.router_lifetime_s == expected["router_lifetime_s"]
    assert ra.cur_hop_limit == 64
    assert [(p.prefix, p.on_link, p.autonomous, p.valid_lifetime_s, p.preferred_lifetime_s)
            for p in ra.prefixes] == expected["prefixes"]  # fmt: skip
    assert ra.mtu == expected["mtu"]
    assert list(ra.rdnss) == expected["rdnss"]
    assert [(p.prefix, p.lifetime_s) for p in ra.pref64] == expected["pref64"]


def test_the_lab_routers_advert() -> None:
    # tests/lab/ra_sender.py for the IPv6-only access with PREF64.
    data = bytes(
        ICMPv6ND_RA(O=1, routerlifetime=600, chlim=64, prf=0, cksum=0)
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8:1::", prefixlen=64, L=1, A=1,
                                validlifetime=86400, preferredlifetime=14400)
        / ICMPv6NDOptPREF64(prefix="2001:db8:64::", plc=0, scaledlifetime=75)
    )  # fmt: skip
    ra = parse_router_advert(data)
    assert (ra.managed, ra.other_config, ra.router_lifetime_s) == (False, True, 600)
    assert [p.prefix for p in ra.prefixes] == [IPv6Network("2001:db8:1::/64")]
    assert ra.prefixes[0].autonomous and ra.prefixes[0].on_link
    assert [(p.prefix, p.lifetime_s) for p in ra.pref64] == [(IPv6Network("2001:db8:64::/96"), 600)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x86\x00\x00\x00", "shorter than"),
        (bytes(ICMPv6ND_RA(cksum=0)) + b"\x03\x01" + bytes(6), "prefix option at byte 16 has 8"),
        (b"\x85" + bytes(ICMPv6ND_RA(cksum=0))[1:], "not a Router Advertisement"),
        (bytes(ICMPv6ND_RA(cksum=0)) + b"\x03\x00" + bytes(30), "has length 0"),
        (bytes(ICMPv6ND_RA(cksum=0)) + b"\x03\x04" + bytes(10), "runs past the end"),
        (bytes(ICMPv6ND_RA(cksum=0)) + b"\x26\x02\x00\x07" + bytes(12), "prefix length code 7"),
        (bytes(ICMPv6ND_RA(cksum=0)) + b"\x05", "truncated option header"),
    ],
)
def test_malformed_adverts_are_named(data: bytes, message: str) -> None:
    with pytest.raises(RaParseError, match=message):
        parse_router_advert(data)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_ra_parse_error(data: bytes) -> None:
    try:
        parse_router_advert(b"\x86\x00" + data)
    except RaParseError:
        pass


def test_only_link_local_hop_limit_255_adverts_count() -> None:
    lla = IPv6Address("fe80::1")
    assert acceptance_problem(255, lla) is None
    assert acceptance_problem(None, lla) is None
    assert "hop limit 64" in (acceptance_problem(64, lla) or "")
    assert "not link-local" in (acceptance_problem(255, IPv6Address("2001:db8::1")) or "")
