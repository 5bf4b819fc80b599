"""GET /api/v1/compliance on the real app with real SQLite storage, seeded through the real
ingest API with signed results: the "Done when" verdicts, and bad input answered 400."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.compliance_api import default_period
from server.settings import Settings, load_settings
from tests.server.compliance import dataset
from tests.server.compliance.seed import SETTINGS, seed
from tests.server.conftest import ADMIN_TOKEN, GuardedTestServer


def seeded_settings(data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(
        None, data_dir=str(data_dir), admin_token=ADMIN_TOKEN, **SETTINGS, **overrides
    )


def verdicts(report: dict[str, Any]) -> tuple[dict[tuple[str, str], str], dict[Any, str]]:
    """(hamlet, indicator) → verdict and (hamlet, rule) → line verdict, from the JSON."""
    (commune,) = report["communes"]
    by_indicator = {
        (h["code"], i["indicator_id"]): i["verdict"]
        for h in commune["hamlets"]
        for i in h["indicators"]
    }
    by_line = {
        (h["code"], r["rule_id"]): r["verdict"]
        for h in commune["hamlets"]
        for line in h["lines"]
        for r in line["rules"]
    }
    return by_indicator, by_line


def assert_done_when(report: dict[str, Any]) -> None:
    by_indicator, by_line = verdicts(report)
    assert {k: by_indicator[k] for k in dataset.EXPECTED} == dataset.EXPECTED
    assert {k: by_line[k] for k in dataset.EXPECTED_LINES} == dataset.EXPECTED_LINES
    (commune,) = report["communes"]
    assert commune["name"] == "Xã Hiệp Lực"
    gigabit = next(i for i in commune["indicators"] if i["id"] == "fixed-gigabit-2026")
    assert gigabit["verdict"] == "fail"
    figure = gigabit["rollup"]["figure_pct"]
    assert figure["value"] == pytest.approx(dataset.EXPECTED_GIGABIT_FIGURE_PCT)
    assert figure["n"] == 7 and figure["rule_id"] == "fixed-gigabit"
    assert figure["aggregation"] == "share_of_basis" and figure["source"]
    dat = next(h for h in commune["hamlets"] if h["code"] == "dat")
    (month,) = next(r for r in dat["lines"][0]["rules"] if r["rule_id"] == "fixed-gigabit")[
        "months"
    ]
    mean = month["download"]["mean"]
    assert (mean["value"], mean["n"], mean["aggregation"]) == (950.0, 300, "mean")
    assert mean["window"]["label"] == report["period"]["label"]
    assert mean["rule_id"] == "fixed-gigabit" and "QCVN" in mean["source"]


@pytest.fixture
async def seeded(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    client = await aiohttp_client(GuardedTestServer(create_app(seeded_settings(tmp_path))))
    await seed(client, default_period(datetime.now(UTC)))
    return client


async def test_done_when_verdicts_on_sqlite(seeded: TestClient) -> None:
    month = default_period(datetime.now(UTC)).label
    resp = await seeded.get("/api/v1/compliance", params={"period": month})
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["period"]["label"] == month
    assert_done_when(report)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"period": "2026-13"}, "2026-13"),
        ({"period": "last month"}, "last month"),
        ({"commune": "xa-khac"}, "xa-khac"),
        ({"hamlet": "thon-ma"}, "thon-ma"),
        ({"isp": "MobiFone"}, "MobiFone"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_query_is_400_naming_the_value(
    seeded: TestClient, query: dict[str, str], named: str
) -> None:
    resp = await seeded.get("/api/v1/compliance", params=query)
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "bad_request" and named in body["detail"]


async def test_isp_and_hamlet_filters(seeded: TestClient) -> None:
    month = default_period(datetime.now(UTC)).label
    resp = await seeded.get(
        "/api/v1/compliance", params={"period": month, "hamlet": "san", "isp": "Viettel"}
    )
    assert resp.status == 200
    (commune,) = (await resp.json())["communes"]
    assert [h["code"] for h in commune["hamlets"]] == ["san"]
    assert commune["hamlets"][0]["indicators"][1]["verdict"] == "fail"


async def test_openapi_documents_compliance(seeded: TestClient) -> None:
    doc = await (await seeded.get("/api/v1/openapi.json")).json()
    op = doc["paths"]["/api/v1/compliance"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"period", "commune", "hamlet", "isp"}
    assert "400" in op["responses"]


async def test_methodology_is_served(seeded: TestClient) -> None:
    resp = await seeded.get("/docs/methodology")
    assert resp.status == 200
    assert "fixed-gigabit" in await resp.text()
