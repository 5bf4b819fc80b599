"""The two remaining rule kinds end to end: ``loaded_latency_above`` judged from bandwidth results
posted to the REAL ingest API (SQLite store) as they arrive, and ``probe_silent`` judged by the
service's scheduled evaluation from the registry's last-seen time, which a real heartbeat
refreshes. Notices go through Apprise ``json://`` to a REAL aiohttp webhook receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from server.alerts.service import AlertService
from server.appkeys import ALERTS
from server.compliance.stats import vietnam_time
from tests.server.alerts.test_delivery import Hooks, free_port
from tests.server.alerts.test_service import settled, start
from tests.server.alerts.test_service_rules import kinds, post, settings_for
from tests.server.conftest import add_probe as register
from tests.server.conftest import auth, bandwidth, heartbeat, signed

BOUND_MS = 100.0


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[Hooks, int]]:
    """The real webhook receiver (as ``test_service_rules``'s ``hooks``), and its port."""
    receiver = Hooks()
    server = TestServer(receiver.app, host="127.0.0.1", port=free_port())
    await server.start_server()
    yield receiver, int(server.port or 0)
    await server.close()


def loaded(probe: dict[str, Any], down_ms: float, at: datetime) -> dict[str, Any]:
    """A bandwidth test whose latency during the download phase was ``down_ms``; the upload
    phase's stays low, so only the download rule may judge it bad."""
    return bandwidth(
        probe["probe_id"],
        measured_at=at.isoformat(),
        loaded_latency_down_ms=down_ms,
        loaded_latency_up_ms=20.0,
    )


async def test_loaded_latency_above_fires_m_of_n_and_resolves_after_k(
    aiohttp_client: Any, tmp_path: Path, webhook: tuple[Hooks, int]
) -> None:
    receiver, port = webhook
    down: dict[str, Any] = {"id": "lat", "kind": "loaded_latency_above", "bound_ms": BOUND_MS}
    down |= {"title_vi": "Trễ khi tải cao", "m": 2, "n": 3, "resolve_after": 2}
    # The same bound on the upload phase: its latency (20 ms) is never above it.
    up: dict[str, Any] = {"id": "lat-up", "kind": "loaded_latency_above", "bound_ms": BOUND_MS}
    up |= {"direction": "upload", "title_vi": "Trễ khi gửi cao", "m": 1, "n": 1}
    client = await start(aiohttp_client, settings_for(tmp_path, port, [down, up]))
    probe = await register(client, "thon-a", "VNPT")
    now = datetime.now(UTC)

    await post(client, probe, [loaded(probe, 250.0, now - timedelta(minutes=50))])
    await post(client, probe, [loaded(probe, 60.0, now - timedelta(minutes=40))])
    assert receiver.received == {}  # 1 of the last 3 above the bound: pending
    last_bad_at = now - timedelta(minutes=30)
    await post(client, probe, [loaded(probe, 1250.4, last_bad_at)])
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO"]
    assert kinds(receiver, "office") == ["CẢNH BÁO"]
    fired = receiver.received["vnpt"][0]
    assert fired["title"].startswith("[CẢNH BÁO] Trễ khi tải cao: Thôn Đồng Tâm")
    at_vn = vietnam_time(last_bad_at).strftime("%H:%M %d/%m/%Y")
    assert f"1.250 ms vượt ngưỡng 100 ms, lúc {at_vn}" in fired["message"]
    assert "cảnh báo khi 2/3 lần đo gần nhất không đạt" in fired["message"]

    await post(client, probe, [loaded(probe, 70.0, now - timedelta(minutes=20))])
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO"]  # 1 good of K = 2
    await post(client, probe, [loaded(probe, 80.0, now - timedelta(minutes=10))])
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO", "ĐÃ KHÔI PHỤC"]
    assert kinds(receiver, "office") == ["CẢNH BÁO", "ĐÃ KHÔI PHỤC"]
    resolved = receiver.received["vnpt"][1]["message"]
    assert "80 ms trong ngưỡng 100 ms" in resolved
    assert "viettel" not in receiver.received
    # The upload rule judged every test good: it never left ok.
    history = await client.app[ALERTS].store.transitions()
    assert {t.rule_id for t in history} == {"lat"}


async def test_probe_silent_fires_on_the_schedule_and_a_heartbeat_resolves_it(
    aiohttp_client: Any, tmp_path: Path, webhook: tuple[Hooks, int]
) -> None:
    receiver, port = webhook
    # The probe reports no upload interval, so the rule's assumed one counts: silent after
    # 2 × 1 s. (Tiny, so the test waits seconds; the last-seen time is the server's clock.)
    interval_s, factor = 1.0, 2.0
    rule: dict[str, Any] = {"id": "silent", "kind": "probe_silent", "title_vi": "Đầu đo im lặng"}
    rule |= {"factor": factor, "assumed_interval_s": interval_s, "m": 1, "n": 1}
    client = await start(aiohttp_client, settings_for(tmp_path, port, [rule]))
    service: AlertService = client.app[ALERTS]
    probe = await register(client, "thon-a", "VNPT")
    await post(client, probe, [bandwidth(probe["probe_id"])])  # heard from once

    await service.evaluate_schedule()
    await settled(client)
    assert receiver.received == {}  # just heard from

    seen = (await service.registry.get(probe["probe_id"])).last_seen_at
    assert seen is not None
    due = seen + timedelta(seconds=factor * interval_s)
    for _ in range(200):  # wait for the silence to pass the limit (bounded); no time asserted
        if datetime.now(UTC) > due:
            break
        await asyncio.sleep(0.05)
    await service.evaluate_schedule()
    await settled(client)
    await service.evaluate_schedule()  # still silent: the alert fires once, not per evaluation
    await settled(client)
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO"]
    assert kinds(receiver, "office") == ["CẢNH BÁO"]
    fired = receiver.received["vnpt"][0]
    assert fired["title"].startswith("[CẢNH BÁO] Đầu đo im lặng: Thôn Đồng Tâm")
    assert f"Đầu đo: {probe['probe_id']}" in fired["message"]
    assert "phút vượt ngưỡng" in fired["message"]

    resp = await client.post(
        "/api/v1/heartbeat",
        json=signed(heartbeat(probe["probe_id"]), probe["key"]),
        headers=auth(probe["token"]),
    )
    assert resp.status == 200, await resp.text()
    await service.evaluate_schedule()
    await settled(client)
    assert kinds(receiver, "vnpt") == ["CẢNH BÁO", "ĐÃ KHÔI PHỤC"]
    assert kinds(receiver, "office") == ["CẢNH BÁO", "ĐÃ KHÔI PHỤC"]
    assert "phút trong ngưỡng" in receiver.received["vnpt"][1]["message"]
    assert "viettel" not in receiver.received
