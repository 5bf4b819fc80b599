"""Vietnamese messages and the alert-history point for Grafana."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from server.alerts.config import BelowDeclared, Links, TargetUnreachable
from server.alerts.message import (
    HAMLET_DASHBOARD_UID,
    Place,
    annotation,
    render,
    vn_duration,
    vn_value,
)
from server.alerts.state import (
    NoticeKind,
    Observation,
    Phase,
    Subject,
    Tick,
    initial,
    transition,
)

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # 08:00 in Vietnam
LINKS = Links(grafana_url="https://g.example.vn/", server_url="https://s.example.vn")
SUBJECT = Subject(hamlet="thon-a", isp="VNPT", probe="p1")
# "Thôn Đồng Tâm" typed with combining marks (NFD), as some editors save it.
PLACE = Place(hamlet_name=unicodedata.normalize("NFD", "Thôn Đồng Tâm"), commune_name="Xã Hiệp Lực")
RULE = BelowDeclared(
    id="low",
    kind="below_declared",
    title_vi="Tốc độ thấp",
    text_vi="Dưới 80 % tốc độ công bố.",
    fraction=0.8,
    m=2,
    n=3,
    resolve_after=1,
    remind_every_h=24,
)


def _obs(minutes: int, value: float) -> Observation:
    return Observation(T0 + timedelta(minutes=minutes), value < 800, value, 800.0, "Mb/s")


def _episode() -> list:
    state = initial(RULE.id, SUBJECT)
    sent = []
    for minutes, value in [(0, 412.5), (30, 1234.5), (60, 399.0)]:
        state, out = transition(state, _obs(minutes, value), T0 + timedelta(minutes=minutes), RULE)
        sent += out
    state, out = transition(state, Tick(), T0 + timedelta(hours=25), RULE)
    sent += out
    state, out = transition(state, _obs(26 * 60, 950.25), T0 + timedelta(hours=26), RULE)
    return sent + out


def test_firing_message_names_place_operator_numbers_rule_and_since() -> None:
    firing, reminder, resolved = _episode()
    assert [firing.kind, reminder.kind, resolved.kind] == list(NoticeKind)
    message = render(firing, RULE, LINKS, PLACE)
    assert message.title == "[CẢNH BÁO] Tốc độ thấp: Thôn Đồng Tâm (thon-a), Xã Hiệp Lực (VNPT)"
    body = message.body.splitlines()
    assert "Mức độ: Cảnh báo" in body
    assert "Nhà mạng: VNPT" in body and "Đầu đo: p1" in body
    assert "Quy tắc: low (Tốc độ thấp). Dưới 80 % tốc độ công bố." in body
    assert (
        "Lần đo không đạt gần nhất: 399,0 Mb/s dưới ngưỡng 800,0 Mb/s, lúc 09:00 02/11/2026."
        in body
    )
    assert "Bắt đầu từ: 08:00 02/11/2026 (1 giờ trước)." in body
    assert "Điều kiện: cảnh báo khi 2/3 lần đo gần nhất không đạt; khôi phục sau 1 lần đạt" in (
        message.body
    )


def test_reminder_and_recovery_messages() -> None:
    _, reminder, resolved = _episode()
    text = render(reminder, RULE, LINKS, PLACE)
    assert text.title.startswith("[NHẮC LẠI] Tốc độ thấp")
    assert "Nhắc lại lần 1: sự cố vẫn chưa được khắc phục." in text.body
    done = render(resolved, RULE, LINKS, PLACE)
    assert done.title.startswith("[ĐÃ KHÔI PHỤC] Tốc độ thấp")
    assert "Đã khôi phục lúc 10:00 03/11/2026; lần đo gần nhất: 950,2 Mb/s đạt ngưỡng" in done.body
    assert "Sự cố từ 08:00 02/11/2026, kéo dài 1 ngày 2 giờ." in done.body


def test_text_is_nfc() -> None:
    for notice in _episode():
        message = render(notice, RULE, LINKS, PLACE)
        for text in (message.title, message.body):
            assert unicodedata.is_normalized("NFC", text)
    assert unicodedata.is_normalized("NFD", PLACE.hamlet_name or "")  # the input was not


def test_links_to_the_hamlet_dashboard_and_the_evidence_window() -> None:
    firing = _episode()[0]
    message = render(firing, RULE, LINKS, PLACE)
    board = urlsplit(message.dashboard_url or "")
    assert f"{board.scheme}://{board.netloc}{board.path}" == (
        f"https://g.example.vn/d/{HAMLET_DASHBOARD_UID}"
    )
    query = parse_qs(board.query)
    assert query["var-hamlet"] == ["thon-a"] and query["var-isp"] == ["VNPT"]
    margin = timedelta(hours=6)
    assert int(query["from"][0]) == int((T0 - margin).timestamp() * 1000)
    assert int(query["to"][0]) == int((firing.at + margin).timestamp() * 1000)
    assert message.evidence_url == (
        "https://s.example.vn/api/v1/admin/evidence?hamlet=thon-a&isp=VNPT"
        "&from=2026-11-02T01%3A00%3A00Z&to=2026-11-02T02%3A00%3A00Z"
    )
    assert f"Biểu đồ của thôn: {message.dashboard_url}" in message.body
    assert f"Bằng chứng (dữ liệu đo trong khoảng này): {message.evidence_url}" in message.body


def test_target_alert_has_no_hamlet_links() -> None:
    rule = TargetUnreachable(
        id="target-down", kind="target_unreachable", title_vi="Máy chủ đo lỗi", text_vi="x", m=1
    )
    subject = Subject(target="do.example.vn")
    _, out = transition(
        initial(rule.id, subject),
        Observation(T0, True, 3, 2, "đầu đo", "3/4 đầu đo: p1, p2, p3"),
        T0,
        rule,
    )
    message = render(out[0], rule, LINKS, Place())
    assert message.title == "[CẢNH BÁO] Máy chủ đo lỗi: máy chủ đo do.example.vn"
    assert "3 đầu đo bằng hoặc vượt ngưỡng 2 đầu đo (3/4 đầu đo: p1, p2, p3)" in message.body
    assert message.dashboard_url is None and message.evidence_url is None
    assert "Biểu đồ" not in message.body


def test_vietnamese_numbers_and_durations() -> None:
    assert vn_value(1234.56, "Mb/s") == "1.234,6 Mb/s"
    assert vn_value(15.0, "phút") == "15,0 phút"
    assert vn_value(15.4, "phút") == "15,4 phút"  # not "15 phút" over a 15-minute bound
    assert vn_value(None, "Mb/s") == "—"
    assert vn_duration(timedelta(days=2, hours=3, minutes=4)) == "2 ngày 3 giờ"
    assert vn_duration(timedelta(minutes=65)) == "1 giờ 5 phút"
    assert vn_duration(timedelta(seconds=30)) == "dưới 1 phút"


def test_annotation_has_the_shape_grafana_reads() -> None:
    """grafana/build.py alerts_annotation: measurement alerts, fields title and text, tags rule,
    state, probe, hamlet."""
    state = initial(RULE.id, SUBJECT)
    state, _ = transition(state, _obs(0, 412.5), T0, RULE)
    state, _ = transition(state, _obs(30, 399.0), T0 + timedelta(minutes=30), RULE)
    assert state.phase is Phase.FIRING
    point = annotation(state, RULE, T0 + timedelta(minutes=30), PLACE)
    assert point.measurement == "alerts"
    assert dict(point.tags) == {"rule": "low", "state": "firing", "probe": "p1", "hamlet": "thon-a"}
    assert set(point.fields) == {"title", "text"}
    assert point.fields["title"] == (
        "Đang cảnh báo: Tốc độ thấp, Thôn Đồng Tâm (thon-a), Xã Hiệp Lực (VNPT)"
    )
    assert point.fields["text"] == (
        "399,0 Mb/s dưới ngưỡng 800,0 Mb/s, lúc 08:30 02/11/2026; từ 08:00 02/11/2026"
    )
    target = annotation(initial("t", Subject(target="x")), RULE, T0, Place())
    assert dict(target.tags) == {"rule": "t", "state": "ok"}
