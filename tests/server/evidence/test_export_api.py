"""``GET /api/v1/admin/evidence`` on the real aiohttp server: a zip of an export that verifies,
behind the admin token, with bad input a 400 and no temporary files left behind."""

from __future__ import annotations

import asyncio
import io
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from server.alerts.config import Links
from server.alerts.message import evidence_url
from server.alerts.state import Subject
from server.app import create_app
from server.evidence import minisign
from server.evidence.verify import verify_export
from server.settings import load_settings
from tests.server.conftest import ADMIN_TOKEN, GuardedTestServer, auth
from tests.server.evidence.export_builder import COMMUNE, SEED_HAMLETS, seed

QUERY = {"hamlet": "thon-a", "from": "2026-10-01", "to": "2026-10-10", "format": "csv,pdf"}


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    data_dir = tmp_path / "data"
    await (await seed(data_dir)).close()
    settings = load_settings(
        None, environment=False, data_dir=str(data_dir), admin_token=ADMIN_TOKEN,
        communes=[COMMUNE], hamlets=SEED_HAMLETS,
    )  # fmt: skip
    return await aiohttp_client(GuardedTestServer(create_app(settings)))


def leftovers() -> list[str]:
    return sorted(p.name for p in Path(tempfile.gettempdir()).glob("hamletnet-evidence-*"))


async def settled(before: list[str]) -> list[str]:
    """The temporary directories once the handler has finished: it removes its own after the
    last byte is sent, so the client can see the body a moment before that."""
    for _ in range(500):
        if leftovers() == before:
            break
        await asyncio.sleep(0.01)
    return leftovers()


async def test_the_zip_holds_an_export_that_verifies(client: TestClient, tmp_path: Path) -> None:
    before = leftovers()
    resp = await client.get("/api/v1/admin/evidence", params=QUERY, headers=auth(ADMIN_TOKEN))
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/zip"
    name = "evidence-thon-a-2026-10-01-2026-10-10"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{name}.zip"'
    with zipfile.ZipFile(io.BytesIO(await resp.read())) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "unzipped")
    assert f"{name}/manifest.json" in names and f"{name}/report.pdf" in names
    assert f"{name}/results.xlsx" not in names
    app = client.app
    assert app is not None
    from server.appkeys import SETTINGS

    trusted = minisign.load_or_create_key(app[SETTINGS].data_dir).public.base64_text()
    report = verify_export(tmp_path / "unzipped" / name, trusted)
    assert report.ok, [str(f) for f in report.failures]
    assert report.summary_recomputed and report.pdfs_verified == 1
    assert await settled(before) == before


async def test_an_alert_s_evidence_link_is_this_route(client: TestClient) -> None:
    """The link an alert carries (server/alerts/message.py, default ``links.evidence_path``)
    names the alert's window in RFC 3339 UTC: the route takes those times as their Vietnam days."""
    links = Links(grafana_url="https://g.example.vn", server_url="https://s.example.vn")
    start = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)  # 09:00 Vietnam time
    end = datetime(2026, 10, 10, 18, 30, tzinfo=UTC)  # 01:30 on 11 October, Vietnam time
    url = evidence_url(links, Subject(probe="thon-a-vnpt-fiber", hamlet="thon-a", isp="VNPT"),
                       start, end)  # fmt: skip
    assert url is not None
    target = urlsplit(url)
    resp = await client.get(f"{target.path}?{target.query}", headers=auth(ADMIN_TOKEN))
    assert resp.status == 200, await resp.text()
    disposition = resp.headers["Content-Disposition"]
    assert disposition == 'attachment; filename="evidence-thon-a-VNPT-2026-10-01-2026-10-11.zip"'


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hamlet": "thon-x"}, "unknown hamlet 'thon-x'"),
        ({"from": "2026-10-11"}, "is after to"),
        ({"to": "yesterday"}, "to: 'yesterday' is not a date"),
        ({"from": "2025-01-01", "to": "2025-01-02"}, "no results"),
    ],
)
async def test_bad_input_is_a_400_naming_it(
    client: TestClient, change: dict[str, str], message: str
) -> None:
    before = leftovers()
    params = {**QUERY, **change}
    resp = await client.get("/api/v1/admin/evidence", params=params, headers=auth(ADMIN_TOKEN))
    assert resp.status == 400
    assert message in (await resp.json())["detail"]
    assert await settled(before) == before


async def test_the_admin_token_is_required(client: TestClient) -> None:
    resp = await client.get("/api/v1/admin/evidence", params=QUERY)
    assert resp.status == 401
    resp = await client.get("/api/v1/admin/evidence", params=QUERY, headers=auth("wrong"))
    assert resp.status == 401


async def test_the_route_is_in_the_openapi_document(client: TestClient) -> None:
    resp = await client.get("/api/v1/openapi.json")
    document = await resp.json()
    get = document["paths"]["/api/v1/admin/evidence"]["get"]
    assert get["security"] == [{"adminToken": []}]
    assert {p["name"] for p in get["parameters"]} == {"hamlet", "isp", "from", "to", "format"}
