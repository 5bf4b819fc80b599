"""The quarterly report's files: the XLSX workbook (four sheets), the PDF's sections and
``report.json``, each from the ``QuarterlyReport`` of ``server.evidence.quarterly``.

Only layout lives here: every figure and label comes from that report, and numbers and times are
written in the office page's Vietnamese format (``server.compliance.page``). The same report
gives the same bytes: the workbook's document properties are fixed (its creation time is the
report's), and the JSON is written with sorted keys.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from server.compliance.page import ACCESS_VI, deadline_vi, speed_vi, vn_number, when_vi
from server.compliance.stats import Period
from server.evidence.pdf import Section, Table
from server.evidence.quarterly import (
    CommuneQuarter,
    FigureRow,
    QuarterlyReport,
    deadline_status_vi,
    verdict_vi,
)

SHEET_COMMUNE = "Tổng hợp xã"
SHEET_HAMLETS = "Theo thôn"
SHEET_HAND = "Số liệu tự báo cáo"
SHEET_NARRATIVE = "Diễn giải"
TITLE_VI = "Báo cáo kết quả thực hiện chỉ tiêu hạ tầng số"
RECIPIENT_VI = "Kính gửi: Sở Khoa học và Công nghệ"
_YES_NO = {True: "có", False: "không", None: "—"}


def quarter_vi(quarter: Period) -> str:
    """``2026-Q4`` → ``Quý IV/2026``, as the plan's deadlines are written."""
    year, _, number = quarter.label.partition("-")
    return deadline_vi(f"{number}/{year}")


def _local_day(at: datetime) -> str:
    return when_vi(at.isoformat())[-10:]


def _period_vi(quarter: Period) -> str:
    # The period ends at the midnight that starts the next quarter: its last day is the one before.
    last = quarter.end - timedelta(microseconds=1)
    return f"{quarter_vi(quarter)} ({_local_day(quarter.start)} – {_local_day(last)})"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{vn_number(value)} %"


def _result_vi(figure_pct: float | None, judged: int | None, met: int | None) -> str:
    if judged is None:
        return "—"
    return f"{_pct(figure_pct)} ({met}/{judged} thôn đạt)"


def _hand_value(value: float | None, achieved: bool | None, unit: str | None) -> str:
    if value is not None:
        return f"{vn_number(value)} {unit or ''}".strip()
    return {True: "đã thực hiện", False: "chưa thực hiện", None: "—"}[achieved]


# -- XLSX ---------------------------------------------------------------------------------------


class _Sheet:
    """A worksheet written row by row, with the header row in bold."""

    def __init__(self, sheet: Worksheet, bold: Any, widths: Sequence[float]) -> None:
        self.sheet, self.bold, self.row = sheet, bold, 0
        for column, width in enumerate(widths):
            sheet.set_column(column, column, width)

    def title(self, text: str) -> None:
        self.sheet.write_string(self.row, 0, text, self.bold)
        self.row += 1

    def header(self, cells: Sequence[str]) -> None:
        for column, text in enumerate(cells):
            self.sheet.write_string(self.row, column, text, self.bold)
        self.row += 1

    def line(self, cells: Sequence[str | float | int | None]) -> None:
        for column, value in enumerate(cells):
            if value is None:
                continue
            if isinstance(value, str):
                self.sheet.write_string(self.row, column, unicodedata.normalize("NFC", value))
            else:
                self.sheet.write_number(self.row, column, value)
        self.row += 1

    def gap(self) -> None:
        self.row += 1


def _shown(f: FigureRow, value: float | None) -> float | None:
    """A speed in the unit the row shows (Gb/s where the target is in Gb/s), unrounded."""
    if value is None:
        return None
    return value / 1000 if f.gbps else value


def _commune_sheet(out: _Sheet, report: QuarterlyReport, c: CommuneQuarter) -> None:
    out.title(f"{c.name} — {TITLE_VI}, {_period_vi(report.quarter)}")
    out.header(
        ("Mục", "Mã chỉ tiêu", "Chỉ tiêu", "Mục tiêu", "Điều kiện", "Hạn", "Kết quả (%)",
         "Tính theo", "Số thôn được đánh giá", "Số thôn đạt", "Chi tiết", "Đánh giá",
         "Tiến độ so với hạn", "Đánh giá quý trước", "Tiến độ quý trước")
    )  # fmt: skip
    for i in c.indicators:
        out.line(
            (i.appendix_row, i.indicator_id, i.name_vi, i.target_vi, i.condition_vi,
             i.deadline_vi, i.figure_pct, i.basis_vi, i.hamlets_judged, i.hamlets_met,
             i.detail_vi, verdict_vi(i.verdict), deadline_status_vi(i.deadline),
             verdict_vi(i.previous_verdict), deadline_status_vi(i.previous_deadline))
        )  # fmt: skip
    out.gap()
    out.title(
        f"Số mẫu đo hợp lệ trong quý (tải xuống): {c.samples}; quý trước: {c.previous_samples}"
    )
    out.header(("Đầu đo", "Thôn", "Nhà mạng", "Truy nhập", "Số mẫu quý này", "Số mẫu quý trước",
                "Im lặng"))  # fmt: skip
    for line in c.lines:
        out.line(
            (line.probe_id, line.hamlet_name, line.isp, ACCESS_VI.get(line.access, line.access),
             line.samples, line.previous_samples, _YES_NO[line.silent])
        )  # fmt: skip
    out.gap()
    out.title("Đầu đo im lặng")
    out.header(("Đầu đo", "Thôn", "Nhà mạng", "Liên lạc lần cuối"))
    for p in c.silent:
        out.line((p.probe_id, p.hamlet_name, p.isp, when_vi(_iso(p.last_seen_at))))
    out.gap()


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _hamlet_sheet(out: _Sheet, c: CommuneQuarter) -> None:
    for h in c.hamlets:
        base = (c.name, h.hamlet_name, h.hamlet, h.appendix_row, h.indicator_id,
                verdict_vi(h.verdict), deadline_status_vi(h.deadline),
                verdict_vi(h.previous_verdict))  # fmt: skip
        if not h.figures:
            out.line(base)
        for f in h.figures:
            out.line(
                (*base, f.probe_id or "(cả thôn)", f.isp, f.window, f.rule_id,
                 verdict_vi(f.verdict), f.n, _shown(f, f.mean_mbps), _shown(f, f.median_mbps),
                 _shown(f, f.p5_mbps), "Gb/s" if f.gbps else "Mb/s", f.reason_vi)
            )  # fmt: skip


def write_xlsx(report: QuarterlyReport, path: Path) -> None:
    """The workbook: the commune summary, per hamlet, the hand-reported figures, the narrative."""
    book = xlsxwriter.Workbook(str(path), {"in_memory": True, "strings_to_numbers": False})
    created = report.generated_at.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    book.set_properties(
        {
            "title": f"{TITLE_VI} — {quarter_vi(report.quarter)}",
            "subject": report.plan_title_vi,
            "author": "hamletnet-server",
            "company": "",
            "comments": report.plan_document,
            "created": created,
        }
    )
    bold = book.add_format({"bold": True})
    commune = _Sheet(book.add_worksheet(SHEET_COMMUNE), bold, (10, 26, 60, 10, 10, 12, 12, 14))
    hamlets = _Sheet(book.add_worksheet(SHEET_HAMLETS), bold, (16, 20, 10, 8, 26, 16, 18, 16))
    hand = _Sheet(book.add_worksheet(SHEET_HAND), bold, (16, 8, 26, 50, 18, 12, 12, 40))
    narrative = _Sheet(book.add_worksheet(SHEET_NARRATIVE), bold, (120,))
    hamlets.header(
        ("Xã", "Thôn", "Mã thôn", "Mục", "Mã chỉ tiêu", "Đánh giá", "Tiến độ so với hạn",
         "Đánh giá quý trước", "Nguồn số liệu", "Nhà mạng", "Kỳ", "Quy tắc", "Đánh giá theo kỳ",
         "Số mẫu", "Tải xuống trung bình", "Trung vị", "95 % mẫu đạt", "Đơn vị", "Lý do")
    )  # fmt: skip
    hand.header(
        ("Xã", "Mục", "Mã chỉ tiêu", "Chỉ tiêu", "Phạm vi", "Giá trị", "Ngày số liệu",
         "Văn bản nguồn", "Người nhập", "Thời điểm nhập", "Được dùng để đánh giá")
    )  # fmt: skip
    narrative.title(f"Thay đổi so với {quarter_vi(report.previous)}")
    for c in report.communes:
        _commune_sheet(commune, report, c)
        _hamlet_sheet(hamlets, c)
        for r in c.hand:
            hand.line(
                (c.name, r.appendix_row, r.indicator_id, r.name_vi, r.scope_vi,
                 _hand_value(r.value, r.achieved, r.unit), r.as_of.strftime("%d/%m/%Y"),
                 r.source_document, r.entered_by, when_vi(r.entered_at.isoformat()),
                 _YES_NO[r.used])
            )  # fmt: skip
        narrative.title(c.name)
        for sentence in c.narrative:
            narrative.line((sentence,))
        narrative.gap()
    book.close()


# -- PDF ----------------------------------------------------------------------------------------


def pdf_title(report: QuarterlyReport) -> str:
    return f"{TITLE_VI} — {quarter_vi(report.quarter)}"


def pdf_subtitle(report: QuarterlyReport) -> list[str]:
    communes = ", ".join(c.name for c in report.communes) or "—"
    return [
        RECIPIENT_VI,
        f"{communes} · {report.plan_title_vi}",
        f"Kỳ báo cáo: {_period_vi(report.quarter)}; so sánh với {_period_vi(report.previous)}",
        f"Lập lúc {when_vi(report.generated_at.isoformat())} (giờ Việt Nam) bởi hamletnet-server",
    ]


def _figure_cells(f: FigureRow) -> tuple[str, ...]:
    return (
        "cả thôn" if f.probe_id is None else f.probe_id,
        f.window,
        verdict_vi(f.verdict),
        vn_number(f.n, 0),
        speed_vi(f.mean_mbps, gbps=f.gbps),
        speed_vi(f.median_mbps, gbps=f.gbps),
        speed_vi(f.p5_mbps, gbps=f.gbps),
    )


def _hamlet_sections(c: CommuneQuarter) -> list[Section]:
    sections = []
    names = dict.fromkeys(h.hamlet_name for h in c.hamlets)
    for name in names:
        rows: list[tuple[str, ...]] = []
        for h in (x for x in c.hamlets if x.hamlet_name == name):
            head = (h.appendix_row, verdict_vi(h.verdict), deadline_status_vi(h.deadline))
            if not h.figures:
                rows.append((*head, "—", "—", "—", "—", "—", "—", "—"))
            for number, f in enumerate(h.figures):
                rows.append((*(head if number == 0 else ("", "", "")), *_figure_cells(f)))
        sections.append(
            Section(
                heading=f"{c.name} — {name}",
                tables=(
                    Table(
                        ("Mục", "Đánh giá", "Tiến độ so với hạn", "Đầu đo", "Kỳ",
                         "Đánh giá trong kỳ", "Số mẫu", "TB tải xuống", "Trung vị",
                         "95 % mẫu đạt"),
                        rows,
                        (1.0, 1.7, 1.6, 2.7, 1.4, 1.7, 0.9, 1.5, 1.5, 1.5),
                    ),
                ),
            )
        )  # fmt: skip
    return sections


def pdf_sections(report: QuarterlyReport) -> list[Section]:
    """The PDF's sections, per commune: the plan's indicators, sample counts, each hamlet, the
    hand-reported figures, silent probes and the narrative of what changed."""
    sections: list[Section] = []
    for c in report.communes:
        indicators = Table(
            ("Mục", "Chỉ tiêu", "Mục tiêu", "Hạn", "Kết quả", "Đánh giá", "Tiến độ so với hạn",
             "Quý trước"),
            [
                (i.appendix_row, i.name_vi,
                 i.target_vi + (f"; mỗi thôn {i.condition_vi}" if i.condition_vi else ""),
                 i.deadline_vi, _result_vi(i.figure_pct, i.hamlets_judged, i.hamlets_met),
                 verdict_vi(i.verdict), deadline_status_vi(i.deadline),
                 verdict_vi(i.previous_verdict))
                for i in c.indicators
            ],
            (1.0, 4.2, 1.6, 1.7, 1.8, 1.3, 1.5, 1.3),
        )  # fmt: skip
        sections.append(
            Section(
                heading=f"{c.name}: các chỉ tiêu của kế hoạch",
                paragraphs=(
                    "Kết quả do bộ máy đánh giá của hamletnet tính từ các kết quả đo đã ký số của"
                    " đầu đo; tỷ lệ tính theo cột Mục tiêu, trên các thôn được đánh giá.",
                ),
                tables=(indicators,),
            )
        )
        sections.append(
            Section(
                heading=f"{c.name}: thay đổi so với {quarter_vi(report.previous)}",
                paragraphs=c.narrative,
            )
        )
        samples = Table(
            ("Đầu đo", "Thôn", "Nhà mạng", "Truy nhập", "Số mẫu quý này", "Quý trước", "Im lặng"),
            [
                (line.probe_id, line.hamlet_name, line.isp,
                 ACCESS_VI.get(line.access, line.access), vn_number(line.samples, 0),
                 "—" if line.previous_samples is None else vn_number(line.previous_samples, 0),
                 _YES_NO[line.silent])
                for line in c.lines
            ],
            (3.2, 2.4, 1.3, 1.4, 1.4, 1.3, 1.0),
        )  # fmt: skip
        silent = (
            [f"Đầu đo im lặng: {p.probe_id} ({p.hamlet_name}, {p.isp}), liên lạc lần cuối"
             f" {when_vi(_iso(p.last_seen_at))}." for p in c.silent]
            or ["Không có đầu đo im lặng."]
        )  # fmt: skip
        sections.append(
            Section(
                heading=f"{c.name}: số mẫu đo hợp lệ (tải xuống)",
                paragraphs=(
                    f"Tổng trong quý: {vn_number(c.samples, 0)}; quý trước:"
                    f" {vn_number(c.previous_samples, 0)}.",
                    *silent,
                ),
                tables=(samples,),
            )
        )
        sections.extend(_hamlet_sections(c))
        hand = Table(
            ("Mục", "Phạm vi", "Giá trị", "Ngày số liệu", "Văn bản nguồn", "Người nhập",
             "Thời điểm nhập", "Được dùng"),
            [
                (r.appendix_row, r.scope_vi, _hand_value(r.value, r.achieved, r.unit),
                 r.as_of.strftime("%d/%m/%Y"), r.source_document, r.entered_by,
                 when_vi(r.entered_at.isoformat()), _YES_NO[r.used])
                for r in c.hand
            ],
            (0.9, 1.8, 1.2, 1.6, 3.0, 1.8, 1.8, 1.1),
        )  # fmt: skip
        sections.append(
            Section(
                heading=f"{c.name}: số liệu tự báo cáo",
                paragraphs=() if c.hand else ("Không có số liệu nhập tay trong quý.",),
                tables=(hand,) if c.hand else (),
            )
        )
    return sections


# -- JSON ---------------------------------------------------------------------------------------


def json_bytes(data: Any) -> bytes:
    """``report.json``: sorted keys, two-space indents, UTF-8, a final line feed."""
    return (json.dumps(data, sort_keys=True, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
