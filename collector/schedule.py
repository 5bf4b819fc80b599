"""Unbiased test times: exponentially distributed gaps, clamped, with extra tests in a peak window.

A fixed interval (even with uniform jitter) can fall into step with periodic behaviour of the
network, such as a daily traffic pattern or an hourly backup, and then every sample sees the same
phase of it. Exponential gaps make the test times a Poisson process, which cannot synchronise with
anything and samples every phase without bias (RFC 2330 §11.1.1, "Poisson Sampling"). The gaps are
clamped to [min, max] as ndt7's non-interactive clients do (m-lab/ndt-server
spec/ndt7-protocol.md: mean 6 h, clamped to [2160 s, 54000 s], i.e. 0.1 and 2.5 times the mean;
ndt7-client-go's ``memoryless.Ticker``), so no two tests run back to back and no gap is endless.

The compliance rule counts peak-hour samples (methodology.md, "What hamletnet should adopt" 4(c);
SamKnows concentrates speed tests in the evening peak, the FCC convention being 19:00-23:00 local),
so a schedule may add ``extra_per_hour`` tests inside a daily window: the rate is then
``1/mean_gap_s`` outside it and ``1/mean_gap_s + extra_per_hour/3600`` inside, and the next time
is drawn from that piecewise-constant rate exactly (an exponential variate spent along the
cumulative rate), then clamped. Pure functions over plain values: the random generator is passed
in, and time is only what the caller gives.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: ndt7's clamp, as fractions of the mean gap (2160 s and 54000 s of a 6 h mean).
MIN_GAP_FRACTION = 0.1
MAX_GAP_FRACTION = 2.5
#: The evening peak: 19:00-23:00, the FCC/SamKnows convention (no Vietnamese definition was
#: found; methodology.md §4), in Vietnam's time zone (UTC+7, no daylight saving time).
PEAK_START = "19:00"
PEAK_END = "23:00"
PEAK_TIMEZONE = "Asia/Ho_Chi_Minh"

_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class PeakWindow(BaseModel):
    """A daily window, local time, with extra tests in it (``schedules.KIND.peak``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field(default=PEAK_START, description="HH:MM, local time of the window.")
    end: str = Field(
        default=PEAK_END, description="HH:MM; before start: the window spans midnight."
    )
    timezone: str = Field(default=PEAK_TIMEZONE, description="IANA time zone name.")
    extra_per_hour: float = Field(
        gt=0, le=60, description="Tests per hour added inside the window (a Poisson rate)."
    )

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hh_mm(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 19:00 as the base-60 number 1140.
            raise ValueError(f"{value} is a number: write the time in quotes, e.g. '19:00'")
        if not isinstance(value, str) or not _HH_MM.match(value):
            raise ValueError(f"{value!r} is not a time of day as HH:MM, e.g. '19:00'")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a known time zone: give an IANA name such as {PEAK_TIMEZONE}"
            ) from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> PeakWindow:
        if self.start == self.end:
            raise ValueError(f"peak start and end are both {self.start}: the window is empty")
        return self


@dataclass(frozen=True, slots=True)
class GapPlan:
    """What the next-time draw needs, with the defaults filled in."""

    mean_gap_s: float
    min_gap_s: float
    max_gap_s: float
    peak: PeakWindow | None = None

    @property
    def base_rate_per_s(self) -> float:
        return 1.0 / self.mean_gap_s

    @property
    def peak_rate_per_s(self) -> float:
        extra = self.peak.extra_per_hour / 3600.0 if self.peak else 0.0
        return self.base_rate_per_s + extra


def gap_plan(
    mean_gap_s: float,
    min_gap_s: float | None = None,
    max_gap_s: float | None = None,
    peak: PeakWindow | None = None,
) -> GapPlan:
    """The plan of a schedule; ValueError, naming the key, when the bounds do not fit.

    Defaults: ``max_gap_s`` 2.5 x ``mean_gap_s``; ``min_gap_s`` 0.1 x the shortest mean gap
    (inside the peak window when there is one, so the clamp does not eat the extra tests)."""
    plan = GapPlan(mean_gap_s, 0.0, 0.0, peak)
    shortest_mean_s = 1.0 / plan.peak_rate_per_s
    low = MIN_GAP_FRACTION * shortest_mean_s if min_gap_s is None else min_gap_s
    high = MAX_GAP_FRACTION * mean_gap_s if max_gap_s is None else max_gap_s
    if low > shortest_mean_s:
        what = "the mean gap inside the peak window" if peak else "mean_gap_s"
        raise ValueError(
            f"min_gap_s ({low:g}) is above {what} ({shortest_mean_s:g} s): the clamp would"
            " replace most random gaps by the minimum; lower min_gap_s"
        )
    if high < mean_gap_s:
        raise ValueError(
            f"max_gap_s ({high:g}) is below mean_gap_s ({mean_gap_s:g}): raise max_gap_s"
        )
    return GapPlan(mean_gap_s, low, high, peak)


def clamped_mean_s(mean_s: float, min_s: float, max_s: float) -> float:
    """The mean of an exponential gap of mean ``mean_s`` clamped to [min_s, max_s]:
    E[clamp(X)] = min + mean * (exp(-min/mean) - exp(-max/mean))."""
    return min_s + mean_s * (math.exp(-min_s / mean_s) - math.exp(-max_s / mean_s))


def in_peak(moment: datetime, peak: PeakWindow) -> bool:
    local = moment.astimezone(ZoneInfo(peak.timezone)).time()
    start, end = _time(peak.start), _time(peak.end)
    if start < end:
        return start <= local < end
    return local >= start or local < end  # the window spans midnight


def _time(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _next_boundary(moment: datetime, peak: PeakWindow) -> datetime:
    """The first window start or end after ``moment``."""
    zone = ZoneInfo(peak.timezone)
    today = moment.astimezone(zone).date()
    candidates = (
        datetime.combine(today + timedelta(days=day), _time(text), tzinfo=zone)
        for day in (0, 1)
        for text in (peak.start, peak.end)
    )
    return min(c for c in candidates if c > moment)


def next_fire(previous: datetime, plan: GapPlan, rng: random.Random) -> datetime:
    """The time of the next test after ``previous`` (timezone-aware): an exponential variate
    spent along the schedule's rate, then the gap clamped to [min_gap_s, max_gap_s]."""
    budget = rng.expovariate(1.0)  # in units of expected events
    moment = previous
    while True:
        if plan.peak is None:
            rate, until = plan.base_rate_per_s, None
        else:
            inside = in_peak(moment, plan.peak)
            rate = plan.peak_rate_per_s if inside else plan.base_rate_per_s
            until = _next_boundary(moment, plan.peak)
        span_s = (until - moment).total_seconds() if until else math.inf
        if rate * span_s >= budget:
            moment += timedelta(seconds=budget / rate)
            break
        budget -= rate * span_s
        assert until is not None
        moment = until
    gap_s = (moment - previous).total_seconds()
    return previous + timedelta(seconds=min(max(gap_s, plan.min_gap_s), plan.max_gap_s))


def peak_hours(first: date, last: date, peak: PeakWindow) -> float:
    """Hours of the peak window between the two local dates, both included (for planning)."""
    start, end = _time(peak.start), _time(peak.end)
    minutes = (end.hour * 60 + end.minute) - (start.hour * 60 + start.minute)
    per_day_h = (minutes % (24 * 60)) / 60
    return per_day_h * ((last - first).days + 1)
