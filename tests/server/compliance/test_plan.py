"""The plan as data: the shipped plan loads whole; each validation rule has a case, by message."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.compliance.plan import load_plan, parse_plan
from server.compliance.rules import RULES
from server.errors import ConfigError

PLAN_FILE = Path(__file__).resolve().parents[3] / "config" / "plan.yaml"


def test_the_shipped_plan_holds_every_appendix_row() -> None:
    plan = load_plan(PLAN_FILE)
    rows = {i.appendix_row for i in plan.indicators}
    # The appendix: I.1 has 4 rows, I.2 has 2, II.1 has 3, II.2 has 1 (II.1.3 holds 3 targets).
    assert rows == {"I.1.1", "I.1.2", "I.1.3", "I.1.4", "I.2.1", "I.2.2"} | {
        "II.1.1",
        "II.1.2",
        "II.1.3",
        "II.2.1",
    }
    assert len(plan.indicators) == 12
    by_id = {i.id: i for i in plan.indicators}
    assert by_id["fibre-hamlets-2026"].deadline == "Q3/2026"
    assert by_id["mobile-broadband-hamlets-2026"].deadline == "Q3/2026"
    assert by_id["ai-use"].due.ongoing and by_id["ai-use"].target is None
    gigabit = by_id["fixed-gigabit-2026"]
    assert gigabit.judged_by.method == "rule" and gigabit.judged_by.rule == "fixed-gigabit"
    assert gigabit.condition is not None and gigabit.condition.unit == "Gb/s"
    assert by_id["digital-signature-2030"].judged_by.method == "hand"
    assert by_id["digital-signature-2030"].basis == "adults"
    assert {i.year for i in plan.indicators} == {2026, 2030}
    for indicator in plan.indicators:
        for rule_id in indicator.also_show:
            assert rule_id in RULES
    assert plan.plan.starts_at.isoformat() == "2026-04-30T17:00:00+00:00"


def _shipped() -> dict[str, Any]:
    loaded = yaml.safe_load(PLAN_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _with(change: str) -> dict[str, Any]:
    data = copy.deepcopy(_shipped())
    first = data["indicators"][0]
    if change == "no deadline":
        del first["deadline"]
    elif change == "bad deadline":
        first["deadline"] = "Quý IV/2026"
    elif change == "unknown basis":
        first["basis"] = "households"
    elif change == "unknown rule":
        first["judged_by"] = {"method": "rule", "rule": "presence-6g"}
    elif change == "unknown method":
        first["judged_by"] = {"method": "guess"}
    elif change == "unknown key":
        first["threshold"] = 95
    elif change == "unknown unit":
        first["target"]["unit"] = "percent"
    elif change == "duplicate id":
        data["indicators"].append(copy.deepcopy(first))
    elif change == "rule without target":
        first["target"] = None
    elif change == "unknown also_show":
        first["also_show"] = ["mobile-6g"]
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no deadline", "indicators.0.deadline: Field required"),
        ("bad deadline", "indicators.0.deadline: deadline 'Quý IV/2026' is neither"),
        ("unknown basis", "indicators.0.basis: unknown basis 'households'"),
        ("unknown rule", "indicators.0.judged_by.rule.rule: unknown rule 'presence-6g'"),
        ("unknown method", "indicators.0.judged_by: Input tag 'guess'"),
        ("unknown key", "indicators.0.threshold: unknown key"),
        ("unknown unit", "indicators.0.target.unit: unknown unit 'percent'"),
        ("duplicate id", "repeated: 5g-coverage-2026"),
        ("rule without target", "5g-coverage-2026: an indicator judged by a rule needs a 'target'"),
        ("unknown also_show", "indicators.0.also_show: unknown rule(s) 'mobile-6g'"),
    ],
)
def test_bad_plans_are_reported_by_key_and_value(change: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_plan(_with(change), "plan.yaml")
    assert message in caught.value.detail


def test_a_plan_file_that_is_not_a_mapping_is_named(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("- a\n- list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_plan(path)
