"""RFC 6052 embedding and RFC 7050 NAT64 prefix discovery."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.ipv6.nat64 import discover_prefixes, embed_ipv4, extract_ipv4, in_prefix
from probes.ipv6.params import NAT64_PREFIX_LENGTHS, WKA_PRIMARY, WKA_SECONDARY

# RFC 6052 §2.4, the table of examples.
RFC6052_EXAMPLES = [
    ("2001:db8::/32", "2001:db8:c000:221::"),
    ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
    ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
    ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
    ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
    ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
    ("64:ff9b::/96", "64:ff9b::192.0.2.33"),
]


@pytest.mark.parametrize(("prefix", "embedded"), RFC6052_EXAMPLES)
def test_rfc6052_examples(prefix: str, embedded: str) -> None:
    net, v4 = IPv6Network(prefix), IPv4Address("192.0.2.33")
    assert embed_ipv4(net, v4) == IPv6Address(embedded)
    assert extract_ipv4(IPv6Address(embedded), net.prefixlen) == v4


def test_a_prefix_length_rfc6052_does_not_allow_is_refused() -> None:
    with pytest.raises(ValueError, match="/80 is not one of RFC 6052"):
        embed_ipv4(IPv6Network("2001:db8::/80"), WKA_PRIMARY)


prefixes = st.builds(
    lambda raw, length: IPv6Network((IPv6Address(raw), length), strict=False),
    st.binary(min_size=16, max_size=16),
    st.sampled_from(NAT64_PREFIX_LENGTHS),
).filter(lambda net: net.prefixlen == 96 or net.network_address.packed[8] == 0)
ipv4s = st.builds(IPv4Address, st.integers(0, 2**32 - 1))


@given(prefixes, ipv4s)
def test_embed_then_extract_round_trips(prefix: IPv6Network, v4: IPv4Address) -> None:
    address = embed_ipv4(prefix, v4)
    assert address in prefix
    assert extract_ipv4(address, prefix.prefixlen) == v4


@given(prefixes)
def test_discovery_finds_the_synthesizing_prefix(prefix: IPv6Network) -> None:
    answers = [embed_ipv4(prefix, WKA_PRIMARY), embed_ipv4(prefix, WKA_SECONDARY)]
    found = discover_prefixes(answers)
    assert prefix in found.prefixes, found
    assert found.problem is None


def test_discovery_of_the_well_known_prefix() -> None:
    found = discover_prefixes([IPv6Address("64:ff9b::c000:aa"), IPv6Address("64:ff9b::c000:ab")])
    assert found.prefixes == (IPv6Network("64:ff9b::/96"),)
    assert in_prefix(IPv6Address("64:ff9b::c612:20a"), found.prefixes)


def test_discovery_of_a_lab_network_specific_prefix() -> None:
    # What unbound's dns64 with dns64-prefix 2001:db8:64::/96 answers in tests/lab.
    found = discover_prefixes([IPv6Address("2001:db8:64::c000:aa")])
    assert found.prefixes == (IPv6Network("2001:db8:64::/96"),)


def test_real_aaaa_records_are_not_a_synthesis() -> None:
    found = discover_prefixes([IPv6Address("2001:db8:2::20")])
    assert found.prefixes == ()
    assert found.problem is not None and "192.0.0.170" in found.problem
    assert discover_prefixes([]).prefixes == ()


def test_the_secondary_wka_settles_an_ambiguous_position() -> None:
    # A /32 prefix whose bits 96-127 also spell 192.0.0.170: for 170 alone the WKA sits at /32
    # and at /96; the 171 answer is found only at /32, which settles it (RFC 7050 §3).
    prefix = IPv6Network("2001:db8::/32")
    a170 = IPv6Address(int(embed_ipv4(prefix, WKA_PRIMARY)) | int(WKA_PRIMARY))
    a171 = embed_ipv4(prefix, WKA_SECONDARY)
    assert extract_ipv4(a170, 96) == WKA_PRIMARY and extract_ipv4(a170, 32) == WKA_PRIMARY
    assert discover_prefixes([a170, a171]).prefixes == (prefix,)
    alone = discover_prefixes([a170])
    assert alone.prefixes == () and alone.problem is not None
