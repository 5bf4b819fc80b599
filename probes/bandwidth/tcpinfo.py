"""The kernel's TCP_INFO for one socket: byte counters for sampling, and diagnosis fields.

Sampling bytes from the kernel instead of counting them in user space makes the figure the
network's (bytes delivered to the receiving TCP, or acknowledged by it), not the speed at which
Python happens to read; ndt7 reports the same counters (methodology.md §3, ``TCPInfo``).
Offsets follow ``struct tcp_info`` in linux/include/uapi/linux/tcp.h; ``parse`` is a pure
function over the bytes ``getsockopt`` returns, so it is tested on real sockets' output.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

#: Bytes to ask ``getsockopt(TCP_INFO)`` for; the kernel returns at most what it has.
TCP_INFO_BYTES = 256
# (name, struct format, offset) of the fields hamletnet reads; all times are microseconds.
_FIELDS = (
    ("snd_mss", "I", 16),
    ("rcv_mss", "I", 20),
    ("rtt_us", "I", 68),
    ("total_retrans", "I", 100),
    ("bytes_acked", "Q", 120),
    ("bytes_received", "Q", 128),
    ("min_rtt_us", "I", 148),
    ("busy_time_us", "Q", 168),
    ("rwnd_limited_us", "Q", 176),
    ("sndbuf_limited_us", "Q", 184),
    ("bytes_sent", "Q", 200),
    ("bytes_retrans", "Q", 208),
)
#: The kernel version that first fills every field above (bytes_sent/bytes_retrans: 4.19).
MIN_LENGTH = 216


@dataclass(frozen=True, slots=True)
class TcpInfo:
    snd_mss: int
    rcv_mss: int
    rtt_us: int
    total_retrans: int
    bytes_acked: int
    bytes_received: int
    min_rtt_us: int
    busy_time_us: int
    rwnd_limited_us: int
    sndbuf_limited_us: int
    bytes_sent: int
    bytes_retrans: int


def parse(raw: bytes) -> TcpInfo:
    """``struct tcp_info`` bytes -> TcpInfo; ValueError when the kernel returned too few."""
    if len(raw) < MIN_LENGTH:
        raise ValueError(
            f"TCP_INFO has {len(raw)} bytes, fewer than the {MIN_LENGTH} of Linux 4.19:"
            " this kernel is too old for hamletnet's bandwidth test"
        )
    values = {name: struct.unpack_from("=" + fmt, raw, offset)[0] for name, fmt, offset in _FIELDS}
    return TcpInfo(**values)


def read(sock: socket.socket) -> TcpInfo:
    return parse(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES))
