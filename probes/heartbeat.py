"""The agent's own health, read from /proc and /sys (Linux; Raspberry Pi OS exposes the SoC
temperature at /sys/class/thermal/thermal_zone0/temp in millidegrees)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from probes.envelope import build_result
from probes.models import HeartbeatResult
from probes.spec import Span

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def read_uptime_s(proc: Path = Path("/proc/uptime")) -> float | None:
    try:
        return float(proc.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_cpu_temp_c(zone: Path = THERMAL_ZONE) -> float | None:
    try:
        return int(zone.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def snapshot(
    probe_id: str,
    *,
    agent_version: str,
    spool_depth: int | None = None,
    spool_oldest_age_s: float | None = None,
    evicted_count: int | None = None,
    last_errors: dict[str, str] | None = None,
    disk_path: Path = Path("/"),
) -> HeartbeatResult:
    try:
        disk_free: int | None = shutil.disk_usage(disk_path).free
    except OSError:
        disk_free = None
    return build_result(
        HeartbeatResult,
        probe_id,
        engine="agent",
        target=None,
        span=Span(datetime.now(UTC), None),
        fields={
            "agent_version": agent_version,
            "uptime_s": read_uptime_s(),
            "load1": os.getloadavg()[0],
            "cpu_temp_c": read_cpu_temp_c(),
            "disk_free_bytes": disk_free,
            "spool_depth": spool_depth,
            "spool_oldest_age_s": spool_oldest_age_s,
            "evicted_count": evicted_count,
            "last_errors": last_errors or None,
        },
    )
