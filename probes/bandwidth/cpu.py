"""The probe process's own CPU use during a transfer (user + system, all threads).

Reported as per cent of one core, as ``top`` does, so 100 % is one core busy; iperf3's
``cpu_utilization_percent`` is the same measure of iperf3 itself.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

from probes.bandwidth import params


@dataclass(frozen=True, slots=True)
class CpuMark:
    cpu_s: float
    wall_s: float


def mark() -> CpuMark:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuMark(cpu_s=usage.ru_utime + usage.ru_stime, wall_s=time.perf_counter())


def cpu_percent(start: CpuMark, end: CpuMark) -> float | None:
    wall = end.wall_s - start.wall_s
    return 100.0 * (end.cpu_s - start.cpu_s) / wall if wall > 0 else None


def cpu_limited(percent: float | None) -> bool | None:
    """True at or above ``CPU_LIMITED_PERCENT`` of one core (see params for why one core)."""
    return None if percent is None else percent >= params.CPU_LIMITED_PERCENT
