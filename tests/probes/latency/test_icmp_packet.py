"""ICMP/ICMPv6 echo bytes: checksums, round trips, and no crash on any input."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from probes.latency import icmp_packet
from probes.latency.icmp_packet import Echo, build_echo, checksum, parse_echo, payload_for
from probes.models import Family

u16 = st.integers(0, 0xFFFF)
nonces = st.binary(min_size=8, max_size=8)


def _ipv4_header(payload_len: int, options: bytes = b"") -> bytes:
    ihl = (20 + len(options)) // 4
    return (
        struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + payload_len, 0, 0, 64, 1,
                    0, bytes([198, 18, 0, 2]), bytes([198, 18, 0, 1]))
        + options
    )  # fmt: skip


@given(st.binary(max_size=200))
def test_checksum_of_a_checksummed_message_is_zero(data: bytes) -> None:
    # RFC 1071: inserting the checksum makes the sum over the whole message all ones.
    message = b"\x08\x00" + b"\0\0" + data
    summed = message[:2] + struct.pack("!H", checksum(message)) + message[4:]
    assert checksum(summed) == 0


def test_checksum_known_value() -> None:
    # RFC 1071 §3 worked example: words 0001 f203 f4f5 f6f7 sum to ddf2, complement 220d.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@given(u16, u16, nonces, st.integers(8, 200), st.sampled_from([b"", b"\x01\x04\0\0"]))
def test_ipv4_reply_round_trip_through_a_raw_socket_view(
    ident: int, seq: int, nonce: bytes, size: int, ip_options: bytes
) -> None:
    payload = payload_for(nonce, size)
    reply = build_echo(Family.IPV4, ident, seq, payload, reply=True)
    packet = _ipv4_header(len(reply), ip_options) + reply
    assert parse_echo(packet, Family.IPV4, ip_header=True) == Echo(0, ident, seq, payload)
    assert parse_echo(reply, Family.IPV4, ip_header=False) == Echo(0, ident, seq, payload)
    echo = parse_echo(reply, Family.IPV4, ip_header=False)
    assert echo is not None and echo.nonce == nonce and icmp_packet.is_reply(echo)


@given(u16, u16, nonces, st.integers(8, 200))
def test_ipv6_request_and_reply_round_trip(ident: int, seq: int, nonce: bytes, size: int) -> None:
    payload = payload_for(nonce, size)
    request = build_echo(Family.IPV6, ident, seq, payload)
    assert request[0] == icmp_packet.ICMPV6_ECHO_REQUEST and request[2:4] == b"\0\0"
    echo = parse_echo(request, Family.IPV6, ip_header=False)
    assert echo == Echo(128, ident, seq, payload) and not icmp_packet.is_reply(echo)


@given(u16, u16, nonces)
def test_a_corrupted_ipv4_message_is_refused(ident: int, seq: int, nonce: bytes) -> None:
    reply = bytearray(build_echo(Family.IPV4, ident, seq, payload_for(nonce, 56), reply=True))
    reply[-1] ^= 0xFF
    assert parse_echo(bytes(reply), Family.IPV4, ip_header=False) is None


@given(st.binary(max_size=100), st.sampled_from(list(Family)), st.booleans())
def test_parse_never_raises(data: bytes, family: Family, ip_header: bool) -> None:
    echo = parse_echo(data, family, ip_header=ip_header)
    assert echo is None or isinstance(echo, Echo)


def test_sequence_wraps_at_16_bits() -> None:
    echo = parse_echo(build_echo(Family.IPV4, 1, 65536 + 5, payload_for(bytes(8), 8)),
                      Family.IPV4, ip_header=False)  # fmt: skip
    assert echo is not None and echo.seq == 5


def test_matches_scapy_byte_for_byte() -> None:
    # An independent implementation of RFC 792 framing and the RFC 1071 checksum.
    from scapy.layers.inet import ICMP

    payload = payload_for(b"hamletnt", 56)
    ours = build_echo(Family.IPV4, 0x1234, 7, payload)
    assert ours == bytes(ICMP(type=8, id=0x1234, seq=7) / payload)


def test_filters_pass_only_the_chosen_type() -> None:
    (v4,) = struct.unpack("=I", icmp_packet.icmp_filter_v4())
    assert [t for t in range(32) if not v4 >> t & 1] == [icmp_packet.ICMP_ECHO_REPLY]
    words = struct.unpack("=8I", icmp_packet.icmp6_filter())
    passing = [t for t in range(256) if not words[t >> 5] >> (t & 31) & 1]
    assert passing == [icmp_packet.ICMPV6_ECHO_REPLY]
