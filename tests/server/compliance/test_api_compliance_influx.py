"""The "Done when" verdicts through GET /api/v1/compliance on a real InfluxDB (``influxd``),
seeded through the real ingest API with signed results: the same answers as on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.app import create_app
from server.compliance_api import default_period
from tests.influxd import Influxd
from tests.server.compliance.seed import seed
from tests.server.compliance.test_api_compliance import assert_done_when, seeded_settings
from tests.server.conftest import GuardedTestServer


async def test_done_when_verdicts_on_influxdb(
    aiohttp_client: Any, tmp_path: Path, influxd: Influxd, influx_db: str
) -> None:
    settings = seeded_settings(tmp_path, influxdb={"url": influxd.url, "database": influx_db})
    client = await aiohttp_client(GuardedTestServer(create_app(settings)))
    month = default_period(datetime.now(UTC))
    await seed(client, month)
    resp = await client.get("/api/v1/compliance", params={"period": month.label})
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["period"]["label"] == month.label
    assert_done_when(report)
