"""Observation builders: each rule's bad and good side, and every "no verdict" case."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.models import Access, FailureKind, Status
from server.alerts import config, evaluate
from server.alerts.evaluate import TargetAttempt
from server.compliance.rules import Ipv6Sample, Line, Sample
from server.compliance.stats import month_of

AT = datetime(2026, 11, 10, 13, 0, tzinfo=UTC)
LINE = Line("thon-a", "VNPT", Access.FIBER, declared_down_mbps=1000, declared_up_mbps=500)
WORDS = {"title_vi": "T", "text_vi": "x"}


def make(model: type[Any], **fields: Any) -> Any:
    kind = model.model_fields["kind"].annotation.__args__[0]
    return model(id="r", kind=kind, **WORDS, **fields)


def sample(down: float | None = 500.0, up: float | None = 200.0, **fields: Any) -> Sample:
    return Sample(AT, download_mbps=down, upload_mbps=up, **fields)


def test_below_declared_by_direction() -> None:
    down = make(config.BelowDeclared, fraction=0.8)
    up = make(config.BelowDeclared, fraction=0.8, direction="upload")
    seen = evaluate.below_declared(down, sample(799.9), LINE)
    assert seen is not None and seen.bad and seen.measured == 799.9 and seen.threshold == 800
    seen = evaluate.below_declared(down, sample(800.0), LINE)
    assert seen is not None and not seen.bad
    seen = evaluate.below_declared(up, sample(up=450.0), LINE)
    assert seen is not None and not seen.bad and seen.threshold == 400 and seen.unit == "Mb/s"


@pytest.mark.parametrize(
    "flags",
    [
        {"status": Status.FAILED},
        {"cpu_limited": True},
        {"host_limited": True},
        {"ran_alone": False},
        {"clock_synced": False},
    ],
)
def test_invalid_tests_give_no_observation(flags: dict[str, Any]) -> None:
    """The compliance rules' own filter: such tests are not counted in M of N."""
    rule = make(config.BelowDeclared, fraction=0.8)
    assert evaluate.below_declared(rule, sample(10.0, **flags), LINE) is None
    assert evaluate.below_declared(rule, sample(10.0), LINE) is not None


def test_no_declared_speed_or_no_value_gives_no_observation() -> None:
    rule = make(config.BelowDeclared, fraction=0.8)
    assert (
        evaluate.below_declared(rule, sample(10.0), replace(LINE, declared_down_mbps=None)) is None
    )
    assert evaluate.below_declared(rule, sample(None), LINE) is None


def test_below_plan_target_defaults_to_the_gigabit_goodput() -> None:
    rule = make(config.BelowPlanTarget, fraction=0.9)
    seen = evaluate.below_plan_target(rule, sample(846.0))
    assert seen is not None and seen.bad and seen.threshold == pytest.approx(846.9)


def _history(values: list[float], days_before: float = 1.0) -> list[Sample]:
    start = AT - timedelta(days=days_before)
    return [Sample(start + timedelta(minutes=i), download_mbps=v) for i, v in enumerate(values)]


def test_below_own_median() -> None:
    rule = make(config.BelowOwnMedian, percent_below=40, min_baseline_samples=3)
    history = _history([900.0, 1000.0, 950.0])  # median 950 → threshold 570
    seen = evaluate.below_own_median(rule, sample(569.0), history)
    assert seen is not None and seen.bad and seen.threshold == pytest.approx(570.0)
    assert "trung vị 7 ngày" in seen.note
    seen = evaluate.below_own_median(rule, sample(571.0), history)
    assert seen is not None and not seen.bad


def test_own_median_uses_only_the_valid_tests_of_the_days_before() -> None:
    rule = make(config.BelowOwnMedian, percent_below=40, min_baseline_samples=3)
    old = _history([10.0] * 5, days_before=8)  # outside the 7 days
    later = [Sample(AT + timedelta(minutes=1), download_mbps=10.0)]  # after the judged test
    failed = [Sample(AT - timedelta(hours=1), download_mbps=1.0, status=Status.FAILED)]
    recent = _history([900.0, 1000.0, 950.0])
    assert evaluate.own_median(rule, old + later + failed + recent, AT) == (950.0, 3)
    short = make(config.BelowOwnMedian, percent_below=40, min_baseline_samples=4)
    assert evaluate.below_own_median(short, sample(1.0), old + recent) is None


def test_loaded_latency_above() -> None:
    rule = make(config.LoadedLatencyAbove, bound_ms=150)
    up = make(config.LoadedLatencyAbove, bound_ms=150, direction="upload")
    seen = evaluate.loaded_latency_above(rule, sample(), loaded_down_ms=151.0, loaded_up_ms=20.0)
    assert seen is not None and seen.bad and seen.unit == "ms"
    seen = evaluate.loaded_latency_above(up, sample(), loaded_down_ms=151.0, loaded_up_ms=20.0)
    assert seen is not None and not seen.bad
    assert (
        evaluate.loaded_latency_above(rule, sample(), loaded_down_ms=None, loaded_up_ms=1) is None
    )
    bad = sample(cpu_limited=True)
    assert evaluate.loaded_latency_above(rule, bad, loaded_down_ms=500, loaded_up_ms=1) is None


def test_ipv6_readiness_lost_only_for_a_line_that_was_ready() -> None:
    rule = make(config.Ipv6ReadinessLost)
    not_ready = Ipv6Sample(AT, ipv6_ready=False, ipv6_only_ready=False)
    ready = Ipv6Sample(AT, ipv6_ready=True, ipv6_only_ready=False)
    seen = evaluate.ipv6_readiness_lost(rule, not_ready, was_ready=True)
    assert seen is not None and seen.bad and seen.measured is None
    assert evaluate.ipv6_readiness_lost(rule, not_ready, was_ready=False) is None
    seen = evaluate.ipv6_readiness_lost(rule, ready, was_ready=False)
    assert seen is not None and not seen.bad
    failed = replace(not_ready, status=Status.FAILED)
    assert evaluate.ipv6_readiness_lost(rule, failed, was_ready=True) is None
    unknown = replace(not_ready, ipv6_ready=None)
    assert evaluate.ipv6_readiness_lost(rule, unknown, was_ready=True) is None


def test_was_ipv6_ready_looks_at_valid_results_in_the_window() -> None:
    previous = month_of(AT - timedelta(days=31))
    ready_then = Ipv6Sample(previous.start + timedelta(days=2), True, False)
    ready_now = Ipv6Sample(AT, True, False)
    unsynced = replace(ready_then, clock_synced=False)
    assert evaluate.was_ipv6_ready([ready_then], previous)
    assert not evaluate.was_ipv6_ready([ready_now, unsynced], previous)


def test_probe_silent_after_k_intervals() -> None:
    rule = make(config.ProbeSilent, factor=3)
    seen = evaluate.probe_silent(
        rule, last_seen_at=AT - timedelta(minutes=15), registered_at=AT - timedelta(days=9), now=AT
    )
    assert seen is not None and not seen.bad and seen.measured == 15 and seen.threshold == 15
    seen = evaluate.probe_silent(
        rule,
        last_seen_at=AT - timedelta(minutes=15, seconds=1),
        registered_at=AT - timedelta(days=9),
        now=AT,
    )
    assert seen is not None and seen.bad and seen.unit == "phút"
    seen = evaluate.probe_silent(
        rule,
        last_seen_at=AT - timedelta(minutes=15, seconds=1),
        registered_at=AT,
        now=AT,
        upload_interval=timedelta(minutes=10),
    )
    assert seen is not None and not seen.bad and seen.threshold == 30
    never = evaluate.probe_silent(
        rule, last_seen_at=None, registered_at=AT - timedelta(hours=1), now=AT
    )
    assert never is not None and never.bad and never.measured == 60
    off = evaluate.probe_silent(rule, last_seen_at=None, registered_at=AT, now=AT, enabled=False)
    assert off is None


def test_sample_pace_against_300() -> None:
    rule = make(config.SamplePaceBehind, grace_days=3)
    month = month_of(AT)  # November: 30 days
    day10 = month.start + timedelta(days=10)
    assert evaluate.sample_pace_behind(rule, 5, month, month.start + timedelta(days=2)) is None
    behind = evaluate.sample_pace_behind(rule, 99, month, day10)  # 99 × 3 = 297 projected
    assert behind is not None and behind.bad and behind.measured == 297
    assert behind.threshold == 300 and behind.note == "99 mẫu đến nay"
    on_pace = evaluate.sample_pace_behind(rule, 100, month, day10)
    assert on_pace is not None and not on_pace.bad and on_pace.measured == 300


def _attempt(probe: str, minutes_ago: float, ok: bool, kind: FailureKind | None = None) -> Any:
    status = Status.OK if ok else Status.FAILED
    failure = None if ok else (kind or FailureKind.TIMEOUT)
    return TargetAttempt(probe, AT - timedelta(minutes=minutes_ago), status, failure)


def test_target_unreachable_is_one_observation_from_several_probes() -> None:
    rule = make(config.TargetUnreachable, min_probes=2, window_min=30)
    attempts = [_attempt("p1", 5, False), _attempt("p2", 6, False), _attempt("p3", 7, True)]
    seen = evaluate.target_unreachable(rule, attempts, AT)
    assert seen is not None and seen.bad and seen.measured == 2
    assert seen.note == "2/3 đầu đo: p1, p2"
    one = evaluate.target_unreachable(rule, [*attempts[1:], _attempt("p4", 1, True)], AT)
    assert one is not None and not one.bad and one.measured == 1


def test_target_unreachable_uses_each_probes_latest_attempt_in_the_window() -> None:
    rule = make(config.TargetUnreachable, min_probes=2, window_min=30)
    recovered = [_attempt("p1", 20, False), _attempt("p1", 2, True)]
    stale = [_attempt("p2", 31, False)]
    local = [_attempt("p3", 3, False, FailureKind.TOOL_MISSING)]
    others = [_attempt("p4", 4, False), _attempt("p5", 4, True)]
    seen = evaluate.target_unreachable(rule, recovered + stale + local + others, AT)
    assert seen is not None and not seen.bad and seen.note == "1/3 đầu đo: p4"
    assert evaluate.target_unreachable(rule, stale + local + [_attempt("p4", 1, False)], AT) is None


@settings(max_examples=200, deadline=None)
@given(
    value=st.floats(0, 5000, allow_nan=False),
    declared=st.floats(1, 5000, allow_nan=False),
    fraction=st.floats(0.01, 1.0),
)
def test_below_declared_is_bad_exactly_below_the_threshold(
    value: float, declared: float, fraction: float
) -> None:
    rule = make(config.BelowDeclared, fraction=fraction)
    seen = evaluate.below_declared(rule, sample(value), replace(LINE, declared_down_mbps=declared))
    assert seen is not None and seen.bad == (value < fraction * declared)
