"""The quarterly report to the provincial Department of Science and Technology (Sở Khoa học và
Công nghệ), as content: what the XLSX, the PDF and ``report.json`` show.

Pure: two ``ComplianceReport``s of ``server.compliance.engine`` (this quarter and the previous
one) and the hand-entered figures in, a ``QuarterlyReport`` out. Every verdict, deadline status,
figure and sample count is the engine's; this module only picks them out, sets them beside the
previous quarter's and words the differences in Vietnamese. Labels and number formats are the
office page's (``server.compliance.page``) and the JSON report's (``report_json``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from server.compliance.engine import (
    CommuneReport,
    ComplianceReport,
    HamletReport,
    HandFigure,
    IndicatorReport,
    LineReport,
)
from server.compliance.page import ACCESS_VI, deadline_vi, threshold_vi, vn_number
from server.compliance.plan import Indicator
from server.compliance.report_json import DEADLINE_LABELS_VI
from server.compliance.rules import (
    VERDICT_LABELS_VI,
    DeadlineStatus,
    HandEntry,
    Verdict,
    VerdictKind,
)
from server.compliance.stats import Period, vietnam_time

#: How the commune's figure is counted, by the indicator's basis (the office page's words).
BASIS_VI: Mapping[str, str] = {
    "hamlets": "số thôn",
    "users": "dân số",
    "population": "dân số",
    "adults": "dân số trưởng thành",
    "offices": "cơ quan",
}
#: Shown where the previous quarter has nothing to compare with (a hamlet or line added since).
NOT_IN_PREVIOUS_VI = "chưa có"


class QuarterlyError(ValueError):
    """The two reports cannot be set side by side (not consecutive quarters, another plan)."""


# -- The content --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommuneIndicator:
    """One indicator of the plan for the commune: target, deadline, the engine's figure and
    verdict, and the previous quarter's verdict and deadline status."""

    indicator_id: str
    appendix_row: str
    name_vi: str
    target_vi: str
    condition_vi: str | None
    deadline_vi: str
    basis_vi: str
    figure_pct: float | None
    hamlets_judged: int | None
    hamlets_met: int | None
    detail_vi: str | None
    verdict: VerdictKind
    deadline: DeadlineStatus
    previous_verdict: VerdictKind | None
    previous_deadline: DeadlineStatus | None


@dataclass(frozen=True, slots=True)
class FigureRow:
    """A verdict behind a hamlet's indicator: one line's month (``probe_id`` set) or the hamlet's
    own verdict over the quarter. Speeds in Mb/s as the engine computed them (download);
    ``gbps`` says the indicator's target is in Gb/s, so they are shown in Gb/s."""

    probe_id: str | None
    isp: str | None
    window: str
    rule_id: str
    verdict: VerdictKind
    n: int
    mean_mbps: float | None
    median_mbps: float | None
    p5_mbps: float | None
    gbps: bool
    reason_vi: str


@dataclass(frozen=True, slots=True)
class HamletIndicatorRow:
    hamlet: str
    hamlet_name: str
    indicator_id: str
    appendix_row: str
    verdict: VerdictKind
    deadline: DeadlineStatus
    previous_verdict: VerdictKind | None
    figures: tuple[FigureRow, ...]


@dataclass(frozen=True, slots=True)
class HandRow:
    """A hand-entered figure dated in the quarter, or one the engine relied on (a national
    figure carried forward), with who entered it, when, and from which document."""

    indicator_id: str
    appendix_row: str
    name_vi: str
    scope_vi: str
    value: float | None
    achieved: bool | None
    unit: str | None
    as_of: date
    source_document: str
    entered_by: str
    entered_at: datetime
    used: bool


@dataclass(frozen=True, slots=True)
class LineSamples:
    """A probe line's valid download samples over the quarter: the sum of the engine's monthly
    counts (``Sufficiency.count``), beside the previous quarter's."""

    probe_id: str
    hamlet: str
    hamlet_name: str
    isp: str
    access: str
    samples: int
    previous_samples: int | None
    silent: bool


@dataclass(frozen=True, slots=True)
class SilentRow:
    probe_id: str
    hamlet: str
    hamlet_name: str
    isp: str
    last_seen_at: datetime | None


@dataclass(frozen=True)
class CommuneQuarter:
    code: str
    name: str
    province: str | None
    indicators: tuple[CommuneIndicator, ...]
    hamlets: tuple[HamletIndicatorRow, ...]
    hand: tuple[HandRow, ...]
    lines: tuple[LineSamples, ...]
    silent: tuple[SilentRow, ...]
    narrative: tuple[str, ...]

    @property
    def samples(self) -> int:
        return sum(line.samples for line in self.lines)

    @property
    def previous_samples(self) -> int:
        return sum(line.previous_samples or 0 for line in self.lines)


@dataclass(frozen=True)
class QuarterlyReport:
    quarter: Period
    previous: Period
    generated_at: datetime
    previous_as_of: datetime
    plan_title_vi: str
    plan_document: str
    communes: tuple[CommuneQuarter, ...]


# -- Building it --------------------------------------------------------------------------------


def build_report(
    current: ComplianceReport,
    previous: ComplianceReport,
    plan_indicators: Sequence[Indicator],
    hand: Sequence[HandFigure] = (),
) -> QuarterlyReport:
    """The quarter's report from the engine's ``current`` and ``previous`` quarter reports, the
    plan's indicators (for their targets and names) and the hand-entered figures."""
    if current.period.kind != "quarter" or previous.period.kind != "quarter":
        raise QuarterlyError(
            f"a quarterly report needs two quarters, got {current.period.label!r} and"
            f" {previous.period.label!r}"
        )
    if previous.period.end != current.period.start:
        raise QuarterlyError(
            f"{previous.period.label} is not the quarter before {current.period.label}"
        )
    if previous.plan.id != current.plan.id:
        raise QuarterlyError(f"plans differ: {previous.plan.id!r} and {current.plan.id!r}")
    indicators = {i.id: i for i in plan_indicators}
    before = {c.commune.code: c for c in previous.communes}
    communes = tuple(
        _commune(c, before.get(c.commune.code), indicators, hand, current.period)
        for c in current.communes
    )
    return QuarterlyReport(
        quarter=current.period,
        previous=previous.period,
        generated_at=current.now,
        previous_as_of=previous.now,
        plan_title_vi=current.plan.title_vi,
        plan_document=current.plan.document,
        communes=communes,
    )


def _commune(
    now: CommuneReport,
    before: CommuneReport | None,
    indicators: Mapping[str, Indicator],
    hand: Sequence[HandFigure],
    quarter: Period,
) -> CommuneQuarter:
    names = {h.hamlet.code: h.hamlet.name for h in now.hamlets}
    old_indicators = {i.indicator.id: i for i in before.indicators} if before else {}
    old_hamlets = {h.hamlet.code: h for h in before.hamlets} if before else {}
    commune_rows = tuple(
        _commune_indicator(i, old_indicators.get(i.indicator.id)) for i in now.indicators
    )
    hamlet_rows = tuple(
        _hamlet_indicator(h, indicators[item.indicator_id], old_hamlets.get(h.hamlet.code))
        for h in now.hamlets
        for item in h.indicators
    )
    old_lines = {
        line.probe.probe_id: line for h in (before.hamlets if before else ()) for line in h.lines
    }
    lines = tuple(
        _line_samples(line, names, old_lines.get(line.probe.probe_id))
        for h in now.hamlets
        for line in h.lines
    )
    silent = tuple(
        SilentRow(p.probe_id, p.hamlet, names.get(p.hamlet, p.hamlet), p.isp, p.last_seen_at)
        for p in now.silent_probes
    )
    hand_rows = _hand_rows(now, indicators, hand, quarter, names)
    narrative = _narrative(commune_rows, hamlet_rows, lines, silent, names, before is not None)
    return CommuneQuarter(
        now.commune.code,
        now.commune.name,
        now.commune.province,
        commune_rows,
        hamlet_rows,
        hand_rows,
        lines,
        silent,
        narrative,
    )


def _threshold(t: Any) -> dict[str, Any] | None:
    return None if t is None else {"op": t.op, "value": t.value, "unit": t.unit}


def _commune_indicator(now: IndicatorReport, before: IndicatorReport | None) -> CommuneIndicator:
    i = now.indicator
    rolled = now.rollup
    judged = met = None
    if rolled is not None:
        judged = rolled.hamlets - rolled.by_verdict.get(VerdictKind.NOT_APPLICABLE.value, 0)
        met = rolled.by_verdict.get(VerdictKind.MET.value, 0)
    detail = now.verdict_detail.reason_vi if now.verdict_detail is not None else None
    return CommuneIndicator(
        indicator_id=i.id,
        appendix_row=i.appendix_row,
        name_vi=i.name_vi,
        target_vi=threshold_vi(_threshold(i.target)),
        condition_vi=None if i.condition is None else threshold_vi(_threshold(i.condition)),
        deadline_vi=deadline_vi(i.deadline),
        basis_vi=BASIS_VI.get(i.basis, i.basis),
        figure_pct=None if rolled is None else rolled.figure_pct,
        hamlets_judged=judged,
        hamlets_met=met,
        detail_vi=detail,
        verdict=now.verdict,
        deadline=now.deadline,
        previous_verdict=None if before is None else before.verdict,
        previous_deadline=None if before is None else before.deadline,
    )


def _is_gbps(indicator: Indicator) -> bool:
    return any(t is not None and t.unit == "Gb/s" for t in (indicator.target, indicator.condition))


def _figure(verdict: Verdict, probe: LineReport | None, gbps: bool) -> FigureRow:
    down = verdict.download
    return FigureRow(
        probe_id=None if probe is None else probe.probe.probe_id,
        isp=None if probe is None else probe.probe.line.isp,
        window=verdict.window.label,
        rule_id=verdict.rule.id,
        verdict=verdict.verdict,
        n=verdict.n,
        mean_mbps=None if down is None else down.mean,
        median_mbps=None if down is None else down.median,
        p5_mbps=None if down is None else down.p5,
        gbps=gbps,
        reason_vi=verdict.reason_vi,
    )


def _hamlet_indicator(
    hamlet: HamletReport, indicator: Indicator, before: HamletReport | None
) -> HamletIndicatorRow:
    item = hamlet.indicator(indicator.id)
    gbps = _is_gbps(indicator)
    rule_id = indicator.judged_by.rule if indicator.judged_by.method == "rule" else None
    by_probe = {line.probe.probe_id: line for line in hamlet.lines}
    figures: list[FigureRow] = []
    for probe_id in item.lines:
        line = by_probe[probe_id]
        judged = line.rule(rule_id) if rule_id is not None else None
        if judged is not None:
            figures.extend(_figure(month, line, gbps) for month in judged.months)
    figures.extend(_figure(v, None, gbps) for v in item.verdicts)
    old = None
    if before is not None:
        old = next((i.verdict for i in before.indicators if i.indicator_id == indicator.id), None)
    return HamletIndicatorRow(
        hamlet.hamlet.code,
        hamlet.hamlet.name,
        indicator.id,
        indicator.appendix_row,
        item.verdict,
        item.deadline,
        old,
        tuple(figures),
    )


def _line_samples(
    line: LineReport, names: Mapping[str, str], before: LineReport | None
) -> LineSamples:
    probe = line.probe
    return LineSamples(
        probe.probe_id,
        probe.line.hamlet,
        names.get(probe.line.hamlet, probe.line.hamlet),
        probe.line.isp,
        probe.line.access.value,
        sum(s.count for s in line.sufficiency),
        None if before is None else sum(s.count for s in before.sufficiency),
        line.silent,
    )


def _used_entries(commune: CommuneReport) -> list[tuple[str, str | None, HandEntry]]:
    """The hand entries the engine's verdicts rest on: (indicator, hamlet or None, entry)."""
    used: list[tuple[str, str | None, HandEntry]] = []
    for i in commune.indicators:
        if i.verdict_detail is not None and isinstance(i.verdict_detail.evidence, HandEntry):
            used.append((i.indicator.id, None, i.verdict_detail.evidence))
    for h in commune.hamlets:
        for item in h.indicators:
            for v in item.verdicts:
                if isinstance(v.evidence, HandEntry):
                    used.append((item.indicator_id, h.hamlet.code, v.evidence))
    return used


def _hand_rows(
    commune: CommuneReport,
    indicators: Mapping[str, Indicator],
    hand: Sequence[HandFigure],
    quarter: Period,
    names: Mapping[str, str],
) -> tuple[HandRow, ...]:
    first, last = vietnam_time(quarter.start).date(), vietnam_time(quarter.end).date()
    used = _used_entries(commune)
    mine = [
        (f.indicator_id, f.hamlet, f.entry)
        for f in hand
        if f.commune == commune.commune.code
        and f.indicator_id in indicators
        and first <= f.entry.as_of < last
    ]
    rows = []
    order = {i: n for n, i in enumerate(indicators)}
    for indicator_id, hamlet, entry in sorted(
        set(mine) | set(used),
        key=lambda x: (order[x[0]], x[1] or "", x[2].as_of, x[2].entered_at),
    ):
        indicator = indicators[indicator_id]
        scope = commune.commune.name if hamlet is None else names.get(hamlet, hamlet)
        unit = indicator.target.unit if indicator.target is not None else None
        rows.append(
            HandRow(
                indicator_id,
                indicator.appendix_row,
                indicator.name_vi,
                scope,
                entry.value,
                entry.achieved,
                unit,
                entry.as_of,
                entry.source_document,
                entry.entered_by,
                entry.entered_at,
                (indicator_id, hamlet, entry) in used,
            )
        )
    return tuple(rows)


# -- The narrative ------------------------------------------------------------------------------


def verdict_vi(kind: VerdictKind | None) -> str:
    return NOT_IN_PREVIOUS_VI if kind is None else VERDICT_LABELS_VI[kind]


def deadline_status_vi(status: DeadlineStatus | None) -> str:
    return NOT_IN_PREVIOUS_VI if status is None else DEADLINE_LABELS_VI[status]


def _count_change(now: int, before: int) -> str:
    if now == before:
        return "không đổi"
    word = "tăng" if now > before else "giảm"
    return f"{word} {vn_number(abs(now - before), 0)}"


def _narrative(
    indicators: Sequence[CommuneIndicator],
    hamlets: Sequence[HamletIndicatorRow],
    lines: Sequence[LineSamples],
    silent: Sequence[SilentRow],
    names: Mapping[str, str],
    has_previous: bool,
) -> tuple[str, ...]:
    """What changed since the previous quarter, in plan order: the commune's verdicts, the
    indicators that became overdue, the hamlets whose verdicts changed (those now meeting the
    target first), sample counts, and silent probes. Deterministic: the same reports give the
    same sentences."""
    if not has_previous:
        return ("Quý trước không có số liệu của xã để so sánh.",)
    out: list[str] = []
    for i in indicators:
        if i.previous_verdict is not None and i.previous_verdict != i.verdict:
            out.append(
                f"Chỉ tiêu {i.appendix_row} ({i.indicator_id}) của xã chuyển từ"
                f" “{verdict_vi(i.previous_verdict)}” sang “{verdict_vi(i.verdict)}”."
            )
    for i in indicators:
        if (
            i.deadline is DeadlineStatus.OVERDUE
            and i.previous_deadline is not DeadlineStatus.OVERDUE
        ):
            out.append(
                f"Chỉ tiêu {i.appendix_row} ({i.indicator_id}) đã quá hạn ({i.deadline_vi})"
                " mà chưa đạt."
            )
    order = {i.indicator_id: n for n, i in enumerate(indicators)}
    appendix = {i.indicator_id: i.appendix_row for i in indicators}
    groups: dict[tuple[str, VerdictKind | None, VerdictKind], list[str]] = defaultdict(list)
    for row in hamlets:
        if row.previous_verdict != row.verdict:
            groups[(row.indicator_id, row.previous_verdict, row.verdict)].append(row.hamlet_name)
    newly_met = [k for k in groups if k[2] is VerdictKind.MET]
    others = [k for k in groups if k[2] is not VerdictKind.MET]
    for key in sorted(newly_met, key=lambda k: order[k[0]]):
        indicator_id, old, _ = key
        out.append(
            f"Thôn mới đạt chỉ tiêu {appendix[indicator_id]} ({indicator_id}):"
            f" {', '.join(groups[key])} (quý trước: {verdict_vi(old)})."
        )
    for key in sorted(others, key=lambda k: (order[k[0]], verdict_vi(k[1]), verdict_vi(k[2]))):
        indicator_id, old, new = key
        out.append(
            f"Chỉ tiêu {appendix[indicator_id]} ({indicator_id}): {', '.join(groups[key])}"
            f" chuyển từ “{verdict_vi(old)}” sang “{verdict_vi(new)}”."
        )
    if not out:
        out.append("Không có đánh giá nào thay đổi so với quý trước.")
    now_total = sum(line.samples for line in lines)
    before_total = sum(line.previous_samples or 0 for line in lines)
    out.append(
        f"Tổng số mẫu đo hợp lệ của xã trong quý: {vn_number(now_total, 0)} (quý trước"
        f" {vn_number(before_total, 0)}, {_count_change(now_total, before_total)})."
    )
    for line in lines:
        old_count = line.previous_samples
        if old_count is None:
            out.append(
                f"Đầu đo mới {line.probe_id} ({line.hamlet_name}, {line.isp}):"
                f" {vn_number(line.samples, 0)} mẫu."
            )
        elif old_count != line.samples:
            out.append(
                f"Đầu đo {line.probe_id} ({line.hamlet_name}, {line.isp}):"
                f" {vn_number(line.samples, 0)} mẫu, quý trước {vn_number(old_count, 0)}"
                f" ({_count_change(line.samples, old_count)})."
            )
    if silent:
        listed = ", ".join(f"{p.probe_id} ({names.get(p.hamlet, p.hamlet)})" for p in silent)
        out.append(f"Đầu đo đang im lặng: {listed}.")
    return tuple(out)


# -- As JSON ------------------------------------------------------------------------------------


def access_vi(access: str) -> str:
    return ACCESS_VI.get(access, access)


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _figure_json(f: FigureRow) -> dict[str, Any]:
    return {
        "probe_id": f.probe_id,
        "isp": f.isp,
        "window": f.window,
        "rule_id": f.rule_id,
        "verdict": f.verdict.value,
        "verdict_vi": verdict_vi(f.verdict),
        "n": f.n,
        "download_mean_mbps": f.mean_mbps,
        "download_median_mbps": f.median_mbps,
        "download_p5_mbps": f.p5_mbps,
        "shown_in": "Gb/s" if f.gbps else "Mb/s",
        "reason_vi": f.reason_vi,
    }


def _commune_json(c: CommuneQuarter) -> dict[str, Any]:
    return {
        "code": c.code,
        "name": c.name,
        "province": c.province,
        "samples": c.samples,
        "previous_samples": c.previous_samples,
        "indicators": [
            {
                "id": i.indicator_id,
                "appendix_row": i.appendix_row,
                "name_vi": i.name_vi,
                "target_vi": i.target_vi,
                "condition_vi": i.condition_vi,
                "deadline_vi": i.deadline_vi,
                "basis_vi": i.basis_vi,
                "figure_pct": i.figure_pct,
                "hamlets_judged": i.hamlets_judged,
                "hamlets_met": i.hamlets_met,
                "detail_vi": i.detail_vi,
                "verdict": i.verdict.value,
                "verdict_vi": verdict_vi(i.verdict),
                "deadline_status": i.deadline.value,
                "deadline_status_vi": deadline_status_vi(i.deadline),
                "previous_verdict": i.previous_verdict and i.previous_verdict.value,
                "previous_verdict_vi": verdict_vi(i.previous_verdict),
                "previous_deadline_status": i.previous_deadline and i.previous_deadline.value,
            }
            for i in c.indicators
        ],
        "hamlets": [
            {
                "hamlet": h.hamlet,
                "hamlet_name": h.hamlet_name,
                "indicator_id": h.indicator_id,
                "appendix_row": h.appendix_row,
                "verdict": h.verdict.value,
                "verdict_vi": verdict_vi(h.verdict),
                "deadline_status": h.deadline.value,
                "deadline_status_vi": deadline_status_vi(h.deadline),
                "previous_verdict": h.previous_verdict and h.previous_verdict.value,
                "figures": [_figure_json(f) for f in h.figures],
            }
            for h in c.hamlets
        ],
        "hand_reported": [
            {
                "indicator_id": r.indicator_id,
                "appendix_row": r.appendix_row,
                "scope_vi": r.scope_vi,
                "value": r.value,
                "achieved": r.achieved,
                "unit": r.unit,
                "as_of": r.as_of.isoformat(),
                "source_document": r.source_document,
                "entered_by": r.entered_by,
                "entered_at": r.entered_at.isoformat(),
                "used_by_engine": r.used,
            }
            for r in c.hand
        ],
        "lines": [
            {
                "probe_id": line.probe_id,
                "hamlet": line.hamlet,
                "isp": line.isp,
                "access": line.access,
                "samples": line.samples,
                "previous_samples": line.previous_samples,
                "silent": line.silent,
            }
            for line in c.lines
        ],
        "silent_probes": [
            {
                "probe_id": p.probe_id,
                "hamlet": p.hamlet,
                "isp": p.isp,
                "last_seen_at": _time(p.last_seen_at),
            }
            for p in c.silent
        ],
        "narrative_vi": list(c.narrative),
    }


def report_json(report: QuarterlyReport) -> dict[str, Any]:
    """The report's content as JSON-ready data (``report.json``)."""
    return {
        "quarter": report.quarter.label,
        "previous_quarter": report.previous.label,
        "generated_at": report.generated_at.isoformat(),
        "previous_as_of": report.previous_as_of.isoformat(),
        "plan": {"title_vi": report.plan_title_vi, "document": report.plan_document},
        "communes": [_commune_json(c) for c in report.communes],
    }
