"""The compliance engine: reads the registry and the result store for a period, runs the rules of
``server.compliance.rules`` per line, hamlet and month, and rolls the verdicts up per commune.

``compute`` is pure (plain data in, a ``ComplianceReport`` out, ``now`` an argument); ``evaluate``
is the thin I/O edge that gathers that data from the registry and a paged store scan. The API,
the office's page and everything after them read the same report through
``server.compliance.report_json``. docs/methodology.md §6–9 states the rules in words.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Literal, TypeVar

from probes.models import Access, Kind, Status
from server.compliance import cached_samples, rules
from server.compliance.columns import SampleColumns, as_columns, columns_of
from server.compliance.plan import Indicator, Plan, PlanInfo
from server.compliance.rules import (
    DeadlineStatus,
    HamletOutcome,
    Ipv6Sample,
    Line,
    Rollup,
    Sample,
    Sufficiency,
    Verdict,
    VerdictKind,
)
from server.compliance.samples import to_ipv6_sample
from server.compliance.stats import Period, month_of, vietnam_time
from server.errors import BadRequest
from server.storage import month_cache
from server.storage.base import ScanRow
from server.storage.month_cache import MonthCache

if TYPE_CHECKING:
    from server.registry import Registry
    from server.settings import Settings
    from server.storage.base import ResultStore

T = TypeVar("T")

#: The agent's heartbeat runs every 300 s by default (collector/config.py); a probe not heard
#: from for three of those is flagged silent. hamletnet's choice: one lost heartbeat is noise,
#: three in a row is a probe (or its line) that is down.
HEARTBEAT_INTERVAL = timedelta(seconds=300)
SILENT_AFTER = 3 * HEARTBEAT_INTERVAL

#: The rules judged per line and month, by the line's access.
_MONTH_RULES: Mapping[Access, tuple[str, ...]] = {
    Access.FIBER: (rules.FIXED_GIGABIT.id, rules.QCVN34_DECLARED.id),
    Access.LTE: (rules.MOBILE_4G.id,),
    Access.NR: (rules.MOBILE_5G.id,),
}
_PRESENCE_SERVICE: Mapping[str, Literal["fibre", "mobile", "5g"]] = {
    rules.PRESENCE_FIBRE.id: "fibre",
    rules.PRESENCE_MOBILE.id: "mobile",
    rules.PRESENCE_5G.id: "5g",
}
#: Survey services as the registry spells them, to the presence rules' names.
_SURVEY_SERVICE: Mapping[str, Literal["fibre", "mobile", "5g"]] = {
    "fiber": "fibre",
    "fibre": "fibre",
    "mobile": "mobile",
    "5g": "5g",
}


class UnknownFilter(BadRequest):
    """A commune, hamlet or ISP in the query that the server does not know; the message names it
    and lists the known ones."""


# -- Inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommuneInfo:
    code: str
    name: str
    province: str | None = None


@dataclass(frozen=True, slots=True)
class HamletInfo:
    code: str
    name: str
    commune: str
    population: int | None = None
    adults: int | None = None
    households: int | None = None
    isps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProbeLine:
    """A registered probe and the line it measures."""

    probe_id: str
    line: Line
    enabled: bool = True
    last_seen_at: datetime | None = None
    declared_by: str | None = None
    declared_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class HandFigure:
    """A hand-entered figure for one indicator, for a commune or (``hamlet`` set) one hamlet."""

    indicator_id: str
    commune: str
    hamlet: str | None
    entry: rules.HandEntry


@dataclass(frozen=True, slots=True)
class SurveyFigure:
    hamlet: str
    service: str
    survey: rules.Survey


@dataclass(frozen=True)
class Evidence:
    """The period's probe results by probe id: bandwidth samples (as samples, or as the columns
    the sample cache gives), IPv6 samples, and any other result (latency) that only proves a line
    was up (presence)."""

    bandwidth: Mapping[str, Sequence[Sample] | SampleColumns] = field(default_factory=dict)
    ipv6: Mapping[str, Sequence[Ipv6Sample]] = field(default_factory=dict)
    other: Mapping[str, Sequence[Sample]] = field(default_factory=dict)


# -- The report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineRule:
    """One rule over one line for the period: one verdict per month and the period's verdict."""

    rule_id: str
    verdict: VerdictKind
    months: tuple[Verdict, ...]


@dataclass(frozen=True)
class LineReport:
    probe: ProbeLine
    rules: tuple[LineRule, ...]
    sufficiency: tuple[Sufficiency, ...]
    silent: bool

    def rule(self, rule_id: str) -> LineRule | None:
        return next((r for r in self.rules if r.rule_id == rule_id), None)


@dataclass(frozen=True)
class HamletIndicator:
    """A hamlet's verdict on one indicator, its deadline status, and what it rests on: the lines
    (by probe id) for rules judged per line, or the hamlet-level verdicts."""

    indicator_id: str
    verdict: VerdictKind
    deadline: DeadlineStatus
    lines: tuple[str, ...] = ()
    verdicts: tuple[Verdict, ...] = ()


@dataclass(frozen=True)
class HamletReport:
    hamlet: HamletInfo
    lines: tuple[LineReport, ...]
    indicators: tuple[HamletIndicator, ...]

    def indicator(self, indicator_id: str) -> HamletIndicator:
        return next(i for i in self.indicators if i.indicator_id == indicator_id)


@dataclass(frozen=True)
class IndicatorReport:
    """The commune's standing on one indicator of the plan. ``rollup`` for indicators judged over
    hamlets; ``verdict_detail`` for those judged once for the commune (a hand-entered figure,
    IPv6 usage)."""

    indicator: Indicator
    verdict: VerdictKind
    deadline: DeadlineStatus
    rollup: Rollup | None = None
    verdict_detail: Verdict | None = None


@dataclass(frozen=True, slots=True)
class SilentProbe:
    probe_id: str
    hamlet: str
    isp: str
    last_seen_at: datetime | None


@dataclass(frozen=True)
class CommuneReport:
    commune: CommuneInfo
    indicators: tuple[IndicatorReport, ...]
    hamlets: tuple[HamletReport, ...]
    silent_probes: tuple[SilentProbe, ...]


@dataclass(frozen=True)
class ComplianceReport:
    period: Period
    now: datetime
    plan: PlanInfo
    filters: Mapping[str, str | None]
    communes: tuple[CommuneReport, ...]
    silent_after: timedelta = SILENT_AFTER


# -- Filters ------------------------------------------------------------------------------------


def _known(what: str, value: str, known: Iterable[str]) -> UnknownFilter:
    names = sorted(set(known))
    return UnknownFilter(f"unknown {what} {value!r}; known: {', '.join(names) or 'none'}")


def check_filters(
    communes: Sequence[CommuneInfo],
    hamlets: Sequence[HamletInfo],
    probes: Sequence[ProbeLine],
    *,
    commune: str | None = None,
    hamlet: str | None = None,
    isp: str | None = None,
) -> None:
    """Refuse a commune, hamlet or ISP the server does not know (400 naming the value), and a
    hamlet outside the commune asked for."""
    if commune is not None and commune not in {c.code for c in communes}:
        raise _known("commune", commune, (c.code for c in communes))
    if hamlet is not None:
        found = next((h for h in hamlets if h.code == hamlet), None)
        if found is None:
            raise _known("hamlet", hamlet, (h.code for h in hamlets))
        if commune is not None and found.commune != commune:
            raise UnknownFilter(
                f"hamlet {hamlet!r} is in commune {found.commune!r}, not {commune!r}"
            )
    if isp is not None:
        isps = {p.line.isp for p in probes} | {i for h in hamlets for i in h.isps}
        if isp not in isps:
            raise _known("isp", isp, isps)


# -- The pure engine ----------------------------------------------------------------------------


def _months(period: Period, now: datetime) -> list[Period]:
    """The period's calendar months that have started by ``now``, clipped to the period."""
    clipped = []
    for month in period.months():
        if month.start >= now:
            break
        start, end = max(month.start, period.start), min(month.end, period.end)
        label = month.label if (start, end) == (month.start, month.end) else period.label
        clipped.append(Period(label, "month", start, end))
    return clipped


def combine_months(kinds: Sequence[VerdictKind]) -> VerdictKind:
    """A line's verdict over several months: a failed month fails the period; the period is met
    only when every month is; otherwise the first of insufficient_data, not_verifiable,
    not_applicable found. No month yet: insufficient_data. hamletnet's choice."""
    if not kinds:
        return VerdictKind.INSUFFICIENT_DATA
    if VerdictKind.FAIL in kinds:
        return VerdictKind.FAIL
    if all(k is VerdictKind.MET for k in kinds):
        return VerdictKind.MET
    for kind in (
        VerdictKind.INSUFFICIENT_DATA,
        VerdictKind.NOT_VERIFIABLE,
        VerdictKind.NOT_APPLICABLE,
    ):
        if kind in kinds:
            return kind
    return VerdictKind.INSUFFICIENT_DATA


def _month_rule(rule_id: str) -> Callable[[rules.LineMonthStats, Line, Period], Verdict]:
    if rule_id == rules.FIXED_GIGABIT.id:
        return rules.fixed_gigabit_stats
    if rule_id == rules.QCVN34_DECLARED.id:
        return rules.qcvn34_declared_stats
    if rule_id == rules.MOBILE_4G.id:
        return lambda stats, _line, window: rules.mobile_4g_stats(stats, window)
    return lambda stats, _line, window: rules.mobile_5g_stats(stats, window)


def _is_silent(probe: ProbeLine, now: datetime) -> bool:
    if not probe.enabled:
        return False
    return probe.last_seen_at is None or now - probe.last_seen_at > SILENT_AFTER


def _month_stats(
    probes: Sequence[ProbeLine], columns: Mapping[str, SampleColumns], windows: Sequence[Period]
) -> dict[tuple[str, datetime], rules.LineMonthStats]:
    """What the rules read of each line in each window (the period's months, clipped to it:
    a month's samples outside its window count as outside), keyed by probe and window start;
    every line of a window in one call (``rules.lines_month_stats``)."""
    found = {}
    for window in windows:
        month = month_of(window.start)
        batch = [
            rules.line_columns(columns[p.probe_id].between(month.start, month.end), p.line)
            for p in probes
        ]
        for probe, stats in zip(probes, rules.lines_month_stats(batch, window), strict=True):
            found[probe.probe_id, window.start] = stats
    return found


def _line_report(
    probe: ProbeLine,
    columns: SampleColumns,
    stats: Mapping[tuple[str, datetime], rules.LineMonthStats],
    windows: Sequence[Period],
    period: Period,
    now: datetime,
) -> LineReport:
    """A line's verdicts over ``windows`` (``_months``) from their ``stats``
    (``_month_stats``), and its sample sufficiency per month."""
    mine = {m.start: (m, stats[probe.probe_id, m.start]) for m in windows}
    line_rules = []
    for rule_id in _MONTH_RULES.get(probe.line.access, ()):
        judge = _month_rule(rule_id)
        verdicts = tuple(judge(s, probe.line, m) for m, s in mine.values())
        line_rules.append(
            LineRule(rule_id, combine_months([v.verdict for v in verdicts]), verdicts)
        )
    sufficiency = []
    for m in period.months():
        if m.start >= now:
            continue
        window, month_stats = mine.get(m.start, (None, None))
        if window != m or month_stats is None:  # the period clips the month: count all of it
            month_stats = rules.stats_for_line(columns.between(m.start, m.end), probe.line, m)
        sufficiency.append(rules.sufficiency(month_stats.with_download, month_of(m.start), now))
    return LineReport(probe, tuple(line_rules), tuple(sufficiency), _is_silent(probe, now))


def _hand_entry(
    figures: Sequence[HandFigure],
    indicator_id: str,
    commune: str,
    hamlet: str | None,
    window: Period,
    *,
    within: bool = True,
) -> rules.HandEntry | None:
    """The latest entry dated within the window (``within``), or the latest dated before its end
    (a national figure carried forward, shown with its date)."""
    mine = [
        f.entry
        for f in figures
        if f.indicator_id == indicator_id and f.commune == commune and f.hamlet == hamlet
    ]
    first, last = vietnam_time(window.start).date(), vietnam_time(window.end).date()
    mine = [e for e in mine if (first if within else date.min) <= e.as_of < last]
    return max(mine, key=lambda e: (e.as_of, e.entered_at)) if mine else None


def _latest_survey(
    surveys: Sequence[SurveyFigure], hamlet: str, service: str, window: Period
) -> rules.Survey | None:
    end = vietnam_time(window.end).date()
    mine = [
        s.survey
        for s in surveys
        if s.hamlet == hamlet
        and _SURVEY_SERVICE.get(s.service) == service
        and s.survey.surveyed_at < end
    ]
    return max(mine, key=lambda s: s.surveyed_at) if mine else None


def _answered(
    probes: Sequence[ProbeLine],
    columns: Mapping[str, SampleColumns],
    evidence: Evidence,
    period: Period,
) -> dict[str, rules.Answered]:
    """What each line's results of every kind count for presence; a result that does not say
    its access is of the line's. Bandwidth results of all lines in one call."""
    counted = rules.answered_lines([(columns[p.probe_id], p.line.access) for p in probes], period)
    found = {}
    for probe, bandwidth in zip(probes, counted, strict=True):
        ipv6 = [
            Sample(v.measured_at, status=v.status, clock_synced=v.clock_synced)
            for v in evidence.ipv6.get(probe.probe_id, ())
        ]
        other = evidence.other.get(probe.probe_id, ())
        for more in (other, ipv6):
            if more:  # most lines have results of one kind: nothing to add
                bandwidth += rules.answered(columns_of(more), period, access=probe.line.access)
        found[probe.probe_id] = bandwidth
    return found


def _hamlet_indicator(
    indicator: Indicator,
    hamlet: HamletInfo,
    lines: Sequence[LineReport],
    evidence: Evidence,
    answered: Mapping[str, rules.Answered],
    hand: Sequence[HandFigure],
    surveys: Sequence[SurveyFigure],
    period: Period,
    now: datetime,
) -> HamletIndicator:
    def made(verdict: VerdictKind, **more: object) -> HamletIndicator:
        status = rules.deadline_status(indicator.due, verdict, now)
        return HamletIndicator(indicator.id, verdict, status, **more)  # type: ignore[arg-type]

    judged = indicator.judged_by
    if judged.method == "hand":
        target = indicator.target.as_target() if indicator.target is not None else None
        entry = _hand_entry(hand, indicator.id, hamlet.commune, hamlet.code, period)
        detail = rules.hand_reported(entry, target, period)
        return made(detail.verdict, verdicts=(detail,))
    rule_id = judged.rule
    if rule_id in (rules.FIXED_GIGABIT.id, rules.MOBILE_4G.id, rules.MOBILE_5G.id):
        counted = [(r.probe.probe_id, r.rule(rule_id)) for r in lines]
        per_line = [(pid, lr) for pid, lr in counted if lr is not None]
        kinds = [lr.verdict for _, lr in per_line]
        return made(rules.hamlet_verdict(kinds), lines=tuple(pid for pid, _ in per_line))
    if rule_id in _PRESENCE_SERVICE:
        service = _PRESENCE_SERVICE[rule_id]
        heard = rules.Answered.total(answered[r.probe.probe_id] for r in lines)
        survey = _latest_survey(surveys, hamlet.code, service, period)
        detail = rules.presence_answered(heard, service, period, survey)
        return made(detail.verdict, verdicts=(detail,))
    if rule_id in (rules.IPV6_READY.id, rules.IPV6_ONLY_READY.id):
        pooled = [s for r in lines for s in evidence.ipv6.get(r.probe.probe_id, ())]
        detail = rules.ipv6_readiness(pooled, period, ipv6_only=rule_id == rules.IPV6_ONLY_READY.id)
        return made(
            detail.verdict, lines=tuple(r.probe.probe_id for r in lines), verdicts=(detail,)
        )
    if rule_id == rules.IPV6_USAGE.id:
        return made(VerdictKind.NOT_VERIFIABLE)
    # qcvn34 as a main indicator rule: the best line, as for the gigabit rule.
    counted = [(r.probe.probe_id, r.rule(rule_id)) for r in lines]
    per_line = [(pid, lr) for pid, lr in counted if lr is not None]
    return made(
        rules.hamlet_verdict(lr.verdict for _, lr in per_line),
        lines=tuple(pid for pid, _ in per_line),
    )


def _indicator_report(
    indicator: Indicator,
    commune: CommuneInfo,
    hamlets: Sequence[HamletReport],
    hand: Sequence[HandFigure],
    plan: Plan,
    period: Period,
    now: datetime,
) -> IndicatorReport:
    target = indicator.target.as_target() if indicator.target is not None else None
    judged = indicator.judged_by
    if judged.method == "hand":
        entry = _hand_entry(hand, indicator.id, commune.code, None, period)
        detail = rules.hand_reported(entry, target, period)
        figure = (
            entry.value if entry is not None and target is not None and target.unit == "%" else None
        )
        status = rules.deadline_status(
            indicator.due, detail.verdict, now, figure_pct=figure, target=target,
            plan_start=plan.plan.starts_at,
        )  # fmt: skip
        return IndicatorReport(indicator, detail.verdict, status, verdict_detail=detail)
    if judged.rule == rules.IPV6_USAGE.id:
        national = _hand_entry(hand, indicator.id, commune.code, None, period, within=False)
        detail = rules.ipv6_usage(period, national)
        status = rules.deadline_status(indicator.due, detail.verdict, now)
        return IndicatorReport(indicator, detail.verdict, status, verdict_detail=detail)
    assert target is not None  # plan.py: an indicator judged by a rule has a target
    outcomes = [
        HamletOutcome(
            h.hamlet.code,
            h.indicator(indicator.id).verdict,
            h.hamlet.population,
            h.hamlet.adults,
        )
        for h in hamlets
    ]
    basis: rules.Basis = indicator.basis  # type: ignore[assignment]  # checked by plan.py
    rolled = rules.rollup(outcomes, target, basis)
    status = rules.deadline_status(
        indicator.due, rolled.verdict, now, figure_pct=rolled.figure_pct, target=target,
        plan_start=plan.plan.starts_at,
    )  # fmt: skip
    return IndicatorReport(indicator, rolled.verdict, status, rollup=rolled)


def compute(
    plan: Plan,
    communes: Sequence[CommuneInfo],
    hamlets: Sequence[HamletInfo],
    probes: Sequence[ProbeLine],
    evidence: Evidence,
    period: Period,
    now: datetime,
    *,
    hand: Sequence[HandFigure] = (),
    surveys: Sequence[SurveyFigure] = (),
    commune: str | None = None,
    hamlet: str | None = None,
    isp: str | None = None,
) -> ComplianceReport:
    """Every indicator of ``plan`` for each commune (or the one asked for) over ``period``, as
    things stand at ``now``: per line and month, per hamlet with its deadline status, and the
    commune's roll-up. ``hamlet`` narrows the roll-up to that hamlet; ``isp`` to that ISP's
    lines. Unknown filters raise ``UnknownFilter``."""
    check_filters(communes, hamlets, probes, commune=commune, hamlet=hamlet, isp=isp)
    windows = _months(period, now)
    reports = []
    for c in communes:
        if commune is not None and c.code != commune:
            continue
        mine = [h for h in hamlets if h.commune == c.code and hamlet in (None, h.code)]
        if hamlet is not None and not mine:
            continue
        hamlet_reports = []
        silent: list[SilentProbe] = []
        codes = {h.code for h in mine}
        in_scope = [p for p in probes if p.line.hamlet in codes and isp in (None, p.line.isp)]
        columns = {p.probe_id: as_columns(evidence.bandwidth.get(p.probe_id, ())) for p in in_scope}
        stats = _month_stats(in_scope, columns, windows)
        answered = _answered(in_scope, columns, evidence, period)
        for h in mine:
            served = [p for p in in_scope if p.line.hamlet == h.code]
            lines = [
                _line_report(p, columns[p.probe_id], stats, windows, period, now) for p in served
            ]
            silent.extend(
                SilentProbe(r.probe.probe_id, h.code, r.probe.line.isp, r.probe.last_seen_at)
                for r in lines
                if r.silent
            )
            indicators = tuple(
                _hamlet_indicator(i, h, lines, evidence, answered, hand, surveys, period, now)
                for i in plan.indicators
            )
            hamlet_reports.append(HamletReport(h, tuple(lines), indicators))
        indicator_reports = tuple(
            _indicator_report(i, c, hamlet_reports, hand, plan, period, now)
            for i in plan.indicators
        )
        reports.append(CommuneReport(c, indicator_reports, tuple(hamlet_reports), tuple(silent)))
    filters = {"commune": commune, "hamlet": hamlet, "isp": isp}
    return ComplianceReport(period, now, plan.plan, filters, tuple(reports))


# -- The I/O edge -------------------------------------------------------------------------------

#: Latency results only prove a line answered (presence); nothing else of them is read.
_PRESENCE_FIELDS = ("status", "clock_synced")


async def _scan(
    store: ResultStore,
    kind: Kind,
    period: Period,
    probes: Sequence[str],
    convert: Callable[[ScanRow], T],
    fields: Sequence[str] | None = None,
) -> dict[str, list[T]]:
    """The period's results of ``kind`` for ``probes``, converted row by row as the pages come,
    so no page of rows and no result model outlives its conversion."""
    found: dict[str, list[T]] = defaultdict(list)
    if not probes:
        return found
    async for page in store.scan(kind, period.start, period.end, probes=probes, fields=fields):
        for row in page:
            found[row.probe_id].append(convert(row))
    return found


def _presence_sample(row: ScanRow) -> Sample:
    synced = row.fields.get("clock_synced")
    return Sample(
        row.measured_at,
        status=Status(row.fields.get("status") or Status.OK),
        clock_synced=synced if isinstance(synced, bool) else None,
        access=Access(row.access),
    )


async def evaluate(
    store: ResultStore,
    registry: Registry,
    settings: Settings,
    plan: Plan,
    period: Period,
    *,
    now: datetime,
    commune: str | None = None,
    hamlet: str | None = None,
    isp: str | None = None,
) -> ComplianceReport:
    """Gather the period's data from the registry and the store, then ``compute``. Filters are
    checked before any scan, so a bad one costs no query.

    Bandwidth samples come through the sample cache in ``settings.data_dir``
    (``cached_samples``), opened for this call (a few milliseconds); IPv6 and latency results
    (few and small) are scanned as before."""
    communes = [CommuneInfo(c.code, c.name, c.province) for c in settings.communes]
    hamlets = [
        HamletInfo(h.code, h.name, h.commune, h.population, h.adults, h.households, tuple(h.isps))
        for h in await registry.hamlets()
    ]
    probes = [
        ProbeLine(p.probe_id, p.line, p.enabled, p.last_seen_at, p.declared_by, p.declared_at)
        for p in await registry.probes()
    ]
    check_filters(communes, hamlets, probes, commune=commune, hamlet=hamlet, isp=isp)
    in_scope = {
        h.code for h in hamlets if commune in (None, h.commune) and hamlet in (None, h.code)
    }
    wanted = [p.probe_id for p in probes if p.line.hamlet in in_scope and isp in (None, p.line.isp)]

    async def bandwidth() -> dict[str, SampleColumns]:
        async with MonthCache(settings.data_dir / month_cache.FILE_NAME) as cache:
            return await cached_samples.bandwidth_columns(store, cache, period, wanted)

    # The reads wait on other threads and processes (SQLite's, InfluxDB's): all at once.
    columns, ipv6, other, entries, surveyed = await asyncio.gather(
        bandwidth(),
        _scan(store, Kind.IPV6, period, wanted, to_ipv6_sample),
        _scan(store, Kind.LATENCY, period, wanted, _presence_sample, fields=_PRESENCE_FIELDS),
        registry.hand_entries(),
        registry.surveys(),
    )
    evidence = Evidence(bandwidth=columns, ipv6=ipv6, other=other)
    hand = [HandFigure(e.indicator_id, e.commune, e.hamlet, e.to_rule()) for e in entries]
    surveys = [SurveyFigure(s.hamlet, s.service, s.to_rule()) for s in surveyed]
    return compute(
        plan, communes, hamlets, probes, evidence, period, now,
        hand=hand, surveys=surveys, commune=commune, hamlet=hamlet, isp=isp,
    )  # fmt: skip
