"""NAT64 prefix arithmetic: RFC 6052 address embedding and RFC 7050 prefix discovery from the
AAAA answer for ``ipv4only.arpa``. Pure functions over ``ipaddress`` values."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from probes.ipv6.params import NAT64_PREFIX_LENGTHS, WKA_PRIMARY, WKA_SECONDARY

_U_OCTET = 8  # byte index of bits 64-71, which RFC 6052 §2.2 reserves (must be zero)


def _check_length(length: int) -> None:
    if length not in NAT64_PREFIX_LENGTHS:
        raise ValueError(
            f"NAT64 prefix length /{length} is not one of RFC 6052's {NAT64_PREFIX_LENGTHS}"
        )


def embed_ipv4(prefix: IPv6Network, ipv4: IPv4Address) -> IPv6Address:
    """The IPv4-embedded IPv6 address of ``ipv4`` under ``prefix`` (RFC 6052 §2.2).

    For prefixes shorter than /96 the IPv4 bits skip the "u" octet (bits 64-71); the suffix is
    zero.
    """
    _check_length(prefix.prefixlen)
    out = bytearray(prefix.network_address.packed)
    v4 = ipv4.packed
    if prefix.prefixlen == 96:
        out[12:16] = v4
        return IPv6Address(bytes(out))
    start = prefix.prefixlen // 8
    head = _U_OCTET - start  # IPv4 bytes before the u octet
    out[start:_U_OCTET] = v4[:head]
    out[_U_OCTET] = 0
    out[_U_OCTET + 1 : _U_OCTET + 1 + 4 - head] = v4[head:]
    return IPv6Address(bytes(out))


def extract_ipv4(address: IPv6Address, length: int) -> IPv4Address | None:
    """The IPv4 address embedded in ``address`` for a /``length`` prefix (RFC 6052 §2.2), or None
    when the u octet is not zero (then no IPv4 address can be embedded at that length)."""
    _check_length(length)
    raw = address.packed
    if length == 96:
        return IPv4Address(raw[12:16])
    if raw[_U_OCTET] != 0:
        return None
    start = length // 8
    head = _U_OCTET - start
    return IPv4Address(raw[start:_U_OCTET] + raw[_U_OCTET + 1 : _U_OCTET + 1 + 4 - head])


@dataclass(frozen=True, slots=True)
class Discovery:
    """What RFC 7050 discovery found: the prefixes, and why an answer gave none."""

    prefixes: tuple[IPv6Network, ...]
    problem: str | None = None


def discover_prefixes(answers: Iterable[IPv6Address]) -> Discovery:
    """NAT64 prefixes (Pref64::/n) from the AAAA answer for ``ipv4only.arpa`` (RFC 7050 §3).

    Each AAAA is searched for the well-known IPv4 addresses 192.0.0.170 and 192.0.0.171 at every
    RFC 6052 prefix length. Where one address holds a WKA at more than one length, the secondary
    WKA (192.0.0.171) found at the same length in another AAAA picks the right one (RFC 7050 §3);
    a position nothing confirms is dropped rather than guessed. AAAA records without a WKA are
    ignored (a real AAAA for the name is not a synthesis).
    """
    wkas = {WKA_PRIMARY, WKA_SECONDARY}
    per_address: list[dict[int, tuple[IPv6Network, IPv4Address]]] = []
    for address in answers:
        hits: dict[int, tuple[IPv6Network, IPv4Address]] = {}
        for length in NAT64_PREFIX_LENGTHS:
            embedded = extract_ipv4(address, length)
            if embedded in wkas:
                assert embedded is not None  # for mypy: `in wkas` excludes None
                prefix = IPv6Network((address, length), strict=False)
                hits[length] = (prefix, embedded)
        if hits:
            per_address.append(hits)
    if not per_address:
        return Discovery((), "no AAAA record of ipv4only.arpa embeds 192.0.0.170 or .171")
    # (prefix, WKA) pairs seen anywhere, to confirm an ambiguous position by the other WKA.
    seen = {pair for hits in per_address for pair in hits.values()}
    found: list[IPv6Network] = []
    ambiguous = False
    for hits in per_address:
        if len(hits) == 1:
            choices = [prefix for prefix, _ in hits.values()]
        else:
            choices = [
                prefix for prefix, wka in hits.values() if (prefix, (wkas - {wka}).pop()) in seen
            ]
            if len(choices) != 1:
                ambiguous = True
                continue
        for prefix in choices:
            if prefix not in found:
                found.append(prefix)
    problem = "a WKA sits at several prefix lengths and 192.0.0.171 does not settle which"
    return Discovery(tuple(found), problem if ambiguous and not found else None)


def in_prefix(address: IPv6Address, prefixes: Iterable[IPv6Network]) -> bool:
    return any(address in prefix for prefix in prefixes)
