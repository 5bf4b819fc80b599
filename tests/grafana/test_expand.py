"""The test's stand-in for Grafana's query interpolation, checked on cases worked by hand from
Grafana 11's rules (see ``expand``'s docstring)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.grafana.expand import ALL, Variable, expand, ms_to_text, round_interval_ms

START = datetime(2026, 10, 31, 17, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw_ms", "rounded", "text"),
    [(13_392_000, 10_800_000, "3h"), (432_000, 300_000, "5m"), (40_000, 30_000, "30s"),
     (2_000_000_000, 2_592_000_000, "30d"), (100, 100, "100ms")],
)  # fmt: skip
def test_interval_is_rounded_like_grafana(raw_ms: float, rounded: int, text: str) -> None:
    assert round_interval_ms(raw_ms) == rounded
    assert ms_to_text(rounded) == text


def test_time_filter_interval_and_variables() -> None:
    variables = {
        "hamlet": Variable("hamlet", ["lang-moi"]),
        "isp": Variable("isp", [ALL], ["FPT", "Viettel"], multi=True, include_all=True),
        "target": Variable("target", ["a.b", "c/d"], multi=True),
    }
    query = (
        'SELECT mean("x") FROM "m" WHERE "hamlet" =~ /^$hamlet$/ AND "isp" =~ /^$isp$/'
        ' AND "target" =~ /^${target}$/ AND $timeFilter GROUP BY time($__interval)'
        " LIMIT $__interval_ms"
    )
    end = START + timedelta(days=31) - timedelta(milliseconds=1)
    text = expand(query, start=START, end=end, max_data_points=200, variables=variables)
    assert text == (
        'SELECT mean("x") FROM "m" WHERE "hamlet" =~ /^lang-moi$/ AND "isp" =~ /^(FPT|Viettel)$/'
        ' AND "target" =~ /^(a\\.b|c\\/d)$/ AND time >= 1793466000000ms and'
        " time <= 1796144399999ms GROUP BY time(3h) LIMIT 10800000"
    )


def test_a_variable_left_unexpanded_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"\$isp"):
        expand('SELECT 1 FROM "m" WHERE "isp" = $isp', start=START, end=START, max_data_points=1)
