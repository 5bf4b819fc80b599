"""TCP_INFO parsing, checked against what real loopback sockets report."""

from __future__ import annotations

import socket
import time

import pytest

from probes.bandwidth import tcpinfo


def test_counters_of_a_real_connection_match_the_bytes_moved() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
        with sender, receiver:
            payload = 3_000_000
            sender.sendall(b"\x5a" * payload)
            buffer = bytearray(1 << 20)
            got = 0
            while got < payload:
                got += receiver.recv_into(buffer, len(buffer), socket.MSG_TRUNC)
            time.sleep(0.05)  # let the last ACK arrive
            sent, received = tcpinfo.read(sender), tcpinfo.read(receiver)
    assert got == payload
    assert received.bytes_received == payload
    # bytes_acked counts the SYN as one byte (RFC 4898's HCThruOctetsAcked as Linux keeps it).
    assert sent.bytes_acked == payload + 1
    assert sent.bytes_sent >= payload
    assert sent.snd_mss > 0 and received.rcv_mss > 0
    assert 0 < sent.min_rtt_us < 1_000_000


def test_too_short_a_struct_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"fewer than the 216 of Linux 4\.19"):
        tcpinfo.parse(b"\0" * 104)


def test_fields_are_read_at_their_kernel_offsets() -> None:
    raw = bytearray(232)
    raw[120:128] = (123456789012).to_bytes(8, "little")
    raw[128:136] = (987654321).to_bytes(8, "little")
    raw[16:20] = (1448).to_bytes(4, "little")
    raw[148:152] = (25000).to_bytes(4, "little")
    raw[208:216] = (4096).to_bytes(8, "little")
    info = tcpinfo.parse(bytes(raw))
    assert (info.bytes_acked, info.bytes_received) == (123456789012, 987654321)
    assert (info.snd_mss, info.min_rtt_us, info.bytes_retrans) == (1448, 25000, 4096)
