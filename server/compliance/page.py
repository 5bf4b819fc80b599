"""The office's compliance page, in Vietnamese: the JSON report (``report_json``) rendered as HTML.

Pure: a report in, a string out. It reads only the JSON report, so it shows exactly the numbers
the API gives. Numbers use the Vietnamese format (1.234,5); speeds judged against a target in
Gb/s are shown in Gb/s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from html import escape
from typing import Any

from server.compliance.stats import VIETNAM

ACCESS_VI = {"fiber": "Cáp quang", "4g": "Di động 4G", "5g": "Di động 5G"}
#: The CSS class of each verdict and deadline status (colour for the eye; the words carry it).
_TONE = {
    "met": "ok", "fail": "bad", "insufficient_data": "warn", "not_verifiable": "grey",
    "not_applicable": "grey", "on_track": "ok", "at_risk": "bad", "overdue": "bad",
    "not_yet_due": "grey",
}  # fmt: skip
_QUARTERS = {"1": "I", "2": "II", "3": "III", "4": "IV"}
#: Deadline statuses that only repeat the verdict (shown in a hamlet's cell only when not these).
_ECHOES = {"met", "insufficient_data", "not_verifiable"}
#: Why samples were left out (``rules.Exclusion``), as the office reads it; an unknown reason is
#: shown by its name.
EXCLUSION_VI = {
    "outside_window": "ngoài kỳ",
    "status_failed": "đo lỗi",
    "deferred_cross_traffic": "hoãn: đường dây nhà đang dùng",
    "deferred_cpu_busy": "hoãn: đầu đo bận CPU",
    "skipped_data_budget": "bỏ qua: hết hạn mức dữ liệu",
    "deferred": "hoãn",
    "skipped": "bỏ qua",
    "clock_not_synced": "đồng hồ chưa đồng bộ",
    "cpu_limited": "giới hạn CPU đầu đo",
    "host_limited": "giới hạn máy đo",
    "target_shared": "đích đo dùng chung",
    "other_access": "loại truy nhập khác",
    "no_value": "không có giá trị",
    "link_speed_unknown": "không rõ tốc độ cổng",
    "link_below_2500_mbps": "cổng dưới 2,5 Gb/s",
}
#: The column of samples counted although the probe could not see the household's traffic.
CROSS_TRAFFIC_UNKNOWN_VI = "Mẫu không rõ lưu lượng của hộ"
#: Rules whose speeds are judged against a target in Gb/s.
_GIGABIT_RULES = {"fixed-gigabit"}

#: The banner of a server started by the demo (``Settings.demo``), on this page and at ``/``.
ILLUSTRATIVE_BANNER_VI = "Dữ liệu minh họa — không phải số đo thật"
ILLUSTRATIVE_BANNER = (
    '<p class="demo" role="note"><b>' + ILLUSTRATIVE_BANNER_VI + "</b>: bản demo"
    " (hamletnet-server demo) gieo một tháng kết quả tự tạo (động cơ và đích đo"
    " <code>demo-history</code>) để trang hiện đủ các loại đánh giá.</p>"
)

_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hamletnet — Mức độ đạt chỉ tiêu kế hoạch hạ tầng số</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}
table{{border-collapse:collapse;margin-bottom:2rem}}
th,td{{border:1px solid #ccc;padding:.35rem .6rem;text-align:left;vertical-align:top}}
th{{background:#eef3f8}} td.num{{text-align:right;white-space:nowrap}} .muted{{color:#777}}
.ok{{color:#075e1f;font-weight:600}} .bad{{color:#a00;font-weight:600}}
.warn{{color:#8a5a00;font-weight:600}} .grey{{color:#555;font-weight:600}}
small{{display:block;color:#555}} form{{margin:1rem 0}}
.demo{{background:#fff3cd;border:2px solid #c9a227;padding:.6rem 1rem}}
</style></head><body>
{banner}<p><a href="/">← Chất lượng Internet các thôn</a> ·
<a href="{methodology}">Phương pháp đánh giá (methodology)</a></p>
<h1>Mức độ đạt chỉ tiêu kế hoạch hạ tầng số</h1>
<p>{plan_title}<br><span class="muted">{plan_document}</span></p>
<form method="get" action="/compliance">
<label>Kỳ: <input name="period" value="{period_label}" size="22"></label>
<button type="submit">Xem</button>
<span class="muted">tháng (2026-11), quý (2026-Q4), năm (2026) hoặc TỪ..ĐẾN</span>
</form>
<p class="muted">Kỳ {period_label}: từ {period_start} đến trước {period_end} (giờ Việt Nam, UTC+7).
Cập nhật lúc {generated}. Ý nghĩa: <b class="ok">Đạt</b>, <b class="bad">Không đạt</b>,
<b class="warn">Chưa đủ mẫu</b> (dưới số mẫu tối thiểu), <b class="grey">Không kiểm chứng
được</b> (đầu đo không thể đo tới ngưỡng, ví dụ cổng 1 GbE).</p>
{communes}
</body></html>"""


def vn_number(value: float | None, digits: int = 1) -> str:
    """``1234.5`` → ``1.234,5``: dot for thousands, comma for decimals (Vietnamese usage)."""
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def when_vi(text: str | None) -> str:
    """An ISO time as Vietnam wall-clock ``HH:MM dd/mm/YYYY``; ``chưa có`` for none."""
    if text is None:
        return "chưa có"
    return datetime.fromisoformat(text).astimezone(VIETNAM).strftime("%H:%M %d/%m/%Y")


def deadline_vi(deadline: str) -> str:
    """A plan deadline as the appendix writes it: ``Q4/2026`` → ``Quý IV/2026``."""
    if deadline == "ongoing":
        return "Thường xuyên"
    quarter, _, year = deadline.partition("/")
    return f"Quý {_QUARTERS.get(quarter.removeprefix('Q'), quarter)}/{year}"


def threshold_vi(t: Mapping[str, Any] | None) -> str:
    """A target or condition (``op``, ``value``, ``unit``) as ``≥ 100 %``; ``—`` for none."""
    if t is None:
        return "—"
    digits = 0 if float(t["value"]).is_integer() else 1
    op = {">=": "≥"}.get(t["op"], t["op"])
    return f"{op} {vn_number(t['value'], digits)} {t['unit']}"


def _verdict(item: Mapping[str, Any]) -> str:
    tone = _TONE.get(item["verdict"], "grey")
    return f'<span class="{tone}">{escape(item["verdict_vi"])}</span>'


def _deadline(item: Mapping[str, Any]) -> str:
    tone = _TONE.get(item["deadline_status"], "grey")
    return f'<small class="{tone}">{escape(item["deadline_status_vi"])}</small>'


def speed_vi(mbps: float | None, *, gbps: bool) -> str:
    """A speed as the office reads it: ``0,95 Gb/s`` where the target is in Gb/s, else
    ``50,0 Mb/s``; ``—`` for none."""
    if mbps is None:
        return "—"
    if gbps:
        return f"{vn_number(mbps / 1000, 2)} Gb/s"
    return f"{vn_number(mbps)} Mb/s"


def _speed(fig: Mapping[str, Any] | None, rule_id: str) -> str:
    return speed_vi(None if fig is None else fig["value"], gbps=rule_id in _GIGABIT_RULES)


def _figure_pct(fig: Mapping[str, Any] | None) -> str:
    return "—" if fig is None or fig["value"] is None else f"{vn_number(fig['value'])} %"


def _indicators(commune: Mapping[str, Any]) -> str:
    rows = []
    for i in commune["indicators"]:
        rolled, detail = i["rollup"], i["detail"]
        if rolled is not None:
            shown = _figure_pct(rolled["figure_pct"])
            basis = {"hamlets": "số thôn", "users": "dân số", "population": "dân số"}.get(
                rolled["basis"], rolled["basis"]
            )
            result = f"{shown} <small>theo {escape(basis)}, {rolled['hamlets']} thôn</small>"
        elif detail is not None:
            result = f"<small>{escape(detail['reason_vi'])}</small>"
        else:
            result = "—"
        condition = (
            ""
            if i["condition"] is None
            else f"<small>mỗi đơn vị {escape(threshold_vi(i['condition']))}</small>"
        )
        rows.append(
            f"<tr><td>{escape(i['appendix_row'])}</td><td>{escape(i['name_vi'])}</td>"
            f"<td>{escape(threshold_vi(i['target']))}{condition}</td>"
            f"<td>{deadline_vi(i['deadline'])}</td><td>{result}</td>"
            f"<td>{_verdict(i)}</td><td>{_deadline(i)}</td></tr>"
        )
    return (
        "<h3>Chỉ tiêu của xã</h3><table><tr><th>Mục</th><th>Chỉ tiêu</th><th>Mục tiêu</th>"
        "<th>Hạn</th><th>Kết quả</th><th>Đánh giá</th><th>Tiến độ so với hạn</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _hamlet_cell(item: Mapping[str, Any]) -> str:
    """The verdict, and the deadline status where it adds something (a fail's standing)."""
    if item["deadline_status"] in _ECHOES:
        return _verdict(item)
    return _verdict(item) + _deadline(item)


def _hamlets(commune: Mapping[str, Any]) -> str:
    indicators = commune["indicators"]
    head = "".join(
        f'<th title="{escape(i["name_vi"])}">{escape(i["appendix_row"])}'
        f"<small>{escape(i['id'])}</small></th>"
        for i in indicators
    )
    rows = []
    for h in commune["hamlets"]:
        by_id = {x["indicator_id"]: x for x in h["indicators"]}
        cells = "".join(f"<td>{_hamlet_cell(by_id[i['id']])}</td>" for i in indicators)
        rows.append(
            f'<tr data-hamlet="{escape(h["code"])}"><td>{escape(h["name"])}'
            f"<small>{escape(h['code'])}</small></td>{cells}</tr>"
        )
    if not rows:
        return '<p class="muted">Chưa có thôn nào.</p>'
    return (
        "<h3>Từng thôn theo chỉ tiêu (đánh giá và tiến độ so với hạn)</h3>"
        f"<table><tr><th>Thôn</th>{head}</tr>{''.join(rows)}</table>"
    )


def exclusions_vi(exclusions: Mapping[str, int]) -> str:
    """Samples left out, by reason: ``đo lỗi: 3; hoãn: đường dây nhà đang dùng: 2``."""
    if not exclusions:
        return "—"
    return "; ".join(
        f"{escape(EXCLUSION_VI.get(reason, reason))}: {vn_number(count, 0)}"
        for reason, count in exclusions.items()
    )


def _unknown_traffic(month: Mapping[str, Any] | None) -> str:
    fig = None if month is None else month.get("cross_traffic_unknown")
    return "—" if fig is None else vn_number(fig["value"], 0)


def _lines(commune: Mapping[str, Any]) -> str:
    names = {h["code"]: h["name"] for h in commune["hamlets"]}
    rows = []
    for h in commune["hamlets"]:
        for line in h["lines"]:
            count = line["sufficiency"][-1] if line["sufficiency"] else None
            sample_note = (
                "—"
                if count is None
                else f"{vn_number(count['count']['value'], 0)} (dự kiến"
                f" {vn_number(count['projected']['value'], 0)}, tháng {escape(count['month'])})"
            )
            for rule in line["rules"]:
                last = rule["months"][-1] if rule["months"] else None
                down = last["download"] if last else None
                rows.append(
                    f"<tr><td>{escape(line['probe_id'])}</td>"
                    f"<td>{escape(names.get(line['hamlet'], line['hamlet']))}</td>"
                    f"<td>{escape(line['isp'])}</td>"
                    f"<td>{ACCESS_VI.get(line['access'], escape(line['access']))}</td>"
                    f"<td>{escape(rule['rule_id'])}</td><td>{_verdict(rule)}</td>"
                    f'<td class="num">{vn_number(last["n"], 0) if last else "—"}</td>'
                    f'<td class="num">{_speed(down and down["mean"], rule["rule_id"])}</td>'
                    f'<td class="num">{_speed(down and down["median"], rule["rule_id"])}</td>'
                    f'<td class="num">{_speed(down and down["p5"], rule["rule_id"])}</td>'
                    f"<td><small>{escape(last['reason_vi']) if last else '—'}</small></td>"
                    f'<td class="num">{sample_note}</td>'
                    f'<td class="num" data-field="cross_traffic_unknown">{_unknown_traffic(last)}'
                    "</td><td><small>"
                    f"{exclusions_vi(last['exclusions']) if last else '—'}</small></td></tr>"
                )
    if not rows:
        return '<p class="muted">Chưa có đầu đo nào.</p>'
    return (
        "<h3>Đường dây đầu đo (tháng cuối của kỳ)</h3><table><tr><th>Đầu đo</th><th>Thôn</th>"
        "<th>Nhà mạng</th><th>Truy nhập</th><th>Quy tắc</th><th>Đánh giá</th><th>Số mẫu</th>"
        "<th>Tải xuống TB</th><th>Trung vị</th><th>95 % mẫu đạt</th><th>Lý do</th>"
        f"<th>Mẫu trong tháng</th><th>{CROSS_TRAFFIC_UNKNOWN_VI}</th><th>Mẫu bị loại</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _silent(commune: Mapping[str, Any], silent_after_s: float) -> str:
    minutes = vn_number(silent_after_s / 60, 0)
    probes = commune["silent_probes"]
    if not probes:
        return f'<p class="muted">Không có đầu đo im lặng (quá {minutes} phút không liên lạc).</p>'
    items = "".join(
        f'<li><span class="bad">{escape(p["probe_id"])}</span> ({escape(p["isp"])}, thôn'
        f" {escape(p['hamlet'])}): liên lạc lần cuối {when_vi(p['last_seen_at'])}</li>"
        for p in probes
    )
    return f"<h3>Đầu đo im lặng (quá {minutes} phút không liên lạc)</h3><ul>{items}</ul>"


def render_page(report: Mapping[str, Any], *, illustrative: bool = False) -> str:
    """The whole page for a JSON report from ``report_json.report_to_json``; ``illustrative``
    (a demo server) puts the "Dữ liệu minh họa" banner on top."""
    period = report["period"]
    communes = []
    for c in report["communes"]:
        province = f", {escape(c['province'])}" if c.get("province") else ""
        communes.append(
            f"<h2>{escape(c['name'])}{province}</h2>"
            + _indicators(c)
            + _hamlets(c)
            + _lines(c)
            + _silent(c, report["silent_after_s"])
        )
    return _PAGE.format(
        banner=ILLUSTRATIVE_BANNER if illustrative else "",
        methodology=escape(report["methodology"]),
        plan_title=escape(report["plan"]["title_vi"]),
        plan_document=escape(report["plan"]["document"]),
        period_label=escape(period["label"]),
        period_start=when_vi(period["start"]),
        period_end=when_vi(period["end"]),
        generated=when_vi(report["generated_at"]),
        communes="".join(communes) or '<p class="muted">Chưa cấu hình xã nào.</p>',
    )
