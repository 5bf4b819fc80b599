"""Series statistics: loss from counts, lost probes never as 0, and a valid result model."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.latency.summary import latency_measurement, summarize
from probes.models import Family, LatencyResult
from tests.probes.stamping import as_result

rtt = st.floats(min_value=0.001, max_value=5000, allow_nan=False)
series_st = st.lists(st.one_of(st.none(), rtt), max_size=60)


@given(series_st)
def test_summary_invariants(series: list[float | None]) -> None:
    s = summarize(series)
    received = [r for r in series if r is not None]
    assert (s.sent, s.received, len(s.rtts_ms)) == (len(series), len(received), len(received))
    if not series:
        assert s.loss_pct is None
    else:
        assert s.loss_pct == pytest.approx(100 * (len(series) - len(received)) / len(series))
    if not received:
        assert s.rtt_min_ms is s.rtt_median_ms is s.rtt_mean_ms is s.rtt_max_ms is None
        return
    assert s.rtt_min_ms is not None and s.rtt_max_ms is not None
    assert s.rtt_min_ms <= s.rtt_median_ms <= s.rtt_max_ms  # type: ignore[operator]
    assert s.rtt_min_ms - 1e-3 <= s.rtt_mean_ms <= s.rtt_max_ms + 1e-3  # type: ignore[operator]
    if len(received) > 1:
        assert s.jitter_ms is not None and 0 <= s.jitter_ms <= s.rtt_max_ms - s.rtt_min_ms + 1e-3
    else:
        assert s.jitter_ms is None


def test_lost_probes_are_absent_and_jitter_joins_their_neighbours() -> None:
    s = summarize([10.0, None, 12.0, 11.0, None])
    assert s.rtts_ms == [10.0, 12.0, 11.0] and s.loss_pct == 40.0
    assert s.rtt_median_ms == 11.0 and s.jitter_ms == 1.5  # |12-10|, |11-12| over 2 pairs


def test_all_lost_is_a_failed_result_that_keeps_the_counts() -> None:
    result = as_result(LatencyResult, latency_measurement(
        method="icmp", target="198.18.0.9", family=Family.IPV4, series=[None] * 4,
        measured_at=datetime.now(UTC), started_ns=time.perf_counter_ns(),
    ))  # fmt: skip
    assert result.status == "failed" and result.failure_kind == "unreachable"
    assert (result.sent, result.received, result.loss_pct, result.rtts_ms) == (4, 0, 100.0, [])
    assert result.rtt_median_ms is None


def test_phases_are_carried_and_rounded() -> None:
    result = as_result(LatencyResult, latency_measurement(
        method="http", target="http://x/", family=None, series=[1.23456],
        measured_at=datetime.now(UTC), started_ns=time.perf_counter_ns(),
        resolve_ms=None, connect_ms=0.12345, tls_ms=2.0, first_byte_ms=3.33333,
    ))  # fmt: skip
    assert (result.connect_ms, result.tls_ms, result.first_byte_ms) == (0.123, 2.0, 3.333)
    assert result.resolve_ms is None and result.rtts_ms == [1.235]
