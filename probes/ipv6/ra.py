"""Router Advertisement parsing (RFC 4861 §4.2) with the options a readiness check needs: prefix
information, MTU, RDNSS (RFC 8106) and PREF64 (RFC 8781). Pure functions over the ICMPv6 bytes
a raw socket delivers (the IPv6 header is not included)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from probes.ipv6.params import (
    ICMPV6_ROUTER_ADVERTISEMENT,
    ND_HOP_LIMIT,
    ND_OPT_MTU,
    ND_OPT_PREF64,
    ND_OPT_PREFIX_INFORMATION,
    ND_OPT_RDNSS,
    PREF64_LIFETIME_UNIT_S,
    PREF64_PLC_TO_LENGTH,
)

_RA_HEADER = struct.Struct("!BBHBBHII")  # type, code, checksum, hop limit, flags, lifetime, ...
_PIO = struct.Struct("!BBIII16s")  # prefix length, flags, valid, preferred, reserved, prefix


class RaParseError(ValueError):
    """The bytes are not a well-formed Router Advertisement."""


@dataclass(frozen=True, slots=True)
class PrefixInfo:
    prefix: IPv6Network
    on_link: bool  # L flag
    autonomous: bool  # A flag: hosts may form addresses from it (SLAAC)
    valid_lifetime_s: int
    preferred_lifetime_s: int


@dataclass(frozen=True, slots=True)
class Pref64:
    prefix: IPv6Network
    lifetime_s: int


@dataclass(frozen=True, slots=True)
class RouterAdvert:
    managed: bool  # M flag: addresses from DHCPv6
    other_config: bool  # O flag: other configuration from DHCPv6
    router_lifetime_s: int  # 0: not a default router (RFC 4861 §4.2)
    cur_hop_limit: int
    prefixes: tuple[PrefixInfo, ...] = ()
    mtu: int | None = None
    rdnss: tuple[IPv6Address, ...] = ()
    pref64: tuple[Pref64, ...] = ()


def parse_router_advert(data: bytes) -> RouterAdvert:
    """Parse one RA; ``RaParseError`` names what is wrong. Unknown options are skipped, as RFC
    4861 §4.6 requires; an option of length zero is malformed and ends the parse with an error."""
    if len(data) < _RA_HEADER.size:
        raise RaParseError(f"RA of {len(data)} bytes is shorter than its {_RA_HEADER.size}")
    icmp_type, code, _, hop_limit, flags, lifetime, _, _ = _RA_HEADER.unpack_from(data)
    if icmp_type != ICMPV6_ROUTER_ADVERTISEMENT or code != 0:
        raise RaParseError(f"ICMPv6 type {icmp_type} code {code} is not a Router Advertisement")
    prefixes: list[PrefixInfo] = []
    rdnss: list[IPv6Address] = []
    pref64: list[Pref64] = []
    mtu: int | None = None
    offset = _RA_HEADER.size
    while offset < len(data):
        if len(data) - offset < 2:
            raise RaParseError(f"truncated option header at byte {offset}")
        opt_type, opt_units = data[offset], data[offset + 1]
        length = opt_units * 8
        if length == 0:
            raise RaParseError(f"option type {opt_type} at byte {offset} has length 0")
        if offset + length > len(data):
            raise RaParseError(f"option type {opt_type} at byte {offset} runs past the end")
        body = data[offset + 2 : offset + length]
        if opt_type == ND_OPT_PREFIX_INFORMATION:
            prefixes.append(_prefix_info(body, offset))
        elif opt_type == ND_OPT_MTU:
            if len(body) != 6:
                raise RaParseError(f"MTU option at byte {offset} has {len(body) + 2} bytes")
            mtu = struct.unpack_from("!I", body, 2)[0]
        elif opt_type == ND_OPT_RDNSS:
            if len(body) < 22 or (len(body) - 6) % 16:
                raise RaParseError(f"RDNSS option at byte {offset} has {len(body) + 2} bytes")
            rdnss.extend(IPv6Address(body[i : i + 16]) for i in range(6, len(body), 16))
        elif opt_type == ND_OPT_PREF64:
            pref64.append(_pref64(body, offset))
        offset += length
    return RouterAdvert(
        managed=bool(flags & 0x80),
        other_config=bool(flags & 0x40),
        router_lifetime_s=lifetime,
        cur_hop_limit=hop_limit,
        prefixes=tuple(prefixes),
        mtu=mtu,
        rdnss=tuple(rdnss),
        pref64=tuple(pref64),
    )


def _prefix_info(body: bytes, offset: int) -> PrefixInfo:
    if len(body) != _PIO.size:
        raise RaParseError(f"prefix option at byte {offset} has {len(body) + 2} bytes, not 32")
    length, flags, valid, preferred, _, raw = _PIO.unpack(body)
    if length > 128:
        raise RaParseError(f"prefix option at byte {offset} has prefix length {length}")
    return PrefixInfo(
        prefix=IPv6Network((IPv6Address(raw), length), strict=False),
        on_link=bool(flags & 0x80),
        autonomous=bool(flags & 0x40),
        valid_lifetime_s=valid,
        preferred_lifetime_s=preferred,
    )


def _pref64(body: bytes, offset: int) -> Pref64:
    # 16 bits: scaled lifetime (13) | PLC (3), then the highest 96 bits of the prefix (RFC 8781 §4).
    if len(body) != 14:
        raise RaParseError(f"PREF64 option at byte {offset} has {len(body) + 2} bytes, not 16")
    (word,) = struct.unpack_from("!H", body)
    plc = word & 0x7
    if plc not in PREF64_PLC_TO_LENGTH:
        raise RaParseError(f"PREF64 option at byte {offset} has unknown prefix length code {plc}")
    address = IPv6Address(body[2:14] + bytes(4))
    return Pref64(
        prefix=IPv6Network((address, PREF64_PLC_TO_LENGTH[plc]), strict=False),
        lifetime_s=(word >> 3) * PREF64_LIFETIME_UNIT_S,
    )


def acceptance_problem(hop_limit: int | None, source: IPv6Address) -> str | None:
    """Why a received RA must be ignored, or None (RFC 4861 §6.1.2: hop limit 255, link-local
    source), so that an RA forwarded from elsewhere cannot count as "RA seen"."""
    if hop_limit is not None and hop_limit != ND_HOP_LIMIT:
        return f"RA from {source} arrived with hop limit {hop_limit}, not {ND_HOP_LIMIT}"
    if not source.is_link_local:
        return f"RA source {source} is not link-local"
    return None
