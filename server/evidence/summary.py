"""The compliance summary of an export (``summary.json``) and everything it rests on besides the
raw results (``context.json``), so ``export verify`` can recompute it offline.

The summary is the compliance engine's own report (``engine.compute`` rendered by
``report_json.report_to_json``), never a second computation. ``context.json`` holds what
``compute`` takes apart from the results: the plan, the commune, the hamlet, its probe lines with
their declared speeds, the hand entries, the surveys, the window and ``now``. The results reach
the engine through ``EvidenceCollector``, which turns each raw result into the samples the rules
take, as ``server.compliance.samples`` does for a store scan: the export feeds it the results it
writes, ``verify`` the results it reads back, and the two summaries must be equal.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from probes.models import Access, Kind, Result, Status
from server.compliance import engine
from server.compliance.engine import (
    CommuneInfo,
    Evidence,
    HamletInfo,
    HandFigure,
    ProbeLine,
    SurveyFigure,
)
from server.compliance.plan import Plan, parse_plan
from server.compliance.report_json import report_to_json
from server.compliance.rules import HandEntry, Ipv6Sample, Line, Sample, Survey
from server.compliance.samples import IPV6_SAMPLE_FIELDS, SAMPLE_FIELDS, to_ipv6_sample, to_sample
from server.compliance.stats import Period
from server.storage.base import ScanRow

if TYPE_CHECKING:
    from server.registry import Registry
    from server.settings import Settings

CONTEXT_FORMAT = "hamletnet-evidence-context/1"
SUMMARY_NAME = "summary.json"
CONTEXT_NAME = "context.json"


class ContextError(ValueError):
    """``context.json`` is not a context this version can read; the message names the key."""


@dataclass(frozen=True)
class Context:
    """What ``engine.compute`` needs for one export besides the raw results."""

    plan: Plan
    communes: tuple[CommuneInfo, ...]
    hamlets: tuple[HamletInfo, ...]
    probes: tuple[ProbeLine, ...]
    hand: tuple[HandFigure, ...]
    surveys: tuple[SurveyFigure, ...]
    period: Period
    now: datetime
    hamlet: str
    isp: str | None

    def access_by_probe(self) -> dict[str, Access]:
        return {p.probe_id: p.line.access for p in self.probes}


async def gather_context(
    registry: Registry,
    settings: Settings,
    plan: Plan,
    period: Period,
    *,
    now: datetime,
    hamlet: str,
    isp: str | None,
) -> Context:
    """The registry's view for ``hamlet`` (and ``isp``), read once, so the summary and the
    context it is recomputed from can never disagree. Unknown filters raise
    ``engine.UnknownFilter`` naming the value, as the compliance API does."""
    communes = [CommuneInfo(c.code, c.name, c.province) for c in settings.communes]
    hamlets = [
        HamletInfo(h.code, h.name, h.commune, h.population, h.adults, h.households, tuple(h.isps))
        for h in await registry.hamlets()
    ]
    probes = [
        ProbeLine(p.probe_id, p.line, p.enabled, p.last_seen_at, p.declared_by, p.declared_at)
        for p in await registry.probes()
    ]
    engine.check_filters(communes, hamlets, probes, hamlet=hamlet, isp=isp)
    mine = next(h for h in hamlets if h.code == hamlet)
    hand = [
        HandFigure(e.indicator_id, e.commune, e.hamlet, e.to_rule())
        for e in await registry.hand_entries()
        if e.commune == mine.commune and e.hamlet in (None, hamlet)
    ]
    surveys = [
        SurveyFigure(s.hamlet, s.service, s.to_rule())
        for s in await registry.surveys(hamlet=hamlet)
    ]
    return Context(
        plan=plan,
        communes=tuple(c for c in communes if c.code == mine.commune),
        hamlets=(mine,),
        probes=tuple(p for p in probes if p.line.hamlet == hamlet and isp in (None, p.line.isp)),
        hand=tuple(hand),
        surveys=tuple(surveys),
        period=period,
        now=now,
        hamlet=hamlet,
        isp=isp,
    )


# -- Results to samples -------------------------------------------------------------------------


class EvidenceCollector:
    """Collects, result by result, the samples ``engine.compute`` judges: bandwidth results as
    ``samples.to_sample`` reads a scanned row, IPv6 results as ``to_ipv6_sample``, latency results
    as presence only (status and clock), exactly the fields ``engine.evaluate`` scans. Results of
    probes outside the context, and of other kinds, are not judged."""

    def __init__(self, access_by_probe: Mapping[str, Access]) -> None:
        self._access = dict(access_by_probe)
        self._bandwidth: dict[str, list[Sample]] = defaultdict(list)
        self._ipv6: dict[str, list[Ipv6Sample]] = defaultdict(list)
        self._other: dict[str, list[Sample]] = defaultdict(list)

    def add(self, result: Result) -> None:
        access = self._access.get(result.probe_id)
        if access is None:
            return
        kind = Kind(result.kind)
        if kind is Kind.BANDWIDTH:
            self._bandwidth[result.probe_id].append(to_sample(_row(result, access, SAMPLE_FIELDS)))
        elif kind is Kind.IPV6:
            row = _row(result, access, IPV6_SAMPLE_FIELDS)
            self._ipv6[result.probe_id].append(to_ipv6_sample(row))
        elif kind is Kind.LATENCY:
            synced = getattr(result, "clock_synced", None)
            self._other[result.probe_id].append(
                Sample(
                    result.measured_at,
                    status=Status(result.status),
                    clock_synced=synced if isinstance(synced, bool) else None,
                    access=access,
                )
            )

    def evidence(self) -> Evidence:
        # compute reads samples in any order, but the store gives them by time; keep that order.
        return Evidence(
            bandwidth={p: _by_time(s) for p, s in self._bandwidth.items()},
            ipv6={p: sorted(s, key=lambda x: x.measured_at) for p, s in self._ipv6.items()},
            other={p: _by_time(s) for p, s in self._other.items()},
        )


def _by_time(samples: list[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: s.measured_at)


def _row(result: Result, access: Access, fields: Sequence[str]) -> ScanRow:
    values: dict[str, Any] = {}
    for name in fields:
        value = getattr(result, name, None)
        values[name] = value.value if isinstance(value, Status) else value
    return ScanRow(
        result.probe_id, "", "", access.value, result.measured_at, values
    )  # hamlet/isp unused by the sample converters


def compute_summary(context: Context, evidence: Evidence) -> dict[str, Any]:
    """The compliance engine's report for the export's hamlet (and ISP) over its window."""
    report = engine.compute(
        context.plan, context.communes, context.hamlets, context.probes, evidence,
        context.period, context.now, hand=context.hand, surveys=context.surveys,
        hamlet=context.hamlet, isp=context.isp,
    )  # fmt: skip
    return report_to_json(report)


def json_file_bytes(data: Any) -> bytes:
    """The byte form of the export's JSON files: keys sorted, two-space indents, UTF-8
    characters as themselves, a final line feed. Non-finite numbers are refused."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, indent=2, allow_nan=False)
    return (text + "\n").encode("utf-8")


# -- context.json -------------------------------------------------------------------------------


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def context_to_json(context: Context) -> dict[str, Any]:
    return {
        "format": CONTEXT_FORMAT,
        "now": _time(context.now),
        "period": {
            "label": context.period.label,
            "kind": context.period.kind,
            "start": _time(context.period.start),
            "end": _time(context.period.end),
        },
        "filters": {"hamlet": context.hamlet, "isp": context.isp},
        "plan": context.plan.model_dump(mode="json"),
        "communes": [
            {"code": c.code, "name": c.name, "province": c.province} for c in context.communes
        ],
        "hamlets": [
            {
                "code": h.code,
                "name": h.name,
                "commune": h.commune,
                "population": h.population,
                "adults": h.adults,
                "households": h.households,
                "isps": list(h.isps),
            }
            for h in context.hamlets
        ],
        "probes": [
            {
                "probe_id": p.probe_id,
                "hamlet": p.line.hamlet,
                "isp": p.line.isp,
                "access": p.line.access.value,
                "declared_down_mbps": p.line.declared_down_mbps,
                "declared_up_mbps": p.line.declared_up_mbps,
                "declared_min_down_mbps": p.line.declared_min_down_mbps,
                "plan_name": p.line.plan_name,
                "enabled": p.enabled,
                "last_seen_at": _time(p.last_seen_at),
                "declared_by": p.declared_by,
                "declared_at": _time(p.declared_at),
            }
            for p in context.probes
        ],
        "hand_entries": [
            {
                "indicator_id": f.indicator_id,
                "commune": f.commune,
                "hamlet": f.hamlet,
                "value": f.entry.value,
                "achieved": f.entry.achieved,
                "as_of": f.entry.as_of.isoformat(),
                "source_document": f.entry.source_document,
                "entered_by": f.entry.entered_by,
                "entered_at": _time(f.entry.entered_at),
            }
            for f in context.hand
        ],
        "surveys": [
            {
                "hamlet": s.hamlet,
                "service": s.service,
                "present": s.survey.present,
                "surveyed_by": s.survey.surveyed_by,
                "surveyed_at": s.survey.surveyed_at.isoformat(),
                "source_document": s.survey.source_document,
            }
            for s in context.surveys
        ],
    }


def context_from_json(data: Any) -> Context:
    """Read ``context.json`` back; ``ContextError`` names the first key that does not fit."""
    if not isinstance(data, dict) or data.get("format") != CONTEXT_FORMAT:
        raise ContextError(f"is not a {CONTEXT_FORMAT} document")
    where = "context"
    try:
        where = "plan"
        plan = parse_plan(data["plan"], origin="context.json plan")
        where = "period"
        p = data["period"]
        period = Period(p["label"], p["kind"], _at(p["start"]), _at(p["end"]))
        where = "now"
        now = _at(data["now"])
        where = "communes"
        communes = tuple(CommuneInfo(c["code"], c["name"], c["province"]) for c in data["communes"])
        where = "hamlets"
        hamlets = tuple(
            HamletInfo(
                h["code"],
                h["name"],
                h["commune"],
                h["population"],
                h["adults"],
                h["households"],
                tuple(h["isps"]),
            )
            for h in data["hamlets"]
        )
        where = "probes"
        probes = tuple(_probe(p) for p in data["probes"])
        where = "hand_entries"
        hand = tuple(
            HandFigure(
                e["indicator_id"],
                e["commune"],
                e["hamlet"],
                HandEntry(
                    entered_by=e["entered_by"],
                    entered_at=_at(e["entered_at"]),
                    source_document=e["source_document"],
                    as_of=date.fromisoformat(e["as_of"]),
                    value=e["value"],
                    achieved=e["achieved"],
                ),
            )
            for e in data["hand_entries"]
        )
        where = "surveys"
        surveys = tuple(
            SurveyFigure(
                s["hamlet"],
                s["service"],
                Survey(
                    present=s["present"],
                    surveyed_by=s["surveyed_by"],
                    surveyed_at=date.fromisoformat(s["surveyed_at"]),
                    source_document=s["source_document"],
                ),
            )
            for s in data["surveys"]
        )
        where = "filters"
        hamlet, isp = data["filters"]["hamlet"], data["filters"]["isp"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ContextError(f"its {where!r} cannot be read: {exc!r}") from None
    return Context(plan, communes, hamlets, probes, hand, surveys, period, now, hamlet, isp)


def _at(text: Any) -> datetime:
    if not isinstance(text, str):
        raise TypeError(f"{text!r} is not a date-time string")
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return at


def _optional_at(text: Any) -> datetime | None:
    return None if text is None else _at(text)


def _probe(p: Mapping[str, Any]) -> ProbeLine:
    line = Line(
        hamlet=p["hamlet"],
        isp=p["isp"],
        access=Access(p["access"]),
        declared_down_mbps=p["declared_down_mbps"],
        declared_up_mbps=p["declared_up_mbps"],
        declared_min_down_mbps=p["declared_min_down_mbps"],
        plan_name=p["plan_name"],
    )
    return ProbeLine(
        p["probe_id"],
        line,
        p["enabled"],
        _optional_at(p["last_seen_at"]),
        p["declared_by"],
        _optional_at(p["declared_at"]),
    )


def first_difference(expected: Any, actual: Any, path: str = "") -> str | None:
    """Where two JSON values first differ, as a path (``communes[0].hamlets[0]...``) with both
    values; None when they are equal."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            where = f"{path}.{key}" if path else key
            if key not in actual:
                return f"{where}: only in the file"
            if key not in expected:
                return f"{where}: only in the recomputed summary"
            found = first_difference(expected[key], actual[key], where)
            if found is not None:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for i, (a, b) in enumerate(zip(expected, actual, strict=False)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        if len(expected) != len(actual):
            return f"{path}: {len(expected)} items in the file, {len(actual)} recomputed"
        return None
    if type(expected) is not type(actual) or expected != actual:
        return f"{path or 'the document'}: {expected!r} in the file, {actual!r} recomputed"
    return None
