"""The APScheduler trigger of a schedule with exponential gaps (``collector.schedule``).

Kept apart from ``collector.schedule`` so that reading the configuration does not import
APScheduler. The trigger reads no clock: APScheduler hands it the previous fire time and "now",
and the random generator is injected, so a test draws thousands of fire times without waiting.
"""

from __future__ import annotations

import random
from datetime import datetime

from apscheduler.triggers.base import BaseTrigger

from collector.schedule import GapPlan, next_fire


class ExponentialTrigger(BaseTrigger):
    """Fires after exponentially distributed, clamped gaps, with extra fires in a peak window."""

    __slots__ = ("plan", "rng")

    def __init__(self, plan: GapPlan, rng: random.Random | None = None) -> None:
        self.plan = plan
        #: ``random.Random()`` seeds itself from the OS, so probes started together differ.
        self.rng = rng or random.Random()

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        # The first fire is one gap after the start, not at once: a restart is no test time.
        # Each later one follows the previous *scheduled* time, so the times stay a renewal
        # process even when a run starts late.
        return next_fire(previous_fire_time or now, self.plan, self.rng)

    def __str__(self) -> str:
        peak = self.plan.peak
        extra = (
            f", +{peak.extra_per_hour:g}/h {peak.start}-{peak.end} {peak.timezone}" if peak else ""
        )
        return (
            f"exponential[mean={self.plan.mean_gap_s:g}s, clamp=[{self.plan.min_gap_s:g},"
            f" {self.plan.max_gap_s:g}]s{extra}]"
        )

    def __repr__(self) -> str:
        return f"<ExponentialTrigger ({self})>"
