"""The ingest API over real HTTP, on the real app with real SQLite storage.

Every error status the API promises is produced here by a bad input.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from probes.models import Kind
from probes.signing import new_private_key, public_key_text
from server.app import create_app
from server.evidence import minisign
from server.settings import Settings
from server.storage.sqlite import SqliteStore
from tests.server.conftest import (
    ADMIN_TOKEN,
    add_probe,
    auth,
    bandwidth,
    heartbeat,
    make_settings,
    signed,
)


async def post_batch(client: TestClient, probe: dict[str, Any], items: list[Any]) -> Any:
    """Post ``items`` as ``probe``, each valid one signed with its key as the agent would."""
    body = {"results": [signed(item, probe["key"]) for item in items]}
    resp = await client.post("/api/v1/results", json=body, headers=auth(probe["token"]))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def stored(settings: Settings, kind: Kind = Kind.BANDWIDTH) -> list[Any]:
    """Read what the server stored, through a separate store on the same file."""
    store = SqliteStore(settings.data_dir / "results.sqlite3")
    await store.start()
    try:
        return await store.query(kind=kind)
    finally:
        await store.close()


async def test_batch_accepts_valid_items_and_rejects_bad_ones_each_with_reason(
    client: TestClient, probe: dict[str, Any], settings: Settings
) -> None:
    pid = probe["probe_id"]
    good = [bandwidth(pid), bandwidth(pid, download_mbps=941.0)]
    bad = [
        bandwidth(pid, download_mbps=-1),
        bandwidth(pid, upload_mbps="fast"),
        bandwidth(pid, measured_at="2020-01-01T00:00:00+00:00"),
        bandwidth("someone-else"),
        {"kind": "bandwidth"},
        "not an object",
    ]
    reply = await post_batch(client, probe, [good[0], *bad, good[1]])
    assert (reply["accepted"], reply["duplicate"], reply["rejected"]) == (2, 0, 6)
    outcomes = [item["outcome"] for item in reply["items"]]
    assert outcomes == ["accepted", *["rejected"] * 6, "accepted"]
    reasons = [item["reason"] for item in reply["items"][1:7]]
    assert "download_mbps" in reasons[0] and "greater than or equal to 0" in reasons[0]
    assert "upload_mbps" in reasons[1]
    assert "measured_at" in reasons[2] and "older than" in reasons[2]
    assert "can write only as itself" in reasons[3]
    assert "result_id" in reasons[4]
    assert "JSON object" in reasons[5]
    assert reply["items"][1]["result_id"] == bad[0]["result_id"]

    rows = await stored(settings)
    assert sorted(str(r.result.result_id) for r in rows) == sorted(g["result_id"] for g in good)
    # Identity comes from the registry, never from the payload.
    assert {(r.identity.probe_id, r.identity.hamlet, r.identity.isp) for r in rows} == {
        (pid, "thon-a", "VNPT")
    }


async def test_same_result_twice_is_duplicate_and_stored_once(
    client: TestClient, probe: dict[str, Any], settings: Settings
) -> None:
    item = bandwidth(probe["probe_id"])
    first = await post_batch(client, probe, [item])
    second = await post_batch(client, probe, [item, item])
    assert first["items"][0]["outcome"] == "accepted"
    assert [i["outcome"] for i in second["items"]] == ["duplicate", "duplicate"]
    assert len(await stored(settings)) == 1


async def test_a_probe_cannot_write_as_another(client: TestClient, probe: dict[str, Any]) -> None:
    other = await add_probe(client, hamlet="thon-b", isp="Viettel")
    reply = await post_batch(client, probe, [bandwidth(other["probe_id"])])
    assert reply["rejected"] == 1
    hb = await client.post(
        "/api/v1/heartbeat",
        json=signed(heartbeat(other["probe_id"]), probe["key"]),
        headers=auth(probe["token"]),
    )
    assert hb.status == 403
    assert (await hb.json())["error"] == "forbidden"


async def test_heartbeat_updates_last_seen(client: TestClient, probe: dict[str, Any]) -> None:
    before = await client.get(
        f"/api/v1/admin/probes/{probe['probe_id']}", headers=auth(ADMIN_TOKEN)
    )
    seen_at_registration = (await before.json())["last_seen_at"]
    assert seen_at_registration is not None
    resp = await client.post(
        "/api/v1/heartbeat",
        json=signed(heartbeat(probe["probe_id"]), probe["key"]),
        headers=auth(probe["token"]),
    )
    assert resp.status == 200
    assert (await resp.json())["outcome"] == "accepted"
    after = await client.get("/api/v1/admin/probes", headers=auth(ADMIN_TOKEN))
    (view,) = await after.json()
    assert view["last_seen_at"] > seen_at_registration


# -- every error status, each from a bad input ---------------------------------------------


async def test_400_body_is_not_json(client: TestClient, probe: dict[str, Any]) -> None:
    resp = await client.post("/api/v1/results", data=b"{not json", headers=auth(probe["token"]))
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "bad_request" and "not valid JSON" in body["detail"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer hn_not-a-real-token"}, {"Authorization": "Basic abc"}],
)
async def test_401_without_a_known_token(client: TestClient, headers: dict[str, str]) -> None:
    resp = await client.post("/api/v1/results", json={"results": []}, headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"] == "unauthorized"
    admin = await client.get("/api/v1/admin/probes", headers=headers)
    assert admin.status == 401


async def test_403_disabled_probe_and_probe_token_on_admin_api(
    client: TestClient, probe: dict[str, Any]
) -> None:
    admin = await client.get("/api/v1/admin/probes", headers=auth(probe["token"]))
    assert admin.status == 403
    disable = await client.patch(
        f"/api/v1/admin/probes/{probe['probe_id']}",
        json={"enabled": False},
        headers=auth(ADMIN_TOKEN),
    )
    assert disable.status == 200 and (await disable.json())["enabled"] is False
    resp = await client.post(
        "/api/v1/results",
        json={"results": [signed(bandwidth(probe["probe_id"]), probe["key"])]},
        headers=auth(probe["token"]),
    )
    assert resp.status == 403
    assert "disabled" in (await resp.json())["detail"]


async def test_404_unknown_probe_hamlet_and_route(client: TestClient) -> None:
    resp = await client.get("/api/v1/admin/probes/no-such-probe", headers=auth(ADMIN_TOKEN))
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await client.post(
        "/api/v1/admin/probes",
        json={"hamlet": "no-such-hamlet", "isp": "VNPT", "access": "fiber"},
        headers=auth(ADMIN_TOKEN),
    )
    assert resp.status == 404 and "thon-a" in (await resp.json())["detail"]
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"


async def test_413_body_and_batch_over_limits(aiohttp_client: Any, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, limits={"max_body_bytes": 4096, "max_batch_items": 3})
    client = await aiohttp_client(create_app(settings))
    probe = await add_probe(client)
    big = await client.post(
        "/api/v1/results", data=b"[" + b" " * 5000 + b"]", headers=auth(probe["token"])
    )
    assert big.status == 413 and (await big.json())["error"] == "payload_too_large"
    many = await client.post(
        "/api/v1/results",
        json={"results": [{"x": 1}] * 4},
        headers=auth(probe["token"]),
    )
    assert many.status == 413
    assert "exceeds 3" in (await many.json())["detail"]


@pytest.mark.parametrize("body", [[], {"results": "x"}, {"results": [], "extra": 1}, {"items": []}])
async def test_422_wrong_envelope(client: TestClient, probe: dict[str, Any], body: Any) -> None:
    resp = await client.post("/api/v1/results", json=body, headers=auth(probe["token"]))
    assert resp.status == 422
    assert (await resp.json())["error"] == "invalid"


async def test_422_invalid_heartbeat_names_the_field(
    client: TestClient, probe: dict[str, Any]
) -> None:
    resp = await client.post(
        "/api/v1/heartbeat",
        json=heartbeat(probe["probe_id"], uptime_s=-5),
        headers=auth(probe["token"]),
    )
    assert resp.status == 422
    assert "uptime_s" in (await resp.json())["detail"]


async def test_429_over_the_per_probe_rate(aiohttp_client: Any, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, limits={"requests_per_s": 0.01, "burst": 4})
    client = await aiohttp_client(create_app(settings))
    probe = await add_probe(client)  # its key registration takes the first of the 4
    statuses = []
    for _ in range(5):
        resp = await client.post(
            "/api/v1/heartbeat",
            json=signed(heartbeat(probe["probe_id"]), probe["key"]),
            headers=auth(probe["token"]),
        )
        statuses.append(resp.status)
    assert statuses == [200, 200, 200, 429, 429]
    assert int(resp.headers["Retry-After"]) >= 1
    # The limit is per probe: another probe is not held back.
    other = await add_probe(client, hamlet="thon-b")
    resp = await client.post(
        "/api/v1/heartbeat",
        json=signed(heartbeat(other["probe_id"]), other["key"]),
        headers=auth(other["token"]),
    )
    assert resp.status == 200


async def test_503_when_storage_is_down_nothing_reported_accepted(
    aiohttp_client: Any, tmp_path: Path, unused_tcp_port: int
) -> None:
    # InfluxDB configured on a port where nothing listens: a real refused connection.
    settings = make_settings(
        tmp_path, influxdb={"url": f"http://127.0.0.1:{unused_tcp_port}", "timeout_s": 2}
    )
    client = await aiohttp_client(create_app(settings))
    probe = await add_probe(client)
    resp = await client.post(
        "/api/v1/results",
        json={"results": [signed(bandwidth(probe["probe_id"]), probe["key"])]},
        headers=auth(probe["token"]),
    )
    assert resp.status == 503
    body = await resp.json()
    assert body["error"] == "storage_unavailable"
    assert "accepted" not in body
    health = await client.get("/healthz")
    assert health.status == 503


# -- admin, health, metrics, secrets ---------------------------------------------------------


async def test_probe_token_is_shown_once_and_stored_only_as_hash(
    client: TestClient, probe: dict[str, Any], settings: Settings
) -> None:
    token = probe["token"]
    assert token.startswith("hn_") and len(token) > 40
    listing = await client.get("/api/v1/admin/probes", headers=auth(ADMIN_TOKEN))
    assert token not in await listing.text()
    raw = (settings.data_dir / "registry.sqlite3").read_bytes()
    wal = settings.data_dir / "registry.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert token.encode() not in raw
    with sqlite3.connect(settings.data_dir / "registry.sqlite3") as conn:
        (count,) = conn.execute("SELECT count(*) FROM probes").fetchone()
    assert count == 1


async def test_hamlets_listed_with_probe_counts(client: TestClient, probe: dict[str, Any]) -> None:
    resp = await client.get("/api/v1/admin/hamlets", headers=auth(ADMIN_TOKEN))
    assert resp.status == 200
    hamlets = {h["code"]: h for h in await resp.json()}
    assert hamlets["thon-a"]["probes"] == 1 and hamlets["thon-b"]["probes"] == 0
    assert hamlets["thon-a"]["name"] == "Thôn Đồng Tâm"


async def test_healthz_and_metrics(client: TestClient, probe: dict[str, Any]) -> None:
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json()) == {"status": "ok", "storage": "sqlite"}
    await post_batch(client, probe, [bandwidth(probe["probe_id"]), {"bad": 1}])
    text = await (await client.get("/metrics")).text()
    assert 'hamletnet_results_total{kind="bandwidth",outcome="accepted"} 1.0' in text
    assert 'hamletnet_results_total{kind="unknown",outcome="rejected"} 1.0' in text
    assert "hamletnet_probes_enabled 1.0" in text


async def test_tokens_never_reach_the_logs(
    client: TestClient, probe: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await post_batch(client, probe, [bandwidth(probe["probe_id"]), {"bad": 1}])
    await client.get("/api/v1/admin/probes", headers=auth(ADMIN_TOKEN))
    await client.post("/api/v1/results", json={"results": []}, headers=auth("hn_wrong"))
    assert caplog.records, "expected the server to log something"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert probe["token"] not in logged and ADMIN_TOKEN not in logged and "hn_wrong" not in logged


async def test_overview_page_in_vietnamese(client: TestClient, probe: dict[str, Any]) -> None:
    await post_batch(client, probe, [bandwidth(probe["probe_id"], download_mbps=941.0)])
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert "Chất lượng Internet các thôn" in page
    assert "Thôn Đồng Tâm" in page and probe["probe_id"] in page
    assert "941.0" in page
    assert probe["token"] not in page


async def test_overview_page_publishes_the_evidence_key(
    client: TestClient, settings: Settings
) -> None:
    """The office page shows the key exports are signed with (docs/evidence.md), and only the
    public half: the one an operator passes to ``minisign -P``."""
    page = await (await client.get("/")).text()
    key = minisign.load_or_create_key(settings.data_dir)
    assert f"minisign -Vm manifest.json -P {key.public.base64_text()}" in page
    private = (settings.data_dir / minisign.KEY_FILE_NAME).read_text(encoding="ascii")
    body = "".join(private.splitlines()[1:-1])
    assert body[:40] not in page


async def test_openapi_document_lists_every_route(client: TestClient) -> None:
    resp = await client.get("/api/v1/openapi.json")
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/v1/results", "/api/v1/heartbeat", "/api/v1/admin/probes",
        "/api/v1/admin/probes/{probe_id}", "/api/v1/admin/hamlets", "/healthz", "/metrics",
        "/api/v1/register", "/api/v1/admin/line-changes",
        "/api/v1/admin/probes/{probe_id}/line-changes", "/api/v1/admin/hand-entries",
        "/api/v1/admin/hand-entries.csv", "/api/v1/admin/surveys", "/api/v1/compliance",
        "/api/v1/admin/compliance/publish", "/api/v1/admin/alerts",
        "/api/v1/admin/alerts/{rule}/{subject}/ack", "/api/v1/admin/alerts/{rule}/{subject}/mute",
        "/api/v1/admin/evidence",
    }  # fmt: skip
    assert "BandwidthResult" in doc["components"]["schemas"]


# -- signatures ------------------------------------------------------------------------------


async def test_results_altered_after_signing_or_unsigned_are_rejected(
    client: TestClient, probe: dict[str, Any], settings: Settings
) -> None:
    good = signed(bandwidth(probe["probe_id"]), probe["key"])
    altered = signed(bandwidth(probe["probe_id"], download_mbps=80.0), probe["key"])
    altered["download_mbps"] = 980.0  # the operator's dream
    forged = signed(bandwidth(probe["probe_id"]), new_private_key())
    unsigned = bandwidth(probe["probe_id"])
    resp = await client.post(
        "/api/v1/results",
        json={"results": [good, altered, forged, unsigned]},
        headers=auth(probe["token"]),
    )
    reply = await resp.json()
    assert [i["outcome"] for i in reply["items"]] == ["accepted", *["rejected"] * 3]
    assert "altered after signing" in reply["items"][1]["reason"]
    assert "altered after signing" in reply["items"][2]["reason"]
    assert "not signed" in reply["items"][3]["reason"]
    (row,) = await stored(settings)
    assert row.result.signature == good["signature"]  # kept for the evidence export


async def test_probe_without_registered_key_is_refused_whole(client: TestClient) -> None:
    probe = await add_probe(client, register_key=False)
    resp = await client.post(
        "/api/v1/results",
        json={"results": [signed(bandwidth(probe["probe_id"]), probe["key"])]},
        headers=auth(probe["token"]),
    )
    assert resp.status == 403
    assert "has not registered its signing key" in (await resp.json())["detail"]


async def test_key_is_set_once_and_changed_only_after_admin_reset(
    client: TestClient, probe: dict[str, Any]
) -> None:
    same = await client.post(
        "/api/v1/register",
        json={"public_key": public_key_text(probe["key"])},
        headers=auth(probe["token"]),
    )
    assert same.status == 200 and (await same.json())["has_key"] is True
    other_key = new_private_key()
    swap = await client.post(
        "/api/v1/register",
        json={"public_key": public_key_text(other_key)},
        headers=auth(probe["token"]),
    )
    assert swap.status == 409 and "an admin must reset it" in (await swap.json())["detail"]
    bad = await client.post(
        "/api/v1/register", json={"public_key": "A" * 44 + "!"}, headers=auth(probe["token"])
    )
    assert bad.status == 422
    reset = await client.patch(
        f"/api/v1/admin/probes/{probe['probe_id']}",
        json={"reset_key": True},
        headers=auth(ADMIN_TOKEN),
    )
    assert reset.status == 200 and (await reset.json())["has_key"] is False
    swap = await client.post(
        "/api/v1/register",
        json={"public_key": public_key_text(other_key)},
        headers=auth(probe["token"]),
    )
    assert swap.status == 200
    reply = await post_batch(client, {**probe, "key": other_key}, [bandwidth(probe["probe_id"])])
    assert reply["accepted"] == 1
