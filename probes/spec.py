"""What a probe kind takes and gives back: a ``ProbeSpec`` in, ``Measurement``\\ s out.

A measurement is what the probe found, never the result's envelope: the caller (the agent, or
``hamletnet-probe measure``) enforces the timeout and stamps ``result_id``, ``measured_at``,
``duration_ms``, status and failure fields with ``probes.envelope.build_result``
(blackbox_exporter's ``prober.go``/``handler.go`` split).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from probes.models import FailureKind


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """What to measure: the caller's schedule or command line, handed to the probe function."""

    probe_id: str
    targets: Sequence[str] = field(default_factory=tuple)
    timeout_s: float = 60.0
    #: Which engine of the kind to use (e.g. bandwidth: "http", "speedtest", "iperf3"); None is
    #: the kind's default.
    engine: str | None = None
    #: Engine-specific settings from the configuration (streams, duration_s, ...).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Span:
    """When a test began (wall clock, UTC) and how long it took (monotonic clock), in ms."""

    measured_at: datetime
    duration_ms: float | None


class Stopwatch:
    """Starts at creation: the wall clock for ``measured_at``, the monotonic one for the rest."""

    __slots__ = ("_started_ns", "measured_at")

    def __init__(self) -> None:
        self.measured_at = datetime.now(UTC)
        self._started_ns = time.perf_counter_ns()

    def span(self) -> Span:
        return Span(self.measured_at, (time.perf_counter_ns() - self._started_ns) / 1e6)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a measurement failed: a kind classified from the exception type, and words."""

    kind: FailureKind
    error: str


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one test of a kind found: its engine and target, the kind's own result fields
    (``rtts_ms``, ``download_mbps``...), and why it failed, if it did.

    ``span`` is set only by a probe that makes several measurements in one call and times each
    (dns: one per query; latency and bandwidth: one per target); otherwise the caller's timing of
    the call is the measurement's.
    """

    engine: str
    target: str | None
    fields: Mapping[str, Any] = field(default_factory=dict)
    failure: Failure | None = None
    span: Span | None = None


#: Every probe kind's one entry point.
ProbeFn = Callable[[ProbeSpec], Awaitable[list[Measurement]]]
