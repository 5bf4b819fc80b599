"""Alerts end to end through the REAL ingest API: signed results posted to the real app (SQLite
store), the alert service judging them, the outbox worker delivering through Apprise's json://
to a real aiohttp webhook receiver, a restart on the same data_dir in the middle, the admin API
and the ``alerts`` history in the result store."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.alerts.config import parse_alerts
from server.alerts.service import AlertService
from server.app import create_app
from server.appkeys import ALERTS, STORE
from server.settings import Settings
from server.storage.sqlite import SqliteStore
from tests.server.alerts.test_delivery import TOKEN, Hooks, free_port
from tests.server.conftest import (
    ADMIN_TOKEN,
    GuardedTestServer,
    add_probe,
    auth,
    bandwidth,
    make_settings,
    signed,
)

M, N, K = 3, 5, 2
DECLARED_MBPS = 1000.0


def alerts_yaml(port: int) -> dict[str, Any]:
    def hook(name: str) -> str:
        return f"json://127.0.0.1:{port}/{name}/{TOKEN}"

    return {
        "links": {"grafana_url": "https://g.example.vn", "server_url": "https://s.example.vn"},
        "routing": {
            "office": {"name": "UBND xã", "urls": [hook("office")]},
            "isps": {
                "VNPT": {"name": "VNPT", "urls": [hook("vnpt")]},
                "Viettel": {"name": "Viettel", "urls": [hook("viettel")]},
            },
        },
        # The schedule runs once at start and then not within the test.
        "evaluate_every_s": 3600,
        "rules": [
            {
                "id": "low",
                "kind": "below_declared",
                "title_vi": "Tốc độ thấp",
                "text_vi": "Dưới 80 % tốc độ công bố.",
                "fraction": 0.8,
                "m": M,
                "n": N,
                "resolve_after": K,
            }
        ],
    }


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[Hooks, int]]:
    receiver = Hooks()
    server = TestServer(receiver.app, host="127.0.0.1", port=free_port())
    await server.start_server()
    yield receiver, int(server.port or 0)
    await server.close()


@pytest.fixture
def alert_settings(tmp_path: Path, hooks: tuple[Hooks, int]) -> Settings:
    path = tmp_path / "alerts.yaml"
    path.write_text(json.dumps(alerts_yaml(hooks[1])), encoding="utf-8")  # JSON is YAML
    return make_settings(tmp_path / "data", alerts_file=str(path))


async def start(aiohttp_client: Any, settings: Settings) -> TestClient:
    client: TestClient = await aiohttp_client(GuardedTestServer(create_app(settings)))
    return client


async def post_speeds(
    client: TestClient, probe: dict[str, Any], speeds: list[float], first: datetime
) -> None:
    items = [
        signed(
            bandwidth(
                probe["probe_id"],
                download_mbps=speed,
                measured_at=(first + timedelta(minutes=i)).isoformat(),
            ),
            probe["key"],
        )
        for i, speed in enumerate(speeds)
    ]
    resp = await client.post(
        "/api/v1/results", json={"results": items}, headers=auth(probe["token"])
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["accepted"] == len(speeds)
    await client.app[ALERTS].drain()


async def settled(client: TestClient) -> None:
    """Every queued delivery made (or the loop gives up after a generous bound)."""
    store = client.app[ALERTS].store
    for _ in range(600):
        pending = [d for d in await store.deliveries() if d.delivered_at is None]
        if not pending:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries still pending: {pending}")


async def test_fires_once_resolves_once_across_a_restart(
    aiohttp_client: Any, alert_settings: Settings, hooks: tuple[Hooks, int]
) -> None:
    receiver, _ = hooks
    client = await start(aiohttp_client, alert_settings)
    probe = await add_probe(client, "thon-a", "VNPT")
    resp = await client.patch(
        f"/api/v1/admin/probes/{probe['probe_id']}",
        json={"declared_down_mbps": DECLARED_MBPS, "actor": "Nguyễn Văn A"},
        headers=auth(ADMIN_TOKEN),
    )
    assert resp.status == 200, await resp.text()
    first = datetime.now(UTC) - timedelta(hours=1)

    # M bad of N: 500, 400 and 300 Mb/s are below 0.8 × 1000; the alert fires on the fifth.
    await post_speeds(client, probe, [900, 500, 950, 400], first)
    await settled(client)
    assert receiver.received == {}  # pending: nobody told yet
    await post_speeds(client, probe, [300], first + timedelta(minutes=4))
    await settled(client)
    assert [len(receiver.received.get(n, [])) for n in ("office", "vnpt", "viettel")] == [1, 1, 0]
    fired = receiver.received["vnpt"][0]
    assert fired["title"].startswith("[CẢNH BÁO] Tốc độ thấp: Thôn Đồng Tâm (thon-a)")
    assert fired["title"].endswith("(VNPT)")
    assert unicodedata.is_normalized("NFC", fired["message"])
    assert "300,0 Mb/s dưới ngưỡng 800,0 Mb/s" in fired["message"]
    assert f"cảnh báo khi {M}/{N} lần đo gần nhất không đạt" in fired["message"]
    assert "Nhà mạng: VNPT" in fired["message"]

    # The admin API: the firing alert, acknowledged by someone; no channel URL anywhere.
    resp = await client.get("/api/v1/admin/alerts", headers=auth(ADMIN_TOKEN))
    listing = await resp.json()
    assert resp.status == 200
    assert TOKEN not in await resp.text()
    (active,) = listing["active"]
    assert (active["rule"], active["phase"], active["hamlet"]) == ("low", "firing", "thon-a")
    assert active["last_bad"]["measured"] == 300
    subject = quote(active["subject"], safe="")
    resp = await client.post(
        f"/api/v1/admin/alerts/low/{subject}/ack",
        json={"note": "đã giao tổ kỹ thuật"},
        headers={**auth(ADMIN_TOKEN), "X-Hamletnet-Actor": "Trần Thị B"},
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["acked"]["by"] == "Trần Thị B"

    # Restart on the same data_dir: nothing is sent again.
    await client.close()
    client = await start(aiohttp_client, alert_settings)
    await client.app[ALERTS].drain()
    await settled(client)
    assert [len(receiver.received.get(n, [])) for n in ("office", "vnpt")] == [1, 1]

    # K good in a row resolve it: one recovery notice.
    await post_speeds(client, probe, [850], first + timedelta(minutes=10))
    await settled(client)
    assert len(receiver.received["vnpt"]) == 1
    await post_speeds(client, probe, [990], first + timedelta(minutes=11))
    await settled(client)
    titles = [b["title"] for b in receiver.received["vnpt"]]
    assert [t.split("]")[0] for t in titles] == ["[CẢNH BÁO", "[ĐÃ KHÔI PHỤC"]
    assert "đã khôi phục" in receiver.received["vnpt"][1]["message"].lower()
    # Apprise's notice type, which a ticketing system can route on: a warning, then a success.
    assert [b["type"] for b in receiver.received["vnpt"]] == ["warning", "success"]
    assert len(receiver.received["office"]) == 2
    assert "viettel" not in receiver.received

    resp = await client.get("/api/v1/admin/alerts", headers=auth(ADMIN_TOKEN))
    listing = await resp.json()
    assert listing["active"] == []
    assert [(p["from"], p["to"]) for p in listing["past"]] == [
        ("firing", "resolved"),
        ("pending", "firing"),
        ("ok", "pending"),
    ]

    # The history Grafana reads: one point per phase change, in the annotation's shape.
    store = client.app[STORE]
    assert isinstance(store, SqliteStore)
    rows = await store.alert_rows(first - timedelta(days=1), datetime.now(UTC) + timedelta(days=1))
    assert [r.tags["state"] for r in rows] == ["pending", "firing", "resolved"]
    for row in rows:
        assert row.tags["rule"] == "low"
        assert row.tags["hamlet"] == "thon-a"
        assert row.tags["probe"] == probe["probe_id"]
        assert set(row.fields) == {"title", "text"}
    assert rows[1].fields["title"].startswith("Đang cảnh báo: Tốc độ thấp, Thôn Đồng Tâm")
    assert "300,0 Mb/s dưới ngưỡng 800,0 Mb/s" in rows[1].fields["text"]


async def test_admin_alert_errors(
    aiohttp_client: Any, alert_settings: Settings, hooks: tuple[Hooks, int]
) -> None:
    client = await start(aiohttp_client, alert_settings)
    probe = await add_probe(client, "thon-a", "VNPT")
    assert (await client.get("/api/v1/admin/alerts")).status == 401
    resp = await client.get("/api/v1/admin/alerts", headers=auth(probe["token"]))
    assert resp.status == 403
    unknown = "/api/v1/admin/alerts/low/hamlet%3Dthon-a/ack"
    resp = await client.post(unknown, json={"actor": "A"}, headers=auth(ADMIN_TOKEN))
    assert resp.status == 404, await resp.text()
    resp = await client.post(
        "/api/v1/admin/alerts/low/x/mute", json={"until": "2020-01-01"}, headers=auth(ADMIN_TOKEN)
    )
    assert resp.status == 422  # not a time with a timezone


async def test_alerts_off_without_alerts_file(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, make_settings(tmp_path))
    assert ALERTS not in client.app
    resp = await client.get("/api/v1/admin/alerts", headers=auth(ADMIN_TOKEN))
    assert resp.status == 404
    assert "alerts_file" in (await resp.json())["detail"]


async def test_full_queue_drops_and_counts_never_blocks(hooks: tuple[Hooks, int]) -> None:
    config = parse_alerts(alerts_yaml(hooks[1]))
    nothing = cast(Any, None)
    service = AlertService(
        config, make_settings(Path("unused")), nothing, nothing, nothing, nothing, queue_size=1
    )
    result = cast(Any, object())
    assert service.offer("p1", [result]) is True
    assert service.offer("p1", [result]) is False
    assert service.dropped == 1
