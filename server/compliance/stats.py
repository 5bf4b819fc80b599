"""The statistics every compliance figure uses, and Vietnam-time months, quarters and peak hours.

One percentile definition lives here (``nearest_rank``/``percentile``) and nothing else in the
server computes a percentile of its own: every figure is computed here in Python from the samples
(which both storage adapters give alike), never by a database, and ``nearest_rank`` is the rank
InfluxDB 1.x's ``PERCENTILE()`` picks, so a figure checked by hand in InfluxQL agrees. See
docs/methodology.md, "Statistics".
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Literal

from probes.stats import mean, median
from server.errors import BadRequest

__all__ = [
    "PEAK_END_HOUR",
    "PEAK_START_HOUR",
    "VIETNAM",
    "Aggregate",
    "Deadline",
    "Period",
    "PeriodError",
    "is_peak_hour",
    "mean",
    "median",
    "month_of",
    "nearest_rank",
    "parse_deadline",
    "parse_period",
    "percentile",
    "quarter_of",
    "summarize",
    "vietnam_time",
]

#: Vietnam has kept UTC+7 all year since 1975 (no daylight saving): a fixed offset is exact.
VIETNAM = timezone(timedelta(hours=7), "ICT")
#: Peak period, Vietnam local time, start included and end excluded: 19:00 ≤ t < 23:00. The FCC's
#: "7–11 pm" convention (shared methodology §4, adopt item 6); no Vietnamese definition was found.
PEAK_START_HOUR = 19
PEAK_END_HOUR = 23

_FIRST_YEAR, _LAST_YEAR = 2000, 2100
_FORMS = "use a month (2026-11), a quarter (2026-Q4), a year (2026), a day (2026-11-05) or FROM..TO"


# -- Statistics ---------------------------------------------------------------------------------


def nearest_rank(n: int, pct: float) -> int:
    """The 1-based rank of the ``pct``-th percentile among ``n`` sorted values: the rank nearest
    to n·pct/100, halves rounded up, and never below 1.

    This is InfluxDB 1.x's ``PERCENTILE()`` (``i := int(math.Floor(float64(len(a))*percentile/100.0
    + 0.5)) - 1`` in influxql's call iterator), computed with the same float operations in the same
    order so the two agree at every tie. Where InfluxDB returns nothing (n·pct/100 < 0.5, e.g. the
    5th percentile of fewer than 10 values) this returns rank 1, the minimum, which an adapter
    gets with ``MIN()``. Nearest-rank always returns one of the samples, never an interpolated
    speed that no test measured.
    """
    if n < 1:
        raise ValueError(f"a percentile needs at least one value, got n={n}")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is not within 0..100")
    return min(n, max(1, math.floor(float(n) * pct / 100.0 + 0.5)))


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The ``pct``-th percentile of ``values`` by ``nearest_rank``; None for no values.
    ``percentile(v, 5)`` is the speed 95 % of samples reach (shared methodology, adopt item 3)."""
    if not values:
        if not 0 <= pct <= 100:
            raise ValueError(f"percentile {pct} is not within 0..100")
        return None
    ordered = sorted(values)
    return ordered[nearest_rank(len(ordered), pct) - 1]


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One direction's figures, each labelled in docs/methodology.md: ``mean`` is QCVN 34's Pd/Pu
    (sum of per-sample speeds ÷ samples), ``median`` what VNNIC publishes, ``p5`` the speed 95 %
    of samples reach. All None when n is 0 (missing is None, never 0)."""

    n: int
    mean: float | None
    median: float | None
    p5: float | None


def summarize(values: Sequence[float]) -> Aggregate:
    """n, mean, median and p5 of one direction's per-sample speeds.

    ``median`` is the usual median (the mean of the two middle values for an even n), as
    InfluxDB's ``MEDIAN()`` computes it; it is the only statistic besides ``percentile`` that
    orders the values, and p5 always comes from ``percentile``."""
    return Aggregate(
        n=len(values), mean=mean(values), median=median(values), p5=percentile(values, 5)
    )


# -- Vietnam time -------------------------------------------------------------------------------


def vietnam_time(at: datetime) -> datetime:
    """``at`` on the Vietnamese wall clock; naive datetimes are refused (UTC-aware only)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} has no timezone: pass UTC-aware datetimes")
    return at.astimezone(VIETNAM)


def is_peak_hour(at: datetime) -> bool:
    """Whether a test started in the peak period, 19:00 ≤ Vietnam time < 23:00."""
    return PEAK_START_HOUR <= vietnam_time(at).hour < PEAK_END_HOUR


@dataclass(frozen=True, slots=True)
class Period:
    """A window of Vietnam-time calendar days: ``start`` included, ``end`` excluded, both UTC."""

    label: str
    kind: Literal["day", "month", "quarter", "year", "range"]
    start: datetime
    end: datetime

    def contains(self, at: datetime) -> bool:
        """Whether ``start <= at < end``; aware datetimes compare as instants, whatever their
        zone (naive ones are refused)."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"{at.isoformat()} has no timezone: pass UTC-aware datetimes")
        return self.start <= at < self.end

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def months(self) -> Iterator[Period]:
        """The calendar months (Vietnam time) that overlap this period, in order."""
        local = self.start.astimezone(VIETNAM)
        year, month = local.year, local.month
        while True:
            current = _month(year, month)
            if current.start >= self.end:
                return
            yield current
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=VIETNAM).astimezone(UTC)


@functools.lru_cache(maxsize=1024)  # pure, and asked for the same few months over and over
def _month(year: int, month: int) -> Period:
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    start, end = _local_midnight(date(year, month, 1)), _local_midnight(following)
    return Period(f"{year:04d}-{month:02d}", "month", start, end)


def _quarter(year: int, quarter: int) -> Period:
    first, last = _month(year, 3 * quarter - 2), _month(year, 3 * quarter)
    return Period(f"{year:04d}-Q{quarter}", "quarter", first.start, last.end)


def _year(year: int) -> Period:
    return Period(f"{year:04d}", "year", _month(year, 1).start, _month(year, 12).end)


def month_of(at: datetime) -> Period:
    """The Vietnam-time calendar month holding ``at`` (00:00 on the 1st is 17:00 UTC the day
    before)."""
    local = vietnam_time(at)
    return _month(local.year, local.month)


def quarter_of(at: datetime) -> Period:
    local = vietnam_time(at)
    return _quarter(local.year, (local.month - 1) // 3 + 1)


class PeriodError(BadRequest):
    """A period or deadline that does not parse; the message quotes it and lists the forms."""


_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_QUARTER = re.compile(r"(\d{4})-[Qq]([1-4])")
_YEAR = re.compile(r"(\d{4})")


def _year_checked(text: str, whole: str) -> int:
    year = int(text)
    if not _FIRST_YEAR <= year <= _LAST_YEAR:
        raise PeriodError(
            f"period {whole!r}: year {year} is outside {_FIRST_YEAR}..{_LAST_YEAR}; {_FORMS}"
        )
    return year


def _one(text: str, whole: str) -> Period:
    if m := _DAY.fullmatch(text):
        year = _year_checked(m[1], whole)
        try:
            day = date(year, int(m[2]), int(m[3]))
        except ValueError as exc:
            raise PeriodError(
                f"period {whole!r}: {text!r} is not a date ({exc}); {_FORMS}"
            ) from exc
        return Period(text, "day", _local_midnight(day), _local_midnight(day + timedelta(days=1)))
    if m := _MONTH.fullmatch(text):
        year, month = _year_checked(m[1], whole), int(m[2])
        if not 1 <= month <= 12:
            raise PeriodError(f"period {whole!r}: month {month} is not within 1..12; {_FORMS}")
        return _month(year, month)
    if m := _QUARTER.fullmatch(text):
        return _quarter(_year_checked(m[1], whole), int(m[2]))
    if m := _YEAR.fullmatch(text):
        return _year(_year_checked(m[1], whole))
    raise PeriodError(f"period {whole!r} does not parse; {_FORMS}")


def parse_period(text: str) -> Period:
    """``2026-11``, ``2026-Q4``, ``2026``, ``2026-11-05`` or ``FROM..TO`` (each side one of those;
    the window runs from the start of FROM to the end of TO, both in Vietnam time)."""
    text = text.strip()
    if ".." not in text:
        return _one(text, text)
    first, _, last = text.partition("..")
    if not first or not last or ".." in last:
        raise PeriodError(f"period {text!r}: FROM..TO needs one value on each side; {_FORMS}")
    start, end = _one(first.strip(), text), _one(last.strip(), text)
    if end.end <= start.start:
        raise PeriodError(f"period {text!r}: {last.strip()!r} ends before {first.strip()!r} starts")
    return Period(f"{start.label}..{end.label}", "range", start.start, end.end)


# -- Plan deadlines -----------------------------------------------------------------------------

_DEADLINE = re.compile(r"Q([1-4])/(\d{4})")


@dataclass(frozen=True, slots=True)
class Deadline:
    """A plan deadline: the end of a quarter ("Quý IV/2026" is written ``Q4/2026``), or
    ``ongoing`` ("Thường xuyên": a standing task with no end)."""

    text: str
    quarter: Period | None

    @property
    def ongoing(self) -> bool:
        return self.quarter is None


def parse_deadline(text: str) -> Deadline:
    """``Q4/2026`` or ``ongoing``; ValueError quoting the value otherwise."""
    if text == "ongoing":
        return Deadline(text, None)
    m = _DEADLINE.fullmatch(text)
    if m is None or not _FIRST_YEAR <= int(m[2]) <= _LAST_YEAR:
        raise ValueError(f"deadline {text!r} is neither a quarter such as 'Q4/2026' nor 'ongoing'")
    return Deadline(text, _quarter(int(m[2]), int(m[1])))
