"""The alert history written by the real service into a real influxd, read back by the hamlet
dashboard's own annotation query (grafana/build.py ``alerts_annotation``), as Grafana runs it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server.settings import Settings
from tests.grafana.dashboards import committed, queries
from tests.grafana.expand import Variable, expand
from tests.grafana.test_queries_influx import rows, run
from tests.influxd import Influxd
from tests.server.alerts.test_delivery import Hooks
from tests.server.alerts.test_service import (
    ADMIN_TOKEN,
    DECLARED_MBPS,
    alerts_yaml,
    hooks,  # noqa: F401 (fixture)
    post_speeds,
    settled,
    start,
)
from tests.server.conftest import add_probe, auth, make_settings


def influx_settings(tmp_path: Path, port: int, influxd: Influxd, database: str) -> Settings:
    path = tmp_path / "alerts.yaml"
    path.write_text(json.dumps(alerts_yaml(port)), encoding="utf-8")  # JSON is YAML
    return make_settings(
        tmp_path / "data",
        alerts_file=str(path),
        influxdb={"url": influxd.url, "database": database},
    )


async def test_dashboard_annotation_reads_the_services_history(
    aiohttp_client: Any,
    tmp_path: Path,
    hooks: tuple[Hooks, int],  # noqa: F811
    influxd: Influxd,
    influx_db: str,
) -> None:
    client = await start(aiohttp_client, influx_settings(tmp_path, hooks[1], influxd, influx_db))
    probe = await add_probe(client, "thon-a", "VNPT")
    resp = await client.patch(
        f"/api/v1/admin/probes/{probe['probe_id']}",
        json={"declared_down_mbps": DECLARED_MBPS, "actor": "Nguyễn Văn A"},
        headers=auth(ADMIN_TOKEN),
    )
    assert resp.status == 200, await resp.text()
    began = datetime.now(UTC)
    await post_speeds(client, probe, [500, 400, 300], began - timedelta(hours=1))
    await settled(client)
    assert len(hooks[0].received["vnpt"]) == 1

    (annotation,) = [
        q for q in queries("chi-tiet-thon.json", committed()["chi-tiet-thon.json"])
        if q.where.startswith("annotation")
    ]  # fmt: skip
    text = expand(
        annotation.text,
        start=began - timedelta(minutes=1),
        end=datetime.now(UTC) + timedelta(minutes=1),
        max_data_points=200,
        variables={
            "commune": Variable("commune", ["commune"]),
            "hamlet": Variable("hamlet", ["thon-a"]),
            "isp": Variable("isp", ["VNPT"]),
        },
    )
    found = list(rows(run(influxd, influx_db, text)))
    assert [(r["rule"], r["state"]) for r in found] == [("low", "pending"), ("low", "firing")]
    assert found[1]["title"].startswith("Đang cảnh báo: Tốc độ thấp, Thôn Đồng Tâm")
    assert "300,0 Mb/s dưới ngưỡng 800,0 Mb/s" in found[1]["text"]
