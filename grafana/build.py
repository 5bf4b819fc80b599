# InfluxQL text here is built from constants of this file and the plan, for Grafana to run.
# ruff: noqa: S608
"""Builds the office's Grafana dashboards as code and writes them to grafana/dashboards/*.json.

    .venv/bin/python grafana/build.py          # rewrite the JSON files
    .venv/bin/python grafana/build.py --check  # exit 1 if a committed file differs

Built with grafana-foundation-sdk (the Grafana 11.3 build pinned in pyproject.toml's dev extra).
The SDK has no InfluxDB query type, so ``InfluxQLQuery`` below is one: a cog ``Dataquery``
registered for the ``influxdb`` plugin, so the SDK also parses it back (``check_round_trip``).
Every query is raw InfluxQL over the layout of ``server/storage/lineprotocol.py`` (one
measurement per result kind; tags probe, hamlet, isp, access, engine, target) and the
``compliance`` measurement of ``server/compliance/publish.py``: verdicts are the engine's,
published by the server, never worked out again here. tests/grafana/ runs every query against
a real influxd.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from server.compliance import rules  # noqa: E402
from server.compliance.plan import Plan, load_plan  # noqa: E402
from server.compliance.publish import MEASUREMENT, VERDICT_CODES  # noqa: E402
from server.compliance.rules import VerdictKind  # noqa: E402

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
PLAN_FILE = ROOT / "server" / "compliance" / "plan.yaml"

#: The provisioned data source (grafana/provisioning/datasources/hamletnet.yaml).
DATASOURCE_UID = "hamletnet-influxdb"
DATASOURCE = dm.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)
#: The fixed-broadband indicator the map colours hamlets by.
FIXED_BROADBAND_INDICATOR = "fixed-gigabit-2026"
#: Grafana's own time zone names; the plan's months are Vietnam-time months.
TIMEZONE = "Asia/Ho_Chi_Minh"
#: Where the map opens: Thái Nguyên province (the bundled example commune).
MAP_CENTRE = (21.6, 105.85)

VERDICT_COLOURS = {
    VerdictKind.MET: "green",
    VerdictKind.FAIL: "red",
    VerdictKind.INSUFFICIENT_DATA: "orange",
    VerdictKind.NOT_VERIFIABLE: "blue",
    VerdictKind.NOT_APPLICABLE: "text",
}
DEADLINE_COLOURS = {
    "met": "green",
    "on_track": "green",
    "at_risk": "orange",
    "overdue": "red",
    "not_yet_due": "text",
    "insufficient_data": "orange",
    "not_verifiable": "blue",
}


# -- An InfluxQL query type for the SDK ---------------------------------------------------------


@dataclass
class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target, as Grafana's InfluxDB plugin saves one in raw mode."""

    ref_id: str
    query: str
    result_format: str = "time_series"  # or "table"
    alias: str | None = None
    datasource: dm.DataSourceRef = field(default_factory=lambda: DATASOURCE)

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": self.datasource,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        source = data.get("datasource") or {}
        return cls(
            ref_id=data["refId"],
            query=data["query"],
            result_format=data.get("resultFormat", "time_series"),
            alias=data.get("alias"),
            datasource=dm.DataSourceRef.from_json(source),
        )


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, ref_id: str, query: str, *, table: bool = False, alias: str | None = None):
        self._query = InfluxQLQuery(ref_id, query, "table" if table else "time_series", alias)

    def build(self) -> InfluxQLQuery:
        return self._query


cogruntime.register_dataquery_variant(
    cogruntime.DataqueryConfig(identifier="influxdb", from_json_hook=InfluxQLQuery.from_json)
)


class InfluxQLAnnotationTarget(dm.AnnotationTarget):
    """The InfluxDB plugin's annotation target (raw query and the columns to read), which the
    SDK's ``AnnotationTarget`` (Grafana's built-in annotations) does not carry."""

    def __init__(self, query: str, *, text: str, tags: str, title: str | None = None) -> None:
        super().__init__()
        self.query, self.text_column, self.tags_column, self.title_column = query, text, tags, title

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": "Anno",
            "query": self.query,
            "rawQuery": True,
            "fromAnnotations": True,
            "textColumn": self.text_column,
            "tagsColumn": self.tags_column,
            "limit": 100,
            "matchAny": False,
            "tags": [],
            "type": "tags",
        }
        if self.title_column is not None:
            payload["titleColumn"] = self.title_column
        return payload


class _Built(cogbuilder.Builder[dm.AnnotationTarget]):
    def __init__(self, target: dm.AnnotationTarget) -> None:
        self._target = target

    def build(self) -> dm.AnnotationTarget:
        return self._target


# -- Pieces shared by the dashboards ------------------------------------------------------------


def _pos(x: int, y: int, w: int, h: int) -> dm.GridPos:
    return dm.GridPos(h=h, w=w, x=x, y=y)


def panel(kind: str, title: str, pos: dm.GridPos, *targets: InfluxQL) -> db.Panel:
    p = db.Panel().type(kind).title(title).datasource(DATASOURCE).grid_pos(pos)
    return p.targets(list(targets))


def verdict_mappings() -> list[dm.ValueMapping]:
    """Each verdict (as text and as its number) shown with the page's Vietnamese label."""
    options: dict[str, dm.ValueMappingResult] = {}
    for index, kind in enumerate(VerdictKind):
        label, colour = rules.VERDICT_LABELS_VI[kind], VERDICT_COLOURS[kind]
        options[kind.value] = dm.ValueMappingResult(text=label, color=colour, index=2 * index)
        options[str(VERDICT_CODES[kind])] = dm.ValueMappingResult(
            text=label, color=colour, index=2 * index + 1
        )
    return [dm.ValueMap(options=options)]


def deadline_mappings() -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                status: dm.ValueMappingResult(color=colour, index=i)
                for i, (status, colour) in enumerate(DEADLINE_COLOURS.items())
            }
        )
    ]


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def _transform(kind: str, options: dict[str, Any]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=kind, options=options)


def query_variable(name: str, label: str, query: str, *, multi: bool = False) -> db.QueryVariable:
    variable = (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        variable = variable.multi(True).include_all(True)
    return variable


def alerts_annotation(where: str = "") -> db.AnnotationQuery:
    """Alert history from the ``alerts`` measurement (written by the alerts work: one point per
    alert event, fields ``text`` and ``title``, tags ``rule``, ``state``, ``probe``, ``hamlet``)."""
    query = f'SELECT "title", "text", "rule", "state" FROM "alerts" WHERE {where}$timeFilter'
    target = InfluxQLAnnotationTarget(query, text="text", tags="rule,state", title="title")
    return (
        db.AnnotationQuery()
        .name("Cảnh báo")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("red")
        .target(_Built(target))
    )


def dashboard(uid: str, title: str, description: str, time_from: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["hamletnet"])
        .timezone(TIMEZONE)
        .time(time_from, "now")
        .refresh("5m")
        .editable()
    )


_COMMUNE = '"commune" =~ /^$commune$/'


# -- Tổng quan xã (commune overview) ------------------------------------------------------------


def commune_overview(plan: Plan) -> db.Dashboard:
    hamlet_level = f"\"level\" = 'hamlet' AND {_COMMUNE}"
    table = (
        panel(
            "table",
            "Kết luận theo thôn và chỉ tiêu",
            _pos(0, 0, 24, 10),
            InfluxQL(
                "A",
                'SELECT last("verdict") AS "verdict" FROM "compliance"'
                f' WHERE {hamlet_level} AND $timeFilter GROUP BY "hamlet", "indicator"',
                table=True,
            ),
        )
        .description(
            "Kết luận của máy tính tuân thủ (hamletnet) cho tháng đang chọn: mỗi dòng một thôn,"
            " mỗi cột một chỉ tiêu của kế hoạch."
        )
        .with_transformation(
            _transform(
                "groupingToMatrix",
                {"columnField": "indicator", "rowField": "hamlet", "valueField": "verdict"},
            )
        )
        .mappings(verdict_mappings())
        .custom({"cellOptions": {"type": "color-background"}, "align": "center"})
    )
    geomap = (
        panel(
            "geomap",
            "Bản đồ thôn: băng rộng cố định",
            _pos(0, 10, 12, 12),
            InfluxQL(
                "A",
                'SELECT last("verdict_code") AS "verdict_code", last("lat") AS "lat",'
                ' last("lon") AS "lon", last("hamlet_name") AS "hamlet_name"'
                f' FROM "compliance" WHERE {hamlet_level}'
                f" AND \"indicator\" = '{FIXED_BROADBAND_INDICATOR}' AND $timeFilter"
                ' GROUP BY "hamlet"',
                table=True,
            ),
        )
        .description(
            "Mỗi thôn ở toạ độ khai báo trong cấu hình, tô màu theo kết luận chỉ tiêu"
            f" {FIXED_BROADBAND_INDICATOR}."
        )
        .mappings(verdict_mappings())
        .options(
            {
                "view": {"id": "coords", "lat": MAP_CENTRE[0], "lon": MAP_CENTRE[1], "zoom": 11},
                "controls": {"showZoom": True, "mouseWheelZoom": True},
                "basemap": {"type": "default", "name": "Bản đồ nền"},
                "layers": [
                    {
                        "type": "markers",
                        "name": "Thôn",
                        "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                        "config": {
                            "style": {
                                "color": {"field": "verdict_code", "fixed": "text"},
                                "size": {"fixed": 12},
                                "text": {"field": "hamlet_name", "mode": "field"},
                            },
                            "showLegend": True,
                        },
                        "tooltip": True,
                    }
                ],
                "tooltip": {"mode": "details"},
            }
        )
    )
    samples = (
        panel(
            "bargauge",
            "Số mẫu tháng này theo thôn và nhà mạng (cần 300)",
            _pos(12, 10, 12, 12),
            InfluxQL(
                "A",
                'SELECT last("samples") AS "samples" FROM "compliance"'
                f" WHERE \"level\" = 'line' AND {_COMMUNE}"
                f' AND "indicator" =~ /^({rules.FIXED_GIGABIT.id}|{rules.MOBILE_4G.id}'
                f'|{rules.MOBILE_5G.id})$/ AND $timeFilter GROUP BY "hamlet", "isp"',
                alias="$tag_hamlet / $tag_isp",
            ),
        )
        .description(
            "Mẫu tải xuống hợp lệ của tháng (máy tính tuân thủ đếm); VNNIC chỉ công bố từ"
            f" {rules.VNNIC_MIN_SAMPLES} mẫu một tháng."
        )
        .min(0)
        .max(rules.VNNIC_MIN_SAMPLES)
        .thresholds(thresholds((None, "red"), (float(rules.VNNIC_MIN_SAMPLES), "green")))
        .options({"orientation": "horizontal", "displayMode": "basic", "showUnfilled": True})
    )
    board = dashboard(
        "hamletnet-tong-quan-xa",
        "Tổng quan xã",
        "Tiến độ kế hoạch chuyển đổi số của xã: kết luận theo thôn, bản đồ, chỉ tiêu và số mẫu.",
        "now/M",
    )
    board = board.with_variable(
        query_variable(
            "commune", "Xã", f'SHOW TAG VALUES FROM "{MEASUREMENT}" WITH KEY = "commune"'
        )
    ).annotation(alerts_annotation())
    board = board.with_panel(table).with_panel(geomap).with_panel(samples)
    for index, indicator in enumerate(plan.indicators):
        stat = (
            panel(
                "stat",
                indicator.name_vi,
                _pos((index % 4) * 6, 22 + (index // 4) * 5, 6, 5),
                InfluxQL(
                    "A",
                    'SELECT last("verdict") AS "Kết luận",'
                    ' last("deadline_status") AS "Tiến độ" FROM "compliance"'
                    f" WHERE \"level\" = 'commune' AND {_COMMUNE}"
                    f" AND \"indicator\" = '{indicator.id}' AND $timeFilter",
                    table=True,
                ),
            )
            .description(f"{indicator.id} — hạn {indicator.deadline}")
            .mappings(verdict_mappings() + deadline_mappings())
            .options(
                {
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "/.*/", "values": False},
                    "textMode": "value_and_name",
                    "colorMode": "background",
                }
            )
        )
        board = board.with_panel(stat)
    return board


# -- Chi tiết thôn (hamlet detail) --------------------------------------------------------------

_HAMLET_ISP = '"hamlet" =~ /^$hamlet$/ AND "isp" =~ /^$isp$/'


def hamlet_detail() -> db.Dashboard:
    speed = (
        panel(
            "timeseries",
            "Tốc độ tải xuống và tải lên (Mb/s)",
            _pos(0, 0, 24, 9),
            InfluxQL(
                "A",
                'SELECT mean("download_mbps") AS "Tải xuống", mean("upload_mbps") AS "Tải lên"'
                f' FROM "bandwidth" WHERE {_HAMLET_ISP} AND $timeFilter'
                ' GROUP BY time($__interval), "isp" fill(none)',
                alias="$col $tag_isp",
            ),
            InfluxQL(
                "B",
                'SELECT last("declared_down_mbps") AS "Tốc độ cam kết" FROM "compliance"'
                f" WHERE \"level\" = 'line' AND {_HAMLET_ISP} AND $timeFilter"
                ' GROUP BY time($__interval), "isp" fill(none)',
                alias="$col $tag_isp",
            ),
        )
        .description(
            f"Đường {rules.GIGABIT_MEAN_MBPS:g} Mb/s: trung bình tải xuống cần đạt để coi là"
            " trên 1 Gb/s (docs/methodology.md §6). Tốc độ cam kết: theo hợp đồng đã khai báo."
        )
        .unit("Mbits")
        .thresholds(thresholds((None, "transparent"), (rules.GIGABIT_MEAN_MBPS, "red")))
        .custom({"thresholdsStyle": {"mode": "line+area"}, "spanNulls": True})
    )
    latency = panel(
        "timeseries",
        "Độ trễ lúc rảnh và khi có tải (ms)",
        _pos(0, 9, 12, 8),
        InfluxQL(
            "A",
            'SELECT mean("idle_latency_ms") AS "Lúc rảnh",'
            ' mean("loaded_latency_down_ms") AS "Khi tải xuống",'
            ' mean("loaded_latency_up_ms") AS "Khi tải lên"'
            f' FROM "bandwidth" WHERE {_HAMLET_ISP} AND $timeFilter'
            ' GROUP BY time($__interval), "isp" fill(none)',
            alias="$col $tag_isp",
        ),
        InfluxQL(
            "B",
            'SELECT mean("rtt_median_ms") AS "Ping (trung vị)"'
            f' FROM "latency" WHERE {_HAMLET_ISP} AND $timeFilter'
            ' GROUP BY time($__interval), "isp" fill(none)',
            alias="$col $tag_isp",
        ),
    ).unit("ms")
    dns = panel(
        "timeseries",
        "Thời gian phân giải DNS (ms)",
        _pos(12, 9, 12, 8),
        InfluxQL(
            "A",
            'SELECT mean("resolve_ms") AS "DNS"'
            f' FROM "dns" WHERE {_HAMLET_ISP} AND $timeFilter'
            ' GROUP BY time($__interval), "isp", "target" fill(none)',
            alias="$tag_target ($tag_isp)",
        ),
    ).unit("ms")
    ipv6_scores = (
        panel(
            "timeseries",
            "Điểm IPv6 (0–10)",
            _pos(0, 17, 12, 8),
            InfluxQL(
                "A",
                'SELECT mean("score_transition") AS "Chuyển đổi",'
                ' mean("score_strict") AS "Chỉ IPv6"'
                f' FROM "ipv6" WHERE {_HAMLET_ISP} AND $timeFilter'
                ' GROUP BY time($__interval), "isp" fill(none)',
                alias="$col $tag_isp",
            ),
        )
        .min(0)
        .max(10)
    )
    ipv6_checks = panel(
        "state-timeline",
        "Kiểm tra IPv6",
        _pos(12, 17, 12, 8),
        InfluxQL(
            "A",
            'SELECT last("global_address") AS "Địa chỉ toàn cầu",'
            ' last("default_route") AS "Tuyến mặc định",'
            ' last("aaaa_resolves") AS "Phân giải AAAA",'
            ' last("large_packets_ok") AS "Gói lớn"'
            f' FROM "ipv6" WHERE {_HAMLET_ISP} AND $timeFilter'
            ' GROUP BY time($__interval), "isp" fill(none)',
            alias="$col $tag_isp",
        ),
    ).mappings(
        [
            dm.SpecialValueMap(
                options=dm.DashboardSpecialValueMapOptions(
                    match=dm.SpecialValueMatch.TRUE,
                    result=dm.ValueMappingResult(text="Đạt", color="green", index=0),
                )
            ),
            dm.SpecialValueMap(
                options=dm.DashboardSpecialValueMapOptions(
                    match=dm.SpecialValueMatch.FALSE,
                    result=dm.ValueMappingResult(text="Không đạt", color="red", index=1),
                )
            ),
        ]
    )
    board = dashboard(
        "hamletnet-chi-tiet-thon",
        "Chi tiết thôn",
        "Số đo của một thôn theo thời gian: tốc độ, độ trễ, IPv6, DNS.",
        "now-30d",
    )
    board = (
        board.with_variable(
            query_variable(
                "commune", "Xã", f'SHOW TAG VALUES FROM "{MEASUREMENT}" WITH KEY = "commune"'
            )
        )
        .with_variable(
            query_variable(
                "hamlet",
                "Thôn",
                f'SHOW TAG VALUES FROM "{MEASUREMENT}" WITH KEY = "hamlet" WHERE {_COMMUNE}',
            )
        )
        .with_variable(
            query_variable(
                "isp",
                "Nhà mạng",
                'SHOW TAG VALUES FROM "bandwidth" WITH KEY = "isp" WHERE "hamlet" =~ /^$hamlet$/',
                multi=True,
            )
        )
        .annotation(alerts_annotation('"hamlet" =~ /^$hamlet$/ AND '))
    )
    for p in (speed, latency, dns, ipv6_scores, ipv6_checks):
        board = board.with_panel(p)
    return board


# -- Thiết bị đo (probe fleet) ------------------------------------------------------------------


def probe_fleet() -> db.Dashboard:
    fleet = (
        panel(
            "table",
            "Thiết bị đo (im lặng lâu nhất ở trên)",
            _pos(0, 0, 24, 10),
            InfluxQL(
                "A",
                'SELECT last("result_id") AS "result_id", "agent_version", "spool_depth",'
                ' "spool_oldest_age_s", "evicted_count", "cpu_temp_c", "disk_free_bytes",'
                ' "clock_synced", "last_errors" FROM "heartbeat" WHERE $timeFilter'
                ' GROUP BY "probe", "hamlet", "isp"',
                table=True,
            ),
        )
        .description(
            "Lần báo gần nhất của mỗi thiết bị (cột Time); thiết bị im lặng lâu nhất đứng đầu."
        )
        .time_from("30d")
        .with_transformation(_transform("sortBy", {"sort": [{"field": "Time", "desc": False}]}))
        .with_transformation(
            _transform(
                "organize",
                {
                    "excludeByName": {"result_id": True},
                    "renameByName": {
                        "Time": "Lần báo cuối",
                        "probe": "Thiết bị",
                        "hamlet": "Thôn",
                        "isp": "Nhà mạng",
                        "agent_version": "Phiên bản",
                        "spool_depth": "Chờ gửi",
                        "spool_oldest_age_s": "Kết quả cũ nhất chưa gửi (s)",
                        "evicted_count": "Đã loại bỏ",
                        "cpu_temp_c": "Nhiệt độ CPU (°C)",
                        "disk_free_bytes": "Đĩa trống",
                        "clock_synced": "Đồng bộ đồng hồ",
                        "last_errors": "Lỗi gần đây",
                    },
                },
            )
        )
        .override_by_name("Đĩa trống", [dm.DynamicConfigValue(id_val="unit", value="bytes")])
    )
    failures = panel(
        "timeseries",
        "Số lần đo thất bại",
        _pos(0, 10, 12, 8),
        InfluxQL(
            "A",
            'SELECT count("result_id") AS "Thất bại"'
            ' FROM "bandwidth", "latency", "dns", "ipv6", "cellular"'
            " WHERE \"status\" = 'failed' AND $timeFilter"
            ' GROUP BY time($__interval), "probe" fill(none)',
            alias="$tag_probe",
        ),
    )
    spool = panel(
        "timeseries",
        "Hàng đợi chờ gửi",
        _pos(12, 10, 12, 8),
        InfluxQL(
            "A",
            'SELECT max("spool_depth") AS "Chờ gửi" FROM "heartbeat" WHERE $timeFilter'
            ' GROUP BY time($__interval), "probe" fill(none)',
            alias="$tag_probe",
        ),
    )
    temperature = (
        panel(
            "timeseries",
            "Nhiệt độ CPU (°C)",
            _pos(0, 18, 12, 8),
            InfluxQL(
                "A",
                'SELECT max("cpu_temp_c") AS "CPU" FROM "heartbeat" WHERE $timeFilter'
                ' GROUP BY time($__interval), "probe" fill(none)',
                alias="$tag_probe",
            ),
        )
        .unit("celsius")
        .thresholds(thresholds((None, "green"), (70.0, "orange"), (80.0, "red")))
    )
    disk = panel(
        "timeseries",
        "Đĩa trống",
        _pos(12, 18, 12, 8),
        InfluxQL(
            "A",
            'SELECT min("disk_free_bytes") AS "Đĩa trống" FROM "heartbeat" WHERE $timeFilter'
            ' GROUP BY time($__interval), "probe" fill(none)',
            alias="$tag_probe",
        ),
    ).unit("bytes")
    board = dashboard(
        "hamletnet-thiet-bi-do",
        "Thiết bị đo",
        "Sức khoẻ các thiết bị đo, từ nhịp tim (heartbeat) của chúng.",
        "now-24h",
    ).annotation(alerts_annotation())
    for p in (fleet, failures, spool, temperature, disk):
        board = board.with_panel(p)
    return board


# -- Output -------------------------------------------------------------------------------------


def build_all(plan: Plan) -> dict[str, dict[str, Any]]:
    """File name → dashboard JSON (plain data, as Grafana's provisioning reads it)."""
    boards = {
        "tong-quan-xa.json": commune_overview(plan),
        "chi-tiet-thon.json": hamlet_detail(),
        "thiet-bi-do.json": probe_fleet(),
    }
    return {name: _as_data(board.build()) for name, board in boards.items()}


def _as_data(model: dm.Dashboard) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return data


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def check_round_trip(data: dict[str, Any]) -> list[str]:
    """Parse ``data`` back through the SDK's types and say what did not survive (empty: all)."""
    again = _as_data(dm.Dashboard.from_json(data))
    lost: list[str] = []
    _diff(data, again, "", lost)
    return lost


def _diff(a: Any, b: Any, where: str, lost: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _diff(a.get(key), b.get(key), f"{where}.{key}", lost)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{where}[{i}]", lost)
    elif a != b:
        lost.append(where)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    built = build_all(load_plan(PLAN_FILE))
    stale = []
    for name, data in built.items():
        path = DASHBOARDS_DIR / name
        text = render(data)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            DASHBOARDS_DIR.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run: python grafana/build.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
