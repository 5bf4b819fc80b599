"""The admin API for compliance data, through the real app on a real socket: declared lines,
hand-entered figures (one by one and from a CSV file), surveys; who and when on every change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.settings import load_settings
from tests.server.conftest import ADMIN_TOKEN, auth, bandwidth, heartbeat, signed

ADMIN = auth(ADMIN_TOKEN)


async def _patch(client: TestClient, probe_id: str, body: dict[str, Any], **headers: str) -> Any:
    resp = await client.patch(
        f"/api/v1/admin/probes/{probe_id}", json=body, headers={**ADMIN, **headers}
    )
    return resp.status, await resp.json()


async def test_declared_line_is_set_with_who_and_when_and_listed(
    client: TestClient, probe: dict[str, Any]
) -> None:
    pid = probe["probe_id"]
    before = datetime.now(UTC)
    status, body = await _patch(
        client, pid,
        {"declared_down_mbps": 1000, "declared_up_mbps": 1000, "declared_min_down_mbps": 300,
         "plan_name": "Home Giga", "actor": "Nguyễn Văn A"},
    )  # fmt: skip
    assert status == 200, body
    assert body["declared_down_mbps"] == 1000 and body["declared_min_down_mbps"] == 300
    assert body["plan_name"] == "Home Giga" and body["declared_by"] == "Nguyễn Văn A"
    assert datetime.fromisoformat(body["declared_at"]) >= before
    # The actor may come as a header; null clears a value, what is left out is kept.
    status, body = await _patch(
        client, pid, {"plan_name": None}, **{"X-Hamletnet-Actor": "Trần Thị B"}
    )
    assert status == 200 and body["plan_name"] is None and body["declared_up_mbps"] == 1000
    assert body["declared_by"] == "Trần Thị B"

    resp = await client.get(f"/api/v1/admin/probes/{pid}/line-changes", headers=ADMIN)
    changes = await resp.json()
    assert [c["changed_by"] for c in changes] == ["Nguyễn Văn A", "Trần Thị B"]
    assert changes[0]["old"]["declared_down_mbps"] is None
    assert changes[0]["new"]["declared_down_mbps"] == 1000
    assert changes[1]["new"]["plan_name"] is None
    every = await (await client.get("/api/v1/admin/line-changes", headers=ADMIN)).json()
    assert every == changes
    listed = await (await client.get("/api/v1/admin/probes", headers=ADMIN)).json()
    assert listed[0]["declared_down_mbps"] == 1000

    # Secrets are in no reply: neither the probe's token nor the admin token.
    for path in (
        "/api/v1/admin/probes", f"/api/v1/admin/probes/{pid}", "/api/v1/admin/line-changes",
    ):  # fmt: skip
        text = await (await client.get(path, headers=ADMIN)).text()
        assert probe["token"] not in text and ADMIN_TOKEN not in text and "token" not in text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"declared_down_mbps": 100}, "actor: required"),
        ({"declared_down_mbps": 0, "actor": "A"}, "declared_down_mbps: Input should be greater"),
        ({"declared_up_mbps": -1, "actor": "A"}, "declared_up_mbps: Input should be greater"),
        ({"declared_down_mbps": "fast", "actor": "A"}, "declared_down_mbps: Input should be a"),
        (
            {"declared_down_mbps": 100, "declared_min_down_mbps": 300, "actor": "A"},
            "declared_min_down_mbps: 300 is above declared_down_mbps 100",
        ),
        ({"declared_down_mbps": 100, "actor": ""}, "actor: String should have at least 1"),
        ({"declared_dwn_mbps": 100, "actor": "A"}, "declared_dwn_mbps: Extra inputs"),
    ],
)
async def test_a_bad_declared_line_is_refused_by_key(
    client: TestClient, probe: dict[str, Any], body: dict[str, Any], message: str
) -> None:
    status, reply = await _patch(client, probe["probe_id"], body)
    assert status == 422, reply
    assert message in reply["detail"]
    changes = await (await client.get("/api/v1/admin/line-changes", headers=ADMIN)).json()
    assert changes == []


async def test_hand_entries_are_kept_with_who_when_and_source(client: TestClient) -> None:
    entry = {
        "indicator_id": "digital-signature-2026", "value": 38.5, "as_of": "2026-10-31",
        "source_document": "Báo cáo số 12/BC-UBND ngày 31/10/2026", "actor": "Cán bộ VH-XH",
    }  # fmt: skip
    resp = await client.post("/api/v1/admin/hand-entries", json=entry, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["entered_by"] == "Cán bộ VH-XH" and created["commune"] == "commune"
    ai = {"indicator_id": "ai-use", "achieved": True, "as_of": "2026-10-01",
          "source_document": "Công văn 5", "hamlet": "thon-a"}  # fmt: skip
    resp = await client.post(
        "/api/v1/admin/hand-entries", json=ai, headers={**ADMIN, "X-Hamletnet-Actor": "B"}
    )
    assert resp.status == 201, await resp.text()
    listed = await (await client.get("/api/v1/admin/hand-entries", headers=ADMIN)).json()
    assert [(e["indicator_id"], e["entered_by"]) for e in listed] == [
        ("digital-signature-2026", "Cán bộ VH-XH"), ("ai-use", "B"),
    ]  # fmt: skip
    assert listed[0]["source_document"] == "Báo cáo số 12/BC-UBND ngày 31/10/2026"
    only = await client.get("/api/v1/admin/hand-entries?indicator_id=ai-use", headers=ADMIN)
    assert [e["hamlet"] for e in await only.json()] == ["thon-a"]


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"indicator_id": "fixed-gigabit-2026"}, 422, "indicator_id: 'fixed-gigabit-2026' is not"),
        ({"value": 140}, 422, "value: 140 is not a percentage (0-100)"),
        ({"as_of": "2999-01-01"}, 422, "as_of: 2999-01-01 is in the future"),
        ({"as_of": "31/10/2026"}, 422, "as_of: Input should be a valid date"),
        ({"hamlet": "thon-z"}, 404, "hamlet 'thon-z' is not configured"),
        ({"commune": "xa-khac"}, 404, "commune 'xa-khac' is not configured; known: commune"),
        ({"actor": None}, 422, "actor: required"),
        ({"source_document": ""}, 422, "source_document: String should have at least 1"),
        ({"value": None}, 422, "value: give a value"),
    ],
)
async def test_a_bad_hand_entry_is_refused_by_key(
    client: TestClient, change: dict[str, Any], status: int, message: str
) -> None:
    entry = {
        "indicator_id": "digital-signature-2026", "value": 38.5, "as_of": "2026-10-31",
        "source_document": "Báo cáo 12", "actor": "A", **change,
    }  # fmt: skip
    entry = {k: v for k, v in entry.items() if v is not None or k != "actor"}
    resp = await client.post("/api/v1/admin/hand-entries", json=entry, headers=ADMIN)
    assert resp.status == status, await resp.text()
    assert message in (await resp.json())["detail"]
    assert await (await client.get("/api/v1/admin/hand-entries", headers=ADMIN)).json() == []


#: As Excel writes "CSV UTF-8": a byte-order mark, CRLF line ends, Vietnamese text.
EXCEL_CSV = (
    "\ufeffindicator_id,commune,hamlet,value,achieved,as_of,source_document\r\n"
    "digital-signature-2026,,,38.5,,2026-10-31,Báo cáo số 12/BC-UBND về chữ ký số\r\n"
    'digital-signature-2026,,thon-a,41,,2026-10-31,"Báo cáo 12, phụ lục thôn Đồng Tâm"\r\n'
    "digital-signature-2026,,,abc,,2026-10-31,Báo cáo 12\r\n"
    "ai-use,,thon-nowhere,,yes,2026-10-01,Công văn 5\r\n"
    "digital-signature-2026,,,38.5,,2026-10-31,Báo cáo 12,surplus\r\n"
    "fixed-gigabit-2026,,,99,,2026-10-31,Báo cáo 12\r\n"
    "ai-use,,,,true,2026-10-01,Công văn số 5/CV-UBND\r\n"
)


async def test_csv_import_reports_every_row_and_keeps_the_good_ones(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/admin/hand-entries.csv?actor=Cán bộ VH-XH",
        data=EXCEL_CSV.encode("utf-8"),
        headers={**ADMIN, "Content-Type": "text/csv; charset=utf-8"},
    )
    assert resp.status == 200, await resp.text()
    reply = await resp.json()
    assert (reply["accepted"], reply["rejected"]) == (3, 4)
    outcomes = {row["line"]: (row["outcome"], row["reason"]) for row in reply["rows"]}
    assert [outcomes[n][0] for n in range(2, 9)] == [
        "accepted", "accepted", "rejected", "rejected", "rejected", "rejected", "accepted",
    ]  # fmt: skip
    assert "value: Input should be a valid number" in outcomes[4][1]
    assert "hamlet 'thon-nowhere' is not configured" in outcomes[5][1]
    assert "1 cell(s) more than the header has" in outcomes[6][1]
    assert "indicator_id: 'fixed-gigabit-2026' is not" in outcomes[7][1]

    listed = await (await client.get("/api/v1/admin/hand-entries", headers=ADMIN)).json()
    assert [(e["hamlet"], e["value"], e["achieved"]) for e in listed] == [
        (None, 38.5, None), ("thon-a", 41.0, None), (None, None, True),
    ]  # fmt: skip
    assert listed[0]["source_document"] == "Báo cáo số 12/BC-UBND về chữ ký số"
    assert listed[1]["source_document"] == "Báo cáo 12, phụ lục thôn Đồng Tâm"
    assert {e["entered_by"] for e in listed} == {"Cán bộ VH-XH"}


async def test_csv_with_semicolons_and_decimal_commas_as_a_vietnamese_excel_writes(
    client: TestClient,
) -> None:
    text = (
        "indicator_id;value;as_of;source_document\n"
        "digital-signature-2026;38,5;2026-10-31;Báo cáo 12\n"
    )
    resp = await client.post(
        "/api/v1/admin/hand-entries.csv", data=text.encode("utf-8"),
        headers={**ADMIN, "X-Hamletnet-Actor": "A"},
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["accepted"] == 1
    listed = await (await client.get("/api/v1/admin/hand-entries", headers=ADMIN)).json()
    assert listed[0]["value"] == 38.5


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"indicator_id,value,as_of\n", 400, "CSV header: missing column(s) source_doc"),
        (
            b"indicator_id,as_of,source_document,thon\n",
            400,
            "CSV header: unknown column(s) thon",
        ),
        (
            "indicator_id,as_of,source_document\nai-use,2026-10-01,Báo cáo\n".encode("cp1258"),
            400,
            "the CSV file is not UTF-8",
        ),
    ],
)
async def test_a_csv_file_that_cannot_be_read_is_400_naming_why(
    client: TestClient, data: bytes, status: int, message: str
) -> None:
    resp = await client.post("/api/v1/admin/hand-entries.csv?actor=A", data=data, headers=ADMIN)
    assert resp.status == status, await resp.text()
    assert message in (await resp.json())["detail"]


async def test_csv_import_needs_an_actor(client: TestClient) -> None:
    resp = await client.post("/api/v1/admin/hand-entries.csv", data=EXCEL_CSV, headers=ADMIN)
    assert resp.status == 422
    assert "actor: required" in (await resp.json())["detail"]


async def test_surveys_are_kept_with_who_and_when(client: TestClient) -> None:
    survey = {
        "hamlet": "thon-b", "service": "5g", "present": False, "surveyed_at": "2026-10-02",
        "surveyed_by": "Tổ công nghệ số cộng đồng", "source_document": "Biên bản khảo sát",
        "actor": "Cán bộ VH-XH",
    }  # fmt: skip
    resp = await client.post("/api/v1/admin/surveys", json=survey, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    listed = await (await client.get("/api/v1/admin/surveys?hamlet=thon-b", headers=ADMIN)).json()
    assert len(listed) == 1 and listed[0]["entered_by"] == "Cán bộ VH-XH"
    assert listed[0]["surveyed_by"] == "Tổ công nghệ số cộng đồng"
    assert datetime.fromisoformat(listed[0]["entered_at"]).tzinfo is not None
    bad = await client.post(
        "/api/v1/admin/surveys", json={**survey, "service": "adsl"}, headers=ADMIN
    )
    assert bad.status == 422 and "service: Input should be" in (await bad.json())["detail"]
    nowhere = await client.post(
        "/api/v1/admin/surveys", json={**survey, "hamlet": "thon-z"}, headers=ADMIN
    )
    assert nowhere.status == 404 and "hamlet 'thon-z'" in (await nowhere.json())["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/admin/hand-entries"), ("POST", "/api/v1/admin/hand-entries"),
        ("POST", "/api/v1/admin/hand-entries.csv"), ("GET", "/api/v1/admin/surveys"),
        ("POST", "/api/v1/admin/surveys"), ("GET", "/api/v1/admin/line-changes"),
    ],
)  # fmt: skip
async def test_compliance_admin_routes_need_the_admin_token(
    client: TestClient, probe: dict[str, Any], method: str, path: str
) -> None:
    assert (await client.request(method, path)).status == 401
    assert (await client.request(method, path, headers=auth(probe["token"]))).status == 403


async def test_hamlets_are_listed_with_their_commune_and_facts(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    settings = load_settings(
        None,
        data_dir=str(tmp_path),
        admin_token=ADMIN_TOKEN,
        communes=[{"code": "hiep-luc", "name": "Xã Hiệp Lực"}],
        hamlets=[{"code": "thon-a", "name": "Thôn Đồng Tâm", "population": 700, "adults": 500,
                  "lat": 22.43, "lon": 105.98, "isps": ["VNPT", "Viettel"]}],
    )  # fmt: skip
    client = await aiohttp_client(create_app(settings))
    hamlets = await (await client.get("/api/v1/admin/hamlets", headers=ADMIN)).json()
    assert hamlets == [
        {"code": "thon-a", "name": "Thôn Đồng Tâm", "population": 700, "households": None,
         "probes": 0, "commune": "hiep-luc", "adults": 500, "lat": 22.43, "lon": 105.98,
         "isps": ["VNPT", "Viettel"]},
    ]  # fmt: skip


async def _probe_post(client: TestClient, probe: dict[str, Any], path: str, body: Any) -> Any:
    resp = await client.post(path, json=body, headers=auth(probe["token"]))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_data_budget_is_set_with_who_and_reaches_the_probe_in_every_reply(
    client: TestClient, probe: dict[str, Any]
) -> None:
    """The office sets a metered line's monthly budget; the probe learns it from the reply to
    its next batch or heartbeat (collector/budget.py), and null (no budget) after it is
    cleared, so the probe's own configuration stands again."""
    pid, key = probe["probe_id"], probe["key"]

    def batch() -> dict[str, Any]:
        return {"results": [signed(bandwidth(pid), key)]}

    # Before any budget, and with the probe's token in the server's cache.
    assert (await _probe_post(client, probe, "/api/v1/results", batch()))["data_budget"] is None
    status, body = await _patch(client, pid, {"data_budget_bytes": 10_000_000_000, "actor": "A"})
    assert status == 200, body
    assert body["data_budget_bytes"] == 10_000_000_000 and body["declared_by"] == "A"
    view = await (await client.get(f"/api/v1/admin/probes/{pid}", headers=ADMIN)).json()
    assert view["data_budget_bytes"] == 10_000_000_000
    for path, sent in (
        ("/api/v1/results", batch()),
        ("/api/v1/heartbeat", signed(heartbeat(pid), key)),
    ):
        reply = await _probe_post(client, probe, path, sent)
        assert reply["data_budget"] == {"monthly_bytes": 10_000_000_000}, path

    status, body = await _patch(client, pid, {"data_budget_bytes": None, "actor": "B"})
    assert status == 200 and body["data_budget_bytes"] is None
    assert (await _probe_post(client, probe, "/api/v1/results", batch()))["data_budget"] is None
    changes = await (await client.get(f"/api/v1/admin/probes/{pid}/line-changes",
                                      headers=ADMIN)).json()  # fmt: skip
    assert [(c["changed_by"], c["new"]["data_budget_bytes"]) for c in changes] == [
        ("A", 10_000_000_000),
        ("B", None),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"data_budget_bytes": 10**9}, "actor: required"),
        ({"data_budget_bytes": 0, "actor": "A"}, "data_budget_bytes: Input should be greater"),
        ({"data_budget_bytes": 1.5, "actor": "A"}, "data_budget_bytes: Input should be a valid"),
        ({"data_budget_bytes": 2**63, "actor": "A"}, "data_budget_bytes: Input should be less"),
    ],
)
async def test_a_bad_data_budget_is_refused_by_key(
    client: TestClient, probe: dict[str, Any], body: dict[str, Any], message: str
) -> None:
    status, reply = await _patch(client, probe["probe_id"], body)
    assert status == 422, reply
    assert message in reply["detail"]
