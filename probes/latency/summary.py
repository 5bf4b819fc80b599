"""From one series of round trips to a latency measurement: the statistics every engine reports.

A series is the RTT of each counted probe in the order sent, ``None`` for a lost one. Lost probes
only count in ``loss_pct``; they never enter a statistic as 0 (methodology: missing is None).
Jitter is the mean absolute difference of successive received RTTs (``probes.stats.jitter_masd``,
RFC 4689 §3.2.5), taken over the received samples in sending order, so a lost probe joins its
neighbours into one pair.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from probes.models import FailureKind, Family, TimestampSource
from probes.spec import Failure, Measurement, Span
from probes.stats import jitter_masd, mean, median

#: Raw RTTs keep microsecond resolution, the precision of the kernel's timestamps that matters.
RTT_DECIMALS = 3

Method = Literal["icmp", "tcp", "http"]


@dataclass(frozen=True, slots=True)
class RttSummary:
    sent: int
    received: int
    loss_pct: float | None
    rtt_min_ms: float | None
    rtt_median_ms: float | None
    rtt_mean_ms: float | None
    rtt_max_ms: float | None
    jitter_ms: float | None
    rtts_ms: list[float]


def summarize(series: Sequence[float | None]) -> RttSummary:
    """Counts and statistics of ``series`` (RTTs in ms in sending order, None = lost)."""
    rtts = [round(r, RTT_DECIMALS) for r in series if r is not None]
    sent = len(series)

    def _r(value: float | None) -> float | None:
        return None if value is None else round(value, RTT_DECIMALS)

    return RttSummary(
        sent=sent,
        received=len(rtts),
        loss_pct=100.0 * (sent - len(rtts)) / sent if sent else None,
        rtt_min_ms=min(rtts, default=None),
        rtt_median_ms=_r(median(rtts)),
        rtt_mean_ms=_r(mean(rtts)),
        rtt_max_ms=max(rtts, default=None),
        jitter_ms=_r(jitter_masd(rtts)),
        rtts_ms=rtts,
    )


def latency_measurement(
    *,
    method: Method,
    target: str,
    family: Family | None,
    series: Sequence[float | None],
    measured_at: datetime,
    started_ns: int,
    failure: tuple[FailureKind, str] | None = None,
    timestamp_source: TimestampSource | None = None,
    **phases: float | None,
) -> Measurement:
    """The measurement of one series, timed from ``measured_at``/``started_ns`` (an engine
    measures several targets per call). With no reply at all the test failed: ``failure`` names
    why (default: unreachable); the counts stay, so 100 % loss is still visible as data."""
    summary = summarize(series)
    if failure is None and summary.sent and not summary.received:
        failure = (FailureKind.UNREACHABLE, f"no reply from {target} to {summary.sent} probes")
    return Measurement(
        engine=method,
        target=target,
        span=Span(measured_at, (time.perf_counter_ns() - started_ns) / 1e6),
        failure=Failure(*failure) if failure else None,
        fields={
            "method": method,
            "family": family,
            "sent": summary.sent,
            "received": summary.received,
            "loss_pct": summary.loss_pct,
            "rtt_min_ms": summary.rtt_min_ms,
            "rtt_median_ms": summary.rtt_median_ms,
            "rtt_mean_ms": summary.rtt_mean_ms,
            "rtt_max_ms": summary.rtt_max_ms,
            "jitter_ms": summary.jitter_ms,
            "rtts_ms": summary.rtts_ms if summary.sent else None,
            "timestamp_source": timestamp_source,
            **{k: None if v is None else round(v, RTT_DECIMALS) for k, v in phases.items()},
        },
    )
