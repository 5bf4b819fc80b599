"""Alert annotations end to end: bandwidth results signed and posted through the real ingest API
of a real server app on a real influxd, judged by the app's own alert service, and the points it
writes read back by every dashboard's alert annotation query (grafana/build.py
``alerts_annotation``, as build.py makes it today), expanded as Grafana would (``expand``).

Nothing here is written by hand: what each annotation must say is the alert service's own record
of its phase changes (``AlertService.past()``: time, rule, phase, the state after it), put in
words by the service's ``annotation``, and the admin alerts API must list the same changes. The
hand-written point of test_queries_influx.py (``_write_alert``) is held to the same shape.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from server.alerts.message import Place, annotation
from server.alerts.service import AlertService
from server.alerts.state import Phase
from server.appkeys import ALERTS
from server.compliance.plan import load_plan
from server.settings import Settings
from server.storage.alert_rows import MEASUREMENT
from tests.grafana.dashboards import Query, load_build, queries
from tests.grafana.expand import Variable, expand
from tests.grafana.test_queries_influx import MAX_DATA_POINTS, _write_alert, rows, run
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

HAMLET = "thon-a"
QUIET_HAMLET = "thon-b"  # a probe, results, and no alert
#: Fire on 2 bad of the last 3 below 0.8 × the declared speed, resolve on 1 good: the speeds
#: posted below (in Mb/s, against 800) go pending, firing, then resolved.
RULE = {"m": 2, "n": 3, "resolve_after": 1}
SPEEDS = [300.0, 400.0, 950.0]


def _settings(tmp_path: Path, port: int, influxd: Influxd, database: str) -> Settings:
    config = alerts_yaml(port)
    config["rules"][0].update(RULE)
    path = tmp_path / "alerts.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    return make_settings(
        tmp_path / "data",
        alerts_file=str(path),
        influxdb={"url": influxd.url, "database": database},
    )


async def _declare(client: TestClient, probe: dict[str, Any]) -> None:
    resp = await client.patch(
        f"/api/v1/admin/probes/{probe['probe_id']}",
        json={"declared_down_mbps": DECLARED_MBPS, "actor": "Nguyễn Văn A"},
        headers=auth(ADMIN_TOKEN),
    )
    assert resp.status == 200, await resp.text()


def _annotation_queries() -> dict[str, Query]:
    """Each dashboard's alert annotation query, from what grafana/build.py builds."""
    build = load_build()
    found = {}
    for name, board in build.build_all(load_plan(build.PLAN_FILE)).items():
        for query in queries(name, board):
            if query.where.startswith("annotation"):
                found[name] = query
    return found


def _place(settings: Settings, hamlet: str) -> Place:
    """The names the service prints for ``hamlet``, from the settings the app runs with."""
    (found,) = [h for h in settings.hamlets if h.code == hamlet]
    (commune,) = [c.name for c in settings.communes if c.code == found.commune]
    return Place(hamlet_name=found.name, commune_name=commune)


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000) * 1000


def _show_keys(influxd: Influxd, database: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The ``alerts`` measurement's tag keys and (field key, type)."""
    tags = rows(run(influxd, database, f'SHOW TAG KEYS FROM "{MEASUREMENT}"'))
    fields = rows(run(influxd, database, f'SHOW FIELD KEYS FROM "{MEASUREMENT}"'))
    return {r["tagKey"] for r in tags}, {(r["fieldKey"], r["fieldType"]) for r in fields}


async def test_a_real_alert_is_what_every_dashboard_annotates(
    aiohttp_client: Any,
    tmp_path: Path,
    hooks: tuple[Hooks, int],  # noqa: F811
    influxd: Influxd,
    influx_db: str,
) -> None:
    settings = _settings(tmp_path, hooks[1], influxd, influx_db)
    client = await start(aiohttp_client, settings)
    service: AlertService = client.app[ALERTS]
    probe = await add_probe(client, HAMLET, "VNPT")
    quiet = await add_probe(client, QUIET_HAMLET, "VNPT")
    for line in (probe, quiet):
        await _declare(client, line)
    began = datetime.now(UTC)
    await post_speeds(client, quiet, [950.0] * len(SPEEDS), began - timedelta(minutes=30))
    await post_speeds(client, probe, SPEEDS, began - timedelta(minutes=30))
    await settled(client)

    # The service's own record, oldest first: one history point per phase change (time, rule,
    # phase, the state after it), and the admin alerts API listing the same changes.
    changes = [t for t in reversed(await service.past()) if t.from_phase is not t.to_phase]
    assert [t.to_phase for t in changes] == [Phase.PENDING, Phase.FIRING, Phase.RESOLVED]
    assert await service.active() == []
    listed = await (await client.get("/api/v1/admin/alerts", headers=auth(ADMIN_TOKEN))).json()
    assert [(datetime.fromisoformat(p["at"]), p["rule"], p["to"])
            for p in reversed(listed["past"])] == [
        (t.at, t.rule_id, t.to_phase.value) for t in changes
    ]  # fmt: skip
    place = _place(settings, HAMLET)
    expected = []
    for change in changes:
        subject = change.state.subject
        assert (subject.hamlet, subject.probe) == (HAMLET, probe["probe_id"])
        rule = service.config.rule(change.rule_id)
        words = annotation(change.state, rule, change.at, place).fields  # the service's words
        assert rule.title_vi in words["title"] and str(place.hamlet_name) in words["title"]
        expected.append(
            {"time": _ns(change.at), "title": words["title"], "text": words["text"],
             "rule": change.rule_id, "state": change.to_phase.value}
        )  # fmt: skip
    # The same points as the result store reads its own alert history back.
    assert service.history is not None
    history = await service.history.alert_rows(began, datetime.now(UTC))
    assert [(_ns(r.at), dict(r.fields), dict(r.tags)) for r in history] == [
        (e["time"], {"text": e["text"], "title": e["title"]},
         {"hamlet": HAMLET, "probe": probe["probe_id"], "rule": e["rule"], "state": e["state"]})
        for e in expected
    ]  # fmt: skip

    # Grafana's range: around now, when the service wrote them (not when the tests ran).
    since, until = began - timedelta(minutes=1), datetime.now(UTC) + timedelta(minutes=1)
    boards = _annotation_queries()
    assert sorted(boards) == ["chi-tiet-thon.json", "thiet-bi-do.json", "tong-quan-xa.json"]
    for name, query in boards.items():
        for hamlet in (HAMLET, QUIET_HAMLET):
            variables = {"hamlet": Variable("hamlet", [hamlet])}
            text = expand(
                query.text,
                start=since,
                end=until,
                max_data_points=MAX_DATA_POINTS,
                variables=variables,
            )
            found = list(rows(run(influxd, influx_db, text)))
            # The hamlet board shows the chosen hamlet's alerts; the others show every alert.
            shown = [] if hamlet == QUIET_HAMLET and "$hamlet" in query.text else expected
            assert found == shown, f"{name} {query.where} (hamlet {hamlet}): {text}"

    # The hand-written point of test_queries_influx.py has the shape the service writes.
    standin = influxd.new_database_name()
    run(influxd, standin, f'CREATE DATABASE "{standin}"')
    _write_alert(influxd, standin, began)
    assert _show_keys(influxd, standin) == _show_keys(influxd, influx_db)
