"""The committed dashboards are what grafana/build.py makes, survive the SDK's own types, and
name only the provisioned data source; the provisioning files have the shape Grafana reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from server.compliance.plan import load_plan
from tests.grafana.dashboards import (
    DASHBOARDS,
    PROVISIONING,
    ROOT,
    committed,
    load_build,
    provisioned_uids,
    queries,
)

#: What the SDK's types cannot carry and build.py adds on purpose: the InfluxDB plugin's
#: annotation target (the SDK's AnnotationTarget is Grafana's built-in one).
ANNOTATION_KEYS = {"fromAnnotations", "query", "rawQuery", "refId", "tagsColumn", "textColumn",
                   "titleColumn"}  # fmt: skip


def test_committed_dashboards_are_what_build_makes() -> None:
    build = load_build()
    built = build.build_all(load_plan(build.PLAN_FILE))
    assert sorted(built) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for name, data in built.items():
        text = (DASHBOARDS / name).read_text(encoding="utf-8")
        assert text == build.render(data), f"{name} is stale: run python grafana/build.py"
    assert build.main(["--check"]) == 0


def test_dashboards_parse_back_through_the_sdk_types() -> None:
    build = load_build()
    for name, data in committed().items():
        lost = build.check_round_trip(data)
        unexpected = [
            p for p in lost
            if not (p.startswith(".annotations.list[") and p.rsplit(".", 1)[1] in ANNOTATION_KEYS)
        ]  # fmt: skip
        assert unexpected == [], f"{name}: the SDK does not keep {unexpected}"


def test_titles_are_vietnamese_and_every_query_uses_the_provisioned_source() -> None:
    boards = committed()
    titles = {b["title"] for b in boards.values()}
    assert titles == {"Tổng quan xã", "Chi tiết thôn", "Thiết bị đo"}
    uids = provisioned_uids()
    assert uids == {"hamletnet-influxdb"}
    found = [q for name, board in boards.items() for q in queries(name, board)]
    assert len(found) > 20
    wrong = [
        (q.dashboard, q.where, q.datasource_uid) for q in found if q.datasource_uid not in uids
    ]
    assert wrong == []
    for board in boards.values():
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids, panel["title"]


def test_one_stat_per_plan_indicator_with_its_deadline() -> None:
    plan = load_plan(load_build().PLAN_FILE)
    overview = committed()["tong-quan-xa.json"]
    stats = {p["title"]: p for p in overview["panels"] if p["type"] == "stat"}
    assert set(stats) == {i.name_vi for i in plan.indicators}
    for indicator in plan.indicators:
        assert indicator.deadline in stats[indicator.name_vi]["description"]
        assert f"'{indicator.id}'" in stats[indicator.name_vi]["targets"][0]["query"]


def _only_source(path: Path) -> dict:
    (source,) = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    return source


def test_influxdb1_datasource_shape() -> None:
    source = _only_source(PROVISIONING / "datasources" / "hamletnet.yaml")
    assert source["type"] == "influxdb" and source["uid"] == "hamletnet-influxdb"
    assert source["jsonData"] == {"dbName": "hamletnet", "httpMode": "POST", "version": "InfluxQL"}
    assert source["url"] == "${HAMLETNET_INFLUXDB_URL}"
    assert source["user"] == "${HAMLETNET_INFLUXDB_USER}"
    assert source["secureJsonData"] == {"password": "${HAMLETNET_INFLUXDB_PASSWORD}"}


def test_influxdb2_token_variant_shape() -> None:
    source = _only_source(PROVISIONING / "examples" / "influxdb2-token.yaml")
    assert source["uid"] == "hamletnet-influxdb" and source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token ${HAMLETNET_INFLUXDB_TOKEN}"
    assert "password" not in source.get("secureJsonData", {})


def test_influxdb3_core_variant_takes_the_token_as_password() -> None:
    path = PROVISIONING / "examples" / "influxdb3-core.yaml"
    source = _only_source(path)
    assert source["uid"] == "hamletnet-influxdb" and source["jsonData"]["version"] == "InfluxQL"
    assert source["secureJsonData"] == {"password": "${HAMLETNET_INFLUXDB_TOKEN}"}
    assert source["user"] and "8181" in path.read_text(encoding="utf-8")


def test_dashboard_provider_loads_the_mounted_dashboards() -> None:
    (provider,) = yaml.safe_load(
        (PROVISIONING / "dashboards" / "hamletnet.yaml").read_text(encoding="utf-8")
    )["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    env = compose["services"]["grafana"]["environment"]
    assert {
        "HAMLETNET_INFLUXDB_URL",
        "HAMLETNET_INFLUXDB_USER",
        "HAMLETNET_INFLUXDB_PASSWORD",
    } <= set(env)
