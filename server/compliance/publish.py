"""Turns a compliance report into rows for the result store, so Grafana reads the engine's own
verdicts (one computation, ``engine.compute``) rather than working out a second version.

Pure: a ``ComplianceReport`` for one Vietnam-time month in, ``ComplianceRow`` values out. Every
row of a month sits at the month's first instant (UTC) and is keyed by its tags, so a re-run
writes the same points again; the store also deletes the month's points before writing, so a
hamlet or line that is gone since the last run leaves nothing behind. Three levels:

- ``commune``: one row per plan indicator (the roll-up, its deadline and status);
- ``hamlet``: one row per hamlet × indicator (verdict, deadline status, coordinates for the map);
- ``line``: one row per probe line × rule judged per month (verdict, mean download, samples).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from server.compliance import rules
from server.compliance.engine import CommuneReport, ComplianceReport, HamletReport, evaluate
from server.compliance.report_json import DEADLINE_LABELS_VI
from server.compliance.rules import VerdictKind
from server.compliance.stats import Period
from server.storage.compliance_rows import MEASUREMENT, TAG_KEYS, ComplianceRow, FieldValue

if TYPE_CHECKING:
    from server.compliance.plan import Plan
    from server.registry import Registry
    from server.settings import Settings
    from server.storage.base import ResultStore

__all__ = ["MEASUREMENT", "TAG_KEYS", "ComplianceRow", "report_rows"]

LEVELS = ("commune", "hamlet", "line")

#: A number per verdict, for panels that colour by number (the geomap): the order of the page's
#: legend. hamletnet's choice; the dashboards map each back to ``rules.VERDICT_LABELS_VI``.
VERDICT_CODES: Mapping[VerdictKind, int] = {
    VerdictKind.MET: 1,
    VerdictKind.FAIL: 2,
    VerdictKind.INSUFFICIENT_DATA: 3,
    VerdictKind.NOT_VERIFIABLE: 4,
    VerdictKind.NOT_APPLICABLE: 5,
}


class NotAMonth(ValueError):
    """Rows are published per calendar month; the message names the period given."""


@dataclass(frozen=True, slots=True)
class Coordinates:
    lat: float
    lon: float


@runtime_checkable
class ComplianceStore(Protocol):
    """What a result store offers to keep published compliance rows."""

    async def replace_compliance(
        self, start: datetime, end: datetime, rows: Sequence[ComplianceRow]
    ) -> None:
        """Delete every compliance row with ``start <= at < end``, then keep ``rows``."""
        ...

    async def compliance_rows(self, start: datetime, end: datetime) -> list[ComplianceRow]:
        """The compliance rows with ``start <= at < end``, ordered by (at, tags)."""
        ...


def _verdict(kind: VerdictKind) -> dict[str, FieldValue]:
    return {
        "verdict": kind.value,
        "verdict_vi": rules.VERDICT_LABELS_VI[kind],
        "verdict_code": VERDICT_CODES[kind],
    }


def _clean(fields: Mapping[str, FieldValue | None]) -> dict[str, FieldValue]:
    """Missing is absent, never 0 (a field without a value is not written)."""
    return {k: v for k, v in fields.items() if v is not None}


def report_rows(
    report: ComplianceReport, coordinates: Mapping[str, Coordinates] | None = None
) -> list[ComplianceRow]:
    """The rows of a one-month report; ``coordinates`` by hamlet code (from the configuration).
    Raises ``NotAMonth`` for a report over any other period."""
    period = report.period
    if period.kind != "month":
        raise NotAMonth(
            f"period {period.label!r} is a {period.kind}; compliance is published per month"
            " (publish each month of it)"
        )
    rows: list[ComplianceRow] = []
    for commune in report.communes:
        rows.extend(_commune_rows(commune, period))
        for hamlet in commune.hamlets:
            rows.extend(_hamlet_rows(hamlet, commune, period, coordinates or {}))
            rows.extend(_line_rows(hamlet, commune, period))
    return rows


def _tags(period: Period, level: str, **more: str) -> dict[str, str]:
    return {"level": level, "period": period.label, **more}


def _commune_rows(commune: CommuneReport, period: Period) -> Iterator[ComplianceRow]:
    for item in commune.indicators:
        indicator, rollup = item.indicator, item.rollup
        fields: dict[str, FieldValue | None] = {
            **_verdict(item.verdict),
            "deadline": indicator.deadline,
            "deadline_status": item.deadline.value,
            "deadline_status_vi": DEADLINE_LABELS_VI[item.deadline],
            "name_vi": indicator.name_vi,
            "commune_name": commune.commune.name,
            "figure_pct": None if rollup is None else rollup.figure_pct,
            "share_hamlets_pct": None if rollup is None else rollup.share_hamlets_pct,
            "hamlets": None if rollup is None else rollup.hamlets,
        }
        tags = _tags(period, "commune", commune=commune.commune.code, indicator=indicator.id)
        yield ComplianceRow(period.start, tags, _clean(fields))


def _hamlet_rows(
    hamlet: HamletReport,
    commune: CommuneReport,
    period: Period,
    coordinates: Mapping[str, Coordinates],
) -> Iterator[ComplianceRow]:
    info = hamlet.hamlet
    where = coordinates.get(info.code)
    for item in hamlet.indicators:
        fields: dict[str, FieldValue | None] = {
            **_verdict(item.verdict),
            "deadline_status": item.deadline.value,
            "deadline_status_vi": DEADLINE_LABELS_VI[item.deadline],
            "hamlet_name": info.name,
            "population": info.population,
            "lat": None if where is None else where.lat,
            "lon": None if where is None else where.lon,
        }
        tags = _tags(
            period,
            "hamlet",
            commune=commune.commune.code,
            hamlet=info.code,
            indicator=item.indicator_id,
        )
        yield ComplianceRow(period.start, tags, _clean(fields))


def _line_rows(
    hamlet: HamletReport, commune: CommuneReport, period: Period
) -> Iterator[ComplianceRow]:
    for line in hamlet.lines:
        probe = line.probe
        counted = next((s for s in line.sufficiency if s.month.label == period.label), None)
        for rule in line.rules:
            month = rule.months[0] if rule.months else None
            download = None if month is None else month.download
            fields: dict[str, FieldValue | None] = {
                **_verdict(rule.verdict),
                "hamlet_name": hamlet.hamlet.name,
                "samples": None if counted is None else counted.count,
                "samples_projected": None if counted is None else counted.projected,
                "mean_download_mbps": None if download is None else download.mean,
                "declared_down_mbps": probe.line.declared_down_mbps,
                "declared_up_mbps": probe.line.declared_up_mbps,
                "silent": line.silent,
            }
            tags = _tags(
                period,
                "line",
                commune=commune.commune.code,
                hamlet=hamlet.hamlet.code,
                isp=probe.line.isp,
                probe=probe.probe_id,
                indicator=rule.rule_id,
            )
            yield ComplianceRow(period.start, tags, _clean(fields))


# -- The thin I/O edge: evaluate each month, replace its rows -----------------------------------


def coordinates_of(settings: Settings) -> dict[str, Coordinates]:
    """Hamlet code → its configured coordinates, for the map."""
    return {
        h.code: Coordinates(h.lat, h.lon)
        for h in settings.hamlets
        if h.lat is not None and h.lon is not None
    }


async def publish(
    store: ResultStore,
    registry: Registry,
    settings: Settings,
    plan: Plan,
    period: Period,
    *,
    now: datetime,
) -> dict[str, int]:
    """Evaluate every month of ``period`` that has started by ``now`` and replace its
    compliance rows in ``store``; returns rows written per month label. Raises ``TypeError``
    for a store that cannot keep compliance rows."""
    if not isinstance(store, ComplianceStore):
        raise TypeError(f"{store!r} cannot keep compliance rows (no replace_compliance)")
    written: dict[str, int] = {}
    for month in period.months():
        if month.start >= now:
            break
        report = await evaluate(store, registry, settings, plan, month, now=now)
        rows = report_rows(report, coordinates_of(settings))
        await store.replace_compliance(month.start, month.end, rows)
        written[month.label] = len(rows)
    return written
