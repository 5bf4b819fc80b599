"""Alert messages in Vietnamese, and the alert-history point Grafana shows as an annotation.

Pure: a notice, its rule and where it is in; out, a title and a body (NFC text, Vietnamese number
format, Vietnam time) naming the hamlet, the operator, the numbers measured against the
threshold, the rule, since when, and links to the hamlet's Grafana dashboard and to the evidence
export for the alert's window.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

from server.alerts.config import AlertRule, Links
from server.alerts.state import AlertState, NoticeKind, Notification, Observation, Phase, Subject
from server.compliance.page import vn_number
from server.compliance.stats import vietnam_time

#: The hamlet dashboard (grafana/build.py ``hamlet_detail``) and its hamlet variable.
HAMLET_DASHBOARD_UID = "hamletnet-chi-tiet-thon"
#: The measurement Grafana's annotation query reads (grafana/build.py ``alerts_annotation``).
MEASUREMENT = "alerts"
#: Context shown around the alert's window on the dashboard.
DASHBOARD_MARGIN = timedelta(hours=6)

SEVERITY_VI: Mapping[str, str] = {
    "info": "Thông tin",
    "warning": "Cảnh báo",
    "critical": "Nghiêm trọng",
}
NOTICE_VI: Mapping[NoticeKind, str] = {
    NoticeKind.FIRING: "CẢNH BÁO",
    NoticeKind.REMINDER: "NHẮC LẠI",
    NoticeKind.RESOLVED: "ĐÃ KHÔI PHỤC",
}
PHASE_VI: Mapping[Phase, str] = {
    Phase.OK: "Bình thường",
    Phase.PENDING: "Đang theo dõi",
    Phase.FIRING: "Đang cảnh báo",
    Phase.RESOLVED: "Đã khôi phục",
}
#: Decimals shown per unit: speeds to 0.1 Mb/s, silence to 0.1 minute (15.4 minutes over a
#: 15-minute bound must not read "15 phút vượt ngưỡng 15 phút"), the rest whole.
_DIGITS: Mapping[str, int] = {"Mb/s": 1, "phút": 1}


@dataclass(frozen=True, slots=True)
class Place:
    """Names to print for a subject's codes (from the settings and the registry)."""

    hamlet_name: str | None = None
    commune_name: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str
    dashboard_url: str | None
    evidence_url: str | None


@dataclass(frozen=True, slots=True)
class Annotation:
    """One point of the ``alerts`` measurement: tags ``rule``, ``state``, ``probe``, ``hamlet``
    (absent ones left out), fields ``title`` and ``text``."""

    time: datetime
    tags: Mapping[str, str]
    fields: Mapping[str, str]
    measurement: str = MEASUREMENT


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def vn_time(at: datetime) -> str:
    """``14:05 01/12/2026``, Vietnam time."""
    return vietnam_time(at).strftime("%H:%M %d/%m/%Y")


def vn_duration(span: timedelta) -> str:
    """``2 ngày 3 giờ``, ``3 giờ 5 phút``, ``12 phút``: the two largest units."""
    minutes = max(0, int(span.total_seconds() // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [(days, "ngày"), (hours, "giờ"), (mins, "phút")]
    shown = [f"{v} {u}" for v, u in parts if v][:2]
    return " ".join(shown) or "dưới 1 phút"


def vn_value(value: float | None, unit: str) -> str:
    text = vn_number(value, _DIGITS.get(unit, 0))
    return f"{text} {unit}".strip() if value is not None else text


def _where(subject: Subject, place: Place) -> str:
    if subject.target is not None and subject.hamlet is None:
        return f"máy chủ đo {subject.target}"
    name = place.hamlet_name or subject.hamlet or "?"
    where = f"{name} ({subject.hamlet})" if place.hamlet_name and subject.hamlet else name
    return f"{where}, {place.commune_name}" if place.commune_name else where


def dashboard_url(links: Links, subject: Subject, start: datetime, end: datetime) -> str | None:
    """The hamlet's Grafana dashboard over the window, with a margin either side; no hamlet (the
    measurement target): none."""
    if subject.hamlet is None:
        return None
    query = [("var-hamlet", subject.hamlet)]
    if subject.isp is not None:
        query.append(("var-isp", subject.isp))
    query += [
        ("from", str(int((start - DASHBOARD_MARGIN).timestamp() * 1000))),
        ("to", str(int((end + DASHBOARD_MARGIN).timestamp() * 1000))),
    ]
    return f"{links.grafana_url}/d/{HAMLET_DASHBOARD_UID}?{urlencode(query)}"


def evidence_url(links: Links, subject: Subject, start: datetime, end: datetime) -> str | None:
    """The evidence export of the hamlet (or probe) over exactly the alert's window."""
    if subject.hamlet is None and subject.probe is None:
        return None
    values = {
        "hamlet": subject.hamlet or "",
        "isp": subject.isp or "",
        "probe": subject.probe or "",
        "from": _rfc3339(start),
        "to": _rfc3339(end),
    }
    path = links.evidence_path.format(**{k: quote(v, safe="") for k, v in values.items()})
    return f"{links.server_url}{path}"


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _numbers(obs: Observation | None, rule: AlertRule) -> str:
    if obs is None:
        return "chưa có số đo"
    if obs.measured is None:
        verdict = "không đạt" if obs.bad else "đạt"
        text = f"{verdict} ({rule.title_vi})"
    else:
        relation = _relation(rule, obs)
        measured = vn_value(obs.measured, obs.unit)
        threshold = vn_value(obs.threshold, obs.unit)
        text = f"{measured} {relation} ngưỡng {threshold}"
    if obs.note:
        text += f" ({obs.note})"
    return f"{text}, lúc {vn_time(obs.at)}"


def _relation(rule: AlertRule, obs: Observation) -> str:
    """How the number stands against the threshold: the bad side depends on the rule."""
    upper_bound = rule.kind in ("loaded_latency_above", "probe_silent", "target_unreachable")
    if obs.bad:
        if rule.kind == "target_unreachable":  # fires at the threshold count itself
            return "bằng hoặc vượt"
        return "vượt" if upper_bound else "dưới"
    return "trong" if upper_bound else "đạt"


def render(notice: Notification, rule: AlertRule, links: Links, place: Place) -> Message:
    """The title and body of one notice, in Vietnamese."""
    subject = notice.subject
    start = notice.since or notice.fired_at or notice.at
    where = _where(subject, place)
    title = f"[{NOTICE_VI[notice.kind]}] {rule.title_vi}: {where}"
    if subject.isp:
        title += f" ({subject.isp})"
    board = dashboard_url(links, subject, start, notice.at)
    evidence = evidence_url(links, subject, start, notice.at)
    lines = [
        f"Mức độ: {SEVERITY_VI[rule.severity]}",
        f"Nơi: {where}",
    ]
    if subject.isp:
        lines.append(f"Nhà mạng: {subject.isp}")
    if subject.probe:
        lines.append(f"Đầu đo: {subject.probe}")
    if subject.target:
        lines.append(f"Máy chủ đo: {subject.target}")
    lines.append(f"Quy tắc: {rule.id} ({rule.title_vi}). {rule.text_vi}")
    lines.append(
        f"Điều kiện: cảnh báo khi {rule.m}/{rule.n} lần đo gần nhất không đạt; khôi phục sau"
        f" {rule.resolve_after} lần đạt liên tiếp."
    )
    if notice.kind is NoticeKind.RESOLVED:
        lines.append(
            f"Đã khôi phục lúc {vn_time(notice.at)}; lần đo gần nhất: "
            + _numbers(notice.observation, rule)
            + "."
        )
        lines.append(f"Sự cố từ {vn_time(start)}, kéo dài {vn_duration(notice.at - start)}.")
    else:
        lines.append("Lần đo không đạt gần nhất: " + _numbers(notice.observation, rule) + ".")
        lines.append(f"Bắt đầu từ: {vn_time(start)} ({vn_duration(notice.at - start)} trước).")
        if notice.kind is NoticeKind.REMINDER:
            lines.append(f"Nhắc lại lần {notice.reminder}: sự cố vẫn chưa được khắc phục.")
    if board:
        lines.append(f"Biểu đồ của thôn: {board}")
    if evidence:
        lines.append(f"Bằng chứng (dữ liệu đo trong khoảng này): {evidence}")
    lines.append("Giờ Việt Nam (UTC+7).")
    return Message(nfc(title), nfc("\n".join(lines)), board, evidence)


def annotation(state: AlertState, rule: AlertRule, now: datetime, place: Place) -> Annotation:
    """The history point for ``state`` as it is after a transition (one per phase change), in
    the shape Grafana's annotation query reads (grafana/build.py ``alerts_annotation``)."""
    subject = state.subject
    tags = {"rule": state.rule_id, "state": state.phase.value}
    if subject.probe is not None:
        tags["probe"] = subject.probe
    if subject.hamlet is not None:
        tags["hamlet"] = subject.hamlet
    where = _where(subject, place) + (f" ({subject.isp})" if subject.isp else "")
    title = f"{PHASE_VI[state.phase]}: {rule.title_vi}, {where}"
    obs = state.last if state.phase in (Phase.RESOLVED, Phase.OK) else state.last_bad
    text = _numbers(obs, rule)
    if state.since is not None and state.phase is not Phase.OK:
        text += f"; từ {vn_time(state.since)}"
    return Annotation(now, tags, {"title": nfc(title), "text": nfc(text)})
