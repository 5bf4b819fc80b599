"""The slot coordinator's rules, over a hand-driven clock."""

from __future__ import annotations

import pytest

from server.target.coordinator import FORGET_AFTER_S, Busy, Granted, SlotCoordinator


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def slots(clock: Clock) -> SlotCoordinator:
    return SlotCoordinator(max_slot_s=60.0, clock=clock)


def test_one_slot_at_a_time_and_busy_says_for_how_long(slots: SlotCoordinator,
                                                        clock: Clock) -> None:  # fmt: skip
    first = slots.request("198.18.0.1", 30.0)
    assert isinstance(first, Granted) and first.duration_s == 30.0
    clock.now += 10
    busy = slots.request("198.18.0.9", 30.0)
    assert isinstance(busy, Busy) and busy.retry_after_s == pytest.approx(20.0)
    clock.now += 20
    assert isinstance(slots.request("198.18.0.9", 30.0), Granted)


def test_duration_is_capped(slots: SlotCoordinator) -> None:
    granted = slots.request("198.18.0.1", 500.0)
    assert isinstance(granted, Granted) and granted.duration_s == 60.0


def test_a_test_with_only_its_own_transfers_ran_alone(slots: SlotCoordinator) -> None:
    lease = slots.request("198.18.0.1", 30.0)
    assert isinstance(lease, Granted)
    a = slots.transfer_started(lease.lease_id, "198.18.0.1")
    b = slots.transfer_started(None, "198.18.0.1")  # speedtest-cli carries no lease: same address
    slots.transfer_ended(a)
    slots.transfer_ended(b)
    assert slots.release(lease.lease_id) is True
    assert slots.release(lease.lease_id) is None  # released once


def test_a_foreign_transfer_during_the_lease_means_not_alone(slots: SlotCoordinator) -> None:
    lease = slots.request("198.18.0.1", 30.0)
    assert isinstance(lease, Granted)
    browser = slots.transfer_started(None, "198.18.0.77")
    slots.transfer_ended(browser)
    assert slots.release(lease.lease_id) is False


def test_a_transfer_already_running_at_grant_means_not_alone(slots: SlotCoordinator) -> None:
    slots.transfer_started(None, "198.18.0.77")
    lease = slots.request("198.18.0.1", 30.0)
    assert isinstance(lease, Granted)
    assert slots.release(lease.lease_id) is False


def test_overrunning_a_lease_is_still_watched_until_release(slots: SlotCoordinator,
                                                            clock: Clock) -> None:  # fmt: skip
    lease = slots.request("198.18.0.1", 10.0)
    assert isinstance(lease, Granted)
    clock.now += 15  # the first probe overran; a second gets the slot and starts
    second = slots.request("198.18.0.2", 10.0)
    assert isinstance(second, Granted)
    slots.transfer_started(second.lease_id, "198.18.0.2")
    assert slots.release(lease.lease_id) is False


def test_unreleased_leases_are_forgotten(slots: SlotCoordinator, clock: Clock) -> None:
    lease = slots.request("198.18.0.1", 10.0)
    assert isinstance(lease, Granted)
    clock.now += 10 + FORGET_AFTER_S + 1
    slots.request("198.18.0.2", 10.0)
    assert slots.release(lease.lease_id) is None
