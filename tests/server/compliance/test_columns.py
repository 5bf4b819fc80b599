"""The columnar per-line-month statistics (``rules.line_month_stats`` over ``columns``) against an
oracle written here: a plain per-sample Python loop, one sample at a time, straight from the
rules' words in docs/methodology.md ("Valid samples", "Statistics"). Random samples with ties,
None flags and speeds, every status and access, and times on the window's and the peak hours'
edges (19:00 and 23:00 Vietnam time, to the microsecond). Also: presence counts, and the engine's
report from columns equal to the report from sample objects.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from probes.models import Access, CrossTraffic, SkipReason, Status
from server.compliance import rules
from server.compliance.columns import columns_of, pack, unpack
from server.compliance.samples import samples_of
from server.compliance.stats import VIETNAM, parse_period

MONTH = parse_period("2026-11")
_US = timedelta(microseconds=1)

# -- The oracle ---------------------------------------------------------------------------------


def oracle_reason(s: rules.Sample, start: datetime, end: datetime) -> str | None:
    """The general filter, one sample at a time, in the documented order."""
    if not start <= s.measured_at < end:
        return "outside_window"
    if s.status is not Status.OK:
        return oracle_status(s)
    if s.clock_synced is False:
        return "clock_not_synced"
    if s.cpu_limited is True:
        return "cpu_limited"
    if s.host_limited is True:
        return "host_limited"
    if s.ran_alone is False:
        return "target_shared"
    return None


def oracle_status(s: rules.Sample) -> str:
    """A result that is not ok: failed, or not run, named by its status and skip reason (issue
    16: deferred on cross-traffic or a busy CPU, skipped on the data budget)."""
    if s.status is Status.FAILED:
        return "status_failed"
    known = {
        (Status.DEFERRED, SkipReason.CROSS_TRAFFIC): "deferred_cross_traffic",
        (Status.DEFERRED, SkipReason.CPU_BUSY): "deferred_cpu_busy",
        (Status.SKIPPED, SkipReason.DATA_BUDGET): "skipped_data_budget",
    }
    return known.get((s.status, s.skip_reason), s.status.value)


def oracle_figures(values: list[float], floors: Sequence[float]) -> rules.Figures:
    n = len(values)
    at_least = {}
    for floor in sorted(set(floors)):
        count = 0
        for v in values:
            if v >= floor:
                count += 1
        at_least[floor] = count
    if n == 0:
        return rules.Figures(0, None, None, None, at_least)
    ordered = sorted(values)
    middle = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    rank = min(n, max(1, math.floor(n * 5 / 100 + 0.5)))  # nearest rank, as InfluxDB's
    return rules.Figures(n, math.fsum(values) / n, middle, ordered[rank - 1], at_least)


def oracle_set(
    samples: Sequence[rules.Sample],
    start: datetime,
    end: datetime,
    own: list[tuple[str, Callable[[rules.Sample], bool]]],
    floors: Sequence[float],
) -> tuple[list[rules.Sample], rules.SampleSet]:
    """A set: the general filter, then ``own`` reasons (name, predicate saying "leave out")."""
    kept: list[rules.Sample] = []
    excluded: Counter[str] = Counter()
    for s in samples:
        reason = oracle_reason(s, start, end)
        if reason is None:
            for name, leave_out in own:
                if leave_out(s):
                    reason = name
                    break
        if reason is None:
            kept.append(s)
        else:
            excluded[reason] += 1
    downs = [s.download_mbps for s in kept if s.download_mbps is not None]
    ups = [s.upload_mbps for s in kept if s.upload_mbps is not None]
    unknown = 0
    for s in kept:
        if s.cross_traffic is CrossTraffic.UNKNOWN:
            unknown += 1
    return kept, rules.SampleSet(
        dict(sorted(excluded.items())),
        oracle_figures(downs, floors),
        oracle_figures(ups, floors),
        unknown,
    )


def oracle_stats(
    samples: Sequence[rules.Sample],
    start: datetime,
    end: datetime,
    accesses: frozenset[Access],
    floors: Sequence[float],
) -> rules.LineMonthStats:
    valid, general = oracle_set(samples, start, end, [], floors)
    no_down: tuple[str, Callable[[rules.Sample], bool]] = (
        "no_value",
        lambda s: s.download_mbps is None,
    )
    capable, capable_set = oracle_set(
        samples,
        start,
        end,
        [
            no_down,
            ("link_speed_unknown", lambda s: s.link_speed_mbps is None),
            ("link_below_2500_mbps", lambda s: (s.link_speed_mbps or 0) < 2500),
        ],
        floors,
    )
    _, access_set = oracle_set(
        samples,
        start,
        end,
        [("other_access", lambda s: s.access is not None and s.access not in accesses), no_down],
        floors,
    )
    with_download = [s for s in valid if s.download_mbps is not None]
    links = [s.link_speed_mbps for s in with_download if s.link_speed_mbps is not None]
    peak = []
    for s in capable:
        hour = s.measured_at.astimezone(VIETNAM).hour
        if 19 <= hour < 23:
            assert s.download_mbps is not None
            peak.append(s.download_mbps)
    return rules.LineMonthStats(
        total=sum(1 for s in samples if start <= s.measured_at < end),
        valid=general,
        with_download=len(with_download),
        max_link_mbps=max(links) if links else None,
        capable=capable_set,
        peak=oracle_figures(peak, floors),
        access=access_set,
    )


def oracle_answered(
    samples: Sequence[rules.Sample], start: datetime, end: datetime, access: Access | None = None
) -> rules.Answered:
    """Presence counts; ``access`` stands in for a sample that does not say its own."""
    excluded: Counter[str] = Counter()
    by_access: Counter[str] = Counter()
    for s in samples:
        if not start <= s.measured_at < end:
            excluded["outside_window"] += 1
        elif s.status is not Status.OK:
            excluded[oracle_status(s)] += 1
        elif s.clock_synced is False:
            excluded["clock_not_synced"] += 1
        else:
            tag = s.access or access
            by_access["" if tag is None else tag.value] += 1
    return rules.Answered(dict(sorted(excluded.items())), dict(sorted(by_access.items())))


# -- Random samples -----------------------------------------------------------------------------

#: Times on the edges that matter: the month's first and last µs and either side, and the peak
#: hours' edges on a few days; plus any µs of the month and a little beyond.
_EDGES = [
    MONTH.start - _US,
    MONTH.start,
    MONTH.end - _US,
    MONTH.end,
    *(
        datetime(2026, 11, day, hour, tzinfo=VIETNAM) + delta
        for day in (1, 15, 30)
        for hour in (19, 23)
        for delta in (-_US, timedelta(0), _US)
    ),
]
_times = st.sampled_from(_EDGES) | st.integers(-86_400_000_000, 31 * 86_400_000_000).map(
    lambda us: MONTH.start + us * _US
)
#: Ties: a handful of speeds drawn again and again (the 941 and 2500 thresholds among them).
_tied = st.sampled_from([0.0, 29.999, 30.0, 40.0, 300.0, 941.0, 1000.0, 2500.0, 2500.5])
_speeds = st.none() | _tied | st.floats(0, 1e5, allow_nan=False, allow_infinity=False)
_links = st.none() | st.sampled_from([100.0, 1000.0, 2499.99, 2500.0, 2500.0, 10000.0])
#: Mostly valid samples, so that every set (peak hours above all) holds some.
_bad_if_true = st.sampled_from([False, False, False, None, True])
_bad_if_false = st.sampled_from([True, True, True, None, False])
_samples = st.builds(
    rules.Sample,
    measured_at=_times.map(lambda at: at.astimezone(UTC)),
    download_mbps=_speeds,
    upload_mbps=_speeds,
    status=st.sampled_from([Status.OK] * 4 + list(Status)),
    cpu_limited=_bad_if_true,
    host_limited=_bad_if_true,
    ran_alone=_bad_if_false,
    clock_synced=_bad_if_false,
    link_speed_mbps=_links,
    access=st.none() | st.sampled_from(list(Access)),
    skip_reason=st.none() | st.sampled_from(list(SkipReason)),
    cross_traffic=st.none() | st.sampled_from(list(CrossTraffic)),
)
_windows = st.sampled_from(
    [MONTH, parse_period("2026-11-09"), parse_period("2026-11-01..2026-11-15")]
)
_accesses = st.frozensets(st.sampled_from(list(Access)))
_floors = st.lists(_tied | st.floats(0, 3000, allow_nan=False), max_size=3)


@settings(max_examples=300)
@given(st.lists(_samples, max_size=80), _windows, _accesses, _floors)
def test_columnar_stats_equal_the_per_sample_oracle(
    samples: list[rules.Sample],
    window: rules.Period,
    accesses: frozenset[Access],
    floors: list[float],
) -> None:
    got = rules.line_month_stats(columns_of(samples), window, accesses=accesses, floors=floors)
    assert got == oracle_stats(samples, window.start, window.end, accesses, floors)
    # The same filter as the per-sample one the alerts use.
    assert got.valid.exclusions == rules.valid_samples(samples, window).exclusions
    # Results in any order (the engine gets them by time; a caller may not).
    again = rules.line_month_stats(
        columns_of(samples[::-1]), window, accesses=accesses, floors=floors
    )
    assert again == got


_lines = st.lists(st.tuples(st.lists(_samples, max_size=30), _accesses, _floors), max_size=6)


@settings(max_examples=200)
@given(_lines, _windows)
def test_stats_of_several_lines_at_once_equal_each_line_alone(
    lines: list[tuple[list[rules.Sample], frozenset[Access], list[float]]],
    window: rules.Period,
) -> None:
    """What the engine does (every line of a month in one call, lines without a sample among
    them) gives each line the oracle's numbers: nothing of one line leaks into another."""
    batch = [rules.LineColumns(columns_of(s), a, tuple(f)) for s, a, f in lines]
    got = rules.lines_month_stats(batch, window)
    assert got == [oracle_stats(s, window.start, window.end, a, f) for s, a, f in lines]


@given(st.lists(_samples, max_size=80), _windows)
def test_presence_counts_equal_the_per_sample_oracle(
    samples: list[rules.Sample], window: rules.Period
) -> None:
    counted = rules.answered(columns_of(samples), window)
    assert counted == oracle_answered(samples, window.start, window.end)
    half = len(samples) // 2
    split = rules.answered(columns_of(samples[:half]), window) + rules.answered(
        columns_of(samples[half:]), window
    )
    assert split == counted
    thirds = [columns_of(samples[n::3]) for n in range(3)]
    assert rules.Answered.total(rules.answered(t, window) for t in thirds) == counted


@given(
    st.lists(
        st.tuples(st.lists(_samples, max_size=30), st.none() | st.sampled_from(list(Access))),
        max_size=6,
    ),
    _windows,
)
def test_presence_counts_of_several_lines_at_once_equal_each_line_alone(
    lines: list[tuple[list[rules.Sample], Access | None]], window: rules.Period
) -> None:
    got = rules.answered_lines([(columns_of(s), a) for s, a in lines], window)
    assert got == [oracle_answered(s, window.start, window.end, access=a) for s, a in lines]


@given(st.lists(_samples, max_size=40))
def test_columns_pack_and_read_back(samples: list[rules.Sample]) -> None:
    assert samples_of(unpack(pack(columns_of(samples)))) == samples
