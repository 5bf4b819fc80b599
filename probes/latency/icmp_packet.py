"""ICMP and ICMPv6 echo messages as bytes: building requests, reading replies (pure functions).

Formats: RFC 792 (ICMP echo, type 8 request / 0 reply), RFC 4443 §4.1-4.2 (ICMPv6 echo, 128/129),
the Internet checksum of RFC 1071. The ICMPv6 checksum covers a pseudo-header with both
addresses, which the kernel fills in for raw and datagram sockets alike (RFC 3542 §3.1), so it is
left zero here; unprivileged datagram "ping" sockets also overwrite the identifier with the
socket's port, which is why a probe recognises its replies by a nonce in the payload instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from probes.models import Family

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129

#: type, code, checksum, identifier, sequence number
_HEADER = struct.Struct("!BBHHH")
HEADER_BYTES = _HEADER.size

#: Bytes of payload that tell this probe's series apart (see the module docstring).
NONCE_BYTES = 8


@dataclass(frozen=True, slots=True)
class Echo:
    type: int
    ident: int
    seq: int
    payload: bytes

    @property
    def nonce(self) -> bytes:
        return self.payload[:NONCE_BYTES]


def checksum(data: bytes) -> int:
    """RFC 1071: the 16-bit ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def payload_for(nonce: bytes, size: int) -> bytes:
    """``size`` bytes of payload starting with ``nonce`` (zero padding, like ping's default)."""
    if len(nonce) != NONCE_BYTES or size < NONCE_BYTES:
        raise ValueError(f"payload of {size} bytes cannot hold a {NONCE_BYTES}-byte nonce")
    return nonce + bytes(size - NONCE_BYTES)


def build_echo(
    family: Family, ident: int, seq: int, payload: bytes, *, reply: bool = False
) -> bytes:
    """One echo request (or reply) message, without IP header; ``seq`` wraps at 16 bits."""
    if family is Family.IPV4:
        kind = ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST
        unsummed = _HEADER.pack(kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + payload
        return _HEADER.pack(kind, 0, checksum(unsummed), ident & 0xFFFF, seq & 0xFFFF) + payload
    kind = ICMPV6_ECHO_REPLY if reply else ICMPV6_ECHO_REQUEST
    return _HEADER.pack(kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + payload


def parse_echo(packet: bytes, family: Family, *, ip_header: bool) -> Echo | None:
    """The echo message in ``packet``, or None for anything else or anything malformed.

    ``ip_header``: IPv4 raw sockets deliver the IP header too (its length is in the first byte);
    datagram sockets and every IPv6 socket deliver the ICMP message alone. An IPv4 message with a
    wrong checksum is refused; the kernel has already checked ICMPv6 checksums.
    """
    if ip_header:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return None
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or len(packet) < ihl:
            return None
        packet = packet[ihl:]
    if len(packet) < HEADER_BYTES:
        return None
    kind, code, _, ident, seq = _HEADER.unpack_from(packet)
    if family is Family.IPV4:
        if kind not in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY) or checksum(packet) != 0:
            return None
    elif kind not in (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY):
        return None
    if code != 0:
        return None
    return Echo(type=kind, ident=ident, seq=seq, payload=packet[HEADER_BYTES:])


def is_reply(echo: Echo) -> bool:
    return echo.type in (ICMP_ECHO_REPLY, ICMPV6_ECHO_REPLY)


def icmp_filter_v4() -> bytes:
    """``ICMP_FILTER`` value for a raw IPv4 socket: block every type but echo reply (raw(7))."""
    return struct.pack("=I", ~(1 << ICMP_ECHO_REPLY) & 0xFFFFFFFF)


def icmp6_filter(pass_type: int = ICMPV6_ECHO_REPLY) -> bytes:
    """``ICMP6_FILTER`` value: Linux blocks the types whose bit is set; pass one (RFC 3542 §3.2)."""
    words = [0xFFFFFFFF] * 8
    words[pass_type >> 5] &= ~(1 << (pass_type & 31)) & 0xFFFFFFFF
    return struct.pack("=8I", *words)
