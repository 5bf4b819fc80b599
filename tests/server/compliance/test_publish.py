"""Published compliance rows: a month re-published replaces its rows (never adds to them), on
both stores; the pure conversion refuses anything but a month."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.appkeys import STORE
from server.cli import main
from server.compliance.engine import ComplianceReport
from server.compliance.publish import ComplianceRow, ComplianceStore, NotAMonth, report_rows
from server.compliance.stats import parse_period
from server.compliance_api import default_period
from server.publish_api import PUBLISH_SCHEDULE, _this_and_last_month
from server.storage.compliance_rows import FieldValue
from server.storage.influx import InfluxStore
from server.storage.sqlite import SqliteStore
from tests.influxd import Influxd
from tests.server.compliance import dataset
from tests.server.compliance.seed import SETTINGS, seed
from tests.server.compliance.test_api_compliance import seeded_settings, verdicts
from tests.server.conftest import ADMIN_TOKEN, GuardedTestServer, auth

MONTH = parse_period("2026-11")
NEXT = parse_period("2026-12")


def _row(month_start: datetime, hamlet: str, verdict: str, samples: int) -> ComplianceRow:
    tags = {"level": "hamlet", "period": "x", "commune": "hiep-luc", "hamlet": hamlet,
            "indicator": "fixed-gigabit-2026"}  # fmt: skip
    fields: dict[str, FieldValue] = {
        "verdict": verdict,
        "samples": samples,
        "lat": 21.5,
        "silent": False,
    }
    return ComplianceRow(month_start, tags, fields)


@pytest.fixture(params=["sqlite", "influxdb"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, influxd: Influxd, influx_db: str
) -> AsyncIterator[ComplianceStore]:
    made: SqliteStore | InfluxStore
    if request.param == "sqlite":
        made = SqliteStore(tmp_path / "results.db")
    else:
        made = InfluxStore(influxd.url, influx_db)
    await made.start()
    yield made
    await made.close()


async def test_republishing_a_month_replaces_its_rows_only(store: ComplianceStore) -> None:
    first = [_row(MONTH.start, "dat", "met", 300), _row(MONTH.start, "san", "fail", 300)]
    december = [_row(NEXT.start, "dat", "met", 12)]
    await store.replace_compliance(NEXT.start, NEXT.end, december)
    await store.replace_compliance(MONTH.start, MONTH.end, first)
    await store.replace_compliance(MONTH.start, MONTH.end, first)
    assert await store.compliance_rows(MONTH.start, MONTH.end) == first

    # "san" is gone from the configuration and "dat" changed: nothing of the old run stays.
    again = [_row(MONTH.start, "dat", "insufficient_data", 299)]
    await store.replace_compliance(MONTH.start, MONTH.end, again)
    assert await store.compliance_rows(MONTH.start, MONTH.end) == again
    assert await store.compliance_rows(NEXT.start, NEXT.end) == december


def test_only_a_month_is_published() -> None:
    report = ComplianceReport(
        period=parse_period("2026-Q4"), now=datetime.now(UTC), plan=None,  # type: ignore[arg-type]
        filters={}, communes=(),
    )  # fmt: skip
    with pytest.raises(NotAMonth, match="'2026-Q4' is a quarter"):
        report_rows(report)


async def test_cli_publishes_the_engines_verdicts(
    aiohttp_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seeded through the ingest API on SQLite; ``hamletnet-server compliance publish`` on the
    same data directory writes the rows the API's report gives."""
    settings = seeded_settings(tmp_path)
    client = await aiohttp_client(GuardedTestServer(create_app(settings)))
    month = default_period(datetime.now(UTC))
    await seed(client, month)
    report = await (await client.get("/api/v1/compliance", params={"period": month.label})).json()
    config = tmp_path / "server.yaml"
    config.write_text(
        yaml.safe_dump({"data_dir": str(tmp_path), **SETTINGS}, allow_unicode=True),
        encoding="utf-8",
    )
    code = await asyncio.to_thread(
        main, ["compliance", "publish", "--period", month.label, "--config", str(config)]
    )
    assert code == 0 and f"{month.label}: " in capsys.readouterr().out
    store = SqliteStore(tmp_path / "results.sqlite3")
    await store.start()
    try:
        published = await store.compliance_rows(month.start, month.end)
    finally:
        await store.close()
    shown = {
        (r.tags["hamlet"], r.tags["indicator"]): r.fields["verdict"]
        for r in published
        if r.tags["level"] == "hamlet"
    }
    by_indicator, _ = verdicts(report)
    assert shown == by_indicator
    assert {k: shown[k] for k in dataset.EXPECTED} == dataset.EXPECTED


async def test_publish_route_needs_the_admin_token_and_a_good_period(client: TestClient) -> None:
    url = "/api/v1/admin/compliance/publish"
    assert (await client.post(url, params={"period": "2026-11"})).status == 401
    resp = await client.post(url, params={"period": "2026-13"}, headers=auth(ADMIN_TOKEN))
    assert resp.status == 400 and "2026-13" in (await resp.json())["detail"]
    resp = await client.post(url, params={"period": "2026-11"}, headers=auth(ADMIN_TOKEN))
    assert resp.status == 200 and set((await resp.json())["rows_by_month"]) == {"2026-11"}


def test_the_schedule_covers_this_and_last_month_in_vietnam_time() -> None:
    # 00:30 on 1 January in Hanoi is still 31 December in UTC: January has begun.
    period = _this_and_last_month(datetime(2025, 12, 31, 17, 30, tzinfo=UTC))
    assert period.label == "2025-12..2026-01"
    assert [m.label for m in period.months()] == ["2025-12", "2026-01"]
    assert _this_and_last_month(datetime(2026, 3, 15, tzinfo=UTC)).label == "2026-02..2026-03"


async def test_the_schedule_publishes_what_the_api_reports(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's own schedule (shortened from 5 min / 1 h to 0 / 0.3 s), not a call to
    ``publish``: after seeding through the ingest API, its next round writes the rows whose
    verdicts are the API's, and no round fails."""
    app = create_app(seeded_settings(tmp_path))
    app[PUBLISH_SCHEDULE] = (0.0, 0.3)
    client = await aiohttp_client(GuardedTestServer(app))
    month = default_period(datetime.now(UTC))
    await seed(client, month)
    report = await (await client.get("/api/v1/compliance", params={"period": month.label})).json()
    by_indicator, _ = verdicts(report)
    store = client.app[STORE]
    assert isinstance(store, ComplianceStore)
    shown: dict[tuple[str, str], Any] = {}
    deadline = time.monotonic() + 30
    while shown != by_indicator and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        shown = {
            (r.tags["hamlet"], r.tags["indicator"]): r.fields["verdict"]
            for r in await store.compliance_rows(month.start, month.end)
            if r.tags["level"] == "hamlet"
        }
    assert shown == by_indicator
    assert {k: shown[k] for k in dataset.EXPECTED} == dataset.EXPECTED
    assert not [r for r in caplog.records if "failed" in r.getMessage()]
