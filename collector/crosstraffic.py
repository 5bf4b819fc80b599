"""Before a bandwidth test: is the line quiet? Test only when it is, as SamKnows does.

The probe reads its interface's byte counters and the machine's CPU times over a window (5 s),
and runs the test only when the household's traffic, bytes in and out combined, stayed below a
threshold (25,000 B/s) and the CPU below 30 %. Otherwise it tries the next window, and when none
was quiet within 30 s the test is deferred, recording the level seen, the threshold and the
interface (methodology.md §4 and "What hamletnet should adopt" §6, from SamKnows' test-trigger
page and ThousandEyes' testing thresholds). A probe that is not inline, so cannot see the
household's traffic, says so: every bandwidth result carries ``cross_traffic: unknown``. Its
CPU is still watched, window by window, and a test is deferred when it stays busy.

``judge`` decides from one window's figures, as a plain function; ``check_line`` is the thin
loop around it, with the counter and CPU readers, the clock and the sleep injectable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from probes.models import CrossTraffic, SkipReason, Status

#: SamKnows' defaults (methodology.md §4): bytes per second, in and out combined ...
DEFAULT_THRESHOLD_BYTES_PER_S = 25_000
#: ... the CPU use above which tests are skipped, percent of the whole machine ...
DEFAULT_MAX_CPU_PERCENT = 30.0
#: ... the quiet window a test needs, and how long the probe waits for one, seconds.
DEFAULT_WINDOW_S = 5.0
DEFAULT_GIVE_UP_AFTER_S = 30.0

SYS_CLASS_NET = Path("/sys/class/net")
PROC_STAT = Path("/proc/stat")

#: A 32-bit kernel's interface counters are ``unsigned long``: they wrap at 2**32 bytes (4 GiB,
#: 14 minutes at 40 Mb/s). A 64-bit kernel's do not wrap in practice.
COUNTER_WRAP_32 = 2**32

#: Why a probe that is not inline cannot judge the household's traffic.
NOT_INLINE = "the probe is not inline (cross_traffic.inline is false)"

#: Linux interface names: at most 15 characters (IFNAMSIZ - 1), no slash or whitespace.
_INTERFACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$"


class CrossTrafficSettings(BaseModel):
    """The ``cross_traffic`` section of the probe's configuration."""

    model_config = ConfigDict(extra="forbid")

    inline: bool = Field(
        default=False,
        description="The household's traffic crosses this probe (a bridge between the ONT and"
        " the router), so the interface's counters see it. False: results say"
        " cross_traffic 'unknown'.",
    )
    interface: str | None = Field(
        default=None,
        pattern=_INTERFACE_PATTERN,
        description="The interface the household's traffic crosses, e.g. 'br0' or 'eth0'.",
    )
    threshold_bytes_per_s: int = Field(default=DEFAULT_THRESHOLD_BYTES_PER_S, gt=0, le=10**10)
    max_cpu_percent: float = Field(default=DEFAULT_MAX_CPU_PERCENT, gt=0, le=100)
    window_s: float = Field(default=DEFAULT_WINDOW_S, gt=0, le=60)
    give_up_after_s: float = Field(default=DEFAULT_GIVE_UP_AFTER_S, ge=0, le=600)

    @model_validator(mode="after")
    def _inline_needs_interface(self) -> CrossTrafficSettings:
        if self.inline and self.interface is None:
            raise ValueError(
                "inline: true needs 'interface', the one the household's traffic crosses (e.g. br0)"
            )
        return self


class CrossTrafficError(Exception):
    """Root of this module's errors."""


class CountersUnreadable(CrossTrafficError):
    """An interface's byte counters (or the CPU times) cannot be read."""


# -- Readings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counters:
    """An interface's byte counters since it came up (``/sys/class/net/IF/statistics``)."""

    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """The whole machine's CPU time since boot, in clock ticks: busy and all."""

    busy: int
    total: int


def read_counters(interface: str, root: Path = SYS_CLASS_NET) -> Counters:
    """``interface``'s rx and tx byte counters from sysfs (those of the reader's namespace)."""
    stats = root / interface / "statistics"
    try:
        return Counters(
            int((stats / "rx_bytes").read_text()), int((stats / "tx_bytes").read_text())
        )
    except (OSError, ValueError) as exc:
        raise CountersUnreadable(
            f"cannot read the byte counters of interface {interface!r} in {stats}: {exc};"
            " check cross_traffic.interface"
        ) from exc


def parse_proc_stat(text: str) -> CpuTimes:
    """The aggregate ``cpu`` line of ``/proc/stat`` (proc(5)) as busy and total ticks.

    Fields: user nice system idle iowait irq softirq steal guest guest_nice. Idle is idle +
    iowait. guest and guest_nice are already counted in user and nice (proc(5)), so they are
    left out of the total, as procps' top does.
    """
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                ticks = [int(p) for p in parts[1:]]
            except ValueError as exc:
                raise CountersUnreadable(f"/proc/stat cpu line {line!r}: {exc}") from exc
            if len(ticks) < 4:
                raise CountersUnreadable(f"/proc/stat cpu line {line!r} has under 4 fields")
            total = sum(ticks[:8])
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
            return CpuTimes(busy=total - idle, total=total)
    raise CountersUnreadable("/proc/stat has no aggregate 'cpu' line")


def read_cpu_times(path: Path = PROC_STAT) -> CpuTimes:
    try:
        return parse_proc_stat(path.read_text())
    except OSError as exc:
        raise CountersUnreadable(f"cannot read {path}: {exc}") from exc


def bytes_moved(before: Counters, after: Counters) -> int | None:
    """Bytes in and out between two readings; a 32-bit counter's wrap is undone. None when a
    counter went back otherwise (the interface was re-created, its counters reset)."""
    total = 0
    for old, new in ((before.rx_bytes, after.rx_bytes), (before.tx_bytes, after.tx_bytes)):
        if new >= old:
            total += new - old
        elif old < COUNTER_WRAP_32:
            total += new + COUNTER_WRAP_32 - old
        else:
            return None
    return total


def cpu_percent(before: CpuTimes, after: CpuTimes) -> float | None:
    """The whole machine's CPU use between two readings, percent; None if no tick passed."""
    total = after.total - before.total
    if total <= 0:
        return None
    return max(0.0, min(100.0, 100.0 * (after.busy - before.busy) / total))


# -- The decision -------------------------------------------------------------------------------


class Verdict(StrEnum):
    RUN = "run"  # quiet: test now
    RETRY = "retry"  # busy: look at the next window
    DEFER = "defer"  # busy through the whole wait: record a deferred result
    UNKNOWN = "unknown"  # cannot see the household's traffic: test, marked unknown


@dataclass(frozen=True, slots=True)
class Window:
    """What one window saw: the interface's bytes per second (None: the counters reset during
    it), and the CPU use (None: not measured)."""

    bytes_per_s: float | None
    cpu_percent: float | None


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    threshold_bytes_per_s: int
    max_cpu_percent: float
    interface: str | None = None
    bytes_per_s: float | None = None
    cpu_percent: float | None = None
    #: Windows looked at before deciding.
    windows: int = 0
    #: Why the traffic is unknown, in words (not inline, counters unreadable); None: it was seen.
    note: str | None = None

    @property
    def traffic_seen(self) -> bool:
        """The household's traffic was watched (an inline probe whose counters could be read)."""
        return self.note is None

    @property
    def traffic_busy(self) -> bool:
        """The household's traffic was watched and not shown below the threshold."""
        return self.traffic_seen and (
            self.bytes_per_s is None or self.bytes_per_s >= self.threshold_bytes_per_s
        )

    @property
    def cpu_busy(self) -> bool:
        """Above the limit (SamKnows skips tests "at CPU > 30 %")."""
        return self.cpu_percent is not None and self.cpu_percent > self.max_cpu_percent

    @property
    def status(self) -> Status:
        """The status of the bandwidth result: deferred, or ok for a test that may run."""
        return Status.DEFERRED if self.verdict is Verdict.DEFER else Status.OK

    def result_fields(self) -> dict[str, Any]:
        """The fields a bandwidth result carries about this check (``probes.models``): on every
        result, and with ``skip_reason`` on a deferred one. Traffic that was not seen is
        ``unknown``, with neither a level nor a threshold; a test deferred then was for the CPU."""
        fields: dict[str, Any] = {
            "cross_traffic": CrossTraffic.UNKNOWN,
            "cross_traffic_interface": self.interface,
            "pretest_cpu_percent": _rounded(self.cpu_percent),
        }
        if self.traffic_seen:
            fields |= {
                "cross_traffic": CrossTraffic.BUSY if self.traffic_busy else CrossTraffic.QUIET,
                "cross_traffic_bytes_per_s": _rounded(self.bytes_per_s),
                "cross_traffic_threshold_bytes_per_s": float(self.threshold_bytes_per_s),
            }
        if self.verdict is Verdict.DEFER:
            traffic = self.traffic_busy
            fields["skip_reason"] = SkipReason.CROSS_TRAFFIC if traffic else SkipReason.CPU_BUSY
        return fields

    def describe(self) -> str:
        """One line for the log and ``last_errors``."""
        cpu = "unknown" if self.cpu_percent is None else f"{self.cpu_percent:.0f}"
        if not self.traffic_seen:
            unknown = f"cross-traffic unknown: {self.note}"
            if self.windows == 0:  # the CPU could not be watched either
                return unknown
            action = "run" if self.verdict is Verdict.UNKNOWN else self.verdict.value
            return (
                f"{unknown}; {action} after {self.windows} window(s): CPU {cpu} %"
                f" (limit {self.max_cpu_percent:.0f} %)"
            )
        level = "unknown" if self.bytes_per_s is None else f"{self.bytes_per_s:.0f}"
        return (
            f"{self.verdict.value} after {self.windows} window(s): {level} B/s on"
            f" {self.interface} (threshold {self.threshold_bytes_per_s} B/s), CPU {cpu} %"
            f" (limit {self.max_cpu_percent:.0f} %)"
        )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def judge(
    window: Window, settings: CrossTrafficSettings, windows: int = 1, unseen: str | None = None
) -> Decision:
    """Run, retry or defer after the ``windows``-th window of the wait.

    Run only when the combined rate is below the threshold and the CPU not above its limit
    (SamKnows: "wait for a 5-second window with no cross-traffic; if none comes within 30 s,
    skip the queued tests"; tests are also skipped at CPU > 30 %; methodology.md §4). Retry
    while another whole window still ends within ``give_up_after_s`` of the wait's start;
    defer otherwise.

    ``unseen`` says why the household's traffic could not be watched (not inline, counters
    unreadable): the CPU alone decides, and a test that may run is ``unknown``, not ``run``.
    """
    decision = Decision(
        Verdict.RUN,
        threshold_bytes_per_s=settings.threshold_bytes_per_s,
        max_cpu_percent=settings.max_cpu_percent,
        interface=settings.interface,
        bytes_per_s=None if unseen is not None else window.bytes_per_s,
        cpu_percent=window.cpu_percent,
        windows=windows,
        note=unseen,
    )
    if not decision.traffic_busy and not decision.cpu_busy:
        return decision if unseen is None else replace(decision, verdict=Verdict.UNKNOWN)
    # Counted in whole windows, not read off the clock: each sleep ends a little late, and six
    # 5 s windows must still fit in 30 s. (The tolerance is for 0.1 + 0.2-style float sums.)
    another_fits = (windows + 1) * settings.window_s <= settings.give_up_after_s + 1e-9
    verdict = Verdict.RETRY if another_fits else Verdict.DEFER
    return replace(decision, verdict=verdict)


def traffic_unknown(settings: CrossTrafficSettings, note: str | None = None) -> Decision:
    """The decision of a probe that can see neither the household's traffic nor its own CPU:
    test at once, marked unknown."""
    return Decision(
        Verdict.UNKNOWN,
        threshold_bytes_per_s=settings.threshold_bytes_per_s,
        max_cpu_percent=settings.max_cpu_percent,
        interface=settings.interface,
        note=note or NOT_INLINE,
    )


# -- The thin loop --------------------------------------------------------------------------------


async def check_line(
    settings: CrossTrafficSettings,
    *,
    counters: Callable[[str], Counters] = read_counters,
    cpu: Callable[[], CpuTimes] = read_cpu_times,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> Decision:
    """Watch ``settings.interface`` and the CPU window by window until ``judge`` says run or
    defer.

    A probe that is not inline, or whose interface's counters cannot be read (at the start or
    later), watches its CPU alone; the test it runs says cross-traffic ``unknown``. The CPU is
    judged only when ``/proc/stat`` can be read; when neither can be, the test runs at once,
    marked unknown. The readers are sysfs/procfs files the kernel fills on read, microseconds
    each, so they run on the event loop.
    """
    interface = settings.interface if settings.inline else None
    before = _counters_or_why(counters, interface)
    cpu_before = _cpu_or_none(cpu)
    if isinstance(before, str) and cpu_before is None:
        return traffic_unknown(settings, before)
    window_start = clock()
    windows = 0
    while True:
        await sleep(settings.window_s)
        # Once unreadable, the counters stay unknown for the rest of the wait.
        after = before if isinstance(before, str) else _counters_or_why(counters, interface)
        cpu_after = _cpu_or_none(cpu)
        now = clock()
        windows += 1
        seconds = now - window_start
        rate = None
        if isinstance(before, Counters) and isinstance(after, Counters):
            moved = bytes_moved(before, after)
            rate = moved / seconds if moved is not None and seconds > 0 else None
        busy_cpu = (
            cpu_percent(cpu_before, cpu_after)
            if cpu_before is not None and cpu_after is not None
            else None
        )
        unseen = after if isinstance(after, str) else None
        decision = judge(Window(rate, busy_cpu), settings, windows, unseen)
        if decision.verdict is not Verdict.RETRY:
            return decision
        before, cpu_before, window_start = after, cpu_after, now


def _counters_or_why(read: Callable[[str], Counters], interface: str | None) -> Counters | str:
    """The interface's counters, or why the household's traffic cannot be seen (None: the
    probe is not inline)."""
    if interface is None:
        return NOT_INLINE
    try:
        return read(interface)
    except CountersUnreadable as exc:
        return str(exc)


def _cpu_or_none(read: Callable[[], CpuTimes]) -> CpuTimes | None:
    try:
        return read()
    except CountersUnreadable:
        return None
