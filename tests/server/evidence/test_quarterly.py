"""The quarterly report's content over plain data: two quarters computed by the real engine, and
the figures, comparisons and narrative checked against values worked out by hand below."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from probes.models import Access
from server.compliance import rules
from server.compliance.engine import (
    CommuneInfo,
    ComplianceReport,
    Evidence,
    HamletInfo,
    HandFigure,
    ProbeLine,
    SurveyFigure,
    compute,
)
from server.compliance.plan import Plan, load_plan
from server.compliance.rules import DeadlineStatus, VerdictKind
from server.compliance.stats import parse_period
from server.evidence.quarterly import QuarterlyError, build_report, report_json
from server.evidence.quarterly_files import write_xlsx
from tests.server.compliance.dataset import ProbeSpec

PLAN_FILE = Path(__file__).parents[3] / "config" / "plan.yaml"
Q3 = parse_period("2026-Q3")
Q2 = parse_period("2026-Q2")
#: The report is made two days after Q3 (Vietnam time); Q2 is judged as it stood at its end.
NOW = datetime(2026, 10, 2, 3, tzinfo=UTC)
COMMUNE = CommuneInfo("hiep-luc", "Xã Hiệp Lực", "Thái Nguyên")
HAMLETS = [
    HamletInfo("dat", "Thôn Bản Chương", "hiep-luc", 400, 300),
    HamletInfo("san", "Thôn Khuổi Cuồng", "hiep-luc", 200, 150),
]
PROBES = [
    ProbeLine("dat-vnpt-fiber", rules.Line("dat", "VNPT", Access.FIBER), last_seen_at=NOW),
    # Never heard from: silent.
    ProbeLine("san-viettel-fiber", rules.Line("san", "Viettel", Access.FIBER)),
]
#: Q3: "dat" 300 samples at 950 Mb/s in each month → met (mean 950 ≥ 941, n 300 each month);
#: "san" 300 in July at 1100 off-peak and 200 at peak → the floor fails July → the quarter fails.
#: Q2: "dat" only 299 in May → insufficient; "san" 300 at 950 in each month → met.
Q3_DATA = {
    "dat-vnpt-fiber": [("2026-07", ProbeSpec("dat", "VNPT", "fiber", 300, 950.0)),
                       ("2026-08", ProbeSpec("dat", "VNPT", "fiber", 300, 950.0)),
                       ("2026-09", ProbeSpec("dat", "VNPT", "fiber", 300, 950.0))],
    "san-viettel-fiber": [("2026-07", ProbeSpec("san", "Viettel", "fiber", 300, 1100.0,
                                                peak_download=200.0))],
}  # fmt: skip
Q2_DATA = {
    "dat-vnpt-fiber": [("2026-05", ProbeSpec("dat", "VNPT", "fiber", 299, 950.0))],
    "san-viettel-fiber": [(m, ProbeSpec("san", "Viettel", "fiber", 300, 950.0))
                          for m in ("2026-04", "2026-05", "2026-06")],
}  # fmt: skip
#: No mobile line anywhere; a survey (dated in Q2) found no mobile signal in either hamlet: the
#: I.1.3 indicator (due Q3/2026) fails in both quarters, so it turns overdue in Q3.
SURVEYS = [
    SurveyFigure(h.code, "mobile", rules.Survey(False, "can-bo-vhxh", date(2026, 6, 10), "BB-01"))
    for h in HAMLETS
]
SIGNATURES_AUG = rules.HandEntry(
    "can-bo-vhxh",
    datetime(2026, 8, 20, 2, tzinfo=UTC),
    "Báo cáo 7/BC-UBND",
    date(2026, 8, 15),
    60.0,
)
SIGNATURES_SEP = rules.HandEntry(
    "can-bo-vhxh",
    datetime(2026, 9, 21, 2, tzinfo=UTC),
    "Báo cáo 9/BC-UBND",
    date(2026, 9, 20),
    72.0,
)
HAND = [
    HandFigure("digital-signature-2026", "hiep-luc", None, SIGNATURES_AUG),
    HandFigure("digital-signature-2026", "hiep-luc", None, SIGNATURES_SEP),
]


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(PLAN_FILE)


def _evidence(data: dict[str, list[tuple[str, ProbeSpec]]]) -> Evidence:
    bandwidth: dict[str, list[rules.Sample]] = {}
    for probe_id, months in data.items():
        bandwidth[probe_id] = [
            rules.Sample(
                s["measured_at"], s["download_mbps"], s["upload_mbps"],
                link_speed_mbps=s["link_speed_mbps"], access=Access(spec.access),
            )
            for label, spec in months
            for s in spec.samples(parse_period(label))
        ]  # fmt: skip
    return Evidence(bandwidth=bandwidth)


def _reports(plan: Plan) -> tuple[ComplianceReport, ComplianceReport]:
    current = compute(
        plan, [COMMUNE], HAMLETS, PROBES, _evidence(Q3_DATA), Q3, NOW, hand=HAND, surveys=SURVEYS
    )
    previous = compute(
        plan, [COMMUNE], HAMLETS, PROBES, _evidence(Q2_DATA), Q2, Q2.end, hand=HAND,
        surveys=SURVEYS,
    )  # fmt: skip
    return current, previous


def test_commune_indicators_beside_the_previous_quarter(plan: Plan) -> None:
    report = build_report(*_reports(plan), plan.indicators, HAND)
    (commune,) = report.communes
    by_id = {i.indicator_id: i for i in commune.indicators}
    gigabit = by_id["fixed-gigabit-2026"]
    # Q3: dat (400 people) meets, san (200) fails: 400/600 of users. Q4/2026 began on 1 October,
    # so on 2 October a fail is within its deadline quarter: at risk.
    assert gigabit.figure_pct == pytest.approx(100 * 400 / 600)
    assert (gigabit.hamlets_judged, gigabit.hamlets_met) == (2, 1)
    assert gigabit.verdict is VerdictKind.FAIL and gigabit.deadline is DeadlineStatus.AT_RISK
    # Q2: san met (200), dat insufficient: 100 % is still reachable → insufficient data.
    assert gigabit.previous_verdict is VerdictKind.INSUFFICIENT_DATA
    assert (gigabit.target_vi, gigabit.condition_vi, gigabit.deadline_vi) == (
        "≥ 100 %", "> 1 Gb/s", "Quý IV/2026",
    )  # fmt: skip
    mobile = by_id["mobile-broadband-hamlets-2026"]
    assert mobile.verdict is VerdictKind.FAIL and mobile.deadline is DeadlineStatus.OVERDUE
    assert mobile.previous_deadline is DeadlineStatus.AT_RISK
    signatures = by_id["digital-signature-2026"]
    # The latest entry dated in Q3 (72 % ≥ 70 %) decides; none was dated in Q2.
    assert signatures.verdict is VerdictKind.MET
    assert signatures.previous_verdict is VerdictKind.INSUFFICIENT_DATA


def test_hamlet_figures_are_the_engines_per_line_and_month_in_gbps(plan: Plan) -> None:
    report = build_report(*_reports(plan), plan.indicators, HAND)
    (commune,) = report.communes
    rows = {(h.hamlet, h.indicator_id): h for h in commune.hamlets}
    dat = rows[("dat", "fixed-gigabit-2026")]
    assert dat.verdict is VerdictKind.MET and dat.previous_verdict is VerdictKind.INSUFFICIENT_DATA
    got = [(f.probe_id, f.window, f.n, f.mean_mbps, f.median_mbps, f.p5_mbps) for f in dat.figures]
    assert got == [
        ("dat-vnpt-fiber", m, 300, 950.0, 950.0, 950.0) for m in ("2026-07", "2026-08", "2026-09")
    ]
    assert all(f.gbps for f in dat.figures)
    san = rows[("san", "fixed-gigabit-2026")]
    assert san.verdict is VerdictKind.FAIL and san.previous_verdict is VerdictKind.MET
    july = san.figures[0]
    # 250 off-peak at 1100 and 50 peak at 200: mean (250·1100 + 50·200)/300 = 950; median 1100;
    # p5 is the 15th smallest of 300 (nearest rank), one of the fifty 200s.
    assert (july.n, july.mean_mbps, july.median_mbps, july.p5_mbps) == (300, 950.0, 1100.0, 200.0)
    assert [f.verdict for f in san.figures] == [
        VerdictKind.FAIL, VerdictKind.INSUFFICIENT_DATA, VerdictKind.INSUFFICIENT_DATA,
    ]  # fmt: skip
    # A hamlet-level verdict (presence) has no line: one row over the quarter.
    (presence,) = rows[("dat", "fibre-hamlets-2026")].figures
    assert (presence.probe_id, presence.window, presence.n) == (None, "2026-Q3", 900)
    assert not presence.gbps


def test_hand_entries_with_source_who_and_which_one_the_engine_used(plan: Plan) -> None:
    report = build_report(*_reports(plan), plan.indicators, HAND)
    (commune,) = report.communes
    assert [(r.value, r.source_document, r.entered_by, r.as_of, r.used) for r in commune.hand] == [
        (60.0, "Báo cáo 7/BC-UBND", "can-bo-vhxh", date(2026, 8, 15), False),
        (72.0, "Báo cáo 9/BC-UBND", "can-bo-vhxh", date(2026, 9, 20), True),
    ]
    assert {r.scope_vi for r in commune.hand} == {"Xã Hiệp Lực"}


def test_sample_counts_and_silent_probes(plan: Plan) -> None:
    report = build_report(*_reports(plan), plan.indicators, HAND)
    (commune,) = report.communes
    assert [(x.probe_id, x.samples, x.previous_samples) for x in commune.lines] == [
        ("dat-vnpt-fiber", 900, 299),
        ("san-viettel-fiber", 300, 900),
    ]
    assert (commune.samples, commune.previous_samples) == (1200, 1199)
    assert [p.probe_id for p in commune.silent] == ["san-viettel-fiber"]


def test_narrative_says_what_changed_in_vietnamese(plan: Plan) -> None:
    report = build_report(*_reports(plan), plan.indicators, HAND)
    (commune,) = report.communes
    # By hand, from the data above: fibre-gigabit-2030 is judged by the same rule as I.1.2, so
    # it moves with it; digital signatures: no entry dated in Q2, 72 % ≥ 70 % in Q3. Commune
    # changes first, then overdue indicators, hamlets newly meeting, other hamlet changes,
    # sample counts (1,200 = 3 × 300 + 300; 1,199 = 299 + 3 × 300) and silent probes.
    assert list(commune.narrative) == [
        "Chỉ tiêu I.1.2 (fixed-gigabit-2026) của xã chuyển từ “Chưa đủ mẫu” sang “Không đạt”.",
        "Chỉ tiêu I.2.1 (digital-signature-2026) của xã chuyển từ “Chưa đủ mẫu” sang “Đạt”.",
        "Chỉ tiêu II.1.1 (fibre-gigabit-2030) của xã chuyển từ “Chưa đủ mẫu” sang “Không đạt”.",
        "Chỉ tiêu I.1.3 (mobile-broadband-hamlets-2026) đã quá hạn (Quý III/2026) mà chưa đạt.",
        "Thôn mới đạt chỉ tiêu I.1.2 (fixed-gigabit-2026): Thôn Bản Chương"
        " (quý trước: Chưa đủ mẫu).",
        "Thôn mới đạt chỉ tiêu II.1.1 (fibre-gigabit-2030): Thôn Bản Chương"
        " (quý trước: Chưa đủ mẫu).",
        "Chỉ tiêu I.1.2 (fixed-gigabit-2026): Thôn Khuổi Cuồng chuyển từ “Đạt” sang “Không đạt”.",
        "Chỉ tiêu II.1.1 (fibre-gigabit-2030): Thôn Khuổi Cuồng chuyển từ “Đạt” sang “Không đạt”.",
        "Tổng số mẫu đo hợp lệ của xã trong quý: 1.200 (quý trước 1.199, tăng 1).",
        "Đầu đo dat-vnpt-fiber (Thôn Bản Chương, VNPT): 900 mẫu, quý trước 299 (tăng 601).",
        "Đầu đo san-viettel-fiber (Thôn Khuổi Cuồng, Viettel): 300 mẫu, quý trước 900 (giảm 600).",
        "Đầu đo đang im lặng: san-viettel-fiber (Thôn Khuổi Cuồng).",
    ]
    again = build_report(*_reports(plan), plan.indicators, HAND)
    assert again.communes[0].narrative == commune.narrative


def test_unchanged_verdicts_are_said_so(plan: Plan) -> None:
    _, previous = _reports(plan)
    # Q2's own report, relabelled as Q3: every verdict and count is the same.
    (commune,) = build_report(replace(previous, period=Q3), previous, plan.indicators).communes
    assert commune.narrative[:2] == (
        "Không có đánh giá nào thay đổi so với quý trước.",
        "Tổng số mẫu đo hợp lệ của xã trong quý: 1.199 (quý trước 1.199, không đổi).",
    )


def test_quarters_must_be_consecutive(plan: Plan) -> None:
    current, previous = _reports(plan)
    with pytest.raises(QuarterlyError, match="2026-Q3 is not the quarter before 2026-Q3"):
        build_report(current, current, plan.indicators)
    month = compute(plan, [COMMUNE], HAMLETS, PROBES, Evidence(), parse_period("2026-09"), NOW)
    with pytest.raises(QuarterlyError, match="needs two quarters"):
        build_report(month, previous, plan.indicators)


def test_json_carries_labels_and_raw_values(plan: Plan) -> None:
    data = report_json(build_report(*_reports(plan), plan.indicators, HAND))
    assert (data["quarter"], data["previous_quarter"]) == ("2026-Q3", "2026-Q2")
    (commune,) = data["communes"]
    gigabit = next(i for i in commune["indicators"] if i["id"] == "fixed-gigabit-2026")
    assert (gigabit["verdict_vi"], gigabit["deadline_status_vi"]) == (
        "Không đạt",
        "Có nguy cơ chậm",
    )
    assert gigabit["previous_verdict_vi"] == "Chưa đủ mẫu"


def test_the_same_report_gives_the_same_xlsx_bytes(plan: Plan, tmp_path: Path) -> None:
    report = build_report(*_reports(plan), plan.indicators, HAND)
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    write_xlsx(report, first)
    write_xlsx(build_report(*_reports(plan), plan.indicators, HAND), second)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as book:
        core = book.read("docProps/core.xml").decode("utf-8")
    # The document's creation time is the report's (NOW), not the clock's.
    assert "2026-10-02T03:00:00Z" in core
