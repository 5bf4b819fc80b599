"""probes.clock: the kernel's word on the wall clock, and what becomes of results measured
before it was right (pure functions; one test asks this machine's kernel)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from probes import clock
from probes.clock import STA_UNSYNC, TIME_ERROR, Anchor, Held, KernelClock, Release

BOOT = "1b7a2c3d-0000-4000-8000-000000000001"
# A Pi after a power cut: fake-hwclock brought back the time of the last shutdown, days ago.
WRONG = datetime(2026, 3, 28, 23, 50, tzinfo=UTC)
RIGHT = datetime(2026, 4, 2, 8, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "status", "synced"),
    [
        (0, 0x2001, True),  # TIME_OK, STA_PLL | STA_NANO: chrony or timesyncd disciplining it
        (1, 0x2011, True),  # TIME_INS: a leap second is announced; still synchronised
        (TIME_ERROR, STA_UNSYNC, False),  # what a kernel says before any time daemon ran
        (TIME_ERROR, 0, False),
        (0, STA_UNSYNC, False),
    ],
)
def test_synchronised_unless_time_error_or_sta_unsync(
    state: int, status: int, synced: bool
) -> None:
    assert clock.is_synced(KernelClock(state=state, status=status, maxerror_us=0)) is synced


def test_the_real_adjtimex_answers_on_this_machine() -> None:
    reading = clock.read_adjtimex()
    assert 0 <= reading.state <= TIME_ERROR
    assert reading.maxerror_us >= 0
    assert clock.kernel_synced() is clock.is_synced(reading)
    assert clock.boot_id() != "unknown"
    assert clock.boottime_s() > 0


def test_hold_only_unsynchronised_and_early_in_the_boot() -> None:
    def anchor(synced: bool | None, boot_s: float) -> Anchor:
        return Anchor(WRONG, boot_s, BOOT, synced)

    assert clock.should_hold(anchor(False, 40.0), max_hold_s=1800)
    assert not clock.should_hold(anchor(False, 1800.0), max_hold_s=1800)  # NTP never came
    assert not clock.should_hold(anchor(True, 40.0), max_hold_s=1800)
    assert not clock.should_hold(anchor(None, 40.0), max_hold_s=1800)  # cannot tell: send
    assert not clock.should_hold(anchor(False, 40.0), max_hold_s=0)  # holding switched off


def test_a_held_result_is_restamped_from_boot_time_once_synchronised() -> None:
    measured_at = WRONG + timedelta(seconds=3)
    anchor = Anchor(WRONG, 40.0, BOOT, synced=False)
    held = Held(measured_at, clock.boot_time_of(measured_at, anchor), BOOT)
    assert held.boot_s == 43.0
    # Still unsynchronised at boot time 100: keep holding.
    assert clock.settle(held, Anchor(WRONG + timedelta(seconds=60), 100.0, BOOT, False)) is None
    # NTP stepped the clock; at boot time 163 the wall clock reads RIGHT: measured 120 s before.
    release = clock.settle(held, Anchor(RIGHT, 163.0, BOOT, True))
    assert release == Release(RIGHT - timedelta(seconds=120), restamped=True)


def test_a_result_held_across_a_reboot_keeps_its_stamp() -> None:
    held = Held(WRONG, 43.0, BOOT)
    after_reboot = Anchor(RIGHT, 500.0, "another-boot", True)
    assert clock.settle(held, after_reboot) == Release(WRONG, restamped=False)


def test_no_sync_within_the_hold_window_lets_results_go_with_their_stamp() -> None:
    held = Held(WRONG, 43.0, BOOT)
    assert clock.settle(held, Anchor(WRONG, 1799.0, BOOT, False), max_hold_s=1800) is None
    late = clock.settle(held, Anchor(WRONG, 1800.0, BOOT, False), max_hold_s=1800)
    assert late == Release(WRONG, restamped=False)
    unknown = clock.settle(held, Anchor(WRONG, 50.0, BOOT, None), max_hold_s=1800)
    assert unknown == Release(WRONG, restamped=False)
