"""``methodology.json`` and ``methodology.md`` of an export: which engines measured what against
which targets and how often, the rules with their sources, the thresholds, and the standards
cited. Built from a tally the export keeps as the results stream (``Tally``), the rules module
and the plan; pure apart from nothing (the export writes the bytes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from probes.models import Result
from server.compliance import rules
from server.compliance.plan import Plan
from server.compliance.report_json import AGGREGATIONS, TIMEZONE

FORMAT = "hamletnet-evidence-methodology/1"

#: The thresholds the rules apply, with their sources (the constants and comments of
#: ``server.compliance.rules``).
THRESHOLDS: tuple[tuple[str, float, str, str], ...] = (
    ("gigabit_mean_download", rules.GIGABIT_MEAN_MBPS, "Mb/s",
     "1 Gb/s × 1448/1538 (TCP/IPv4 payload share of an Ethernet frame); docs/methodology.md §6"),
    ("gigabit_link_speed", rules.GIGABIT_LINK_MBPS, "Mb/s",
     "a port that carries more than 1 Gb/s negotiates 2.5GBASE-T or faster"),
    ("gigabit_default_floor", rules.GIGABIT_DEFAULT_FLOOR_MBPS, "Mb/s",
     "QCVN 126:2021's 30/100 ratio, by analogy, when the operator declares no minimum"),
    ("floor_share", float(rules.FLOOR_SHARE_PCT), "%",
     "QCVN 81:2019 §2.1.5 and QCVN 126:2021 §2.1.5.2"),
    ("vnnic_min_samples", float(rules.VNNIC_MIN_SAMPLES), "samples/month",
     "VNNIC i-SPEED (Cần Thơ DOST 1004/SKHCN-CNTTVTBC, 2025)"),
    ("qcvn34_min_samples", float(rules.QCVN34_MIN_SAMPLES), "samples", "QCVN 34:2022 §2.1"),
    ("qcvn34_ratio", rules.QCVN34_RATIO, "× declared", "QCVN 34:2022 §2.1: Pd ≥ 0.8·Vd"),
    ("lte_floor", rules.LTE_FLOOR_MBPS, "Mb/s",
     "draft Amendment 1:2023 to QCVN 81:2019; 1110/QĐ-BTTTT"),
    ("nr_mean_download", rules.NR_MEAN_DOWN_MBPS, "Mb/s", "QCVN 126:2021 §2.1.5.2"),
    ("nr_mean_upload", rules.NR_MEAN_UP_MBPS, "Mb/s", "QCVN 126:2021 §2.1.5.2"),
    ("nr_floor", rules.NR_FLOOR_MBPS, "Mb/s", "QCVN 126:2021 §2.1.5.2"),
)  # fmt: skip

SCHEDULES_NOTE = (
    "Each probe runs its tests on the schedule of its own configuration (collector config:"
    " exponential gaps between bounds, RFC 2330 §11.1.1); the server does not hold it."
    " 'mean_interval_s' is the cadence the exported results show: (last - first) / (n - 1)."
)
STATISTICS_NOTE = (
    "Percentiles by nearest rank (InfluxDB 1.x PERCENTILE()), never interpolated; p5 is the"
    " speed 95 % of samples reach. Months and days are Vietnam time (UTC+7)."
)


@dataclass(slots=True)
class _Series:
    results: int
    first_at: datetime
    last_at: datetime


class Tally:
    """What was measured, counted as the results stream: per kind, probe, engine and target,
    how many results and over which span."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str, str], _Series] = {}

    def add(self, result: Result) -> None:
        key = (
            str(result.kind),
            result.probe_id,
            str(getattr(result, "engine", "") or ""),
            str(getattr(result, "target", "") or ""),
        )
        at = result.measured_at
        series = self._series.get(key)
        if series is None:
            self._series[key] = _Series(1, at, at)
        else:
            series.results += 1
            series.first_at = min(series.first_at, at)
            series.last_at = max(series.last_at, at)

    def measurements(self) -> list[dict[str, Any]]:
        out = []
        for (kind, probe_id, engine, target), s in sorted(self._series.items()):
            span = (s.last_at - s.first_at).total_seconds()
            out.append(
                {
                    "kind": kind,
                    "probe_id": probe_id,
                    "engine": engine,
                    "target": target,
                    "results": s.results,
                    "first_at": s.first_at.isoformat(),
                    "last_at": s.last_at.isoformat(),
                    "mean_interval_s": round(span / (s.results - 1), 1) if s.results > 1 else None,
                }
            )
        return out


def methodology_json(tally: Tally, plan: Plan) -> dict[str, Any]:
    sources = sorted({r.source for r in rules.RULES.values()})
    return {
        "format": FORMAT,
        "measurements": tally.measurements(),
        "schedules": SCHEDULES_NOTE,
        "rules": [
            {"id": r.id, "label_vi": r.label_vi, "label_en": r.label_en, "source": r.source}
            for r in rules.RULES.values()
        ],
        "thresholds": [
            {"name": name, "value": value, "unit": unit, "source": source}
            for name, value, unit, source in THRESHOLDS
        ],
        "standards": sources,
        "aggregations": dict(AGGREGATIONS),
        "statistics": STATISTICS_NOTE,
        "timezone": TIMEZONE,
        "plan": {
            "id": plan.plan.id,
            "title_vi": plan.plan.title_vi,
            "document": plan.plan.document,
        },
        "documentation": ["docs/methodology.md", "docs/evidence.md", "docs/canonical-form.md"],
    }


def methodology_markdown(data: dict[str, Any]) -> str:
    """The same content for people, Vietnamese headings with the English terms."""
    lines = ["# Phương pháp đo và đánh giá (methodology)", ""]
    lines += [f"Kế hoạch: {data['plan']['title_vi']} ({data['plan']['document']})", ""]
    lines += ["## Phép đo (measurements)", ""]
    lines += ["| loại | probe | engine | target | số kết quả | khoảng cách TB (s) |"]
    lines += ["| --- | --- | --- | --- | ---: | ---: |"]
    for m in data["measurements"]:
        interval = "—" if m["mean_interval_s"] is None else f"{m['mean_interval_s']:g}"
        lines.append(
            f"| {m['kind']} | {m['probe_id']} | {m['engine']} | {m['target']}"
            f" | {m['results']} | {interval} |"
        )
    lines += ["", "## Lịch đo (schedules)", "", data["schedules"], ""]
    lines += ["## Quy tắc (rules)", ""]
    for r in data["rules"]:
        lines.append(f"- **{r['id']}**: {r['label_vi']} ({r['label_en']}). Nguồn: {r['source']}")
    lines += ["", "## Ngưỡng (thresholds)", ""]
    for t in data["thresholds"]:
        lines.append(f"- {t['name']}: {t['value']:g} {t['unit']} — {t['source']}")
    lines += ["", "## Thống kê (statistics)", "", data["statistics"], ""]
    lines += ["## Tiêu chuẩn được trích dẫn (standards cited)", ""]
    lines += [f"- {s}" for s in data["standards"]]
    lines += ["", f"Múi giờ: {data['timezone']}.", ""]
    return "\n".join(lines)
