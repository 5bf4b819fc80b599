"""Realistic results for the collector tests: what a fiber probe in Thôn A measured moments ago."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from probes.models import BandwidthResult, LatencyResult, ResultBase

PROBE_ID = "thon-a-vnpt-fiber"


def latency_result(*, ago: timedelta = timedelta(seconds=30), rtts: int = 10) -> LatencyResult:
    """An ICMP latency result measured ``ago`` before now with ``rtts`` replies out of ``rtts``."""
    rtts_ms = [round(21.3 + (i * 7 % 11) * 0.37, 3) for i in range(rtts)]
    return LatencyResult(
        result_id=uuid.uuid4(),
        probe_id=PROBE_ID,
        measured_at=datetime.now(UTC) - ago,
        duration_ms=10_012.5,
        engine="icmp",
        target="8.8.8.8",
        sent=rtts,
        received=rtts,
        loss_pct=0.0,
        rtt_min_ms=min(rtts_ms, default=None),
        rtt_max_ms=max(rtts_ms, default=None),
        rtts_ms=rtts_ms,
    )


def bandwidth_result(*, ago: timedelta = timedelta(minutes=1)) -> BandwidthResult:
    """An HTTP download/upload test measured ``ago`` before now."""
    return BandwidthResult(
        result_id=uuid.uuid4(),
        probe_id=PROBE_ID,
        measured_at=datetime.now(UTC) - ago,
        duration_ms=21_034.5,
        engine="http",
        target="http://speedtest.vnpt.vn:8080/",
        streams=4,
        download_mbps=92.4,
        upload_mbps=40.0,
        download_bytes=231_000_000,
        upload_bytes=100_000_000,
        download_samples_mbps=[88.1, 93.7, 95.0, 92.25],
        upload_samples_mbps=[39.5, 40.5, 40.0],
        sample_interval_ms=250.0,
        idle_latency_ms=4.2,
        loaded_latency_down_ms=38.9,
    )


def mixed_results(count: int) -> list[ResultBase]:
    """``count`` results alternating latency and bandwidth, oldest measurement first."""
    return [
        (latency_result if i % 2 else bandwidth_result)(ago=timedelta(minutes=count - i))
        for i in range(count)
    ]
