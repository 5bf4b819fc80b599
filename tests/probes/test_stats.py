from __future__ import annotations

import ast
from pathlib import Path

import pytest

from probes.stats import jitter_masd, mean, median


def test_median_mean_jitter() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert mean([1.0, 2.0, 4.0]) == pytest.approx(7 / 3)
    # successive differences 1, 3, 2 -> 2
    assert jitter_masd([10.0, 11.0, 8.0, 10.0]) == pytest.approx(2.0)


def test_missing_is_none_not_zero() -> None:
    assert median([]) is None and mean([]) is None
    assert jitter_masd([5.0]) is None


def test_one_percentile_definition_in_the_whole_code() -> None:
    """docs/methodology.md, "Statistics": one percentile definition (nearest-rank), in
    server/compliance/stats.py; nothing in probes, collector or server defines another."""
    root = Path(__file__).resolve().parents[2]
    defined = set()
    for package in ("probes", "collector", "server"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                if is_function and ("percentile" in node.name or "quantile" in node.name):
                    defined.add(f"{path.relative_to(root).as_posix()}:{node.name}")
    assert defined == {"server/compliance/stats.py:percentile"}
