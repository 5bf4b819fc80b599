"""Is the wall clock right? The kernel's own answer (adjtimex(2)), and what to do with results
measured before it was.

A Raspberry Pi has no real-time clock: after a power cut it starts from 1970, or from the time
fake-hwclock saved at the last clean shutdown, and keeps that wrong wall clock until NTP
synchronises it. The kernel knows: ``adjtimex`` returns ``TIME_ERROR`` and sets ``STA_UNSYNC``
in ``status`` until a time daemon (systemd-timesyncd, chrony, ntpd) has disciplined the clock
(adjtimex(2); RFC 5905 §A.5.5.8 for the leap/unsync state these bits mirror).

Results measured while it is wrong are re-stamped once it is right, from ``CLOCK_BOOTTIME``
(a monotonic clock that also counts time suspended, clock_gettime(2)): a result measured ``d``
seconds of boot time before the moment of the first synced reading took place ``d`` seconds
before that moment's wall time. The boot time restarts at every boot, so the boot id
(``/proc/sys/kernel/random/boot_id``, random(4)) is kept with it: a result held across a reboot
cannot be re-stamped and keeps its wall-clock stamp, marked unsynchronised.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

#: adjtimex's return value while the clock is not synchronised (include/uapi/linux/timex.h).
TIME_ERROR = 5
#: ``status`` bit: the clock is not synchronised (include/uapi/linux/timex.h).
STA_UNSYNC = 0x0040

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

#: For how long after boot results measured with an unsynchronised clock are held for
#: re-stamping. A probe with a network syncs within a minute or two of boot (timesyncd's first
#: poll is 32 s); one whose NTP is blocked, or a machine that never runs a time daemon, would
#: otherwise hold everything for ever, so past this boot age results go out at once with their
#: wall-clock stamp and ``clock_synced: false``, and the office can see why.
MAX_HOLD_S = 1800.0

#: Answers "is the kernel's clock synchronised?": True, False, or None when it cannot be asked.
SyncReader = Callable[[], bool | None]


class ClockUnreadable(OSError):
    """adjtimex could not be called (not Linux, or the call failed)."""


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """``struct timex`` of glibc's ``adjtimex`` symbol (the native-long layout on both 64-bit
    and 32-bit ARM; glibc's 64-bit-time variant has another symbol name)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
        ("_spare", ctypes.c_byte * 64),  # room, should a kernel ever write more
    ]


@dataclass(frozen=True, slots=True)
class KernelClock:
    """What adjtimex said: its return value (the clock state) and the ``status`` bits."""

    state: int
    status: int
    maxerror_us: int


def read_adjtimex() -> KernelClock:
    """Ask the kernel, read-only (``modes = 0`` needs no privilege)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError) as exc:
        raise ClockUnreadable(f"no adjtimex in the C library {name!r}: {exc}") from exc
    timex = _Timex()
    state = adjtimex(ctypes.byref(timex))
    if state == -1:
        code = ctypes.get_errno()
        raise ClockUnreadable(code, f"adjtimex failed: {os.strerror(code)}")
    return KernelClock(state=state, status=timex.status, maxerror_us=timex.maxerror)


def is_synced(clock: KernelClock) -> bool:
    """Synchronised unless the kernel says TIME_ERROR or sets STA_UNSYNC (adjtimex(2))."""
    return clock.state != TIME_ERROR and not clock.status & STA_UNSYNC


def kernel_synced() -> bool | None:
    """The default ``SyncReader``: the kernel's answer, or None when it cannot be asked."""
    try:
        return is_synced(read_adjtimex())
    except ClockUnreadable:
        return None


def boottime_s() -> float:
    """Seconds on CLOCK_BOOTTIME (monotonic, suspend included, restarts at boot)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def boot_id(path: Path = BOOT_ID_PATH) -> str:
    """This boot's random id; "unknown" where the kernel has none (then nothing is re-stamped
    across agent restarts, since no two ids compare equal to a real one)."""
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class Anchor:
    """Both clocks read at one moment, with what the kernel said of the wall clock then."""

    wall: datetime
    boot_s: float
    boot_id: str
    synced: bool | None


@dataclass(frozen=True, slots=True)
class Held:
    """A result held back: its wall-clock stamp and the boot time of that same moment."""

    measured_at: datetime
    boot_s: float
    boot_id: str


@dataclass(frozen=True, slots=True)
class Release:
    """A held result goes out with this ``measured_at``; ``restamped`` says if it was recomputed."""

    measured_at: datetime
    restamped: bool


def boot_time_of(measured_at: datetime, anchor: Anchor) -> float:
    """The boot time at ``measured_at``, from an anchor read in the same run (no NTP step can
    fall between them: the anchor said the clock was unsynchronised, and a step syncs it)."""
    return anchor.boot_s + (measured_at - anchor.wall).total_seconds()


def should_hold(anchor: Anchor, max_hold_s: float = MAX_HOLD_S) -> bool:
    """Hold a result measured with this anchor? Only when the kernel said "unsynchronised" and
    the boot is younger than ``max_hold_s``; None (cannot tell) goes out at once."""
    return anchor.synced is False and anchor.boot_s < max_hold_s


def settle(held: Held, now: Anchor, max_hold_s: float = MAX_HOLD_S) -> Release | None:
    """What to do with a held result at ``now``: None to keep holding it.

    - another boot: its boot time means nothing now; out with its own stamp, not re-stamped;
    - the clock is synchronised (or can no longer be asked): re-stamped, ``now.wall`` minus the
      boot time since it was measured (or, unknown, out as it is);
    - the boot is ``max_hold_s`` old and the clock still unsynchronised: out with its own stamp;
    - otherwise keep holding.
    """
    if held.boot_id != now.boot_id:
        return Release(held.measured_at, restamped=False)
    if now.synced is True:
        age = timedelta(seconds=max(0.0, now.boot_s - held.boot_s))
        return Release(now.wall - age, restamped=True)
    if now.synced is None or now.boot_s >= max_hold_s:
        return Release(held.measured_at, restamped=False)
    return None
