"""A ``ComplianceReport`` as JSON: the one rendering the API, the office's page, Grafana, alerts
and exports all read, so they show the same numbers.

Every figure is an object that carries its own provenance: ``value``, ``unit``, ``n`` (how many
samples or hamlets it rests on), ``aggregation`` (how it was computed, named in
docs/methodology.md §4), ``window`` (the Vietnam-time period it covers), ``rule_id`` and
``source``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.compliance import rules
from server.compliance.engine import (
    CommuneReport,
    ComplianceReport,
    HamletIndicator,
    HamletReport,
    IndicatorReport,
    LineReport,
    SilentProbe,
)
from server.compliance.plan import Indicator
from server.compliance.rules import (
    Check,
    DeadlineStatus,
    HandEntry,
    Rollup,
    Rule,
    Survey,
    Verdict,
    VerdictKind,
)
from server.compliance.stats import Aggregate, Period, vietnam_time

SCHEMA_VERSION = 1
METHODOLOGY_URL = "/docs/methodology"
TIMEZONE = "Asia/Ho_Chi_Minh (UTC+7)"

#: What each aggregation name means (docs/methodology.md §4).
AGGREGATIONS: Mapping[str, str] = {
    "mean": "mean of per-sample speeds (QCVN 34 Pd/Pu)",
    "median": "median of per-sample speeds (what VNNIC publishes)",
    "p5": "5th percentile, nearest rank: the speed 95 % of samples reach",
    "max": "highest value reported in the window",
    "share_at_least": "share of samples at or above the floor",
    "share": "share of results",
    "count": "count of valid samples",
    "count_cross_traffic_unknown": "of the samples counted, those whose probe could not see the"
    " household's traffic (cross_traffic unknown): counted, and shown",
    "projection": "count so far × month length ÷ time elapsed",
    "rate": "count so far ÷ days elapsed",
    "share_of_hamlets": "share of judged hamlets that meet the indicator",
    "share_of_population": "population of hamlets that meet it ÷ population of judged hamlets",
    "share_of_basis": "the indicator's basis (hamlets, population, adults) that meets it",
    "hand_entered": "figure entered by hand, with who, when and the source document",
}

DEADLINE_LABELS_VI: Mapping[DeadlineStatus, str] = {
    DeadlineStatus.MET: "Đã đạt",
    DeadlineStatus.ON_TRACK: "Đúng tiến độ",
    DeadlineStatus.AT_RISK: "Có nguy cơ chậm",
    DeadlineStatus.OVERDUE: "Quá hạn",
    DeadlineStatus.NOT_YET_DUE: "Chưa đến hạn",
    DeadlineStatus.INSUFFICIENT_DATA: "Chưa đủ mẫu",
    DeadlineStatus.NOT_VERIFIABLE: "Không kiểm chứng được",
}

#: How each check's observed value is computed, and on which direction's n.
_CHECK_AGGREGATION: Mapping[str, tuple[str, str]] = {
    "link": ("max", "n"),
    "mean_download": ("mean", "download"),
    "mean_upload": ("mean", "upload"),
    "pd": ("mean", "download"),
    "pu": ("mean", "upload"),
    "peak_floor": ("share_at_least", "peak_download"),
    "floor": ("share_at_least", "download"),
    "samples": ("count", "n"),
    "share": ("share", "n"),
}


@dataclass(frozen=True, slots=True)
class _Where:
    """What every figure of one verdict shares: its window, rule and source."""

    window: Period
    rule_id: str
    source: str
    #: ``window_json(window)``, made once for all the figures of the verdict.
    window_text: Mapping[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_text", window_json(self.window))


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def window_json(window: Period) -> dict[str, Any]:
    """The window of a figure; every figure of a report names one of a few windows, each made
    into text once (``_window_items``) and copied here."""
    return dict(_window_items(window))


@functools.lru_cache(maxsize=256)
def _window_items(window: Period) -> tuple[tuple[str, str], ...]:
    return (
        ("label", window.label),
        ("kind", window.kind),
        ("start", window.start.isoformat()),
        ("end", window.end.isoformat()),
        ("start_local", vietnam_time(window.start).isoformat()),
        ("end_local", vietnam_time(window.end).isoformat()),
        ("timezone", TIMEZONE),
    )


def figure(
    value: float | None, *, n: int, aggregation: str, unit: str, where: _Where
) -> dict[str, Any]:
    """One figure with its provenance (the module docstring says what each key is)."""
    return {
        "value": value,
        "unit": unit,
        "n": n,
        "aggregation": aggregation,
        "window": dict(where.window_text),
        "rule_id": where.rule_id,
        "source": where.source,
    }


def _aggregate(agg: Aggregate | None, where: _Where) -> dict[str, Any] | None:
    if agg is None:
        return None
    return {
        "n": agg.n,
        **{
            name: figure(getattr(agg, name), n=agg.n, aggregation=name, unit="Mb/s", where=where)
            for name in ("mean", "median", "p5")
        },
    }


def _check(check: Check, verdict: Verdict, where: _Where) -> dict[str, Any]:
    aggregation, n_from = _CHECK_AGGREGATION.get(check.name, ("value", "n"))
    agg = getattr(verdict, n_from, None) if n_from != "n" else None
    n = agg.n if isinstance(agg, Aggregate) else verdict.n
    return {
        "name": check.name,
        "label_vi": check.label_vi,
        "label_en": check.label_en,
        "observed": figure(
            check.observed, n=n, aggregation=aggregation, unit=check.unit, where=where
        ),
        "required": check.required,
        "unit": check.unit,
        "passed": check.passed,
        "note": check.note,
    }


def _evidence(evidence: HandEntry | Survey | None) -> dict[str, Any] | None:
    if isinstance(evidence, HandEntry):
        return {
            "type": "hand_entry",
            "value": evidence.value,
            "achieved": evidence.achieved,
            "as_of": evidence.as_of.isoformat(),
            "entered_by": evidence.entered_by,
            "entered_at": _time(evidence.entered_at),
            "source_document": evidence.source_document,
        }
    if isinstance(evidence, Survey):
        return {
            "type": "survey",
            "present": evidence.present,
            "surveyed_at": evidence.surveyed_at.isoformat(),
            "surveyed_by": evidence.surveyed_by,
            "source_document": evidence.source_document,
        }
    return None


def rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "label_vi": rule.label_vi,
        "label_en": rule.label_en,
        "source": rule.source,
    }


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    """One rule's verdict with every figure behind it."""
    where = _Where(verdict.window, verdict.rule.id, verdict.rule.source)
    return {
        "rule": rule_json(verdict.rule),
        "rule_id": verdict.rule.id,
        "source": verdict.rule.source,
        "verdict": verdict.verdict.value,
        "verdict_vi": rules.VERDICT_LABELS_VI[verdict.verdict],
        "reason_vi": verdict.reason_vi,
        "reason_en": verdict.reason_en,
        "window": window_json(verdict.window),
        "n": verdict.n,
        "download": _aggregate(verdict.download, where),
        "upload": _aggregate(verdict.upload, where),
        "peak_download": _aggregate(verdict.peak_download, where),
        "checks": [_check(c, verdict, where) for c in verdict.checks],
        "exclusions": dict(verdict.exclusions),
        "counts": [
            {
                "direction": c.direction,
                "n": figure(float(c.n), n=c.n, aggregation="count", unit="samples", where=where),
                "minimum": c.minimum,
                "reached": c.reached,
                "source": c.source,
            }
            for c in verdict.counts
        ],
        "shares_pct": {
            name: figure(value, n=verdict.n, aggregation="share", unit="%", where=where)
            for name, value in verdict.shares_pct.items()
        },
        "evidence": _evidence(verdict.evidence),
        "cross_traffic_unknown": _cross_traffic_unknown(verdict, where),
    }


def _cross_traffic_unknown(verdict: Verdict, where: _Where) -> dict[str, Any] | None:
    """How many of the verdict's samples could not see the household's traffic (issue 16)."""
    count = verdict.cross_traffic_unknown
    if count is None:
        return None
    return figure(
        float(count), n=verdict.n, aggregation="count_cross_traffic_unknown", unit="samples",
        where=where,
    )  # fmt: skip


def _kind(kind: VerdictKind) -> dict[str, str]:
    return {"verdict": kind.value, "verdict_vi": rules.VERDICT_LABELS_VI[kind]}


def _deadline(status: DeadlineStatus) -> dict[str, str]:
    return {"deadline_status": status.value, "deadline_status_vi": DEADLINE_LABELS_VI[status]}


def _line(report: LineReport) -> dict[str, Any]:
    probe, line = report.probe, report.probe.line
    return {
        "probe_id": probe.probe_id,
        "hamlet": line.hamlet,
        "isp": line.isp,
        "access": line.access.value,
        "declared_down_mbps": line.declared_down_mbps,
        "declared_up_mbps": line.declared_up_mbps,
        "declared_min_down_mbps": line.declared_min_down_mbps,
        "plan_name": line.plan_name,
        "declared_by": probe.declared_by,
        "declared_at": _time(probe.declared_at),
        "enabled": probe.enabled,
        "last_seen_at": _time(probe.last_seen_at),
        "silent": report.silent,
        "rules": [
            {
                "rule_id": r.rule_id,
                **_kind(r.verdict),
                "months": [verdict_json(v) for v in r.months],
            }
            for r in report.rules
        ],
        "sufficiency": [_sufficiency(s, probe.probe_id) for s in report.sufficiency],
    }


def _sufficiency(s: rules.Sufficiency, probe_id: str) -> dict[str, Any]:
    where = _Where(s.month, "sample-sufficiency", "docs/methodology.md §7")
    return {
        "probe_id": probe_id,
        "month": s.month.label,
        "count": figure(
            float(s.count), n=s.count, aggregation="count", unit="samples", where=where
        ),
        "pace_per_day": figure(
            s.pace_per_day, n=s.count, aggregation="rate", unit="samples/day", where=where
        ),
        "projected": figure(
            float(s.projected), n=s.count, aggregation="projection", unit="samples", where=where
        ),
        "final": s.final,
        "reaches_300": s.reaches_300,
        "reaches_1000": s.reaches_1000,
    }


def _hamlet_indicator(item: HamletIndicator) -> dict[str, Any]:
    return {
        "indicator_id": item.indicator_id,
        **_kind(item.verdict),
        **_deadline(item.deadline),
        "lines": list(item.lines),
        "verdicts": [verdict_json(v) for v in item.verdicts],
    }


def _hamlet(report: HamletReport) -> dict[str, Any]:
    h = report.hamlet
    return {
        "code": h.code,
        "name": h.name,
        "commune": h.commune,
        "population": h.population,
        "adults": h.adults,
        "households": h.households,
        "isps": list(h.isps),
        "indicators": [_hamlet_indicator(i) for i in report.indicators],
        "lines": [_line(line) for line in report.lines],
    }


def _rollup(rolled: Rollup, indicator: Indicator, window: Period, plan_source: str) -> dict:
    rule_id = indicator.judged_by.rule if indicator.judged_by.method == "rule" else "hand-reported"
    where = _Where(window, rule_id, f"{plan_source}; {rules.RULES[rule_id].source}")
    judged = rolled.hamlets - rolled.by_verdict.get(VerdictKind.NOT_APPLICABLE.value, 0)
    return {
        "basis": rolled.basis,
        "hamlets": rolled.hamlets,
        "by_verdict": dict(rolled.by_verdict),
        "share_hamlets_pct": figure(
            rolled.share_hamlets_pct, n=judged, aggregation="share_of_hamlets", unit="%",
            where=where,
        ),
        "share_population_pct": figure(
            rolled.share_population_pct, n=judged, aggregation="share_of_population", unit="%",
            where=where,
        ),
        "figure_pct": figure(
            rolled.figure_pct, n=judged, aggregation="share_of_basis", unit="%", where=where
        ),
        "population_met": rolled.population_met,
        "population_total": rolled.population_total,
        "population_unknown": list(rolled.population_unknown),
    }  # fmt: skip


def _threshold(t: Any) -> dict[str, Any] | None:
    return None if t is None else {"op": t.op, "value": t.value, "unit": t.unit}


def _indicator(report: IndicatorReport, window: Period, plan_source: str) -> dict[str, Any]:
    i = report.indicator
    judged = i.judged_by
    return {
        "id": i.id,
        "appendix_row": i.appendix_row,
        "year": i.year,
        "name_vi": i.name_vi,
        "name_en": i.name_en,
        "target": _threshold(i.target),
        "condition": _threshold(i.condition),
        "basis": i.basis,
        "deadline": i.deadline,
        "judged_by": judged.method,
        "rule_id": judged.rule if judged.method == "rule" else rules.HAND_REPORTED.id,
        "also_show": list(i.also_show),
        "note_en": i.note_en,
        **_kind(report.verdict),
        **_deadline(report.deadline),
        "rollup": None if report.rollup is None else _rollup(report.rollup, i, window, plan_source),
        "detail": None if report.verdict_detail is None else verdict_json(report.verdict_detail),
    }


def _silent(probe: SilentProbe) -> dict[str, Any]:
    return {
        "probe_id": probe.probe_id,
        "hamlet": probe.hamlet,
        "isp": probe.isp,
        "last_seen_at": _time(probe.last_seen_at),
    }


def _commune(report: CommuneReport, window: Period, plan_source: str) -> dict[str, Any]:
    c = report.commune
    return {
        "code": c.code,
        "name": c.name,
        "province": c.province,
        "indicators": [_indicator(i, window, plan_source) for i in report.indicators],
        "hamlets": [_hamlet(h) for h in report.hamlets],
        "silent_probes": [_silent(p) for p in report.silent_probes],
    }


def report_to_json(report: ComplianceReport) -> dict[str, Any]:
    """The whole report as JSON-ready data (see the module docstring for a figure's keys)."""
    plan = report.plan
    return {
        "schema_version": SCHEMA_VERSION,
        "period": window_json(report.period),
        "generated_at": report.now.isoformat(),
        "filters": dict(report.filters),
        "plan": {
            "id": plan.id,
            "title_vi": plan.title_vi,
            "title_en": plan.title_en,
            "document": plan.document,
            "starts": plan.starts.isoformat(),
        },
        "methodology": METHODOLOGY_URL,
        "aggregations": dict(AGGREGATIONS),
        "silent_after_s": report.silent_after.total_seconds(),
        "rules": [rule_json(r) for r in rules.RULES.values()],
        "communes": [_commune(c, report.period, plan.document) for c in report.communes],
    }


#: JSON Schema of a figure and of the report's outline, for the OpenAPI document.
FIGURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A figure with its provenance.",
    "required": ["value", "unit", "n", "aggregation", "window", "rule_id", "source"],
    "properties": {
        "value": {"type": ["number", "null"]},
        "unit": {"type": "string"},
        "n": {"type": "integer", "description": "Samples (or hamlets) the figure rests on."},
        "aggregation": {"type": "string", "enum": sorted(AGGREGATIONS)},
        "window": {"type": "object", "description": "Vietnam-time period (label, start, end)."},
        "rule_id": {"type": "string"},
        "source": {"type": "string"},
    },
}
REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every indicator per commune, hamlet and probe line. Each object with an"
    " 'aggregation' key is a ComplianceFigure; verdicts are met, fail, insufficient_data,"
    " not_verifiable or not_applicable; deadline statuses met, on_track, at_risk, overdue,"
    " not_yet_due, insufficient_data or not_verifiable.",
    "required": ["schema_version", "period", "generated_at", "plan", "communes", "methodology"],
    "properties": {
        "schema_version": {"type": "integer", "const": SCHEMA_VERSION},
        "period": {"type": "object"},
        "generated_at": {"type": "string", "format": "date-time"},
        "filters": {"type": "object"},
        "plan": {"type": "object"},
        "methodology": {"type": "string"},
        "aggregations": {"type": "object", "additionalProperties": {"type": "string"}},
        "silent_after_s": {"type": "number"},
        "rules": {"type": "array", "items": {"type": "object"}},
        "communes": {"type": "array", "items": {"type": "object"}},
    },
}
