"""Unbiased schedules: exponential gaps of the configured mean (a Kolmogorov-Smirnov check),
clamped to [min, max], extra tests in the peak window, and the configuration's rules by message.

Fire times are drawn from the real APScheduler trigger with a seeded generator and synthetic
"now"s, thousands at a time, without waiting for any of them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from collector.agent import trigger_for
from collector.config import Schedule, load_config
from collector.errors import ConfigError
from collector.schedule import GapPlan, PeakWindow, clamped_mean_s, gap_plan, in_peak
from collector.schedule_trigger import ExponentialTrigger
from probes.models import Kind

START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
#: Kolmogorov's asymptotic critical value of sqrt(n) * D at the 1 % level.
KS_CRITICAL_1PCT = 1.628


def fire_times(trigger: BaseTrigger, count: int, start: datetime = START) -> list[datetime]:
    """``count`` fire times as APScheduler asks for them: each from the previous one."""
    times: list[datetime] = []
    previous: datetime | None = None
    for _ in range(count):
        now = previous or start
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None and fire > now
        times.append(fire)
        previous = fire
    return times


def gaps_s(times: list[datetime], start: datetime = START) -> list[float]:
    return [(b - a).total_seconds() for a, b in zip([start, *times], times, strict=False)]


def ks_statistic(samples: list[float], cdf: Callable[[float], float]) -> float:
    """The Kolmogorov-Smirnov distance between the samples' empirical CDF and ``cdf``."""
    ordered = sorted(samples)
    n = len(ordered)
    return max(max((i + 1) / n - cdf(x), cdf(x) - i / n) for i, x in enumerate(ordered))


def exponential_cdf(mean_s: float) -> Callable[[float], float]:
    return lambda x: 1.0 - math.exp(-x / mean_s) if x > 0 else 0.0


def test_gaps_are_exponential_with_the_configured_mean() -> None:
    mean_s, n = 600.0, 5000
    # Clamps far out of reach: the pure exponential, to test the draw itself.
    trigger = ExponentialTrigger(gap_plan(mean_s, 0.0, 1e9), random.Random(16))
    gaps = gaps_s(fire_times(trigger, n))
    # The mean's standard error is mean / sqrt(n) (1.4 % here): 5 % is over 3.5 of them.
    assert sum(gaps) / n == pytest.approx(mean_s, rel=0.05)
    assert math.sqrt(n) * ks_statistic(gaps, exponential_cdf(mean_s)) < KS_CRITICAL_1PCT


def test_the_ks_check_refuses_the_old_fixed_interval_with_jitter() -> None:
    # The same check applied to what the agent did before (every_s with uniform jitter) fails:
    # it can tell an unbiased schedule from a biased one.
    trigger = IntervalTrigger(seconds=600, jitter=300, timezone=UTC)
    gaps = gaps_s(fire_times(trigger, 2000))
    mean_s = sum(gaps) / len(gaps)
    assert math.sqrt(len(gaps)) * ks_statistic(gaps, exponential_cdf(mean_s)) > KS_CRITICAL_1PCT


def test_gaps_are_clamped_to_min_and_max_by_default_as_ndt7_does() -> None:
    mean_s, n = 600.0, 5000
    plan = gap_plan(mean_s)
    assert (plan.min_gap_s, plan.max_gap_s) == (60.0, 1500.0)  # 0.1 and 2.5 x the mean
    gaps = gaps_s(fire_times(ExponentialTrigger(plan, random.Random(2330)), n))
    assert min(gaps) == pytest.approx(60.0) and max(gaps) == pytest.approx(1500.0)
    at_min = sum(g == pytest.approx(60.0) for g in gaps) / n
    at_max = sum(g == pytest.approx(1500.0) for g in gaps) / n
    assert at_min == pytest.approx(1 - math.exp(-0.1), abs=0.015)  # P(X < 0.1 mean) = 9.5 %
    assert at_max == pytest.approx(math.exp(-2.5), abs=0.015)  # P(X > 2.5 mean) = 8.2 %
    assert sum(gaps) / n == pytest.approx(clamped_mean_s(mean_s, 60.0, 1500.0), rel=0.05)
    # Between the clamps the gaps are the exponential's, conditioned on that range.
    inside = [g for g in gaps if 60.0 < g < 1500.0]
    low, high = exponential_cdf(mean_s)(60.0), exponential_cdf(mean_s)(1500.0)

    def conditioned(x: float) -> float:
        return (exponential_cdf(mean_s)(x) - low) / (high - low)

    assert math.sqrt(len(inside)) * ks_statistic(inside, conditioned) < KS_CRITICAL_1PCT


PEAK = PeakWindow(extra_per_hour=3.0)  # 19:00-23:00 Asia/Ho_Chi_Minh by default


def _rates_per_hour(plan: GapPlan, days: int, seed: int) -> tuple[float, float]:
    """Fires per hour inside and outside the peak window over ``days`` days."""
    trigger = ExponentialTrigger(plan, random.Random(seed))
    end = START + timedelta(days=days)
    times: list[datetime] = []
    previous: datetime | None = None
    while not times or times[-1] < end:
        previous = trigger.get_next_fire_time(previous, previous or START)
        assert previous is not None
        times.append(previous)
    times = times[:-1]
    assert plan.peak is not None
    inside = sum(in_peak(t, plan.peak) for t in times)
    return inside / (4 * days), (len(times) - inside) / (20 * days)


def test_the_peak_window_adds_its_extra_rate_and_only_there() -> None:
    plan = gap_plan(7200.0, peak=PEAK)
    # The default minimum follows the shortest mean gap (inside the window): 0.1 x 1029 s.
    assert plan.min_gap_s == pytest.approx(0.1 * 3600 / 3.5)
    inside, outside = _rates_per_hour(plan, days=120, seed=19)
    # Expected rates are those of the clamped gaps: 3.49/h inside, 0.545/h outside (the
    # 2.5 x mean clamp shortens the longest off-peak gaps, so a little above 1/2 h).
    expected_inside = 3600 / clamped_mean_s(3600 / 3.5, plan.min_gap_s, plan.max_gap_s)
    expected_outside = 3600 / clamped_mean_s(7200.0, plan.min_gap_s, plan.max_gap_s)
    assert inside == pytest.approx(expected_inside, rel=0.08)
    assert outside == pytest.approx(expected_outside, rel=0.08)


def test_the_peak_window_is_local_time_and_may_span_midnight() -> None:
    assert in_peak(datetime(2026, 12, 1, 19, 30, tzinfo=VIETNAM), PEAK)
    assert in_peak(datetime(2026, 12, 1, 12, 30, tzinfo=UTC), PEAK)  # 19:30 in Vietnam
    assert not in_peak(datetime(2026, 12, 1, 23, 0, tzinfo=VIETNAM), PEAK)  # end excluded
    late = PeakWindow(start="22:00", end="02:00", extra_per_hour=1)
    assert in_peak(datetime(2026, 12, 1, 1, 0, tzinfo=VIETNAM), late)
    assert not in_peak(datetime(2026, 12, 1, 3, 0, tzinfo=VIETNAM), late)
    plan = gap_plan(7200.0, peak=late)
    inside, outside = _rates_per_hour(plan, days=120, seed=7)  # 22:00-02:00 is 4 h too
    expected_inside = 3600 / clamped_mean_s(3600 / 1.5, plan.min_gap_s, plan.max_gap_s)
    assert inside == pytest.approx(expected_inside, rel=0.08)  # 1/2 h + 1/h
    assert outside == pytest.approx(0.545, rel=0.08)


def test_the_documented_bandwidth_schedule_gives_300_peak_samples_every_february() -> None:
    # config/probe.example.yaml: mean_gap_s 10800 with 3 extra tests per hour 19:00-23:00.
    # The shortest month has 28 x 4 = 112 peak hours; at ~3.33 tests per hour that is ~373
    # expected; 300 is then about 3.8 standard deviations below (Poisson).
    config = load_config(Path(__file__).resolve().parents[2] / "config" / "probe.example.yaml")
    schedule = config.schedules[Kind.BANDWIDTH]
    assert schedule.mean_gap_s is not None
    plan = gap_plan(schedule.mean_gap_s, schedule.min_gap_s, schedule.max_gap_s, schedule.peak)
    counts = []
    for seed in range(40):
        inside, _ = _rates_per_hour(plan, days=28, seed=1000 + seed)
        counts.append(round(inside * 112))
    assert min(counts) >= 300, counts


def test_fixed_schedules_of_older_configurations_keep_their_triggers() -> None:
    every = trigger_for(Schedule(every_s=300, jitter_s=60))
    assert isinstance(every, IntervalTrigger) and every.jitter == 60
    assert isinstance(trigger_for(Schedule(cron="*/15 19-22 * * *")), CronTrigger)
    exponential = trigger_for(Schedule(mean_gap_s=3600, peak=PEAK))
    assert isinstance(exponential, ExponentialTrigger)
    assert "+3/h 19:00-23:00 Asia/Ho_Chi_Minh" in str(exponential)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("{mean_gap_s: 600, every_s: 60}",
         "schedules.latency: give exactly one of 'every_s' or 'cron' (fixed times) or"
         " 'mean_gap_s' (random gaps); given: mean_gap_s, every_s"),
        ("{every_s: 60, min_gap_s: 5}",
         "schedules.latency: min_gap_s need mean_gap_s (random gaps); every_s and cron take"
         " jitter_s instead"),
        ("{cron: '0 * * * *', peak: {extra_per_hour: 2}}", "peak need mean_gap_s"),
        ("{mean_gap_s: 600, jitter_s: 30}", "jitter_s is for every_s and cron"),
        ("{mean_gap_s: 600, min_gap_s: 900}",
         "min_gap_s (900) is above mean_gap_s (600 s): the clamp would replace most random gaps"),
        ("{mean_gap_s: 600, min_gap_s: 120, peak: {extra_per_hour: 60}}",
         "min_gap_s (120) is above the mean gap inside the peak window (54.5455 s)"),
        ("{mean_gap_s: 600, max_gap_s: 300}", "max_gap_s (300) is below mean_gap_s (600)"),
        ("{mean_gap_s: -5}", "schedules.latency.mean_gap_s: Input should be greater than 0"),
        ("{mean_gap_s: 600, peak: {start: 19:00, extra_per_hour: 2}}",
         "schedules.latency.peak.start: 1140 is a number: write the time in quotes, e.g. '19:00'"),
        ("{mean_gap_s: 600, peak: {end: '7pm', extra_per_hour: 2}}",
         "schedules.latency.peak.end: '7pm' is not a time of day as HH:MM"),
        ("{mean_gap_s: 600, peak: {timezone: Mars/Olympus, extra_per_hour: 2}}",
         "schedules.latency.peak.timezone: 'Mars/Olympus' is not a known time zone"),
        ("{mean_gap_s: 600, peak: {}}", "schedules.latency.peak.extra_per_hour: Field required"),
        ("{mean_gap_s: 600, peak: {start: '19:00', end: '19:00', extra_per_hour: 1}}",
         "schedules.latency.peak: peak start and end are both 19:00: the window is empty"),
        ("{mean_gap_s: 600, peak: {extra_per_hour: 1, hours: 4}}",
         "schedules.latency.peak.hours: unknown key"),
    ],
)  # fmt: skip
def test_bad_schedules_are_reported_by_key(tmp_path: Path, schedule: str, expected: str) -> None:
    path = tmp_path / "probe.yaml"
    path.write_text(f"schedules:\n  latency: {schedule}\n", encoding="utf-8")
    text = path.read_text().replace("latency: {", "latency: {targets: ['a:1'], ", 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert expected in str(caught.value)
