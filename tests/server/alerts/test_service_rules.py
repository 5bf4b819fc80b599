"""The rules that read the result store, end to end: signed results posted to the REAL ingest API
(SQLite store), the alert service judging them from its queue and its schedule with bounded
store scans, and the notices delivered through Apprise to a REAL webhook receiver (``json://``)
and a REAL SMTP server (aiosmtpd), both started here. One test per rule kind, plus reminders."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.alerts.service import AlertService
from server.appkeys import ALERTS
from server.compliance.stats import month_of
from server.settings import Settings
from tests.server.alerts.test_delivery import TOKEN, Hooks, Mailbox, free_port
from tests.server.alerts.test_service import settled, start
from tests.server.conftest import add_probe as register
from tests.server.conftest import auth, bandwidth, make_settings, signed

TARGET = "speedtest.vnnic.example"
MAIL_TO = "vanphong@xa.example"


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[Hooks, int]]:
    receiver = Hooks()
    server = TestServer(receiver.app, host="127.0.0.1", port=free_port())
    await server.start_server()
    yield receiver, int(server.port or 0)
    await server.close()


@pytest.fixture
def mailbox() -> Any:
    box = Mailbox()
    box.start()
    yield box
    box.stop()


def settings_for(
    tmp_path: Path, port: int, rules: list[dict[str, Any]], smtp_port: int | None = None
) -> Settings:
    def hook(name: str) -> str:
        return f"json://127.0.0.1:{port}/{name}/{TOKEN}"

    office = [hook("office")]
    if smtp_port is not None:
        office.append(f"mailto://127.0.0.1:{smtp_port}?from=canhbao@hamlet.example&to={MAIL_TO}")
    alerts = {
        "links": {"grafana_url": "https://g.example.vn", "server_url": "https://s.example.vn"},
        "routing": {
            "office": {"name": "UBND xã", "urls": office},
            "isps": {
                "VNPT": {"name": "VNPT", "urls": [hook("vnpt")]},
                "Viettel": {"name": "Viettel", "urls": [hook("viettel")]},
            },
        },
        # The schedule runs once at start; the tests call it themselves after that.
        "evaluate_every_s": 3600,
        "rules": [
            {"title_vi": "Cảnh báo thử", "text_vi": "Quy tắc dùng trong kiểm thử.", **rule}
            for rule in rules
        ],
    }
    path = tmp_path / "alerts.yaml"
    path.write_text(json.dumps(alerts), encoding="utf-8")  # JSON is YAML
    return make_settings(tmp_path / "data", alerts_file=str(path))


async def post(client: TestClient, probe: dict[str, Any], items: list[dict[str, Any]]) -> None:
    """Signed results through the real ingest API; then wait until the service judged them."""
    body = {"results": [signed(item, probe["key"]) for item in items]}
    resp = await client.post("/api/v1/results", json=body, headers=auth(probe["token"]))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["accepted"] == len(items)
    await client.app[ALERTS].drain()
    await settled(client)


def speed(probe: dict[str, Any], mbps: float, at: datetime) -> dict[str, Any]:
    return bandwidth(probe["probe_id"], download_mbps=mbps, measured_at=at.isoformat())


def ipv6(probe: dict[str, Any], ready: bool, at: datetime) -> dict[str, Any]:
    return {
        "kind": "ipv6",
        "result_id": str(uuid.uuid4()),
        "probe_id": probe["probe_id"],
        "measured_at": at.isoformat(),
        "engine": "ipv6",
        "global_address": ready,
        "ipv6_ready": ready,
        "ipv6_only_ready": False,
    }


def ping(probe: dict[str, Any], reached: bool, at: datetime, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "latency",
        "result_id": str(uuid.uuid4()),
        "probe_id": probe["probe_id"],
        "measured_at": at.isoformat(),
        "engine": "icmp",
        "target": TARGET,
        "sent": 10,
        "received": 10 if reached else 0,
    }
    if reached:
        body.update(rtt_median_ms=12.5, rtts_ms=[12.5] * 10)
    else:
        body.update(status="failed", failure_kind="timeout", error="no reply within 2 s")
    body.update(fields)
    return body


def kinds(receiver: Hooks, name: str) -> list[str]:
    """The notices a receiver got, by their title's tag: CẢNH BÁO, NHẮC LẠI, ĐÃ KHÔI PHỤC."""
    return [b["title"][1:].split("]")[0] for b in receiver.received.get(name, [])]


async def test_below_own_median_fires_and_resolves(
    aiohttp_client: Any, tmp_path: Path, hooks: tuple[Hooks, int]
) -> None:
    receiver, port = hooks
    rule = {"id": "usual", "kind": "below_own_median", "percent_below": 40}
    rule |= {"min_baseline_samples": 5, "m": 1, "n": 1, "resolve_after": 1}
    client = await start(aiohttp_client, settings_for(tmp_path, port, [rule]))
    probe = await register(client, "thon-a", "VNPT")
    now = datetime.now(UTC)
    # The line's usual level: 900 Mb/s over the last days; one old slow test eight days back,
    # outside the 7-day baseline, would drag the median down if the window were not bounded.
    history = [speed(probe, 100, now - timedelta(days=8 - i / 10)) for i in range(6)]
    history += [speed(probe, 900 + i, now - timedelta(days=3, hours=-i)) for i in range(6)]
    await post(client, probe, history)
    assert receiver.received == {}

    await post(client, probe, [speed(probe, 300, now - timedelta(minutes=5))])
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO"]
    assert kinds(receiver, "office") == ["CẢNH BÁO"]
    message = receiver.received["vnpt"][0]["message"]
    # Median of 900..905 is 902.5; 40 % below is 541.5.
    assert "300,0 Mb/s dưới ngưỡng 541,5 Mb/s (trung vị 7 ngày)" in message

    await post(client, probe, [speed(probe, 880, now - timedelta(minutes=4))])
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO", "ĐÃ KHÔI PHỤC"]
    assert "viettel" not in receiver.received


async def test_ipv6_readiness_lost_only_where_it_was_ready(
    aiohttp_client: Any, tmp_path: Path, hooks: tuple[Hooks, int]
) -> None:
    receiver, port = hooks
    rule = {"id": "ipv6", "kind": "ipv6_readiness_lost", "m": 2, "n": 3, "resolve_after": 1}
    client = await start(aiohttp_client, settings_for(tmp_path, port, [rule]))
    was_ready = await register(client, "thon-a", "VNPT")
    never_ready = await register(client, "thon-b", "Viettel")
    now = datetime.now(UTC)
    await post(client, was_ready, [ipv6(was_ready, True, now - timedelta(days=10))])
    # A line never ready has lost nothing: no observation, however often it says so.
    await post(
        client, never_ready, [ipv6(never_ready, False, now - timedelta(hours=h)) for h in (3, 2, 1)]
    )
    await post(client, was_ready, [ipv6(was_ready, False, now - timedelta(hours=3))])
    assert receiver.received == {}  # 1 of 3: pending
    await post(client, was_ready, [ipv6(was_ready, False, now - timedelta(hours=2))])
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO"]
    await post(client, was_ready, [ipv6(was_ready, True, now - timedelta(hours=1))])
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO", "ĐÃ KHÔI PHỤC"]
    assert kinds(receiver, "office") == ["CẢNH BÁO", "ĐÃ KHÔI PHỤC"]
    assert "viettel" not in receiver.received


async def test_target_unreachable_is_one_alert_for_the_target(
    aiohttp_client: Any, tmp_path: Path, hooks: tuple[Hooks, int], mailbox: Mailbox
) -> None:
    receiver, port = hooks
    rule = {"id": "target", "kind": "target_unreachable", "min_probes": 2, "window_min": 30}
    settings = settings_for(tmp_path, port, [rule], smtp_port=mailbox.port)
    client = await start(aiohttp_client, settings)
    probes = [
        await register(client, "thon-a", "VNPT"),
        await register(client, "thon-b", "Viettel"),
        await register(client, "thon-a", "Viettel"),
    ]
    now = datetime.now(UTC)
    # A probe's own trouble (no permission) says nothing about the target.
    own = {"status": "failed", "failure_kind": "permission", "error": "no CAP_NET_RAW"}
    await post(client, probes[1], [ping(probes[1], False, now - timedelta(minutes=9), **own)])
    await post(client, probes[0], [ping(probes[0], False, now - timedelta(minutes=8))])
    assert receiver.received == {}  # one probe heard from: no verdict
    await post(client, probes[1], [ping(probes[1], False, now - timedelta(minutes=7))])
    await post(client, probes[2], [ping(probes[2], False, now - timedelta(minutes=6))])
    # One alert, about the target, to the office only (it is no operator's line).
    assert kinds(receiver, "office") == ["CẢNH BÁO"]
    assert receiver.received.keys() == {"office"}
    fired = receiver.received["office"][0]
    assert TARGET in fired["title"]
    assert "(2/2 đầu đo: " in fired["message"]

    await post(client, probes[0], [ping(probes[0], True, now - timedelta(minutes=3))])
    assert kinds(receiver, "office") == ["CẢNH BÁO"]  # 2 of 3 still fail
    await post(client, probes[1], [ping(probes[1], True, now - timedelta(minutes=2))])
    assert kinds(receiver, "office") == ["CẢNH BÁO", "ĐÃ KHÔI PHỤC"]
    assert receiver.received.keys() == {"office"}
    service = client.app[ALERTS]
    assert [s.subject.key for s in await service.store.states()] == [f"target={TARGET}"]

    # The same notices by email, to the office's address.
    assert mailbox.rcpts == [[MAIL_TO], [MAIL_TO]]
    print("\n--- webhook body as received ---")
    print(json.dumps(fired, ensure_ascii=False, indent=2))
    print("--- email as received (raw, then decoded) ---")
    print(mailbox.messages[0].as_string())
    print("Subject:", mailbox.messages[0]["subject"])
    print(mailbox.messages[0].get_content())


async def test_sample_pace_behind_fires_reminds_and_resolves(
    aiohttp_client: Any, tmp_path: Path, hooks: tuple[Hooks, int]
) -> None:
    receiver, port = hooks
    remind_s = 3
    rule = {"id": "pace", "kind": "sample_pace_behind", "grace_days": 0}
    rule |= {"m": 1, "n": 1, "resolve_after": 1, "remind_every_h": remind_s / 3600}
    client = await start(aiohttp_client, settings_for(tmp_path, port, [rule]))
    probe = await register(client, "thon-a", "VNPT")
    service: AlertService = client.app[ALERTS]

    # No valid test this month: the projection is 0, below VNNIC's 300.
    await service.evaluate_schedule()
    await settled(client)
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO"]
    assert "dưới ngưỡng 300 mẫu" in receiver.received["vnpt"][0]["message"]

    # A reminder once its time has come, at the next scheduled evaluation.
    (state,) = await service.active()
    assert state.fired_at is not None
    due = state.fired_at + timedelta(seconds=remind_s)
    for _ in range(200):  # wait for the due time (bounded); nothing is asserted on time
        if datetime.now(UTC) >= due:
            break
        await asyncio.sleep(0.05)
    await service.evaluate_schedule()
    await settled(client)
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO", "NHẮC LẠI"]

    # 300 valid tests this month: whatever the pace, the month has its minimum.
    now = datetime.now(UTC)
    month = month_of(now)
    tests = [
        speed(probe, 900, max(month.start, now - timedelta(seconds=1 + i))) for i in range(300)
    ]
    await post(client, probe, tests)
    await service.evaluate_schedule()
    await settled(client)
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO", "NHẮC LẠI", "ĐÃ KHÔI PHỤC"]
    assert kinds(receiver, "office") == ["CẢNH BÁO", "NHẮC LẠI", "ĐÃ KHÔI PHỤC"]


async def test_dead_mail_server_delays_the_email_not_the_webhook(
    aiohttp_client: Any, tmp_path: Path, hooks: tuple[Hooks, int], mailbox: Mailbox
) -> None:
    """Through the service: the outbox worker of the app retries the email on its own back-off
    (the first retry 15 to 30 s after the failure) and delivers it once the server is back."""
    receiver, port = hooks
    rule = {"id": "plan", "kind": "below_plan_target", "fraction": 0.5}
    mailbox.stop()
    client = await start(aiohttp_client, settings_for(tmp_path, port, [rule], mailbox.port))
    probe = await register(client, "thon-a", "VNPT")
    body = {"results": [signed(speed(probe, 300, datetime.now(UTC)), probe["key"])]}
    resp = await client.post("/api/v1/results", json=body, headers=auth(probe["token"]))
    assert resp.status == 200, await resp.text()
    await client.app[ALERTS].drain()
    store = client.app[ALERTS].store

    async def mail_row() -> Any:
        (row,) = [d for d in await store.deliveries() if d.channel == "office/1"]
        return row

    for _ in range(600):  # bounded waits on the outbox; nothing is asserted on time
        if len(receiver.received.get("vnpt", [])) == 1 and (await mail_row()).attempts >= 1:
            break
        await asyncio.sleep(0.05)
    assert kinds(receiver, "office") == ["CẢNH BÁO"] and kinds(receiver, "vnpt") == ["CẢNH BÁO"]
    failed = await mail_row()
    assert failed.delivered_at is None and failed.last_error and "email" in failed.last_error
    assert mailbox.messages == []

    mailbox.start()  # the mail server is back
    for _ in range(1200):
        if (await mail_row()).delivered_at is not None:
            break
        await asyncio.sleep(0.1)
    assert (await mail_row()).delivered_at is not None
    assert mailbox.rcpts == [[MAIL_TO]]
    assert str(mailbox.messages[0]["subject"]).startswith("[CẢNH BÁO] Cảnh báo thử: Thôn Đồng Tâm")
    assert kinds(receiver, "office") == ["CẢNH BÁO"]  # the webhook was not sent again
