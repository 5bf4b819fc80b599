"""The ingest API end to end on a real InfluxDB; the time limit against a database that hangs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from probes.models import Kind
from server.app import create_app
from server.storage.influx import InfluxStore
from tests.influxd import Influxd
from tests.server.conftest import add_probe, auth, bandwidth, heartbeat, make_settings, signed


async def test_batch_is_stored_in_influxdb_once_with_registry_identity(
    aiohttp_client: Any, tmp_path: Path, influxd: Influxd, influx_db: str
) -> None:
    settings = make_settings(tmp_path, influxdb={"url": influxd.url, "database": influx_db})
    client = await aiohttp_client(create_app(settings))
    probe = await add_probe(client, hamlet="thon-b", isp="Viettel Thái Nguyên", access="5g")
    items = [
        signed(bandwidth(probe["probe_id"], download_mbps=float(100 + i)), probe["key"])
        for i in range(5)
    ]
    resp = await client.post(
        "/api/v1/results", json={"results": [*items, {"bad": True}]}, headers=auth(probe["token"])
    )
    reply = await resp.json()
    assert (reply["accepted"], reply["rejected"]) == (5, 1)
    again = await client.post(
        "/api/v1/results", json={"results": items[:2]}, headers=auth(probe["token"])
    )
    assert (await again.json())["duplicate"] == 2
    hb = await client.post(
        "/api/v1/heartbeat",
        json=signed(heartbeat(probe["probe_id"]), probe["key"]),
        headers=auth(probe["token"]),
    )
    assert hb.status == 200
    assert (await client.get("/healthz")).status == 200

    store = InfluxStore(influxd.url, influx_db)
    await store.start()
    try:
        rows = await store.query(kind=Kind.BANDWIDTH)
        beats = await store.query(kind=Kind.HEARTBEAT)
    finally:
        await store.close()
    assert sorted(r.result.download_mbps for r in rows) == [100.0, 101.0, 102.0, 103.0, 104.0]  # type: ignore[union-attr]
    assert {(r.identity.hamlet, r.identity.isp, r.identity.access.value) for r in rows} == {
        ("thon-b", "Viettel Thái Nguyên", "5g")
    }
    assert len(beats) == 1


async def test_points_influxdb_refuses_are_rejected_with_its_reason_and_the_rest_stored(
    aiohttp_client: Any, tmp_path: Path, influxd: Influxd, influx_db: str
) -> None:
    # A retention policy shorter than max_result_age (issue 15): this was a 503 for the whole
    # batch, retried by the probe for ever, while InfluxDB had in fact stored the others.
    influxd.query(f'CREATE DATABASE "{influx_db}"')
    influxd.query(f'CREATE RETENTION POLICY "hour" ON "{influx_db}" DURATION 1h REPLICATION 1')
    influx = {"url": influxd.url, "database": influx_db, "retention_policy": "hour"}
    client = await aiohttp_client(create_app(make_settings(tmp_path, influxdb=influx)))
    probe = await add_probe(client)
    old = {"measured_at": (datetime.now(UTC) - timedelta(hours=3)).isoformat()}
    items = [signed(bandwidth(probe["probe_id"], **when), probe["key"]) for when in ({}, old, {})]
    resp = await client.post(
        "/api/v1/results", json={"results": items}, headers=auth(probe["token"])
    )
    assert resp.status == 200
    reply = await resp.json()
    assert [item["outcome"] for item in reply["items"]] == ["accepted", "rejected", "accepted"]
    assert "points beyond retention policy" in reply["items"][1]["reason"]
    assert (tmp_path / "influx-ledger.sqlite3").exists()  # the ledger lives in data_dir


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A real TCP server that accepts connections and never answers (a hung database)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()


async def test_503_when_a_request_outlives_its_time_limit(
    aiohttp_client: Any, tmp_path: Path, silent_port: int
) -> None:
    settings = make_settings(
        tmp_path,
        influxdb={"url": f"http://127.0.0.1:{silent_port}", "timeout_s": 3},
        limits={"request_timeout_s": 0.5},
    )
    client = await aiohttp_client(create_app(settings))
    probe = await add_probe(client)
    resp = await client.post(
        "/api/v1/results", json={"results": [signed(bandwidth(probe["probe_id"]), probe["key"])]},
        headers=auth(probe["token"]),
    )  # fmt: skip
    assert resp.status == 503
    body = await resp.json()
    assert body["error"] == "timeout" and "nothing was stored" in body["detail"]
