"""Alert configuration: the example loads; each validation rule has an invalid case, by message;
channel URLs (secrets) never show in a repr or an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.alerts.config import load_alerts, parse_alerts
from server.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "alerts.example.yaml"
SECRET = "mailtos://user:hunter2-secret@smtp.example.vn"


def base() -> dict[str, Any]:
    return {
        "links": {"grafana_url": "https://g.example.vn", "server_url": "https://s.example.vn"},
        "routing": {
            "office": {"name": "Văn phòng", "urls": [SECRET]},
            "isps": {"VNPT": {"name": "VNPT", "urls": ["json://vnpt.example.vn/hook"]}},
        },
        "rules": [
            {
                "id": "low",
                "kind": "below_declared",
                "title_vi": "Tốc độ thấp",
                "text_vi": "Dưới 80 %.",
                "fraction": 0.8,
                "m": 3,
                "n": 5,
                "resolve_after": 3,
                "remind_every_h": 24,
            }
        ],
    }


def test_the_example_loads_every_kind() -> None:
    config = load_alerts(EXAMPLE)
    kinds = {r.kind for r in config.rules}
    assert kinds == {
        "below_declared",
        "below_plan_target",
        "below_own_median",
        "loaded_latency_above",
        "ipv6_readiness_lost",
        "probe_silent",
        "sample_pace_behind",
        "target_unreachable",
    }
    assert config.rule("download-below-declared").m == 3
    assert set(config.routing.isps) == {"VNPT", "Viettel", "FPT"}


def test_routing_sends_an_isps_alerts_to_it_and_the_office_only() -> None:
    routing = parse_alerts(base()).routing
    assert [c.name for c in routing.contacts_for("VNPT")] == ["Văn phòng", "VNPT"]
    assert [c.name for c in routing.contacts_for("Viettel")] == ["Văn phòng"]
    assert [c.name for c in routing.contacts_for(None)] == ["Văn phòng"]


def test_channel_urls_never_show() -> None:
    config = parse_alerts(base())
    assert "hunter2" not in repr(config) and "hunter2" not in str(config)
    assert "hunter2" not in config.model_dump_json()
    assert config.routing.office.urls[0].get_secret_value() == SECRET


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node: Any = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("rules.0.fraction", 1.5, "rules.0.below_declared.fraction: Input should be less"),
        ("rules.0.fraction", _DELETE, "rules.0.below_declared.fraction: Field required"),
        ("rules.0.m", 6, "rules.0.below_declared: m (6) cannot exceed n (5)"),
        ("rules.0.resolve_after", 0, "rules.0.below_declared.resolve_after: Input should be"),
        ("rules.0.remind_every_h", 0, "rules.0.below_declared.remind_every_h: Input should be"),
        ("rules.0.kind", "below_declard", "rules.0: Input tag 'below_declard' found using 'kind'"),
        ("rules.0.direction", "sideways", "rules.0.below_declared.direction: Input should be"),
        ("rules.0.bound_ms", 100, "rules.0.below_declared.bound_ms: unknown key"),
        ("rules.0.severity", "panic", "rules.0.below_declared.severity: Input should be"),
        ("rules.0.title_vi", "", "rules.0.below_declared.title_vi: String should have at least"),
        ("rules.0.id", "Low Speed", "rules.0.below_declared.id: String should match"),
        ("rules", [], "rules: List should have at least 1 item"),
        ("links.grafana_url", "grafana.x", "links.grafana_url: 'grafana.x' must start with http"),
        ("links.evidence_path", "/e?h={hamlt}", "links.evidence_path: unknown field(s) hamlt"),
        ("links.evidence_path", "e", "links.evidence_path: 'e' must start with /"),
        ("routing.office.urls", [], "routing.office.urls: List should have at least 1 item"),
        ("routing.office", _DELETE, "routing.office: Field required"),
        ("routing.isps.VNPT.url", "x", "routing.isps.VNPT.url: unknown key"),
        (
            "routing.isps.VNPT.urls",
            ["not a url"],
            "routing.isps.VNPT.urls: item 0 is not an Apprise URL",
        ),
        ("rulez", [], "rulez: unknown key"),
    ],
)
def test_bad_alert_config_is_reported_by_key(key: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_alerts(_set(base(), key, value))
    assert expected in caught.value.detail


def test_invalid_apprise_url_is_named_not_shown(tmp_path: Path) -> None:
    data = _set(base(), "routing.office.urls", ["smtp password hunter2 in plain sight"])
    with pytest.raises(ConfigError) as caught:
        parse_alerts(data)
    assert "routing.office.urls: item 0 is not an Apprise URL" in caught.value.detail
    assert "hunter2" not in caught.value.detail
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_every_kind_requires_its_own_parameters() -> None:
    data = base()
    data["rules"] = [
        {"id": "s", "kind": "probe_silent", "title_vi": "T", "text_vi": "x"},
        {"id": "t", "kind": "target_unreachable", "title_vi": "T", "text_vi": "x", "min_probes": 1},
        {"id": "o", "kind": "below_own_median", "title_vi": "T", "text_vi": "x",
         "percent_below": 100},
    ]  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        parse_alerts(data)
    assert "rules.0.probe_silent.factor: Field required" in caught.value.detail
    assert "rules.1.target_unreachable.min_probes: Input should be greater" in caught.value.detail
    assert "rules.2.below_own_median.percent_below: Input should be less" in caught.value.detail


def test_rule_ids_are_unique() -> None:
    data = base()
    data["rules"].append(dict(data["rules"][0]))
    with pytest.raises(ConfigError, match="rules: rule ids must be unique; repeated: low"):
        parse_alerts(data)


def test_yaml_errors_name_the_place_not_the_line(tmp_path: Path) -> None:
    """PyYAML quotes the broken line; here that line holds a channel password."""
    path = tmp_path / "alerts.yaml"
    path.write_text(f'routing:\n  office:\n    urls: ["{SECRET}" ]]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_alerts(path)
    assert "is not valid YAML: expected <block end>, but found ']' at line 3, column 61" in (
        caught.value.detail
    )
    assert "hunter2" not in caught.value.detail
