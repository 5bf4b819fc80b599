"""Throughput arithmetic: warm-up exclusion, bytes ÷ time, η."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.bandwidth.throughput import (
    Reading,
    Warmup,
    goodput_fraction,
    interval_rates_mbps,
    mbps,
    summarize,
    warmup_end,
)


def steady(rate_mbps: float, seconds: float, *, interval_s: float = 0.1,
           ramp: list[float] | None = None) -> list[Reading]:  # fmt: skip
    """Readings of a transfer that runs at ``ramp`` rates first, then steadily at ``rate_mbps``."""
    rates = (ramp or []) + [rate_mbps] * round(seconds / interval_s)
    readings, total = [Reading(0.0, 0)], 0.0
    for i, rate in enumerate(rates, start=1):
        total += rate * 1e6 / 8 * interval_s
        readings.append(Reading(round(i * interval_s, 9), round(total)))
    return readings


def test_mbps_is_decimal_megabits() -> None:
    assert mbps(125_000_000, 1.0) == 1000.0
    assert mbps(1, 0) == 0.0


def test_a_steady_transfer_warms_up_for_the_minimum_then_is_exact() -> None:
    readings = steady(100.0, 5.0)
    warmup = warmup_end(readings)
    assert warmup == Warmup(index=10, stable=True)  # 1.0 s, the minimum
    result = summarize(readings, warmup)
    assert result.mbps == pytest.approx(100.0)
    assert result.seconds == pytest.approx(4.0)
    assert result.warmup_s == pytest.approx(1.0)
    assert result.warmup_bytes == 12_500_000
    assert len(result.samples_mbps) == 50


def test_slow_start_and_a_token_bucket_burst_are_left_out() -> None:
    # A burst at 4x the rate, then slow start doubling from 10 to 80 over 0.4 s, then 100.
    ramp = [400.0, 400, 10, 20, 40, 80, 100, 100, 100, 100, 100, 100]
    readings = steady(100.0, 5.0, ramp=ramp)
    warmup = warmup_end(readings)
    assert warmup is not None and warmup.stable
    # Stable once the window before the current one (1.0-1.5 s: 80, then 100s) is within 10 %.
    assert readings[warmup.index].at_s == pytest.approx(1.5)
    assert summarize(readings, warmup).mbps == pytest.approx(100.0)
    # Counting from the start would have said 110 Mb/s.
    whole = summarize(readings, Warmup(0, True))
    assert whole.mbps > 105


def test_an_unsteady_transfer_is_cut_at_the_longest_warmup() -> None:
    rates = [50, 150] * 40  # alternating 0.5 s windows never agree within 10 %
    readings = [Reading(0.0, 0)]
    for i in range(len(rates)):
        rate = rates[(i // 5) % 2]
        readings.append(Reading((i + 1) / 10, readings[-1].bytes + round(rate * 1e6 / 80)))
    warmup = warmup_end(readings, max_s=3.0)
    assert warmup == Warmup(index=30, stable=False)


def test_undecided_while_too_early_and_never_stable_on_nothing() -> None:
    assert warmup_end(steady(100.0, 0.5)) is None
    stalled = [Reading(i / 10, 0) for i in range(25)]
    assert warmup_end(stalled) is None


@given(
    st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=80),
    st.sampled_from([0.05, 0.1, 0.25]),
)
def test_warmup_decided_online_equals_offline(increments: list[int], interval: float) -> None:
    readings = [Reading(0.0, 0)]
    for i, inc in enumerate(increments, start=1):
        readings.append(Reading(i * interval, readings[-1].bytes + inc))
    offline = warmup_end(readings)
    online = None
    for k in range(1, len(readings) + 1):
        online = warmup_end(readings[:k])
        if online is not None:
            break
    assert online == offline


@given(st.lists(st.integers(min_value=0, max_value=10**8), min_size=2, max_size=60))
def test_the_figure_is_the_time_weighted_mean_of_the_samples_after_warmup(
    increments: list[int],
) -> None:
    readings = [Reading(0.0, 0)]
    for i, inc in enumerate(increments, start=1):
        readings.append(Reading(i * 0.1 + (0.01 if i % 3 == 0 else 0.0), readings[-1].bytes + inc))
    index = len(readings) // 3
    result = summarize(readings, Warmup(index, True))
    rates = interval_rates_mbps(readings)[index:]
    times = [b.at_s - a.at_s for a, b in zip(readings[index:], readings[index + 1 :], strict=False)]
    weighted = math.fsum(r * t for r, t in zip(rates, times, strict=True)) / math.fsum(times)
    assert result.mbps == pytest.approx(weighted, rel=1e-9, abs=1e-9)
    assert result.bytes + result.warmup_bytes == readings[-1].bytes


def test_eta_on_the_wire_and_under_tbf() -> None:
    # methodology.md §6: 1448/1538 ≈ 0.941 on Ethernet; tbf counts 1514-byte frames.
    assert goodput_fraction(1448, 4) == pytest.approx(1448 / 1538)
    assert goodput_fraction(1448, 4, on_wire=False) == pytest.approx(1448 / 1514)
    assert goodput_fraction(1428, 6, on_wire=False) == pytest.approx(1428 / 1514)
    assert 1000 * goodput_fraction(1428, 6) == pytest.approx(928.5, abs=0.1)  # the "928 IPv6"
