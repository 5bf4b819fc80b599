"""Kernel receive timestamps: when a packet reached the socket, not when Python got round to it.

With ``SO_TIMESTAMPNS`` set, the kernel stamps every arriving packet with ``CLOCK_REALTIME`` and
``recvmsg`` hands the stamp over as ancillary data (socket(7); the same source iputils ``ping``
reads). Event-loop scheduling, garbage collection and a busy CPU therefore stay out of an RTT;
only the send side is stamped from user space, immediately before the ``send`` system call.

Some kernels, containers and emulators refuse the option (``ENOPROTOOPT``; seen running the arm64
build under qemu-user) or accept it and deliver no stamp. The measurement then goes on with
user-space receive times, the monotonic clock read right after ``recvmsg`` returned, and every
RTT says which source it came from (``Rtt.source``), so a result records it
(``timestamp_source``).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
import struct
import time
from collections.abc import Iterable
from typing import NamedTuple

from probes.models import TimestampSource

log = logging.getLogger(__name__)

#: Option numbers of asm-generic Linux (x86, arm, arm64: every Raspberry Pi); Python's socket
#: module does not export them. ``_OLD`` carries the C library's ``struct timespec`` (2 x long: 8
#: bytes on 32-bit armv7l, 16 on 64-bit), ``_NEW`` (Linux >= 5.1) always 2 x int64.
SO_TIMESTAMPNS_OLD = 35
SO_TIMESTAMPNS_NEW = 64

#: Room for one timestamp control message in ``recvmsg``.
ANCILLARY_BYTES = socket.CMSG_SPACE(16)

#: A kernel-stamped RTT may exceed the user-space one by this much at most; beyond it the wall
#: clock stepped (NTP) between send and receive and the user-space monotonic RTT is used instead.
CLOCK_STEP_TOLERANCE_NS = 1_000_000


class Rtt(NamedTuple):
    ms: float
    source: TimestampSource


def enable(sock: socket.socket) -> bool:
    """Ask the kernel to stamp every packet ``sock`` receives (the 64-bit form where it exists).

    False when the kernel refuses both forms: the receive times then come from user space. The
    option only sharpens an RTT, so no refusal (whatever its errno) stops a measurement.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS_NEW, 1)
        return True
    except OSError:
        pass
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS_OLD, 1)
        return True
    except OSError as exc:
        _log_refusal(errno.errorcode.get(exc.errno or 0, str(exc.errno)))
        return False


@functools.cache
def _log_refusal(errno_name: str) -> None:
    """Once per process and errno: every socket of every test would say the same."""
    log.warning("the kernel refused SO_TIMESTAMPNS (%s): receive times from user space", errno_name)


def timespec_ns(data: bytes) -> int | None:
    """A ``struct timespec`` from a control message as nanoseconds; None if it is not one."""
    if len(data) >= 16:
        sec, nsec = struct.unpack_from("=qq", data)
    elif len(data) >= 8:
        sec, nsec = struct.unpack_from("=ii", data)
    else:
        return None
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        return None
    return int(sec * 1_000_000_000 + nsec)


def timestamp_ns(ancdata: Iterable[tuple[int, int, bytes]]) -> int | None:
    """The receive stamp among ``recvmsg``'s ancillary items; None if the kernel gave none."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind in (SO_TIMESTAMPNS_OLD, SO_TIMESTAMPNS_NEW):
            return timespec_ns(data)
    return None


def rtt(
    sent_wall_ns: int, received_kernel_ns: int | None, sent_mono_ns: int, received_mono_ns: int
) -> Rtt:
    """The round trip in ms: kernel receive stamp minus the wall-clock send time.

    The user-space monotonic interval (send to the moment Python read the packet) bounds it from
    above, so a kernel RTT that is negative or longer than that interval means the wall clock was
    stepped in between; the monotonic interval, which includes scheduling delay but never a clock
    step, is the honest fallback (source "user"). Also used when the kernel gave no stamp.
    """
    mono_ns = received_mono_ns - sent_mono_ns
    if received_kernel_ns is not None:
        kernel_ns = received_kernel_ns - sent_wall_ns
        if 0 <= kernel_ns <= mono_ns + CLOCK_STEP_TOLERANCE_NS:
            return Rtt(kernel_ns / 1e6, "kernel")
    return Rtt(max(mono_ns, 0) / 1e6, "user")


def series_source(sources: Iterable[TimestampSource]) -> TimestampSource | None:
    """A test's source: "kernel" only when every timed sample was kernel-stamped; None if none
    was timed."""
    seen = set(sources)
    return None if not seen else "kernel" if seen == {"kernel"} else "user"


async def recv_stamped(sock: socket.socket, bufsize: int = 65536) -> tuple[bytes, int | None, int]:
    """The next read from non-blocking ``sock``: data, kernel receive stamp (wall-clock ns, None
    if the kernel gave none) and the monotonic time Python saw it (for ``rtt_ms``)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data, ancdata, _, _ = sock.recvmsg(bufsize, ANCILLARY_BYTES)
        except (BlockingIOError, InterruptedError):
            ready = loop.create_future()
            loop.add_reader(sock.fileno(), ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_reader(sock.fileno())
            continue
        return data, timestamp_ns(ancdata), time.perf_counter_ns()
