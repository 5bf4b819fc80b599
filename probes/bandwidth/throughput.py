"""Throughput arithmetic as plain functions over counter readings: no sockets, no clocks.

A transfer is observed as cumulative byte counts read at short intervals (``Reading``). From them
come the per-interval rates, the end of the warm-up (TCP slow start and any initial token-bucket
burst), and the figure itself: bytes moved after the warm-up ÷ the time they took.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from probes.bandwidth import params


@dataclass(frozen=True, slots=True)
class Reading:
    """Bytes moved so far by all streams of one direction, ``at_s`` seconds after its start."""

    at_s: float
    bytes: int


@dataclass(frozen=True, slots=True)
class Warmup:
    """Where the warm-up ends: ``index`` into the readings; ``stable`` is False when it was cut at
    the longest allowed warm-up instead of ending on a stable rate."""

    index: int
    stable: bool


@dataclass(frozen=True, slots=True)
class Throughput:
    """The figure of one direction, and the evidence it was computed from."""

    mbps: float
    bytes: int
    seconds: float
    warmup_s: float
    warmup_bytes: int
    warmup_stable: bool
    samples_mbps: list[float]


def mbps(byte_count: float, seconds: float) -> float:
    """Decimal megabits per second (10^6 bit/s, as ISPs and QCVN quote speeds)."""
    return byte_count * 8 / seconds / 1e6 if seconds > 0 else 0.0


def interval_rates_mbps(readings: Sequence[Reading]) -> list[float]:
    """The rate of each interval between successive readings (one fewer than the readings)."""
    return [mbps(b.bytes - a.bytes, b.at_s - a.at_s) for a, b in itertools.pairwise(readings)]


def _window_rate(readings: Sequence[Reading], end: int, width: int) -> float:
    a, b = readings[end - width], readings[end]
    return mbps(b.bytes - a.bytes, b.at_s - a.at_s)


def warmup_end(
    readings: Sequence[Reading],
    *,
    window: int = params.WARMUP_WINDOW_SAMPLES,
    stable_fraction: float = params.WARMUP_STABLE_FRACTION,
    min_s: float = params.WARMUP_MIN_S,
    max_s: float = params.WARMUP_MAX_S,
) -> Warmup | None:
    """The first reading at which the warm-up is over, or None while it is not yet decided.

    The rule (hamletnet's, recorded with every result): the warm-up ends at the first reading,
    no earlier than ``min_s``, where the rate over the last ``window`` intervals is within
    ``stable_fraction`` of the rate over the ``window`` intervals before it; it ends at
    ``max_s`` whatever happens. Why: a TCP throughput test measures the connection in
    equilibrium, after slow start (RFC 6349, "Framework for TCP Throughput Testing"); SamKnows
    and the FCC's MBA exclude "a warm-up period until throughput is stable" (methodology.md §4);
    the IETF responsiveness draft likewise waits until moving averages agree within a few per
    cent before it trusts them (methodology.md §3, MAD/SDT). iperf3's ``--omit`` is the fixed-time
    version of the same idea. Only the prefix up to a reading decides it, so calling this after
    each new reading and once on the whole list give the same answer.
    """
    for i, reading in enumerate(readings):
        if reading.at_s >= max_s:
            return Warmup(index=i, stable=False)
        if reading.at_s < min_s or i < 2 * window:
            continue
        now, before = _window_rate(readings, i, window), _window_rate(readings, i - window, window)
        if now > 0 and abs(now - before) <= stable_fraction * now:
            return Warmup(index=i, stable=True)
    return None


def summarize(readings: Sequence[Reading], warmup: Warmup) -> Throughput:
    """Bytes after the warm-up ÷ their time; per-interval rates of the whole transfer are kept
    (warm-up included, so any statistic can be recomputed from the evidence)."""
    start, end = readings[warmup.index], readings[-1]
    moved, seconds = end.bytes - start.bytes, end.at_s - start.at_s
    return Throughput(
        mbps=mbps(moved, seconds),
        bytes=moved,
        seconds=seconds,
        warmup_s=start.at_s - readings[0].at_s,
        warmup_bytes=start.bytes - readings[0].bytes,
        warmup_stable=warmup.stable,
        samples_mbps=interval_rates_mbps(readings),
    )


#: TCP header with the timestamp option (RFC 7323) that Linux sends by default, bytes.
TCP_HEADER_BYTES = 20 + 12
IP_HEADER_BYTES = {4: 20, 6: 40}
#: Ethernet II header as a Linux qdisc (tbf) counts it: no FCS, preamble or gap, bytes.
ETHERNET_HEADER_BYTES = 14
#: What a real Ethernet wire adds beyond that: preamble+SFD 8, FCS 4, inter-frame gap 12, bytes.
ETHERNET_WIRE_EXTRA_BYTES = 24


def goodput_fraction(mss_bytes: int, ip_version: int, *, on_wire: bool = True) -> float:
    """η: the share of a link's bit rate that TCP payload can fill, one full segment per frame.

    ``mss_bytes`` is the payload per segment (TCP_INFO snd_mss, 1448 for IPv4 at MTU 1500 with
    timestamps). On a real Ethernet wire η = 1448/1538 ≈ 0.941 (methodology.md §6, adopt item 4b);
    a Linux qdisc such as tbf counts frames without preamble, FCS and gap (``on_wire=False``):
    1448/1514 ≈ 0.956.
    """
    frame = mss_bytes + TCP_HEADER_BYTES + IP_HEADER_BYTES[ip_version] + ETHERNET_HEADER_BYTES
    return mss_bytes / (frame + (ETHERNET_WIRE_EXTRA_BYTES if on_wire else 0))
