"""Every query of every dashboard, run as Grafana would run it (``expand``) against a real influxd
that the real server filled: the "Done when" data set of issue 11 and a detail data set, both
signed and posted through the ingest API, then the compliance published through the admin API.

The values asserted are computed by hand (the detail data set below) or are the engine's own
(``GET /api/v1/compliance`` of the same server): the overview must show the engine's verdicts.
A query that fails, or comes back empty where the data set has data, fails the test.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from probes.models import parse_result
from probes.signing import sign
from server.app import create_app
from server.appkeys import REGISTRY
from server.compliance.publish import VERDICT_CODES
from server.compliance.rules import VerdictKind
from server.compliance.stats import Period, month_of
from server.compliance_api import default_period
from server.settings import load_settings
from tests.grafana.dashboards import Query, committed, queries
from tests.grafana.expand import ALL, Variable, expand
from tests.influxd import Influxd
from tests.server.compliance import dataset
from tests.server.compliance.seed import LIMITS, SETTINGS, seed
from tests.server.conftest import ADMIN_TOKEN, GuardedTestServer, add_probe, auth

#: What Grafana would ask for on a panel about 1,000 pixels wide (its maxDataPoints).
MAX_DATA_POINTS = 200
COMMUNE = dataset.COMMUNE["code"]
#: The detail data set's hamlet (not in the "Done when" set) and its coordinates.
DETAIL = "lang-moi"
COORDINATES = {"dat": (21.61, 105.84), "san": (21.63, 105.86), DETAIL: (21.65, 105.9)}
#: Bandwidth results of the detail hamlet's Viettel line: (download, upload, idle, loaded ↓, ↑).
VIETTEL = [(812.5, 400.0, 5.0, 30.0, 20.0), (903.25, 410.0, 6.0, 40.0, 25.0),
           (999.0, 420.0, 7.0, 50.0, 30.0)]  # fmt: skip
FPT_DOWNLOAD = 100.0
_MS = timedelta(milliseconds=1)
SPEED = "panel 'Tốc độ tải xuống và tải lên (Mb/s)' / "


def _settings(tmp_path: Path, influxd: Influxd, database: str) -> Any:
    hamlets = [dict(h) for h in SETTINGS["hamlets"]]
    hamlets.append({"code": DETAIL, "name": "Làng Mới", "population": 80, "adults": 60,
                    "isps": ["Viettel", "FPT"]})  # fmt: skip
    for hamlet in hamlets:
        if hamlet["code"] in COORDINATES:
            hamlet["lat"], hamlet["lon"] = COORDINATES[hamlet["code"]]
    return load_settings(
        None,
        data_dir=str(tmp_path),
        admin_token=ADMIN_TOKEN,
        communes=SETTINGS["communes"],
        hamlets=hamlets,
        limits=SETTINGS["limits"],
        influxdb={"url": influxd.url, "database": database},
    )


def _result(probe: dict[str, Any], kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    payload = {
        "kind": kind,
        "result_id": str(uuid.uuid4()),
        "probe_id": probe["probe_id"],
        "measured_at": at.isoformat(),
        "engine": {"bandwidth": "http", "heartbeat": "agent", "latency": "icmp"}.get(kind, kind),
        **fields,
    }
    return sign(parse_result(payload, LIMITS), probe["key"]).model_dump(mode="json")


async def _post(client: TestClient, probe: dict[str, Any], items: list[dict[str, Any]]) -> None:
    resp = await client.post(
        "/api/v1/results", json={"results": items}, headers=auth(probe["token"])
    )
    reply = await resp.json()
    assert resp.status == 200 and reply["rejected"] == 0, reply


def _write_alert(influxd: Influxd, database: str, at: datetime) -> None:
    """A hand-written point standing for what the alert service writes to the ``alerts``
    measurement (server/alerts/message.py ``annotation``), at a time of our choosing: the
    service stamps its points with the time the alert changes phase (now), and the hamlet
    board's window here is last month. test_alerts_annotation_influx.py fires real alerts
    through the server and holds this point to their shape (tag keys, field keys and types);
    its words are made up, not the service's."""
    line = (
        f"alerts,hamlet={DETAIL},probe=p,rule=gigabit-mean,state=firing"
        f' title="Tốc độ thấp",text="Trung bình 905 Mb/s < 941" {int(at.timestamp())}'
    )
    request = urllib.request.Request(  # noqa: S310 (loopback influxd)
        f"{influxd.url}/write?db={database}&precision=s", data=line.encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
        assert reply.status == 204


async def _seed_detail(
    client: TestClient, window: Period, now: datetime
) -> tuple[dict[str, Any], dict[str, Any], datetime]:
    """The detail hamlet's two lines: results in ``window``, heartbeats in the last day."""
    viettel = await add_probe(client, hamlet=DETAIL, isp="Viettel", access="fiber")
    fpt = await add_probe(client, hamlet=DETAIL, isp="FPT", access="fiber")
    # 01:00, 01:30 and 02:00 UTC on the window's third day: one bucket of any $__interval
    # from 3 h up (the window's is 3 h at MAX_DATA_POINTS).
    base = (window.start + timedelta(days=2)).replace(hour=1, minute=0)
    times = [base + timedelta(minutes=30 * i) for i in range(3)]
    items = [
        _result(viettel, "bandwidth", at, download_mbps=d, upload_mbps=u, idle_latency_ms=i,
                loaded_latency_down_ms=ld, loaded_latency_up_ms=lu, link_speed_mbps=2500.0)
        for at, (d, u, i, ld, lu) in zip(times, VIETTEL, strict=True)
    ]  # fmt: skip
    items += [
        _result(viettel, "latency", times[0], sent=10, received=10, rtt_median_ms=12.0),
        _result(viettel, "latency", times[1], sent=10, received=10, rtt_median_ms=14.0),
        _result(viettel, "dns", times[0], target="192.0.2.53", resolve_ms=20.0, qname="vnnic.vn"),
        _result(viettel, "dns", times[1], target="192.0.2.53", resolve_ms=30.0, qname="vnnic.vn"),
        _result(viettel, "ipv6", times[0], score_transition=8, score_strict=6,
                global_address=True, default_route=True, aaaa_resolves=True,
                large_packets_ok=False),
        _result(viettel, "latency", now - timedelta(hours=3), status="failed",
                failure_kind="timeout", error="no reply"),
        _result(viettel, "heartbeat", now - timedelta(hours=2), spool_depth=3, cpu_temp_c=54.0),
        _result(viettel, "heartbeat", now - timedelta(hours=1), agent_version="0.1.0",
                spool_depth=5, spool_oldest_age_s=600.0, cpu_temp_c=55.5,
                disk_free_bytes=1_000_000_000, clock_synced=True,
                last_errors={"bandwidth": "timeout"}),
    ]  # fmt: skip
    await _post(client, viettel, items)
    await _post(
        client,
        fpt,
        [_result(fpt, "bandwidth", at, download_mbps=FPT_DOWNLOAD, upload_mbps=50.0)
         for at in times]
        + [_result(fpt, "heartbeat", now - timedelta(hours=20), spool_depth=0)],
    )  # fmt: skip
    return viettel, fpt, base


# -- Running a query ----------------------------------------------------------------------------


def run(influxd: Influxd, database: str, text: str) -> list[dict[str, Any]]:
    """The series of one expanded query; fails on any error InfluxDB reports."""
    (result,) = influxd.query(text, database=database)["results"]
    assert "error" not in result, f"{text}: {result['error']}"
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def rows(series: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each value row as a dict, with the series' tags."""
    for s in series:
        for values in s["values"]:
            yield {**s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))}


@pytest.fixture
async def served(
    aiohttp_client: Any, tmp_path: Path, influxd: Influxd, influx_db: str
) -> dict[str, Any]:
    now = datetime.now(UTC)
    client = await aiohttp_client(
        GuardedTestServer(create_app(_settings(tmp_path, influxd, influx_db)))
    )
    month = default_period(now)
    earlier = month_of(month.start - timedelta(microseconds=1))
    await seed(client, month)
    viettel, fpt, base = await _seed_detail(client, earlier, now)
    await client.app[REGISTRY].set_line(
        viettel["probe_id"], declared_down_mbps=1000.0, actor="can-bo-vhxh"
    )
    for at in (base, month.start + timedelta(days=3), now - timedelta(minutes=30)):
        _write_alert(influxd, influx_db, at)
    resp = await client.post(
        "/api/v1/admin/compliance/publish",
        params={"period": f"{earlier.label}..{month.label}"},
        headers=auth(ADMIN_TOKEN),
    )
    assert resp.status == 200, await resp.text()
    published = await resp.json()
    assert set(published["rows_by_month"]) == {earlier.label, month.label}
    report = await (await client.get("/api/v1/compliance", params={"period": month.label})).json()
    return {"now": now, "month": month, "earlier": earlier, "report": report, "client": client,
            "viettel": viettel, "fpt": fpt}  # fmt: skip


def _window(query: Query, board: str, ctx: dict[str, Any]) -> tuple[datetime, datetime]:
    now = ctx["now"]
    if query.time_from is not None:  # the panel's own relative time ("30d")
        assert query.time_from.endswith("d")
        return now - timedelta(days=int(query.time_from[:-1])), now
    # A whole month as Grafana's picker gives it ("now/M" rounds the end to the month's last
    # millisecond): $timeFilter's "time <=" must not reach the next month's first instant.
    if board == "tong-quan-xa.json":
        return ctx["month"].start, ctx["month"].end - _MS
    if board == "chi-tiet-thon.json":
        return ctx["earlier"].start, ctx["earlier"].end - _MS
    return now - timedelta(hours=24), now


def _variables(isp: list[str], isp_options: list[str]) -> dict[str, Variable]:
    return {
        "commune": Variable("commune", [COMMUNE]),
        "hamlet": Variable("hamlet", [DETAIL]),
        "isp": Variable("isp", isp, isp_options, multi=True, include_all=True),
    }


async def test_every_dashboard_query_runs_and_has_data(
    served: dict[str, Any], influxd: Influxd, influx_db: str
) -> None:
    variables = _variables([ALL], ["FPT", "Viettel"])
    ran = 0
    for name, board in committed().items():
        for query in queries(name, board):
            start, end = _window(query, name, served)
            text = expand(
                query.text,
                start=start,
                end=end,
                max_data_points=MAX_DATA_POINTS,
                variables=variables,
            )
            series = run(influxd, influx_db, text)
            assert series, f"{name} {query.where}: no data for {text}"
            ran += 1
    assert ran >= 25


def _query(board: str, where: str) -> Query:
    found = [q for q in queries(board, committed()[board]) if q.where.startswith(where)]
    assert len(found) == 1, (where, [q.where for q in queries(board, committed()[board])])
    return found[0]


def _run(
    served: dict[str, Any],
    influxd: Influxd,
    database: str,
    board: str,
    where: str,
    isp: list[str] | None = None,
) -> list[dict[str, Any]]:
    query = _query(board, where)
    start, end = _window(query, board, served)
    variables = _variables(isp or [ALL], ["FPT", "Viettel"])
    text = expand(
        query.text, start=start, end=end, max_data_points=MAX_DATA_POINTS, variables=variables
    )
    return list(rows(run(influxd, database, text)))


async def test_overview_shows_the_engines_verdicts(
    served: dict[str, Any], influxd: Influxd, influx_db: str
) -> None:
    report = served["report"]
    (commune,) = report["communes"]
    engine = {(h["code"], i["indicator_id"]): i["verdict"]
              for h in commune["hamlets"] for i in h["indicators"]}  # fmt: skip
    board = "tong-quan-xa.json"
    table = _run(served, influxd, influx_db, board, "panel 'Kết luận theo thôn")
    shown = {(r["hamlet"], r["indicator"]): r["verdict"] for r in table}
    assert shown == engine
    assert {k: shown[k] for k in dataset.EXPECTED} == dataset.EXPECTED

    for indicator in commune["indicators"]:
        (stat,) = _run(served, influxd, influx_db, board, f"panel {indicator['name_vi']!r}")
        assert stat["Kết luận"] == indicator["verdict"], indicator["id"]
        assert stat["Tiến độ"] == indicator["deadline_status"], indicator["id"]

    points = {r["hamlet"]: r for r in _run(served, influxd, influx_db, board, "panel 'Bản đồ")}
    for code, (lat, lon) in COORDINATES.items():
        assert (points[code]["lat"], points[code]["lon"]) == (lat, lon)
    for code, point in points.items():
        verdict = VerdictKind(engine[(code, "fixed-gigabit-2026")])
        assert point["verdict_code"] == VERDICT_CODES[verdict], code

    samples = _run(served, influxd, influx_db, board, "panel 'Số mẫu")
    counted = {(r["hamlet"], r["isp"]): r["samples"] for r in samples}
    month = served["month"].label
    expected = {
        (h["code"], line["isp"]): next(s["count"]["value"] for s in line["sufficiency"]
                                       if s["month"] == month)
        for h in commune["hamlets"] for line in h["lines"]
    }  # fmt: skip
    assert counted == expected
    assert counted[("dat", "VNPT")] == 300 and counted[("thieu", "VNPT")] == 299

    (variable,) = [r["value"] for r in _run(served, influxd, influx_db, board, "variable commune")]
    assert variable == COMMUNE


async def test_hamlet_detail_values_are_the_hand_computed_ones(
    served: dict[str, Any], influxd: Influxd, influx_db: str
) -> None:
    board = "chi-tiet-thon.json"
    speed_rows = [
        r for r in _run(served, influxd, influx_db, board, SPEED + "A", ["Viettel"])
        if r.get("Tải xuống") is not None
    ]  # fmt: skip
    assert len(speed_rows) == 1
    mean_down = sum(v[0] for v in VIETTEL) / len(VIETTEL)
    assert speed_rows[0]["Tải xuống"] == pytest.approx(mean_down)
    assert speed_rows[0]["Tải lên"] == pytest.approx(410.0)
    both = _run(served, influxd, influx_db, board, SPEED + "A", ["FPT", "Viettel"])
    by_isp = {r["isp"]: r["Tải xuống"] for r in both if r.get("Tải xuống") is not None}
    assert by_isp == {"Viettel": pytest.approx(mean_down), "FPT": FPT_DOWNLOAD}
    declared = [
        r["Tốc độ cam kết"]
        for r in _run(served, influxd, influx_db, board, SPEED + "B", ["Viettel"])
        if r.get("Tốc độ cam kết") is not None
    ]
    assert declared == [1000.0]

    latency = _run(
        served,
        influxd,
        influx_db,
        board,
        "panel 'Độ trễ lúc rảnh và khi có tải (ms)' / A",
        ["Viettel"],
    )
    idle = [r["Lúc rảnh"] for r in latency]
    ping = [
        r["Ping (trung vị)"]
        for r in _run(
            served,
            influxd,
            influx_db,
            board,
            "panel 'Độ trễ lúc rảnh và khi có tải (ms)' / B",
            ["Viettel"],
        )
    ]
    assert idle == [pytest.approx(6.0)] and ping == [pytest.approx(13.0)]
    dns = _run(served, influxd, influx_db, board, "panel 'Thời gian phân giải DNS", ["Viettel"])
    assert [(r["target"], r["DNS"]) for r in dns] == [("192.0.2.53", pytest.approx(25.0))]
    (scores,) = _run(served, influxd, influx_db, board, "panel 'Điểm IPv6", ["Viettel"])
    assert (scores["Chuyển đổi"], scores["Chỉ IPv6"]) == (8, 6)
    (checks,) = _run(served, influxd, influx_db, board, "panel 'Kiểm tra IPv6", ["Viettel"])
    assert checks["Địa chỉ toàn cầu"] is True and checks["Gói lớn"] is False

    hamlets = {r["value"] for r in _run(served, influxd, influx_db, board, "variable hamlet")}
    assert hamlets == {code for code, *_ in dataset.HAMLETS} | {DETAIL}
    isps = [r["value"] for r in _run(served, influxd, influx_db, board, "variable isp")]
    assert isps == ["FPT", "Viettel"]
    (alert,) = _run(served, influxd, influx_db, board, "annotation")  # the one in the window
    assert (alert["title"], alert["rule"], alert["state"]) == ("Tốc độ thấp", "gigabit-mean",
                                                              "firing")  # fmt: skip


async def test_probe_fleet_from_heartbeats(
    served: dict[str, Any], influxd: Influxd, influx_db: str
) -> None:
    board = "thiet-bi-do.json"
    fleet = {r["probe"]: r for r in _run(served, influxd, influx_db, board, "panel 'Thiết bị")}
    viettel, fpt = served["viettel"]["probe_id"], served["fpt"]["probe_id"]
    assert set(fleet) == {viettel, fpt}  # the seeded probes send no heartbeats
    last = fleet[viettel]
    assert (last["spool_depth"], last["cpu_temp_c"], last["clock_synced"]) == (5, 55.5, True)
    assert last["disk_free_bytes"] == 1_000_000_000 and last["spool_oldest_age_s"] == 600.0
    assert json.loads(last["last_errors"]) == {"bandwidth": "timeout"}
    assert fleet[fpt]["time"] < last["time"]  # sorted by time, the silent one comes first
    expected_ns = int((served["now"] - timedelta(hours=1)).timestamp() * 1e6) * 1000
    assert abs(last["time"] - expected_ns) < 1000
    (failed,) = _run(served, influxd, influx_db, board, "panel 'Số lần đo thất bại")
    assert (failed["probe"], failed["Thất bại"]) == (viettel, 1)
    temps = [r["CPU"] for r in _run(served, influxd, influx_db, board, "panel 'Nhiệt độ")
             if r["probe"] == viettel]  # fmt: skip
    assert sorted(temps) == [54.0, 55.5] or temps == [55.5]


async def test_publishing_again_replaces_never_duplicates(
    served: dict[str, Any], influxd: Influxd, influx_db: str
) -> None:
    count = 'SELECT count("verdict") FROM "compliance" GROUP BY "level", "period"'
    before = {(r["level"], r["period"]): r["count"] for r in rows(run(influxd, influx_db, count))}
    (commune,) = served["report"]["communes"]
    hamlet_rows = sum(len(h["indicators"]) for h in commune["hamlets"])
    assert before[("hamlet", served["month"].label)] == hamlet_rows
    resp = await served["client"].post(
        "/api/v1/admin/compliance/publish",
        params={"period": served["month"].label},
        headers=auth(ADMIN_TOKEN),
    )
    assert resp.status == 200, await resp.text()
    after = {(r["level"], r["period"]): r["count"] for r in rows(run(influxd, influx_db, count))}
    assert after == before
