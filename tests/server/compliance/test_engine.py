"""The engine over plain data: the issue's "Done when" data set gives the hand-computed verdicts,
and the engine's own choices (months combined, silent probes, filters) hold."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from probes.models import Access
from server.compliance import engine, rules
from server.compliance.engine import (
    CommuneInfo,
    Evidence,
    HamletInfo,
    HandFigure,
    ProbeLine,
    UnknownFilter,
    compute,
)
from server.compliance.plan import Plan, load_plan
from server.compliance.report_json import report_to_json
from server.compliance.stats import parse_period
from tests.server.compliance import dataset

PLAN_FILE = Path(__file__).parents[3] / "config" / "plan.yaml"
MONTH = parse_period("2026-11")
#: Two days after the month: its figures are final; Q4/2026 is under way.
NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(PLAN_FILE)


def _inputs(
    month: rules.Period = MONTH,
) -> tuple[list[CommuneInfo], list[HamletInfo], list[ProbeLine], Evidence, list[HandFigure]]:
    c = dataset.COMMUNE
    communes = [CommuneInfo(c["code"], c["name"], c["province"])]
    hamlets = [
        HamletInfo(code, name, c["code"], pop, adults, None, ("VNPT", "Viettel", "FPT"))
        for code, name, pop, adults in dataset.HAMLETS
    ]
    probes, bandwidth = [], {}
    for spec in dataset.PROBES:
        pid = f"{spec.hamlet}-{spec.access}"
        line = rules.Line(spec.hamlet, spec.isp, Access(spec.access), spec.declared_down_mbps)
        probes.append(ProbeLine(pid, line, last_seen_at=NOW - timedelta(minutes=1)))
        bandwidth[pid] = [
            rules.Sample(
                s["measured_at"],
                s["download_mbps"],
                s["upload_mbps"],
                link_speed_mbps=s["link_speed_mbps"],
                access=Access(spec.access),
            )
            for s in spec.samples(month)
        ]
    h = dataset.HAND_ENTRY
    entry = rules.HandEntry(h.entered_by, NOW, h.source_document, date(2026, 11, h.day), h.value)
    hand = [HandFigure(h.indicator_id, c["code"], h.hamlet, entry)]
    return communes, hamlets, probes, Evidence(bandwidth=bandwidth), hand


def _report(
    plan: Plan, commune: str | None = None, hamlet: str | None = None, isp: str | None = None
) -> engine.ComplianceReport:
    communes, hamlets, probes, evidence, hand = _inputs()
    return compute(
        plan, communes, hamlets, probes, evidence, MONTH, NOW,
        hand=hand, commune=commune, hamlet=hamlet, isp=isp,
    )  # fmt: skip


def test_done_when_data_set_gives_the_hand_computed_verdicts(plan: Plan) -> None:
    report = _report(plan)
    (commune,) = report.communes
    assert commune.commune.name == "Xã Hiệp Lực"
    by_code = {h.hamlet.code: h for h in commune.hamlets}
    got = {
        (hamlet, ind): by_code[hamlet].indicator(ind).verdict.value
        for hamlet, ind in dataset.EXPECTED
    }
    assert got == dataset.EXPECTED
    lines = {
        (h.hamlet.code, r.rule_id): r.verdict.value
        for h in commune.hamlets
        for line in h.lines
        for r in line.rules
    }
    assert {k: lines[k] for k in dataset.EXPECTED_LINES} == dataset.EXPECTED_LINES
    gigabit = next(i for i in commune.indicators if i.indicator.id == "fixed-gigabit-2026")
    assert gigabit.verdict is rules.VerdictKind.FAIL
    assert gigabit.rollup is not None
    assert gigabit.rollup.figure_pct == pytest.approx(dataset.EXPECTED_GIGABIT_FIGURE_PCT)
    # Q4/2026 is the deadline quarter and it fails: at risk, not yet overdue.
    assert gigabit.deadline is rules.DeadlineStatus.AT_RISK
    assert by_code["dat"].indicator("fixed-gigabit-2026").deadline is rules.DeadlineStatus.MET


def test_figures_behind_the_meeting_line(plan: Plan) -> None:
    (commune,) = _report(plan).communes
    dat = next(h for h in commune.hamlets if h.hamlet.code == "dat")
    (line,) = dat.lines
    rule = line.rule("fixed-gigabit")
    assert rule is not None
    (month,) = rule.months
    assert month.download is not None and month.peak_download is not None
    assert (month.n, month.download.mean, month.peak_download.n) == (300, 950.0, 50)
    (suff,) = line.sufficiency
    assert (suff.count, suff.final, suff.reaches_300, suff.reaches_1000) == (300, True, True, False)


def test_every_figure_in_json_carries_its_provenance(plan: Plan) -> None:
    data = report_to_json(_report(plan))
    figures = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "aggregation" in node and "value" in node:
                figures.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    assert len(figures) > 100
    for f in figures:
        assert set(f) >= {"value", "n", "aggregation", "window", "rule_id", "source", "unit"}
        assert f["aggregation"] in data["aggregations"]
        assert f["rule_id"] and f["source"] and f["window"]["label"]


def test_probe_without_declared_speed_is_not_applicable_for_qcvn34(plan: Plan) -> None:
    (commune,) = _report(plan, hamlet="dat").communes
    (hamlet,) = commune.hamlets
    rule = hamlet.lines[0].rule("qcvn34-declared-speed")
    assert rule is not None and rule.verdict is rules.VerdictKind.NOT_APPLICABLE


@pytest.mark.parametrize(
    ("filters", "named"),
    [
        ({"commune": "xa-khac"}, "'xa-khac'"),
        ({"hamlet": "thon-ma"}, "'thon-ma'"),
        ({"isp": "MobiFone"}, "'MobiFone'"),
    ],
)
def test_unknown_filter_is_refused_naming_it(
    plan: Plan, filters: dict[str, str | None], named: str
) -> None:
    with pytest.raises(UnknownFilter) as caught:
        _report(plan, **filters)
    assert named in caught.value.detail and caught.value.status == 400


def test_isp_filter_keeps_only_that_isps_lines(plan: Plan) -> None:
    (commune,) = _report(plan, isp="Viettel").communes
    isps = {line.probe.line.isp for h in commune.hamlets for line in h.lines}
    assert isps == {"Viettel"}
    by_code = {h.hamlet.code: h for h in commune.hamlets}
    # "dat" meets only through VNPT: with Viettel alone it has no fibre line.
    assert by_code["dat"].indicator("fixed-gigabit-2026").verdict.value == "insufficient_data"


def test_silent_probe_is_flagged_after_three_heartbeats(plan: Plan) -> None:
    communes, hamlets, probes, evidence, hand = _inputs()
    quiet = probes[0]
    probes[0] = ProbeLine(quiet.probe_id, quiet.line, last_seen_at=NOW - engine.SILENT_AFTER)
    probes[1] = ProbeLine(
        probes[1].probe_id,
        probes[1].line,
        last_seen_at=NOW - engine.SILENT_AFTER - timedelta(seconds=1),
    )
    report = compute(plan, communes, hamlets, probes, evidence, MONTH, NOW, hand=hand)
    assert [p.probe_id for p in report.communes[0].silent_probes] == [probes[1].probe_id]


def test_a_quarter_fails_when_one_month_fails_and_waits_for_months_not_begun(
    plan: Plan,
) -> None:
    kinds = rules.VerdictKind
    assert engine.combine_months([kinds.MET, kinds.FAIL]) is kinds.FAIL
    assert engine.combine_months([kinds.MET, kinds.INSUFFICIENT_DATA]) is kinds.INSUFFICIENT_DATA
    assert engine.combine_months([kinds.MET, kinds.MET]) is kinds.MET
    assert engine.combine_months([]) is kinds.INSUFFICIENT_DATA
    communes, hamlets, probes, evidence, hand = _inputs()
    quarter = parse_period("2026-Q4")
    report = compute(plan, communes, hamlets, probes, evidence, quarter, NOW, hand=hand)
    dat = next(h for h in report.communes[0].hamlets if h.hamlet.code == "dat")
    rule = dat.lines[0].rule("fixed-gigabit")
    assert rule is not None
    # October has no samples, November meets, December has begun with none: not yet met.
    assert [m.verdict.value for m in rule.months] == [
        "insufficient_data",
        "met",
        "insufficient_data",
    ]
    assert rule.verdict is kinds.INSUFFICIENT_DATA
