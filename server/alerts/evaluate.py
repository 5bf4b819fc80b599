"""Observation builders: plain data in, one ``Observation`` (bad or good) out, or ``None``.

``None`` means "no verdict": the test does not count (failed, CPU- or host-limited, run on an
unsynchronised clock, shared with another test: the compliance rules' own filter,
``server.compliance.rules.valid_samples``), the value is missing, or the reference (a declared
speed, a baseline) is unknown. The state machine never sees such a test, so "M of the last N"
counts valid tests only. Nothing here reads the clock or the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from probes.models import FailureKind, Status
from server.alerts.config import (
    BelowDeclared,
    BelowOwnMedian,
    BelowPlanTarget,
    Direction,
    Ipv6ReadinessLost,
    LoadedLatencyAbove,
    ProbeSilent,
    SamplePaceBehind,
    TargetUnreachable,
)
from server.alerts.state import Observation
from server.compliance.rules import (
    VNNIC_MIN_SAMPLES,
    Exclusion,
    Ipv6Sample,
    Line,
    Sample,
    sufficiency,
    valid_samples,
)
from server.compliance.stats import Period, median

MBPS = "Mb/s"

#: Failures that say the target did not answer. The others (no permission, tool missing, no
#: modem, deferred, internal) are the probe's own trouble and say nothing about the target.
TARGET_FAILURES = frozenset(
    {
        FailureKind.TIMEOUT,
        FailureKind.UNREACHABLE,
        FailureKind.REFUSED,
        FailureKind.DNS,
        FailureKind.TLS,
        FailureKind.PROTOCOL,
    }
)


def is_valid(sample: Sample) -> bool:
    """Whether a test counts, by the compliance rules' one definition of a valid sample."""
    at = sample.measured_at
    instant = Period("alert", "range", at, at + timedelta(microseconds=1))
    return bool(valid_samples([sample], instant).valid)


def _speed(sample: Sample, direction: Direction) -> float | None:
    return sample.download_mbps if direction == "download" else sample.upload_mbps


def _below(
    sample: Sample, direction: Direction, threshold: float | None, note: str = ""
) -> Observation | None:
    value = _speed(sample, direction)
    if threshold is None or value is None or not is_valid(sample):
        return None
    return Observation(sample.measured_at, value < threshold, value, threshold, MBPS, note)


def below_declared(rule: BelowDeclared, sample: Sample, line: Line) -> Observation | None:
    """Bad when the speed is below ``fraction`` × the speed the operator declared for the line
    (the ratio QCVN 34:2022 §2.1 applies to the mean, Pd ≥ 0.8·Vd, here per test). No declared
    speed: no verdict."""
    declared = line.declared_down_mbps if rule.direction == "download" else line.declared_up_mbps
    threshold = None if declared is None else rule.fraction * declared
    return _below(sample, rule.direction, threshold)


def below_plan_target(rule: BelowPlanTarget, sample: Sample) -> Observation | None:
    """Bad when the speed is below ``fraction`` × the plan's target (default 941 Mb/s)."""
    return _below(sample, rule.direction, rule.fraction * rule.target_mbps)


def own_median(
    rule: BelowOwnMedian, history: Iterable[Sample], before: datetime
) -> tuple[float | None, int]:
    """The median speed of the line's valid tests in the ``baseline_days`` before ``before``
    (the test being judged is not its own baseline), and how many there were."""
    window = Period("baseline", "range", before - timedelta(days=rule.baseline_days), before)
    valid = valid_samples(history, window).valid
    values = [v for v in (_speed(s, rule.direction) for s in valid) if v is not None]
    return median(values), len(values)


def below_own_median(
    rule: BelowOwnMedian, sample: Sample, history: Iterable[Sample]
) -> Observation | None:
    """Bad when the speed is more than ``percent_below`` % below the line's own median over the
    previous ``baseline_days`` days; fewer than ``min_baseline_samples`` valid tests there: no
    verdict (a line's "usual level" needs a history)."""
    typical, n = own_median(rule, history, sample.measured_at)
    if typical is None or n < rule.min_baseline_samples:
        return None
    threshold = typical * (1 - rule.percent_below / 100)
    return _below(sample, rule.direction, threshold, f"trung vị {rule.baseline_days} ngày")


def loaded_latency_above(
    rule: LoadedLatencyAbove,
    sample: Sample,
    *,
    loaded_down_ms: float | None,
    loaded_up_ms: float | None,
) -> Observation | None:
    """Bad when the latency measured during the rule's direction of a bandwidth test (the
    "working latency" of RFC 9097 / Apple's RPM) is above ``bound_ms``. ``sample`` is the same
    test, for its validity."""
    value = loaded_down_ms if rule.direction == "download" else loaded_up_ms
    if value is None or not is_valid(sample):
        return None
    return Observation(sample.measured_at, value > rule.bound_ms, value, rule.bound_ms, "ms")


def ipv6_readiness_lost(
    rule: Ipv6ReadinessLost, sample: Ipv6Sample, was_ready: bool
) -> Observation | None:
    """Bad when a line that was IPv6-ready (``was_ready``: see ``was_ipv6_ready``) reports not
    ready; good when it reports ready. A line never ready: no verdict (nothing was lost)."""
    del rule  # no parameters beyond the hysteresis
    if sample.status is not Status.OK or sample.clock_synced is False:
        return None
    if sample.ipv6_ready is None:
        return None
    if not sample.ipv6_ready and not was_ready:
        return None
    return Observation(sample.measured_at, not sample.ipv6_ready)


def was_ipv6_ready(history: Iterable[Ipv6Sample], window: Period) -> bool:
    """A line "was ready" when a valid result in ``window`` (e.g. the previous month) said so."""
    return any(
        s.ipv6_ready
        for s in history
        if window.contains(s.measured_at) and s.status is Status.OK and s.clock_synced is not False
    )


def probe_silent(
    rule: ProbeSilent,
    *,
    last_seen_at: datetime | None,
    registered_at: datetime,
    now: datetime,
    upload_interval: timedelta | None = None,
    enabled: bool = True,
) -> Observation | None:
    """Bad when nothing (result or heartbeat) came from the probe for more than ``factor`` ×
    its upload interval (``assumed_interval_s`` when the probe reports none); measured in
    minutes. A probe never heard from counts from its registration. A disabled probe: none."""
    if not enabled:
        return None
    interval = upload_interval or timedelta(seconds=rule.assumed_interval_s)
    limit = rule.factor * interval
    silent_for = now - (last_seen_at or registered_at)
    minutes = timedelta(minutes=1)
    return Observation(now, silent_for > limit, silent_for / minutes, limit / minutes, "phút")


def sample_pace_behind(
    rule: SamplePaceBehind, count: int, month: Period, now: datetime
) -> Observation | None:
    """Bad when the month's valid-sample count, projected to the month's end at its pace so far
    (``server.compliance.rules.sufficiency``), stays below VNNIC's 300 (its publication minimum
    for a commune). No verdict in the first ``grace_days`` (no pace yet) nor before the month."""
    if now < month.start + timedelta(days=rule.grace_days):
        return None
    pace = sufficiency(count, month, now)
    note = f"{count} mẫu đến nay"
    return Observation(
        now, pace.projected < VNNIC_MIN_SAMPLES, pace.projected, VNNIC_MIN_SAMPLES, "mẫu", note
    )


@dataclass(frozen=True, slots=True)
class TargetAttempt:
    """One probe's test against the measurement target."""

    probe_id: str
    measured_at: datetime
    status: Status
    failure_kind: FailureKind | None = None


def target_unreachable(
    rule: TargetUnreachable, attempts: Sequence[TargetAttempt], now: datetime
) -> Observation | None:
    """One observation for the target, from each probe's latest attempt in the last
    ``window_min`` minutes: bad when at least ``min_probes`` probes failed to reach it.

    One alert for the target, not one per probe: a single probe failing is its own line's
    trouble (and its own rules' business). Attempts that failed for the probe's own reasons
    (not in ``TARGET_FAILURES``) are left out; fewer than ``min_probes`` probes heard from in the
    window: no verdict. ``measured`` is the number of probes failing."""
    start = now - timedelta(minutes=rule.window_min)
    latest: dict[str, TargetAttempt] = {}
    for attempt in attempts:
        if not start <= attempt.measured_at <= now:
            continue
        if attempt.status is not Status.OK and attempt.failure_kind not in TARGET_FAILURES:
            continue
        kept = latest.get(attempt.probe_id)
        if kept is None or attempt.measured_at > kept.measured_at:
            latest[attempt.probe_id] = attempt
    if len(latest) < rule.min_probes:
        return None
    failing = sorted(p for p, a in latest.items() if a.status is not Status.OK)
    note = f"{len(failing)}/{len(latest)} đầu đo" + (f": {', '.join(failing)}" if failing else "")
    bad = len(failing) >= rule.min_probes
    return Observation(now, bad, len(failing), rule.min_probes, "đầu đo", note)


def valid_download_count(samples: Iterable[Sample], month: Period) -> int:
    """The month's valid tests with a download speed: the count VNNIC's 300 is about, by the
    compliance report's own definition (``server.compliance.engine``'s sufficiency column)."""

    def has_download(sample: Sample) -> Exclusion | None:
        return None if sample.download_mbps is not None else Exclusion.NO_VALUE

    return len(valid_samples(samples, month, keep=has_download).valid)
