"""The slot coordinator's rules, over a hand-driven clock."""

from __future__ import annotations

import pytest

from server.target.coordinator import (
    FORGET_AFTER_S,
    LEASE_IDLE_S,
    Busy,
    Granted,
    SlotCoordinator,
)


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


# -- concurrent admission (issue 16 item 6) ---------------------------------------------------


@pytest.fixture
def three(clock: Clock) -> SlotCoordinator:
    return SlotCoordinator(max_slot_s=60.0, max_tests=3, clock=clock)


def test_up_to_max_tests_run_at_once_then_busy_until_the_earliest_end(
    three: SlotCoordinator, clock: Clock
) -> None:
    for duration in (30.0, 20.0, 40.0):
        assert isinstance(three.request("198.18.0.1", duration), Granted)
        clock.now += 1
    busy = three.request("198.18.0.9", 30.0)
    # The second lease (granted at 1001 for 20 s) is the first to end, at 1021; now is 1003.
    assert busy == Busy(retry_after_s=pytest.approx(18.0), reason="slots")
    clock.now += 18
    assert isinstance(three.request("198.18.0.9", 30.0), Granted)
    assert three.running_tests() == 3


def test_a_release_frees_its_slot_at_once(three: SlotCoordinator) -> None:
    leases = [three.request("198.18.0.1", 30.0) for _ in range(3)]
    assert isinstance(three.request("198.18.0.9", 30.0), Busy)
    first = leases[0]
    assert isinstance(first, Granted)
    three.release(first.lease_id)
    assert isinstance(three.request("198.18.0.9", 30.0), Granted)


def test_a_lease_whose_transfers_ended_and_stayed_away_frees_its_slot(
    slots: SlotCoordinator, clock: Clock
) -> None:
    lease = slots.request("198.18.0.1", 60.0)
    assert isinstance(lease, Granted)
    clock.now += LEASE_IDLE_S * 2  # no transfer yet (idle latency, slow start): still held
    assert isinstance(slots.request("198.18.0.2", 60.0), Busy)
    token = slots.transfer_started(lease.lease_id, "198.18.0.1")
    clock.now += 5
    slots.transfer_ended(token, 10_000_000)  # the probe died: no more transfers, no release
    clock.now += LEASE_IDLE_S - 1
    assert isinstance(slots.request("198.18.0.2", 60.0), Busy)  # the pause between directions
    clock.now += 1
    assert isinstance(slots.request("198.18.0.2", 60.0), Granted)


def test_concurrently_admitted_tests_do_not_disturb_each_other(three: SlotCoordinator) -> None:
    a = three.request("198.18.0.1", 30.0)
    b = three.request("198.18.0.2", 30.0)
    assert isinstance(a, Granted) and isinstance(b, Granted)
    ta = three.transfer_started(a.lease_id, "198.18.0.1")
    tb = three.transfer_started(b.lease_id, "198.18.0.2")
    tc = three.transfer_started(None, "198.18.0.2")  # b's address, no lease: b's own
    for token in (ta, tb, tc):
        three.transfer_ended(token)
    assert three.release(a.lease_id) is True
    assert three.release(b.lease_id) is True


def test_a_client_that_was_not_admitted_still_disturbs(three: SlotCoordinator) -> None:
    a = three.request("198.18.0.1", 30.0)
    assert isinstance(a, Granted)
    three.transfer_ended(three.transfer_started(None, "198.18.0.77"))
    three.transfer_ended(three.transfer_started("no-such-lease", "198.18.0.78"))
    assert three.release(a.lease_id) is False


def test_rate_budget_shares_equally_until_rates_are_learned(clock: Clock) -> None:
    slots = SlotCoordinator(max_slot_s=60.0, max_tests=4, max_aggregate_mbps=1000.0, clock=clock)
    assert slots.reservation_mbps("198.18.0.1") == 250.0
    first = slots.request("198.18.0.1", 30.0)
    assert isinstance(first, Granted)
    token = slots.transfer_started(first.lease_id, "198.18.0.1", "download")
    clock.now += 10
    slots.transfer_ended(token, 1_125_000_000)  # 900 Mb/s for 10 s
    up = slots.transfer_started(first.lease_id, "198.18.0.1", "upload")
    clock.now += 10
    slots.transfer_ended(up, 125_000_000)  # 100 Mb/s: the faster direction counts
    slots.release(first.lease_id)
    assert slots.reservation_mbps("198.18.0.1") == pytest.approx(900.0)
    other = slots.request("198.18.0.2", 30.0)  # 250 reserved, ends at 1050
    assert isinstance(other, Granted)
    clock.now += 5
    busy = slots.request("198.18.0.1", 30.0)  # 250 + 900 > 1000: wait for the other to end
    assert busy == Busy(retry_after_s=pytest.approx(25.0), reason="rate")
    assert isinstance(slots.request("198.18.0.3", 30.0), Granted)  # 250 + 250 fits


def test_a_rate_above_the_budget_is_capped_so_the_test_can_run_alone(clock: Clock) -> None:
    slots = SlotCoordinator(max_slot_s=60.0, max_tests=2, max_aggregate_mbps=100.0, clock=clock)
    lease = slots.request("198.18.0.1", 30.0)
    assert isinstance(lease, Granted)
    token = slots.transfer_started(lease.lease_id, "198.18.0.1")
    clock.now += 1
    slots.transfer_ended(token, 125_000_000)  # 1000 Mb/s
    slots.release(lease.lease_id)
    assert slots.reservation_mbps("198.18.0.1") == 100.0
    assert isinstance(slots.request("198.18.0.1", 30.0), Granted)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_tests": 0}, "max_tests=0"), ({"max_aggregate_mbps": 0.0}, "max_aggregate_mbps=0")],
)
def test_capacity_is_validated(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SlotCoordinator(max_slot_s=60.0, **kwargs)  # type: ignore[arg-type]
