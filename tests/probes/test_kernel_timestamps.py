"""Kernel timestamps: both timespec layouts, and the fallback when the wall clock steps."""

from __future__ import annotations

import socket
import struct

from hypothesis import given
from hypothesis import strategies as st

from probes import kernel_timestamps as kt

ns = st.integers(0, 2**62)


@given(st.integers(0, 2**40), st.integers(0, 999_999_999))
def test_64_bit_timespec(sec: int, nsec: int) -> None:
    assert kt.timespec_ns(struct.pack("=qq", sec, nsec)) == sec * 1_000_000_000 + nsec


@given(st.integers(0, 2**31 - 1), st.integers(0, 999_999_999))
def test_32_bit_timespec_of_armv7l(sec: int, nsec: int) -> None:
    assert kt.timespec_ns(struct.pack("=ii", sec, nsec)) == sec * 1_000_000_000 + nsec


def test_not_a_timestamp() -> None:
    assert kt.timespec_ns(b"\0\0\0") is None
    assert kt.timespec_ns(struct.pack("=qq", 1, 2_000_000_000)) is None
    other = [(socket.SOL_SOCKET, 99, struct.pack("=qq", 1, 0))]
    assert kt.timestamp_ns(other) is None
    assert kt.timestamp_ns([(socket.SOL_SOCKET, kt.SO_TIMESTAMPNS_NEW, struct.pack("=qq", 2, 5))])


@given(ns, st.integers(0, 10**9), st.integers(0, 10**9), st.integers(-(10**12), 10**12))
def test_rtt_is_the_kernel_one_unless_the_clock_stepped(
    sent: int, kernel_rtt: int, wakeup: int, step: int
) -> None:
    # User space sees the packet ``wakeup`` ns after the kernel; the wall clock may step by
    # ``step`` ns between send and receive.
    mono_sent = 10**12
    rtt = kt.rtt_ms(sent, sent + kernel_rtt + step, mono_sent, mono_sent + kernel_rtt + wakeup)
    if step == 0:
        assert rtt == kernel_rtt / 1e6
    assert 0 <= rtt <= (kernel_rtt + wakeup + kt.CLOCK_STEP_TOLERANCE_NS) / 1e6
    if kernel_rtt + step < 0 or step > wakeup + kt.CLOCK_STEP_TOLERANCE_NS:
        assert rtt == (kernel_rtt + wakeup) / 1e6  # the monotonic interval


def test_no_kernel_stamp_falls_back_to_monotonic() -> None:
    assert kt.rtt_ms(5, None, 1_000_000, 3_500_000) == 2.5
