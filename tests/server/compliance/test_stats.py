"""The one percentile definition, the aggregates, Vietnam-time periods and peak hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.compliance.stats import (
    Period,
    PeriodError,
    is_peak_hour,
    month_of,
    nearest_rank,
    parse_deadline,
    parse_period,
    percentile,
    quarter_of,
    summarize,
)

speeds = st.lists(
    st.floats(min_value=0, max_value=10_000, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=200,
)
pcts = st.floats(min_value=0, max_value=100, allow_nan=False)


def brute_force_nearest_rank(values: list[float], pct: float) -> float:
    """Try every rank; keep the one nearest to n·pct/100 (a tie goes to the higher rank, as
    rounding a half up does), never below rank 1."""
    n = len(values)
    target = float(n) * pct / 100.0
    best = 1
    for rank in range(1, n + 1):
        if abs(rank - target) <= abs(best - target):
            best = rank
    return sorted(values)[best - 1]


@given(speeds, pcts)
def test_percentile_matches_a_brute_force_nearest_rank(values: list[float], pct: float) -> None:
    assert percentile(values, pct) == brute_force_nearest_rank(values, pct)


@given(speeds, pcts)
def test_percentile_is_one_of_the_samples_within_min_max(values: list[float], pct: float) -> None:
    result = percentile(values, pct)
    assert result in values
    assert min(values) <= result <= max(values)


@given(speeds, pcts, pcts)
def test_percentile_is_monotone_in_pct(values: list[float], a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert percentile(values, low) <= percentile(values, high)  # type: ignore[operator]


@given(speeds, pcts)
def test_percentile_ignores_order(values: list[float], pct: float) -> None:
    assert percentile(values, pct) == percentile(list(reversed(values)), pct)


def test_percentile_by_hand() -> None:
    # p5 of 1..20: n·5/100 = 1.0 → rank floor(1.5) = 1 → 1.
    assert percentile([float(v) for v in range(1, 21)], 5) == 1.0
    # p5 of 1..25: 1.25 → floor(1.75) = 1 → 1 (a "ceil" nearest rank would say 2).
    assert percentile([float(v) for v in range(1, 26)], 5) == 1.0
    # p5 of 1..30: 1.5 → floor(2.0) = 2 → 2 (halves round up, as in InfluxDB).
    assert percentile([float(v) for v in range(1, 31)], 5) == 2.0
    # p5 of 5 values: 0.25 → rank 0, which InfluxDB leaves empty; we return the minimum.
    assert percentile([9.0, 7.0, 8.0, 6.0, 5.0], 5) == 5.0
    # Ties: 300 samples, 15 at 250 then 285 at 960: rank 15 is still 250, rank 16 is 960.
    ties = [250.0] * 15 + [960.0] * 285
    assert nearest_rank(300, 5) == 15 and percentile(ties, 5) == 250.0
    assert percentile([250.0] * 14 + [960.0] * 286, 5) == 960.0
    assert percentile([], 5) is None
    assert nearest_rank(10, 0) == 1 and nearest_rank(10, 100) == 10
    with pytest.raises(ValueError, match="101"):
        percentile([1.0], 101)
    with pytest.raises(ValueError, match="n=0"):
        nearest_rank(0, 50)


def test_summarize_by_hand() -> None:
    # mean (1+2+3+10)/4 = 4; median (2+3)/2 = 2.5 (InfluxDB MEDIAN()); p5 rank 1 → 1.
    agg = summarize([10.0, 1.0, 3.0, 2.0])
    assert (agg.n, agg.mean, agg.median, agg.p5) == (4, 4.0, 2.5, 1.0)
    empty = summarize([])
    assert (empty.n, empty.mean, empty.median, empty.p5) == (0, None, None, None)


def test_month_boundary_is_midnight_vietnam_time() -> None:
    # 00:00 on 1 Dec in Vietnam is 17:00 UTC on 30 Nov.
    last_of_november = datetime(2026, 11, 30, 16, 59, 59, tzinfo=UTC)
    first_of_december = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    assert month_of(last_of_november).label == "2026-11"
    assert month_of(first_of_december).label == "2026-12"
    november = parse_period("2026-11")
    assert november.start == datetime(2026, 10, 31, 17, tzinfo=UTC)
    assert november.end == first_of_december
    assert november.contains(last_of_november) and not november.contains(first_of_december)
    assert quarter_of(first_of_december).label == "2026-Q4"
    assert quarter_of(datetime(2026, 12, 31, 17, tzinfo=UTC)).label == "2027-Q1"


def test_peak_hours_are_19_to_23_vietnam_time() -> None:
    day = datetime(2026, 11, 5, tzinfo=UTC)
    assert not is_peak_hour(day + timedelta(hours=11, minutes=59, seconds=59))  # 18:59:59
    assert is_peak_hour(day + timedelta(hours=12))  # 19:00
    assert is_peak_hour(day + timedelta(hours=15, minutes=59))  # 22:59
    assert not is_peak_hour(day + timedelta(hours=16))  # 23:00
    with pytest.raises(ValueError, match="no timezone"):
        is_peak_hour(datetime(2026, 11, 5, 20))  # naive on purpose


@pytest.mark.parametrize(
    ("text", "label", "kind", "days"),
    [
        ("2026-11", "2026-11", "month", 30),
        ("2026-02", "2026-02", "month", 28),
        ("2026-Q4", "2026-Q4", "quarter", 92),
        ("2026-q1", "2026-Q1", "quarter", 90),
        ("2028", "2028", "year", 366),
        ("2026-11-05", "2026-11-05", "day", 1),
        ("2026-07..2026-Q4", "2026-07..2026-Q4", "range", 184),
        (" 2026-11-01..2026-11-30 ", "2026-11-01..2026-11-30", "range", 30),
    ],
)
def test_periods_parse(text: str, label: str, kind: str, days: int) -> None:
    period = parse_period(text)
    assert (period.label, period.kind, period.duration) == (label, kind, timedelta(days=days))
    assert period.start.hour == 17  # local midnight, the day before in UTC


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-13", "month 13 is not within 1..12"),
        ("2026-Q5", "'2026-Q5' does not parse"),
        ("November", "'November' does not parse"),
        ("", "'' does not parse"),
        ("1999", "year 1999 is outside"),
        ("2026-02-30", "'2026-02-30' is not a date"),
        ("2026-12..2026-01", "'2026-01' ends before '2026-12' starts"),
        ("2026-01..", "needs one value on each side"),
        ("2026..2027..2028", "needs one value on each side"),
    ],
)
def test_bad_periods_are_named(text: str, message: str) -> None:
    with pytest.raises(PeriodError) as caught:
        parse_period(text)
    assert message in caught.value.detail
    assert caught.value.status == 400


def test_months_of_a_range() -> None:
    labels = [m.label for m in parse_period("2026-11-15..2027-01-02").months()]
    assert labels == ["2026-11", "2026-12", "2027-01"]
    assert [m.label for m in parse_period("2026-Q4").months()] == ["2026-10", "2026-11", "2026-12"]
    assert isinstance(next(parse_period("2026").months()), Period)


def test_deadlines() -> None:
    q3 = parse_deadline("Q3/2026")
    assert q3.quarter is not None and q3.quarter.end == datetime(2026, 9, 30, 17, tzinfo=UTC)
    assert parse_deadline("ongoing").ongoing
    for bad in ("Q4 2026", "Quý IV/2026", "Q0/2026", "2026"):
        with pytest.raises(ValueError, match=repr(bad)):
            parse_deadline(bad)
