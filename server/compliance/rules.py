"""The compliance rules: pure functions from plain samples to a ``Verdict`` record.

Each rule has an id, a Vietnamese and an English label and a source, cited in its docstring and
carried in every verdict so users see it. Nothing here does I/O or reads the clock: the caller
passes the window and, where time matters, ``now``. docs/methodology.md states every rule in words.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from probes.models import Access, CrossTraffic, SkipReason, Status
from server.compliance.columns import (
    ACCESSES,
    CROSS_TRAFFIC_UNKNOWN,
    FLAG,
    OK,
    SKIP_REASONS,
    STATUSES,
    Mask,
    Micros,
    SampleColumns,
    Speeds,
    as_columns,
    columns_of,
)
from server.compliance.stats import (
    PEAK_END_HOUR,
    PEAK_START_HOUR,
    VIETNAM,
    Aggregate,
    Deadline,
    Period,
    mean,
    median,
    percentile,
    vietnam_time,
)

# -- Thresholds, each with its source ------------------------------------------------------------

#: Mean download goodput that shows a line above 1 Gb/s: 1000 Mb/s × η, η = 1448/1538 ≈ 0.941, the
#: TCP/IPv4 payload share of an Ethernet frame on the wire (shared methodology §6, adopt item 4b).
GIGABIT_MEAN_MBPS = 941.0
#: A port must negotiate at least this to carry more than 1 Gb/s (2.5GBASE-T; adopt item 4a).
GIGABIT_LINK_MBPS = 2500.0
#: Floor when the operator declares no minimum: 30 % of 1 Gb/s, QCVN 126:2021's 30/100 ratio
#: borrowed by analogy (adopt item 4c).
GIGABIT_DEFAULT_FLOOR_MBPS = 300.0
#: VNNIC publishes a commune's figure only from 300 samples a month (Cần Thơ DOST 1004/SKHCN, 2025).
VNNIC_MIN_SAMPLES = 300
#: QCVN 34:2022 §2.1: at least 1,000 samples per direction (secondary source).
QCVN34_MIN_SAMPLES = 1000
#: QCVN 34:2022 §2.1: Pd ≥ 0.8·Vd and Pu ≥ 0.8·Vu (secondary source).
QCVN34_RATIO = 0.8
#: Share of samples that must reach a floor: QCVN 81:2019 §2.1.5 and QCVN 126:2021 §2.1.5.2.
FLOOR_SHARE_PCT = 95
#: 4G floor, draft Amendment 1:2023 to QCVN 81:2019 and the 1110/QĐ-BTTTT target.
LTE_FLOOR_MBPS = 40.0
#: 5G, QCVN 126:2021 §2.1.5.2.
NR_MEAN_DOWN_MBPS, NR_MEAN_UP_MBPS, NR_FLOOR_MBPS = 100.0, 30.0, 30.0
#: IPv6 readiness: hamletnet's choices (no regulation sets them): at least 30 results in the
#: period, and the same 95 % share the QCVN floors use.
IPV6_MIN_RESULTS = 30
IPV6_READY_SHARE_PCT = 95


class VerdictKind(StrEnum):
    MET = "met"
    FAIL = "fail"
    INSUFFICIENT_DATA = "insufficient_data"
    NOT_VERIFIABLE = "not_verifiable"
    NOT_APPLICABLE = "not_applicable"


#: What the office's page prints for each verdict.
VERDICT_LABELS_VI: Mapping[VerdictKind, str] = {
    VerdictKind.MET: "Đạt",
    VerdictKind.FAIL: "Không đạt",
    VerdictKind.INSUFFICIENT_DATA: "Chưa đủ mẫu",
    VerdictKind.NOT_VERIFIABLE: "Không kiểm chứng được",
    VerdictKind.NOT_APPLICABLE: "Không áp dụng",
}


class Exclusion(StrEnum):
    """Why a sample was left out. A sample is counted once, under the first reason in this order
    (a result's status gives one of the second group's reasons: it failed, or the probe did not
    run the test and says why)."""

    OUTSIDE_WINDOW = "outside_window"
    FAILED = "status_failed"
    DEFERRED_CROSS_TRAFFIC = "deferred_cross_traffic"
    DEFERRED_CPU_BUSY = "deferred_cpu_busy"
    SKIPPED_DATA_BUDGET = "skipped_data_budget"
    #: Deferred or skipped without a reason the server knows (the probe's models require one).
    DEFERRED = "deferred"
    SKIPPED = "skipped"
    CLOCK_NOT_SYNCED = "clock_not_synced"
    CPU_LIMITED = "cpu_limited"
    HOST_LIMITED = "host_limited"
    NOT_ALONE = "target_shared"
    OTHER_ACCESS = "other_access"
    NO_VALUE = "no_value"
    LINK_UNKNOWN = "link_speed_unknown"
    LINK_BELOW_2500 = "link_below_2500_mbps"


# -- Inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One bandwidth (or other) result, as the rules need it. ``None`` flags mean the result does
    not say (an older agent or engine): such a sample is kept, never excluded on a guess."""

    measured_at: datetime
    download_mbps: float | None = None
    upload_mbps: float | None = None
    status: Status = Status.OK
    cpu_limited: bool | None = None
    host_limited: bool | None = None
    ran_alone: bool | None = None
    clock_synced: bool | None = None
    link_speed_mbps: float | None = None
    access: Access | None = None
    #: Why a deferred or skipped test did not run (None for a test that ran).
    skip_reason: SkipReason | None = None
    #: What the probe saw of the household's traffic before the test; ``unknown`` when it cannot
    #: see it (not inline): such a sample counts, and each verdict says how many there were.
    cross_traffic: CrossTraffic | None = None


@dataclass(frozen=True, slots=True)
class Ipv6Sample:
    measured_at: datetime
    ipv6_ready: bool | None
    ipv6_only_ready: bool | None
    status: Status = Status.OK
    clock_synced: bool | None = None


@dataclass(frozen=True, slots=True)
class Line:
    """A probe's line: where it is, whose it is, and what the operator declared for it."""

    hamlet: str
    isp: str
    access: Access
    declared_down_mbps: float | None = None
    declared_up_mbps: float | None = None
    declared_min_down_mbps: float | None = None
    plan_name: str | None = None


@dataclass(frozen=True, slots=True)
class HandEntry:
    """A figure entered by hand, with who, when and the document it comes from. ``value`` is in
    the indicator's unit; ``achieved`` answers a qualitative indicator (e.g. AI in use)."""

    entered_by: str
    entered_at: datetime
    source_document: str
    as_of: date
    value: float | None = None
    achieved: bool | None = None


@dataclass(frozen=True, slots=True)
class Survey:
    """A hand-entered field survey: whether a service is present in a hamlet."""

    present: bool
    surveyed_by: str
    surveyed_at: date
    source_document: str


@dataclass(frozen=True, slots=True)
class Target:
    """An indicator's target, e.g. ``> 95 %`` or ``>= 100 %``."""

    op: Literal[">", ">="]
    value: float
    unit: str

    def meets(self, observed: float) -> bool:
        return observed > self.value if self.op == ">" else observed >= self.value


# -- The verdict record -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """One condition of a rule: what was observed against what was required."""

    name: str
    label_vi: str
    label_en: str
    observed: float | None
    required: float
    unit: str
    passed: bool | None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class SampleCount:
    """A count of valid samples against a published minimum (VNNIC's 300, QCVN 34's 1,000)."""

    direction: Literal["download", "upload", "any"]
    n: int
    minimum: int
    source: str

    @property
    def reached(self) -> bool:
        return self.n >= self.minimum


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    label_vi: str
    label_en: str
    source: str


@dataclass(frozen=True)
class Verdict:
    """What one rule says about one line (or hamlet) over one window, with the numbers behind it."""

    rule: Rule
    verdict: VerdictKind
    reason_vi: str
    reason_en: str
    window: Period
    n: int
    download: Aggregate | None = None
    upload: Aggregate | None = None
    peak_download: Aggregate | None = None
    checks: tuple[Check, ...] = ()
    exclusions: Mapping[str, int] = field(default_factory=dict)
    counts: tuple[SampleCount, ...] = ()
    shares_pct: Mapping[str, float] = field(default_factory=dict)
    evidence: HandEntry | Survey | None = None
    #: Of the samples the verdict rests on, how many came from a probe that could not see the
    #: household's traffic (``cross_traffic: unknown``); None for verdicts not over samples.
    cross_traffic_unknown: int | None = None

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def source(self) -> str:
        return self.rule.source

    @property
    def thresholds(self) -> dict[str, float]:
        """The thresholds this verdict used, by check name."""
        return {c.name: c.required for c in self.checks}


# -- The rules' identities ----------------------------------------------------------------------

_PLAN = "Kế hoạch phát triển hạ tầng số xã Hiệp Lực 2026–2030, Phụ lục"

FIXED_GIGABIT = Rule(
    "fixed-gigabit",
    "Băng rộng cố định trên 1 Gb/s (đường dây đầu đo)",
    "Fixed broadband above 1 Gb/s (probe line)",
    f"{_PLAN} I.1.2, II.1.1; hamletnet rule modelled on QCVN 81:2019 §2.1.5 and QCVN 126:2021"
    " §2.1.5.2; 941 Mb/s = 1 Gb/s × 1448/1538; 300 samples: VNNIC's publication minimum",
)
QCVN34_DECLARED = Rule(
    "qcvn34-declared-speed",
    "Tốc độ tải trung bình so với tốc độ công bố (Pd ≥ 0,8·Vd, Pu ≥ 0,8·Vu)",
    "Average data rate against the declared speed (Pd ≥ 0.8·Vd, Pu ≥ 0.8·Vu)",
    "modelled on QCVN 34:2022/BTTTT §2.1 (secondary source; Circular 20/2022/TT-BTTTT); Pd as"
    " QCVN 34:2019 §2.1.2.1 defines it",
)
MOBILE_4G = Rule(
    "mobile-4g",
    "4G: ≥ 95 % mẫu tải xuống ≥ 40 Mb/s (dự thảo/chỉ tiêu)",
    "4G: ≥ 95 % of samples download ≥ 40 Mb/s (draft/target)",
    "draft/target: draft Amendment 1:2023 to QCVN 81:2019/BTTTT; Decision 1110/QĐ-BTTTT (2024)",
)
MOBILE_5G = Rule(
    "mobile-5g",
    "5G: trung bình ≥ 100 Mb/s xuống, ≥ 30 Mb/s lên, ≥ 95 % mẫu ≥ 30 Mb/s",
    "5G: mean ≥ 100 Mb/s down, ≥ 30 Mb/s up, ≥ 95 % of samples ≥ 30 Mb/s",
    "QCVN 126:2021/BTTTT §2.1.5.2 (Circular 07/2021/TT-BTTTT)",
)
PRESENCE_FIBRE = Rule(
    "presence-fibre",
    "Thôn có băng rộng cố định (cáp quang)",
    "Hamlet has fixed broadband (fibre)",
    f"{_PLAN} I.1.4; hamletnet rule: a valid result from a fibre probe in the period, or a survey",
)
PRESENCE_MOBILE = Rule(
    "presence-mobile",
    "Thôn có sóng di động băng rộng",
    "Hamlet has mobile broadband",
    f"{_PLAN} I.1.3; hamletnet rule: a valid result from a 4G/5G probe in the period, or a survey",
)
PRESENCE_5G = Rule(
    "presence-5g",
    "Thôn có sóng 5G",
    "Hamlet has 5G",
    f"{_PLAN} I.1.1, II.1.2; hamletnet rule: a valid result from a 5G probe in the period, or a"
    " survey; probes only spot-check population coverage",
)
IPV6_READY = Rule(
    "ipv6-ready",
    "Đường dây sẵn sàng IPv6",
    "Line is IPv6-ready",
    f"{_PLAN} II.1.3; readiness scored as test-ipv6.com does (transition score); hamletnet rule:"
    " ≥ 95 % of ≥ 30 results in the period",
)
IPV6_ONLY_READY = Rule(
    "ipv6-only-ready",
    "Đường dây sẵn sàng IPv6-only",
    "Line is IPv6-only ready",
    f"{_PLAN} II.1.3; strict score 10 in an IPv6-only run, NAT64 via RFC 8781 PREF64 or RFC 7050;"
    " hamletnet rule: ≥ 95 % of ≥ 30 results in the period",
)
IPV6_USAGE = Rule(
    "ipv6-usage",
    "Tỷ lệ sử dụng IPv6 (không đo được bằng đầu đo)",
    "IPv6 usage share (not measurable by probes)",
    f"{_PLAN} II.1.3; VNNIC quotes APNIC's per-economy measurement of user traffic, which a probe"
    " cannot make",
)
HAND_REPORTED = Rule(
    "hand-reported",
    "Số liệu báo cáo thủ công",
    "Figure reported by hand",
    f"{_PLAN} I.2, II.2; entered with who, when and the source document",
)

RULES: Mapping[str, Rule] = {
    r.id: r
    for r in (
        FIXED_GIGABIT,
        QCVN34_DECLARED,
        MOBILE_4G,
        MOBILE_5G,
        PRESENCE_FIBRE,
        PRESENCE_MOBILE,
        PRESENCE_5G,
        IPV6_READY,
        IPV6_ONLY_READY,
        IPV6_USAGE,
        HAND_REPORTED,
    )
}

_VNNIC_SOURCE = "VNNIC i-SPEED commune minimum (Cần Thơ DOST 1004/SKHCN-CNTTVTBC, 2025)"
_QCVN34_SOURCE = "QCVN 34:2022 §2.1, per direction (secondary source)"


# -- The valid-sample filter --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filtered:
    valid: tuple[Sample, ...]
    exclusions: dict[str, int]


#: The exclusion of a result that did not run, by its status and skip reason (issue 16: the
#: agent defers a test on a busy line or CPU and skips one past the data budget).
_NOT_RUN: Mapping[tuple[Status, SkipReason | None], Exclusion] = {
    (Status.DEFERRED, SkipReason.CROSS_TRAFFIC): Exclusion.DEFERRED_CROSS_TRAFFIC,
    (Status.DEFERRED, SkipReason.CPU_BUSY): Exclusion.DEFERRED_CPU_BUSY,
    (Status.SKIPPED, SkipReason.DATA_BUDGET): Exclusion.SKIPPED_DATA_BUDGET,
}


def status_exclusion(status: Status, skip_reason: SkipReason | None) -> Exclusion | None:
    """Why a result of ``status`` is left out: failed, or not run (deferred or skipped, by
    reason); None for ok."""
    if status is Status.OK:
        return None
    if status is Status.FAILED:
        return Exclusion.FAILED
    fallback = Exclusion.DEFERRED if status is Status.DEFERRED else Exclusion.SKIPPED
    return _NOT_RUN.get((status, skip_reason), fallback)


def _status_steps(c: SampleColumns) -> list[tuple[Exclusion, Mask]]:
    """``status_exclusion`` over columns: one mask per reason, each sample in at most one. Only
    the (status, skip reason) pairs the columns hold are looked at."""
    not_ok = c.status != OK
    if not not_ok.any():
        return []
    pair = c.status.astype(np.int16) * len(SKIP_REASONS) + c.skip_reason
    steps: dict[Exclusion, Mask] = {}
    for code in np.unique(pair[not_ok]).tolist():
        status, reason = divmod(code, len(SKIP_REASONS))
        excl = status_exclusion(STATUSES[status], SKIP_REASONS[reason])
        assert excl is not None
        hit = pair == code
        steps[excl] = steps[excl] | hit if excl in steps else hit
    return list(steps.items())  # disjoint masks: their order changes no count


def _exclusion(sample: Sample, window: Period) -> Exclusion | None:
    if not window.contains(sample.measured_at):
        return Exclusion.OUTSIDE_WINDOW
    if (not_run := status_exclusion(sample.status, sample.skip_reason)) is not None:
        return not_run
    if sample.clock_synced is False:
        return Exclusion.CLOCK_NOT_SYNCED
    if sample.cpu_limited:
        return Exclusion.CPU_LIMITED
    if sample.host_limited:
        return Exclusion.HOST_LIMITED
    if sample.ran_alone is False:
        return Exclusion.NOT_ALONE
    return None


def valid_samples(
    samples: Iterable[Sample],
    window: Period,
    *,
    keep: Callable[[Sample], Exclusion | None] = lambda _: None,
) -> Filtered:
    """The samples that count, and how many were left out by reason.

    Valid: inside the window, status ok, not run on an unsynchronised clock (where the result
    says so), not CPU-limited (the probe, not the line, may have been the bottleneck), not
    host-limited (TCP_INFO rwnd+sndbuf limited > 10 % of the test; shared methodology adopt item
    2), and run alone (the target's slot coordinator saw no other test at the same time). ``keep``
    adds a rule's own reasons (missing value, other access, slow link), checked after these.
    Per sample, for callers holding a few (the alerts); ``line_month_stats`` applies the same
    filter to a month's columns.
    """
    valid: list[Sample] = []
    excluded: Counter[str] = Counter()
    for sample in samples:
        reason = _exclusion(sample, window) or keep(sample)
        if reason is None:
            valid.append(sample)
        else:
            excluded[reason.value] += 1
    return Filtered(tuple(valid), dict(sorted(excluded.items())))


def _at_least(observed: float | None, required: float) -> bool | None:
    return None if observed is None else observed >= required


def _samples_check(n: int, minimum: int, source: str) -> Check:
    return Check(
        "samples",
        "Số mẫu hợp lệ",
        "Valid samples",
        float(n),
        float(minimum),
        "samples",
        n >= minimum,
        source,
    )


def _fmt_mbps(value: float) -> str:
    return f"{value:g} Mb/s"


# -- Fixed broadband ----------------------------------------------------------------------------


# What the bandwidth rules read of one line-month, computed once from its samples
# (``line_month_stats``). The sets, each named for the rule that reads it (docs/methodology.md,
# "Valid samples"): ``valid``, the general filter, QCVN 34's Pd/Pu; ``capable``, valid with a
# download on a port of at least 2.5 Gb/s (fixed-gigabit); ``peak``, capable downloads started
# 19:00-23:00 Vietnam time; ``access``, valid, of the rule's access (4G/5G), with a download.


@dataclass(frozen=True, slots=True)
class Figures:
    """One direction's per-sample speeds over one set: n, mean (``math.fsum`` ÷ n), median (the
    mean of the two middle values for an even n), p5 (nearest rank, ``stats.nearest_rank``) and,
    for each floor asked for, how many values are at or above it. None where n is 0."""

    n: int
    mean: float | None
    median: float | None
    p5: float | None
    at_least: Mapping[float, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SampleSet:
    """A set of samples: why the others were left out (reason → count, sorted), its figures per
    direction (a sample without a value in a direction is not among that direction's n), and
    how many of its samples say ``cross_traffic: unknown`` (counted, and shown)."""

    exclusions: Mapping[str, int]
    download: Figures
    upload: Figures
    cross_traffic_unknown: int = 0


@dataclass(frozen=True, slots=True)
class LineMonthStats:
    """What the bandwidth rules read of one line over one window (a month, or part of one).

    ``with_download`` counts valid samples with a download (sample sufficiency, and whether the
    fixed-gigabit link check applies); ``max_link_mbps`` is the fastest port among them;
    ``total`` counts every result in the window."""

    total: int
    valid: SampleSet
    with_download: int
    max_link_mbps: float | None
    capable: SampleSet
    peak: Figures
    access: SampleSet


def figures(values: Speeds, floors: Iterable[float] = ()) -> Figures:
    """n, mean, median, p5 and at-or-above counts of one direction's per-sample speeds.

    numpy sorts (stably, so equal values keep their order as ``sorted`` keeps it); the figures
    themselves come from ``stats``' functions over the sorted list (sorting it again there is one
    linear pass), so they are the very numbers ``stats.summarize`` gives; a count at or above a
    floor is where the floor would go in the sorted list."""
    ordered = np.sort(values, kind="stable").tolist()
    n = len(ordered)
    return Figures(
        n=n,
        mean=mean(ordered),
        median=median(ordered),
        p5=percentile(ordered, 5),
        at_least={floor: n - bisect.bisect_left(ordered, floor) for floor in sorted(set(floors))},
    )


def _exclude(
    kept: Mask, steps: Iterable[tuple[Exclusion, Mask]], excluded: Mapping[str, int]
) -> tuple[Mask, dict[str, int]]:
    """Apply ``steps`` in order to the samples still ``kept``: each sample is counted under the
    first reason whose mask holds it. Returns the samples left and every count, sorted."""
    kept, (counts,) = _exclude_lines(kept, steps, [excluded], np.zeros(len(kept), np.intp))
    return kept, counts


def _exclude_lines(
    kept: Mask,
    steps: Iterable[tuple[Exclusion, Mask]],
    excluded: Sequence[Mapping[str, int]],
    owner: npt.NDArray[np.intp],
) -> tuple[Mask, list[dict[str, int]]]:
    """``_exclude`` over the samples of several lines (``owner``: each sample's line, an index
    into ``excluded``, the counts each line starts from): counts per line. Each sample's first
    reason is found in one pass over the steps (a later step's mark overwritten by an earlier
    one's), then counted by line and reason in one ``bincount``."""
    listed = list(steps)
    first = np.full(len(kept), len(listed), dtype=np.intp)  # len(listed): no reason
    for code in reversed(range(len(listed))):
        first[listed[code][1]] = code
    gone = kept & (first < len(listed))
    table = np.bincount(
        owner[gone] * len(listed) + first[gone], minlength=len(excluded) * len(listed)
    ).reshape(len(excluded), len(listed))
    counts = [dict(e) for e in excluded]
    for line, code in zip(*(axis.tolist() for axis in np.nonzero(table)), strict=True):
        reason = listed[code][0].value
        counts[line][reason] = counts[line].get(reason, 0) + int(table[line, code])
    return kept & (first == len(listed)), [dict(sorted(c.items())) for c in counts]


def _general_steps(c: SampleColumns, inside: Mask) -> list[tuple[Exclusion, Mask]]:
    """The general filter of ``valid_samples`` (same reasons, same order), over columns;
    ``inside`` says which samples are in the window."""
    return [
        (Exclusion.OUTSIDE_WINDOW, ~inside),
        *_status_steps(c),
        (Exclusion.CLOCK_NOT_SYNCED, c.clock_synced == FLAG[False]),
        (Exclusion.CPU_LIMITED, c.cpu_limited == FLAG[True]),
        (Exclusion.HOST_LIMITED, c.host_limited == FLAG[True]),
        (Exclusion.NOT_ALONE, c.ran_alone == FLAG[False]),
    ]


def _peak_hours(at_us: Micros) -> Mask:
    """Which of ``at_us`` (µs since the epoch) fall 19:00 ≤ Vietnam time < 23:00
    (``stats.is_peak_hour``; Vietnam is a whole number of hours from UTC)."""
    hour = (at_us // _HOUR_US + _VIETNAM_HOURS) % 24
    return (hour >= PEAK_START_HOUR) & (hour < PEAK_END_HOUR)


_HOUR_US = 3_600_000_000
_VIETNAM_OFFSET = VIETNAM.utcoffset(None)
assert _VIETNAM_OFFSET is not None and _VIETNAM_OFFSET % timedelta(hours=1) == timedelta(0)
_VIETNAM_HOURS = _VIETNAM_OFFSET // timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class LineColumns:
    """One line's samples for ``lines_month_stats``: its columns, the access tags its mobile rule
    counts and the speeds whose at-or-above counts its rules read (``line_floors``)."""

    columns: SampleColumns
    accesses: frozenset[Access]
    floors: tuple[float, ...] = ()


def line_month_stats(
    columns: SampleColumns,
    window: Period,
    *,
    accesses: Iterable[Access | str],
    floors: Sequence[float] = (),
) -> LineMonthStats:
    """What the bandwidth rules read of one line over ``window``, from its samples as columns
    (``columns.columns_of`` turns samples into them), in one place whichever store they came
    from: ``lines_month_stats`` of this line alone."""
    line = LineColumns(columns, frozenset(Access(a) for a in accesses), tuple(floors))
    (stats,) = lines_month_stats([line], window)
    return stats


def lines_month_stats(lines: Sequence[LineColumns], window: Period) -> list[LineMonthStats]:
    """What the bandwidth rules read of each of ``lines`` over ``window``. Every set is filtered
    as ``valid_samples`` filters (a sample counted once, under its first reason).

    The lines' samples are read as one set of columns: each filter is one numpy operation over
    all of them and counts per line are ``bincount``s by line; a line's figures over a set are
    computed once per distinct set of its samples (``_BySpeed``). A line's numbers do not
    depend on the other lines in the call (a test compares them with the line alone)."""
    if not lines:
        return []
    c = SampleColumns.concatenate([line.columns for line in lines])
    sizes = [len(line.columns) for line in lines]
    owner = np.repeat(np.arange(len(lines)), sizes)
    wanted = np.zeros((len(lines), len(ACCESSES)), dtype=np.bool_)
    for n, line in enumerate(lines):
        wanted[n, [ACCESSES.index(a) for a in line.accesses]] = True
    floors = [line.floors for line in lines]
    no_download, no_upload = np.isnan(c.download_mbps), np.isnan(c.upload_mbps)
    speeds = {
        True: _BySpeed(c.download_mbps, sizes, floors),
        False: _BySpeed(c.upload_mbps, sizes, floors),
    }

    def direction(down: bool, which: Mask) -> list[Figures]:
        return speeds[down].figures(which)

    def per_line(which: Mask) -> list[int]:
        return np.bincount(owner[which], minlength=len(lines)).tolist()

    unknown = c.cross_traffic == CROSS_TRAFFIC_UNKNOWN

    def sample_sets(kept: Mask, exclusions: list[dict[str, int]]) -> list[SampleSet]:
        return [
            SampleSet(*sets)
            for sets in zip(
                exclusions,
                direction(True, kept & ~no_download),
                direction(False, kept & ~no_upload),
                per_line(kept & unknown),
                strict=True,
            )
        ]

    inside = c.inside(window.start, window.end)
    every = np.ones(len(c), dtype=np.bool_)
    valid, general = _exclude_lines(every, _general_steps(c, inside), [{} for _ in lines], owner)
    with_download = valid & ~no_download
    capable, capable_excl = _exclude_lines(
        valid,
        [
            (Exclusion.NO_VALUE, no_download),
            (Exclusion.LINK_UNKNOWN, np.isnan(c.link_speed_mbps)),
            (Exclusion.LINK_BELOW_2500, c.link_speed_mbps < GIGABIT_LINK_MBPS),
        ],
        general,
        owner,
    )
    of_access, access_excl = _exclude_lines(
        valid,
        [
            (Exclusion.OTHER_ACCESS, (c.access != 0) & ~wanted[owner, c.access]),
            (Exclusion.NO_VALUE, no_download),
        ],
        general,
        owner,
    )
    linked = with_download & ~np.isnan(c.link_speed_mbps)
    fastest = np.full(len(lines), -np.inf)
    np.maximum.at(fastest, owner[linked], c.link_speed_mbps[linked])
    peak = capable & _peak_hours(c.measured_at_us)
    return [
        LineMonthStats(
            total=total,
            valid=valid_set,
            with_download=downloads,
            max_link_mbps=float(link) if np.isfinite(link) else None,
            capable=capable_set,
            peak=peak_figures,
            access=access_set,
        )
        for total, valid_set, downloads, link, capable_set, peak_figures, access_set in zip(
            per_line(inside),
            sample_sets(valid, general),
            per_line(with_download),
            fastest.tolist(),
            sample_sets(capable, capable_excl),
            direction(True, peak),
            sample_sets(of_access, access_excl),
            strict=True,
        )
    ]


class _BySpeed:
    """One direction's speeds of several lines (their samples one after another, ``sizes`` of
    them each). A line's figures over a set are computed once however many sets hold the same
    samples of it (every port at 2.5 Gb/s, one access): the set's samples of the line are
    sorted then, and only then."""

    def __init__(
        self, values: Speeds, sizes: Sequence[int], floors: Sequence[Iterable[float]]
    ) -> None:
        self._values = values
        self._bounds = list(itertools.pairwise(np.cumsum([0, *sizes]).tolist()))
        self._floors = floors
        self._known: list[dict[bytes, Figures]] = [{} for _ in sizes]

    def figures(self, which: Mask) -> list[Figures]:
        """Each line's figures over the samples ``which`` holds."""
        found = []
        for (start, end), known, floors in zip(
            self._bounds, self._known, self._floors, strict=True
        ):
            mine = which[start:end]
            key = mine.tobytes()
            if key not in known:
                known[key] = figures(self._values[start:end][mine], floors)
            found.append(known[key])
        return found


def gigabit_floor(line: Line) -> tuple[float, str]:
    """The fixed-gigabit peak-hour floor of ``line`` and where it comes from (adopt item 4c)."""
    if line.declared_min_down_mbps is not None:
        return line.declared_min_down_mbps, "declared minimum (Vdmin) of the operator"
    return GIGABIT_DEFAULT_FLOOR_MBPS, "30 % of 1 Gb/s, by analogy to QCVN 126:2021 (30/100 Mb/s)"


def line_floors(line: Line) -> tuple[frozenset[Access], tuple[float, ...]]:
    """The access tags and floors ``line_month_stats`` needs for the rules judged on ``line``."""
    if line.access is Access.FIBER:
        return frozenset({Access.FIBER}), (gigabit_floor(line)[0],)
    if line.access is Access.LTE:
        return frozenset({Access.LTE}), (LTE_FLOOR_MBPS,)
    return frozenset({Access.NR}), (NR_FLOOR_MBPS,)


def line_columns(samples: Sequence[Sample] | SampleColumns, line: Line) -> LineColumns:
    """``line``'s samples with the accesses and floors of the rules judged on it, for
    ``lines_month_stats``. Samples are turned into columns first (``columns.as_columns``)."""
    accesses, floors = line_floors(line)
    return LineColumns(as_columns(samples), accesses, floors)


def stats_for_line(
    samples: Sequence[Sample] | SampleColumns, line: Line, window: Period
) -> LineMonthStats:
    """What every ``*_stats`` rule of ``line`` reads over ``window`` (``lines_month_stats`` of
    ``line_columns``; the engine computes it once per line-month, for all lines at once)."""
    (stats,) = lines_month_stats([line_columns(samples, line)], window)
    return stats


def _aggregate(fig: Figures) -> Aggregate:
    return Aggregate(fig.n, fig.mean, fig.median, fig.p5)


def _share(fig: Figures, floor: float) -> float | None:
    return 100.0 * fig.at_least[floor] / fig.n if fig.n else None


def _floor_reached(fig: Figures, floor: float) -> bool | None:
    """≥ 95 % of the values reach ``floor``, in integers so no rounding decides a tie."""
    if not fig.n:
        return None
    return 100 * fig.at_least[floor] >= FLOOR_SHARE_PCT * fig.n


def fixed_gigabit(samples: Sequence[Sample], line: Line, window: Period) -> Verdict:
    """``fixed_gigabit_stats`` over ``samples`` (the reference path: ``line_month_stats``)."""
    return fixed_gigabit_stats(stats_for_line(samples, line, window), line, window)


def fixed_gigabit_stats(stats: LineMonthStats, line: Line, window: Period) -> Verdict:
    """Fixed broadband "> 1 Gb/s" for one probe line over one month (rule ``fixed-gigabit``).

    hamletnet's rule for the plan's appendix I.1.2 and II.1.1, modelled on QCVN 81:2019 §2.1.5
    and QCVN 126:2021 §2.1.5.2 (a mean plus a 95 % floor). All must hold (shared methodology,
    adopt item 4):

    (a) link: samples count only from a port negotiated at ≥ 2.5 Gb/s; if none was, the verdict
        is ``not_verifiable`` ("cổng 1 GbE"), never a fail, since 1 GbE caps goodput near 941;
    (b) mean download goodput ≥ 941 Mb/s (1 Gb/s × 1448/1538);
    (c) ≥ 95 % of peak-hour samples (19:00–23:00 Vietnam time) reach the floor: the operator's
        declared minimum, else 300 Mb/s (QCVN 126's 30/100 ratio, by analogy);
    (d) n ≥ 300 valid samples (VNNIC's publication minimum), else ``insufficient_data``.
    """
    if line.access is not Access.FIBER:
        return _not_applicable(FIXED_GIGABIT, window, f"đường dây {line.access.value}")
    floor, floor_note = gigabit_floor(line)
    down, peak = stats.capable.download, stats.peak
    link_check = Check(
        "link",
        "Tốc độ cổng",
        "Port speed",
        stats.max_link_mbps,
        GIGABIT_LINK_MBPS,
        "Mb/s",
        bool(down.n) if stats.with_download else None,
        "≥ 2.5 GbE probe port and ONT port negotiated above 1 Gb/s",
    )
    checks = (
        link_check,
        Check(
            "mean_download",
            "Tốc độ tải xuống trung bình",
            "Mean download",
            down.mean,
            GIGABIT_MEAN_MBPS,
            "Mb/s",
            _at_least(down.mean, GIGABIT_MEAN_MBPS),
            "1 Gb/s × 1448/1538 (TCP/IPv4 goodput share of an Ethernet frame)",
        ),
        Check(
            "peak_floor",
            "Mẫu giờ cao điểm đạt ngưỡng sàn",
            "Peak-hour samples at or above the floor",
            _share(peak, floor),
            float(FLOOR_SHARE_PCT),
            "%",
            _floor_reached(peak, floor),
            f"floor {_fmt_mbps(floor)}: {floor_note}; peak 19:00–23:00 Vietnam time",
        ),
        _samples_check(down.n, VNNIC_MIN_SAMPLES, _VNNIC_SOURCE),
    )
    record = _verdict_factory(
        FIXED_GIGABIT,
        window,
        n=down.n,
        download=_aggregate(down),
        upload=_aggregate(stats.capable.upload),
        peak_download=_aggregate(peak),
        checks=checks,
        exclusions=stats.capable.exclusions,
        counts=_counts("download", down.n),
        cross_traffic_unknown=stats.capable.cross_traffic_unknown,
    )
    if stats.with_download and not down.n:
        fastest = stats.max_link_mbps
        if fastest is not None and fastest <= 1000:
            port_vi, port_en = "cổng 1 GbE", "1 GbE port"
        elif fastest is not None:
            port_vi, port_en = f"cổng {fastest:g} Mb/s", f"{fastest:g} Mb/s port"
        else:
            port_vi, port_en = "không rõ tốc độ cổng", "port speed not reported"
        return record(
            VerdictKind.NOT_VERIFIABLE,
            f"không kiểm chứng được: {port_vi}",
            f"not verifiable above 0.94 Gb/s: {port_en}",
        )
    if down.n < VNNIC_MIN_SAMPLES:
        return record(*_too_few(down.n, VNNIC_MIN_SAMPLES))
    if not peak.n:
        return record(
            VerdictKind.INSUFFICIENT_DATA,
            "chưa đủ mẫu: không có mẫu giờ cao điểm (19:00–23:00)",
            "insufficient data: no peak-hour samples (19:00–23:00)",
        )
    return _by_checks(record, checks[1:3])


def qcvn34_declared(samples: Sequence[Sample], line: Line, window: Period) -> Verdict:
    """``qcvn34_declared_stats`` over ``samples`` (the reference path)."""
    return qcvn34_declared_stats(stats_for_line(samples, line, window), line, window)


def qcvn34_declared_stats(stats: LineMonthStats, line: Line, window: Period) -> Verdict:
    """Pd ≥ 0.8·Vd and Pu ≥ 0.8·Vu against the operator's declared speeds (rule
    ``qcvn34-declared-speed``), modelled on QCVN 34:2022/BTTTT §2.1 (secondary source: the
    official text of Circular 20/2022/TT-BTTTT was not read).

    Pd and Pu are the mean of per-sample speeds (QCVN 34:2019 §2.1.2.1). QCVN 34 asks for at least
    1,000 samples per direction: below that a direction is ``insufficient_data``. A direction with
    no declared speed is ``not_applicable``, never judged against a guess. Overall: fail if a
    direction with enough samples fails, else insufficient_data if one is short, else met.
    """
    if line.access is not Access.FIBER:
        return _not_applicable(QCVN34_DECLARED, window, f"đường dây {line.access.value}")
    down, up = _aggregate(stats.valid.download), _aggregate(stats.valid.upload)
    checks: list[Check] = []
    kinds: list[VerdictKind] = []
    for name, vi, en, agg, declared in (
        ("pd", "Pd (tải xuống trung bình)", "Pd (mean download)", down, line.declared_down_mbps),
        ("pu", "Pu (tải lên trung bình)", "Pu (mean upload)", up, line.declared_up_mbps),
    ):
        if declared is None:
            kinds.append(VerdictKind.NOT_APPLICABLE)
            continue
        required = QCVN34_RATIO * declared
        passed = _at_least(agg.mean, required)
        note = f"0.8 × declared {_fmt_mbps(declared)}"
        checks.append(Check(name, vi, en, agg.mean, required, "Mb/s", passed, note))
        if agg.n < QCVN34_MIN_SAMPLES:
            kinds.append(VerdictKind.INSUFFICIENT_DATA)
        else:
            kinds.append(VerdictKind.MET if passed else VerdictKind.FAIL)
    record = _verdict_factory(
        QCVN34_DECLARED,
        window,
        n=min(down.n, up.n),
        download=down,
        upload=up,
        checks=tuple(checks),
        exclusions=stats.valid.exclusions,
        cross_traffic_unknown=stats.valid.cross_traffic_unknown,
        counts=(
            SampleCount("download", down.n, QCVN34_MIN_SAMPLES, _QCVN34_SOURCE),
            SampleCount("upload", up.n, QCVN34_MIN_SAMPLES, _QCVN34_SOURCE),
        ),
    )
    kind = _combine(kinds)
    if kind is VerdictKind.NOT_APPLICABLE:
        return record(
            kind,
            "không áp dụng: nhà mạng chưa công bố tốc độ (Vd, Vu)",
            "not applicable: no declared speed (Vd, Vu) for this line",
        )
    if kind is VerdictKind.INSUFFICIENT_DATA:
        return record(
            kind,
            f"chưa đủ mẫu: {down.n} mẫu tải xuống, {up.n} mẫu tải lên / {QCVN34_MIN_SAMPLES}"
            " mỗi chiều",
            f"insufficient data: {down.n} download and {up.n} upload samples of"
            f" {QCVN34_MIN_SAMPLES} per direction",
        )
    return record(kind, *_reason_by_checks(kind, tuple(checks)))


# -- Mobile -------------------------------------------------------------------------------------


def _mobile_stats(samples: Sequence[Sample], window: Period, access: Access) -> LineMonthStats:
    return stats_for_line(samples, Line("", "", access), window)


def mobile_4g(samples: Sequence[Sample], window: Period) -> Verdict:
    """``mobile_4g_stats`` over ``samples`` (the reference path)."""
    return mobile_4g_stats(_mobile_stats(samples, window, Access.LTE), window)


def mobile_4g_stats(stats: LineMonthStats, window: Period) -> Verdict:
    """4G: ≥ 95 % of samples download at ≥ 40 Mb/s (rule ``mobile-4g``), labelled draft/target.

    Source: draft Amendment 1:2023 to QCVN 81:2019/BTTTT (fixed 40 Mb/s floor in LTE zones,
    reached by 95 % of samples; adoption not found) and Decision 1110/QĐ-BTTTT (2 Jul 2024), which
    sets 4G ≥ 40 Mb/s measured with i-Speed. The 300-sample minimum is VNNIC's, applied here too.
    ``stats.access`` must count 4G samples with the 40 Mb/s floor (``line_floors``).
    """
    down = stats.access.download
    checks = (
        Check(
            "floor",
            "Mẫu tải xuống ≥ 40 Mb/s",
            "Download samples ≥ 40 Mb/s",
            _share(down, LTE_FLOOR_MBPS),
            float(FLOOR_SHARE_PCT),
            "%",
            _floor_reached(down, LTE_FLOOR_MBPS),
            "draft/target: draft Amendment 1:2023 QCVN 81; 1110/QĐ-BTTTT",
        ),
        _samples_check(down.n, VNNIC_MIN_SAMPLES, _VNNIC_SOURCE),
    )
    record = _verdict_factory(
        MOBILE_4G,
        window,
        n=down.n,
        download=_aggregate(down),
        upload=_aggregate(stats.access.upload),
        checks=checks,
        exclusions=stats.access.exclusions,
        counts=_counts("download", down.n),
        cross_traffic_unknown=stats.access.cross_traffic_unknown,
    )
    if down.n < VNNIC_MIN_SAMPLES:
        return record(*_too_few(down.n, VNNIC_MIN_SAMPLES))
    return _by_checks(record, checks[:1])


def mobile_5g(samples: Sequence[Sample], window: Period) -> Verdict:
    """``mobile_5g_stats`` over ``samples`` (the reference path)."""
    return mobile_5g_stats(_mobile_stats(samples, window, Access.NR), window)


def mobile_5g_stats(stats: LineMonthStats, window: Period) -> Verdict:
    """5G per QCVN 126:2021/BTTTT §2.1.5.2 (rule ``mobile-5g``): mean download ≥ 100 Mb/s, mean
    upload ≥ 30 Mb/s, ≥ 95 % of samples download at ≥ 30 Mb/s. 300 valid samples per direction
    (VNNIC's minimum) are required before judging. ``stats.access`` must count 5G samples with the
    30 Mb/s floor (``line_floors``)."""
    down_fig = stats.access.download
    down, up = _aggregate(down_fig), _aggregate(stats.access.upload)
    checks = (
        Check(
            "mean_download",
            "Tải xuống trung bình",
            "Mean download",
            down.mean,
            NR_MEAN_DOWN_MBPS,
            "Mb/s",
            _at_least(down.mean, NR_MEAN_DOWN_MBPS),
        ),
        Check(
            "mean_upload",
            "Tải lên trung bình",
            "Mean upload",
            up.mean,
            NR_MEAN_UP_MBPS,
            "Mb/s",
            _at_least(up.mean, NR_MEAN_UP_MBPS),
        ),
        Check(
            "floor",
            "Mẫu tải xuống ≥ 30 Mb/s",
            "Download samples ≥ 30 Mb/s",
            _share(down_fig, NR_FLOOR_MBPS),
            float(FLOOR_SHARE_PCT),
            "%",
            _floor_reached(down_fig, NR_FLOOR_MBPS),
        ),
        _samples_check(min(down.n, up.n), VNNIC_MIN_SAMPLES, _VNNIC_SOURCE),
    )
    record = _verdict_factory(
        MOBILE_5G,
        window,
        n=down.n,
        download=down,
        upload=up,
        checks=checks,
        exclusions=stats.access.exclusions,
        cross_traffic_unknown=stats.access.cross_traffic_unknown,
        counts=(
            SampleCount("download", down.n, VNNIC_MIN_SAMPLES, _VNNIC_SOURCE),
            SampleCount("upload", up.n, VNNIC_MIN_SAMPLES, _VNNIC_SOURCE),
        ),
    )
    if min(down.n, up.n) < VNNIC_MIN_SAMPLES:
        return record(*_too_few(min(down.n, up.n), VNNIC_MIN_SAMPLES))
    return _by_checks(record, checks[:3])


# -- Presence -----------------------------------------------------------------------------------

_PRESENCE: Mapping[str, tuple[Rule, frozenset[Access]]] = {
    "fibre": (PRESENCE_FIBRE, frozenset({Access.FIBER})),
    "mobile": (PRESENCE_MOBILE, frozenset({Access.LTE, Access.NR})),
    "5g": (PRESENCE_5G, frozenset({Access.NR})),
}


@dataclass(frozen=True, slots=True)
class Answered:
    """Results in a window as the presence rules count them: those left out before their access
    is looked at, by reason (outside the window, failed, clock not synchronised), and the others
    by access tag ("" where the result does not say). Lines add up (``+``)."""

    excluded: Mapping[str, int] = field(default_factory=dict)
    by_access: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: Answered) -> Answered:
        return Answered.total((self, other))

    @staticmethod
    def total(parts: Iterable[Answered]) -> Answered:
        """The sum of ``parts`` (``sum`` would build every partial sum on the way)."""
        excluded: Counter[str] = Counter()
        by_access: Counter[str] = Counter()
        for part in parts:
            excluded.update(part.excluded)
            by_access.update(part.by_access)
        return Answered(_positive(excluded), _positive(by_access))


def _added(one: Mapping[str, int], two: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted((Counter(one) + Counter(two)).items()))


def _positive(counts: Counter[str]) -> dict[str, int]:
    """``counts`` above zero, sorted by key (as ``Counter``'s ``+`` keeps them)."""
    return {key: n for key, n in sorted(counts.items()) if n > 0}


def answered(columns: SampleColumns, window: Period, *, access: Access | None = None) -> Answered:
    """``columns``' results in ``window`` counted for presence (``presence_answered``): status
    ok and a clock not known to be wrong; limits on CPU or cross-traffic do not matter, the line
    answered. ``access`` stands in for results that do not say theirs (the probe's line)."""
    (counted,) = answered_lines([(columns, access)], window)
    return counted


def answered_lines(
    lines: Sequence[tuple[SampleColumns, Access | None]], window: Period
) -> list[Answered]:
    """``answered`` of each line (its columns, and the access that stands in for results that
    do not say theirs), all lines' samples read as one set of columns."""
    if not lines:
        return []
    c = SampleColumns.concatenate([columns for columns, _ in lines])
    owner = np.repeat(np.arange(len(lines)), [len(columns) for columns, _ in lines])
    kept, excluded = _exclude_lines(
        np.ones(len(c), dtype=np.bool_),
        [
            (Exclusion.OUTSIDE_WINDOW, ~c.inside(window.start, window.end)),
            *_status_steps(c),
            (Exclusion.CLOCK_NOT_SYNCED, c.clock_synced == FLAG[False]),
        ],
        [{} for _ in lines],
        owner,
    )
    cells = owner[kept] * len(ACCESSES) + c.access[kept].astype(np.intp)
    codes = np.bincount(cells, minlength=len(lines) * len(ACCESSES)).reshape(len(lines), -1)
    found = []
    for (_, access), line_codes, line_excluded in zip(lines, codes.tolist(), excluded, strict=True):
        by_access: Counter[str] = Counter()
        for code, count in enumerate(line_codes):
            tag = ACCESSES[code] or access
            if count:
                by_access["" if tag is None else tag.value] += count
        found.append(Answered(line_excluded, dict(sorted(by_access.items()))))
    return found


def presence(
    samples: Sequence[Sample],
    service: Literal["fibre", "mobile", "5g"],
    window: Period,
    survey: Survey | None = None,
) -> Verdict:
    """``presence_answered`` over ``samples`` (a sample that does not say its access is of
    another access)."""
    return presence_answered(answered(columns_of(samples), window), service, window, survey)


def presence_answered(
    counted: Answered,
    service: Literal["fibre", "mobile", "5g"],
    window: Period,
    survey: Survey | None = None,
) -> Verdict:
    """Whether a hamlet has fibre, mobile broadband or 5G (rules ``presence-fibre``,
    ``presence-mobile``, ``presence-5g``; plan appendix I.1.1, I.1.3, I.1.4, II.1.2).

    Present when a probe of that access (any result kind) returned a valid result in the window:
    status ok and a clock not known to be wrong; limits on CPU or cross-traffic do not matter, the
    line answered (``answered`` counts them, over the hamlet's lines). Otherwise a hand-entered
    survey decides (who, when and document shown): present is met, absent is a fail. With
    neither, ``insufficient_data``. A probe's result outranks a survey, which may be older.
    """
    rule, accesses = _PRESENCE[service]
    tags = {a.value for a in accesses}
    n = sum(count for tag, count in counted.by_access.items() if tag in tags)
    other = sum(count for tag, count in counted.by_access.items() if tag not in tags)
    exclusions = _added(counted.excluded, {Exclusion.OTHER_ACCESS.value: other} if other else {})
    record = _verdict_factory(rule, window, n=n, exclusions=exclusions, evidence=survey)
    if n:
        return record(
            VerdictKind.MET,
            f"có: {n} kết quả hợp lệ từ đầu đo trong kỳ",
            f"present: {n} valid probe results in the period",
        )
    if survey is not None:
        who = f"{survey.surveyed_by}, {survey.surveyed_at.isoformat()}, {survey.source_document}"
        if survey.present:
            return record(VerdictKind.MET, f"có (khảo sát: {who})", f"present (survey: {who})")
        return record(VerdictKind.FAIL, f"không có (khảo sát: {who})", f"absent (survey: {who})")
    return record(
        VerdictKind.INSUFFICIENT_DATA,
        "chưa có dữ liệu: không có kết quả đầu đo hay khảo sát",
        "no evidence: no probe result and no survey",
    )


# -- IPv6 ---------------------------------------------------------------------------------------


def ipv6_readiness(
    samples: Sequence[Ipv6Sample], window: Period, *, ipv6_only: bool = False
) -> Verdict:
    """Share of the window's IPv6 results that are ``ipv6_ready`` (rule ``ipv6-ready``) or
    ``ipv6_only_ready`` (rule ``ipv6-only-ready``), plan appendix II.1.3.

    Readiness itself is scored by the probe as test-ipv6.com scores it (transition/strict out of
    10) with NAT64 found by RFC 8781 PREF64 then RFC 7050 (docs/methodology.md, "IPv6"). The
    verdict is hamletnet's choice, since no regulation gives one: met when ≥ 95 % of at least
    30 valid results say ready. Both shares are always reported.
    """
    rule = IPV6_ONLY_READY if ipv6_only else IPV6_READY
    excluded: Counter[str] = Counter()
    ready: list[bool] = []
    only: list[bool] = []
    for s in samples:
        if not window.contains(s.measured_at):
            excluded[Exclusion.OUTSIDE_WINDOW.value] += 1
        elif s.status is not Status.OK:
            excluded[Exclusion.FAILED.value] += 1
        elif s.clock_synced is False:
            excluded[Exclusion.CLOCK_NOT_SYNCED.value] += 1
        elif (s.ipv6_only_ready if ipv6_only else s.ipv6_ready) is None:
            excluded[Exclusion.NO_VALUE.value] += 1
        else:
            if s.ipv6_ready is not None:
                ready.append(s.ipv6_ready)
            if s.ipv6_only_ready is not None:
                only.append(s.ipv6_only_ready)
    judged = only if ipv6_only else ready
    shares = {
        name: 100.0 * sum(flags) / len(flags)
        for name, flags in (("ipv6_ready", ready), ("ipv6_only_ready", only))
        if flags
    }
    share = shares.get("ipv6_only_ready" if ipv6_only else "ipv6_ready")
    passed = None if not judged else 100 * sum(judged) >= IPV6_READY_SHARE_PCT * len(judged)
    checks = (
        Check(
            "share",
            "Tỷ lệ kết quả sẵn sàng",
            "Share of results ready",
            share,
            float(IPV6_READY_SHARE_PCT),
            "%",
            passed,
            "hamletnet's choice",
        ),
        _samples_check(len(judged), IPV6_MIN_RESULTS, "hamletnet's choice"),
    )
    record = _verdict_factory(
        rule,
        window,
        n=len(judged),
        checks=checks,
        exclusions=dict(sorted(excluded.items())),
        shares_pct=shares,
    )
    if len(judged) < IPV6_MIN_RESULTS:
        return record(*_too_few(len(judged), IPV6_MIN_RESULTS))
    return _by_checks(record, checks[:1])


def ipv6_usage(window: Period, national: HandEntry | None = None) -> Verdict:
    """ "IPv6 usage > 90 %" (rule ``ipv6-usage``, plan appendix II.1.3) is the share of users'
    traffic over IPv6; a probe sees only its own line, so the verdict is always
    ``not_verifiable``. The national APNIC figure, entered by hand with its date and source
    (≈ 65 % for Vietnam in 2024–2025), is carried beside it and is not a commune figure."""
    record = _verdict_factory(IPV6_USAGE, window, n=0, evidence=national)
    return record(
        VerdictKind.NOT_VERIFIABLE,
        "không đo được bằng đầu đo: là tỷ lệ lưu lượng của người dùng; xem số liệu APNIC toàn quốc",
        "not measurable by probes: a share of users' traffic; see the national APNIC figure",
    )


# -- Figures reported by hand -------------------------------------------------------------------


def hand_reported(entry: HandEntry | None, target: Target | None, window: Period) -> Verdict:
    """A figure the office reports by hand (rule ``hand-reported``; plan appendix I.2, II.2:
    digital signatures as a share of adults, AI use). The entry carries who entered it, when and
    the source document. Numeric targets compare ``value``; a qualitative one (no target) reads
    ``achieved``. No entry: ``insufficient_data``. Choosing the latest entry dated within the
    window is the caller's job."""
    record = _verdict_factory(HAND_REPORTED, window, n=0 if entry is None else 1, evidence=entry)
    if entry is None or (entry.value if target is not None else entry.achieved) is None:
        return record(
            VerdictKind.INSUFFICIENT_DATA, "chưa nhập số liệu", "no figure has been entered"
        )
    who = f"{entry.entered_by}, {entry.as_of.isoformat()}, {entry.source_document}"
    if target is None:
        ok = bool(entry.achieved)
        return record(
            VerdictKind.MET if ok else VerdictKind.FAIL,
            f"{'đã' if ok else 'chưa'} thực hiện (báo cáo: {who})",
            f"{'done' if ok else 'not done'} (reported: {who})",
        )
    assert entry.value is not None  # checked above
    ok = target.meets(entry.value)
    shown = f"{entry.value:g} {target.unit} ({target.op} {target.value:g} {target.unit})"
    return record(
        VerdictKind.MET if ok else VerdictKind.FAIL,
        f"{shown}, báo cáo: {who}",
        f"{shown}, reported: {who}",
    )


# -- Sample sufficiency -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sufficiency:
    """How a month's valid-sample count stands and where it is heading at the current pace."""

    month: Period
    count: int
    pace_per_day: float | None
    projected: int
    final: bool

    @property
    def reaches_300(self) -> bool:
        return self.projected >= VNNIC_MIN_SAMPLES

    @property
    def reaches_1000(self) -> bool:
        return self.projected >= QCVN34_MIN_SAMPLES


def sufficiency(count: int, month: Period, now: datetime) -> Sufficiency:
    """Count so far, pace (samples per day so far) and the count projected to the month's end at
    that pace, against VNNIC's 300 and QCVN 34's 1,000. Pure: ``now`` is an argument. Before the
    month starts there is no pace; after it ends the count is final."""
    elapsed = min(max(now - month.start, timedelta(0)), month.duration)
    if elapsed >= month.duration:
        return Sufficiency(month, count, count / (month.duration / timedelta(days=1)), count, True)
    if elapsed <= timedelta(0):
        return Sufficiency(month, count, None, count, False)
    projected = math.floor(count * (month.duration / elapsed))
    return Sufficiency(month, count, count / (elapsed / timedelta(days=1)), projected, False)


# -- Hamlets, the commune, and deadlines --------------------------------------------------------

#: A hamlet served by several lines has access if one of them qualifies ("có khả năng truy nhập"):
#: the best verdict wins, in this order; a line that might qualify outranks one that fails.
_BEST_FIRST = (
    VerdictKind.MET,
    VerdictKind.INSUFFICIENT_DATA,
    VerdictKind.NOT_VERIFIABLE,
    VerdictKind.FAIL,
    VerdictKind.NOT_APPLICABLE,
)


def hamlet_verdict(line_verdicts: Iterable[VerdictKind]) -> VerdictKind:
    """A hamlet's verdict from its lines' (one per ISP): the best; no line is insufficient data."""
    kinds = set(line_verdicts)
    return next((k for k in _BEST_FIRST if k in kinds), VerdictKind.INSUFFICIENT_DATA)


Basis = Literal["hamlets", "users", "population", "adults", "offices"]


@dataclass(frozen=True, slots=True)
class HamletOutcome:
    hamlet: str
    verdict: VerdictKind
    population: int | None = None
    adults: int | None = None


@dataclass(frozen=True, slots=True)
class Rollup:
    """A commune's figure for one indicator: the share of hamlets, and of people, that meet it."""

    basis: Basis
    verdict: VerdictKind
    hamlets: int
    by_verdict: Mapping[str, int]
    share_hamlets_pct: float | None
    share_population_pct: float | None
    population_met: int
    population_total: int
    population_unknown: tuple[str, ...]
    figure_pct: float | None


def _weight(outcome: HamletOutcome, basis: Basis) -> int | None:
    if basis in ("hamlets", "offices"):
        return 1
    return outcome.adults if basis == "adults" else outcome.population


def rollup(outcomes: Sequence[HamletOutcome], target: Target, basis: Basis) -> Rollup:
    """The commune's figure for an indicator from its hamlets' verdicts, by hamlet count and by
    population; the indicator's basis picks which is judged ("users" is approximated by
    population: hamletnet knows no subscriber counts). Hamlets ``not_applicable`` are left out.

    met when the figure meets the target; otherwise, if counting every insufficient or
    unverifiable hamlet as met would reach it, the unknowns decide and the verdict says so
    (insufficient_data before not_verifiable); otherwise fail. A hamlet with no population on a
    population basis makes the figure insufficient_data, naming the hamlet.
    """
    judged = [o for o in outcomes if o.verdict is not VerdictKind.NOT_APPLICABLE]
    by_verdict = Counter(o.verdict.value for o in outcomes)
    met = [o for o in judged if o.verdict is VerdictKind.MET]
    share_hamlets = 100.0 * len(met) / len(judged) if judged else None
    unknown_pop = tuple(o.hamlet for o in judged if o.population is None)
    pop_total = sum(o.population or 0 for o in judged)
    pop_met = sum(o.population or 0 for o in met)
    share_pop = 100.0 * pop_met / pop_total if pop_total and not unknown_pop else None

    def result(verdict: VerdictKind, figure: float | None) -> Rollup:
        return Rollup(
            basis,
            verdict,
            len(outcomes),
            dict(sorted(by_verdict.items())),
            share_hamlets,
            share_pop,
            pop_met,
            pop_total,
            unknown_pop,
            figure,
        )

    weights = [_weight(o, basis) for o in judged]
    if not judged or any(w is None for w in weights):
        return result(VerdictKind.INSUFFICIENT_DATA, None)
    total = sum(w or 0 for w in weights)
    if total == 0:
        return result(VerdictKind.INSUFFICIENT_DATA, None)
    undecided = (VerdictKind.INSUFFICIENT_DATA, VerdictKind.NOT_VERIFIABLE)
    met_w = sum(
        w or 0 for o, w in zip(judged, weights, strict=True) if o.verdict is VerdictKind.MET
    )
    open_w = sum(w or 0 for o, w in zip(judged, weights, strict=True) if o.verdict in undecided)
    figure = 100.0 * met_w / total
    if target.meets(figure):
        return result(VerdictKind.MET, figure)
    if open_w and target.meets(100.0 * (met_w + open_w) / total):
        kinds = {o.verdict for o in judged}
        worst = next(k for k in undecided if k in kinds)
        return result(worst, figure)
    return result(VerdictKind.FAIL, figure)


class DeadlineStatus(StrEnum):
    MET = "met"
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    OVERDUE = "overdue"
    NOT_YET_DUE = "not_yet_due"
    INSUFFICIENT_DATA = "insufficient_data"
    NOT_VERIFIABLE = "not_verifiable"


def deadline_status(
    deadline: Deadline,
    verdict: VerdictKind,
    now: datetime,
    *,
    figure_pct: float | None = None,
    target: Target | None = None,
    plan_start: datetime | None = None,
    baseline_pct: float = 0.0,
) -> DeadlineStatus:
    """Where an indicator (or a hamlet) stands against its deadline at ``now``.

    In order: ``met`` when the verdict is met; ``not_verifiable`` and ``insufficient_data`` pass
    through (evidence is missing, before or after the deadline; ``not_applicable`` counts as
    insufficient); a fail is ``overdue`` once the deadline quarter has ended, ``at_risk`` within
    it and for "ongoing" tasks; before the deadline quarter, ``on_track`` if the figure is at or
    above the straight line from ``baseline_pct`` at ``plan_start`` to the target at the deadline,
    ``at_risk`` below it, and ``not_yet_due`` when no such line can be drawn (no figure, no
    percentage target, or no plan start). hamletnet's definition; the plan gives none.
    """
    now = vietnam_time(now)
    if verdict is VerdictKind.MET:
        return DeadlineStatus.MET
    if verdict is VerdictKind.NOT_VERIFIABLE:
        return DeadlineStatus.NOT_VERIFIABLE
    if verdict in (VerdictKind.INSUFFICIENT_DATA, VerdictKind.NOT_APPLICABLE):
        return DeadlineStatus.INSUFFICIENT_DATA
    quarter = deadline.quarter
    if quarter is None:
        return DeadlineStatus.AT_RISK
    if now >= quarter.end:
        return DeadlineStatus.OVERDUE
    if now >= quarter.start:
        return DeadlineStatus.AT_RISK
    if figure_pct is None or target is None or target.unit != "%" or plan_start is None:
        return DeadlineStatus.NOT_YET_DUE
    if now <= plan_start:
        return DeadlineStatus.NOT_YET_DUE
    progress = (now - plan_start) / (quarter.end - plan_start)
    expected = baseline_pct + (target.value - baseline_pct) * progress
    return DeadlineStatus.ON_TRACK if figure_pct >= expected else DeadlineStatus.AT_RISK


# -- Assembling verdicts ------------------------------------------------------------------------


def _counts(direction: Literal["download", "upload", "any"], n: int) -> tuple[SampleCount, ...]:
    return (
        SampleCount(direction, n, VNNIC_MIN_SAMPLES, _VNNIC_SOURCE),
        SampleCount(direction, n, QCVN34_MIN_SAMPLES, _QCVN34_SOURCE),
    )


def _verdict_factory(
    rule: Rule, window: Period, **fields: object
) -> Callable[[VerdictKind, str, str], Verdict]:
    def make(kind: VerdictKind, reason_vi: str, reason_en: str) -> Verdict:
        return Verdict(rule, kind, reason_vi, reason_en, window, **fields)  # type: ignore[arg-type]

    return make


def _not_applicable(rule: Rule, window: Period, what: str) -> Verdict:
    return Verdict(
        rule,
        VerdictKind.NOT_APPLICABLE,
        f"không áp dụng cho {what}",
        f"not applicable to this line ({what})",
        window,
        0,
    )


def _too_few(n: int, minimum: int) -> tuple[VerdictKind, str, str]:
    return (
        VerdictKind.INSUFFICIENT_DATA,
        f"chưa đủ mẫu: {n}/{minimum} mẫu hợp lệ",
        f"insufficient data: {n} of {minimum} valid samples",
    )


def _reason_by_checks(kind: VerdictKind, checks: Sequence[Check]) -> tuple[str, str]:
    failed = [c for c in checks if c.passed is False]
    if kind is VerdictKind.MET or not failed:
        return "đạt mọi điều kiện", "every condition met"
    return (
        "không đạt: " + "; ".join(c.label_vi for c in failed),
        "fails: " + "; ".join(c.label_en for c in failed),
    )


def _by_checks(
    record: Callable[[VerdictKind, str, str], Verdict], checks: Sequence[Check]
) -> Verdict:
    kind = VerdictKind.MET if all(c.passed for c in checks) else VerdictKind.FAIL
    return record(kind, *_reason_by_checks(kind, checks))


def _combine(kinds: Sequence[VerdictKind]) -> VerdictKind:
    """Directions combined: any fail fails; else any short is insufficient; all n/a is n/a."""
    for kind in (VerdictKind.FAIL, VerdictKind.INSUFFICIENT_DATA):
        if kind in kinds:
            return kind
    if all(k is VerdictKind.NOT_APPLICABLE for k in kinds):
        return VerdictKind.NOT_APPLICABLE
    return VerdictKind.MET
