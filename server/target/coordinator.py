"""Admission of bandwidth tests on the measurement target: slots, an aggregate-rate budget, and
whether each test shared the target with anyone the target did not admit.

Plain in-memory state over an injected clock (testable without a server). A probe asks for a
slot and gets a lease id and a duration, or "busy, retry after N s". Up to ``max_tests`` leases
run at once; with ``max_aggregate_mbps`` set, the rates they are expected to reach must also fit
in it (each holder's rate is learned from its previous test, else a fair share of the budget).
The target is sized so admitted tests do not hold each other back: a test is only "disturbed"
by transfers of clients that were not admitted alongside it (a browser on the LibreSpeed page,
speedtest-cli, a test that overran its lease), and the release tells the probe whether its test
ran alone in that sense. The target cannot stop clients that ask for no slot; it can only say
that they were there.

A lease ends at its release, at its expiry, or once its transfers have all ended and none came
for ``LEASE_IDLE_S`` (its probe died or lost its connection without releasing): a probe that
vanishes frees its slot within seconds, not at the end of its lease.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

#: A lease nobody released is forgotten this long after it expired, seconds.
FORGET_AFTER_S = 300.0
#: A lease whose transfers have all ended stops holding a slot after this long without a new one,
#: seconds: far above the pause between a test's download and upload (milliseconds; the streams
#: of the next direction connect at once), far below a lease's length.
LEASE_IDLE_S = 10.0

Direction = Literal["download", "upload"]


@dataclass(frozen=True, slots=True)
class Granted:
    lease_id: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class Busy:
    retry_after_s: float
    #: "slots" (all ``max_tests`` run) or "rate" (the aggregate-rate budget is spoken for).
    reason: Literal["slots", "rate"]


@dataclass(slots=True)
class _Span:
    """The bytes of one direction of a lease's transfers and the time they took."""

    started_at: float
    ended_at: float
    byte_count: int = 0


@dataclass(slots=True)
class _Lease:
    lease_id: str
    holder: str
    granted_at: float
    expires_at: float
    reserved_mbps: float
    #: Leases admitted alongside this one (either was running when the other was granted).
    peers: set[str] = field(default_factory=set)
    disturbed: bool = False
    active: int = 0
    last_transfer_end: float | None = None
    spans: dict[Direction, _Span] = field(default_factory=dict)

    def holds_slot(self, now: float) -> bool:
        """Still counted against the capacity: not expired, and not abandoned."""
        if self.expires_at <= now:
            return False
        idle_since = self.last_transfer_end
        return self.active > 0 or idle_since is None or now - idle_since < LEASE_IDLE_S

    def rate_mbps(self) -> float | None:
        """The faster direction's rate over its transfers' span, Mb/s; None with no transfer."""
        rates = [
            s.byte_count * 8 / (s.ended_at - s.started_at) / 1e6
            for s in self.spans.values()
            if s.ended_at > s.started_at and s.byte_count > 0
        ]
        return max(rates) if rates else None


@dataclass(frozen=True, slots=True)
class _Transfer:
    lease_id: str | None
    client: str
    direction: Direction
    started_at: float


@dataclass
class SlotCoordinator:
    """``holder``/``client`` is the peer's IP address; a transfer is a lease's own when it
    carries the lease id or comes from the holder's address (speedtest-cli cannot carry one).

    ``max_tests`` leases at once; ``max_aggregate_mbps`` (None: no rate budget) bounds the sum
    of the running leases' expected rates."""

    max_slot_s: float
    max_tests: int = 1
    max_aggregate_mbps: float | None = None
    clock: Callable[[], float] = time.monotonic
    _leases: dict[str, _Lease] = field(default_factory=dict)
    _active: dict[int, _Transfer] = field(default_factory=dict)
    #: Each holder's rate in its last test that moved bytes, Mb/s.
    _learned_mbps: dict[str, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        if self.max_tests < 1:
            raise ValueError(f"max_tests={self.max_tests}: at least one test must be admitted")
        if self.max_aggregate_mbps is not None and self.max_aggregate_mbps <= 0:
            raise ValueError(f"max_aggregate_mbps={self.max_aggregate_mbps} must be above 0")

    def request(self, holder: str, duration_s: float) -> Granted | Busy:
        now = self.clock()
        self._forget(now)
        running = sorted(self._running(now), key=lambda lease: lease.expires_at)
        if len(running) >= self.max_tests:
            # The earliest expected end frees a slot (leases end at their expiry at the latest).
            return Busy(running[len(running) - self.max_tests].expires_at - now, "slots")
        reserve = self.reservation_mbps(holder)
        if self.max_aggregate_mbps is not None:
            wait = _wait_for_rate(running, reserve, self.max_aggregate_mbps, now)
            if wait > 0:
                return Busy(wait, "rate")
        duration_s = min(max(duration_s, 0.0), self.max_slot_s)
        lease = _Lease(secrets.token_hex(8), holder, now, now + duration_s, reserve)
        for peer in running:
            peer.peers.add(lease.lease_id)
            lease.peers.add(peer.lease_id)
        # Someone not admitted may be mid-transfer already: then this test is not alone.
        lease.disturbed = any(self._disturbs(t, lease) for t in self._active.values())
        self._leases[lease.lease_id] = lease
        return Granted(lease.lease_id, duration_s)

    def reservation_mbps(self, holder: str) -> float:
        """The rate a test from ``holder`` is expected to reach: its last test's, capped at the
        budget (so any one test can run alone), else an equal share of the budget."""
        if self.max_aggregate_mbps is None:
            return 0.0
        learned = self._learned_mbps.get(holder)
        if learned is None:
            return self.max_aggregate_mbps / self.max_tests
        return min(learned, self.max_aggregate_mbps)

    def release(self, lease_id: str) -> bool | None:
        """Whether the lease ran alone (True) or was disturbed; None for an unknown lease."""
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return None
        rate = lease.rate_mbps()
        if rate is not None:
            self._learned_mbps[lease.holder] = rate
        return not lease.disturbed

    def transfer_started(
        self, lease_id: str | None, client: str, direction: Direction = "download"
    ) -> int:
        now = self.clock()
        transfer = _Transfer(lease_id, client, direction, now)
        for lease in self._leases.values():
            if self._disturbs(transfer, lease):
                lease.disturbed = True
        own = self._owner(transfer)
        if own is not None:
            own.active += 1
        token = next(self._ids)
        self._active[token] = transfer
        return token

    def transfer_ended(self, token: int, byte_count: int = 0) -> None:
        transfer = self._active.pop(token, None)
        if transfer is None:
            return
        own = self._owner(transfer)
        if own is None:
            return
        now = self.clock()
        own.active = max(own.active - 1, 0)
        own.last_transfer_end = now
        span = own.spans.setdefault(transfer.direction, _Span(transfer.started_at, now))
        span.started_at = min(span.started_at, transfer.started_at)
        span.ended_at = max(span.ended_at, now)
        span.byte_count += byte_count

    @property
    def active_transfers(self) -> int:
        return len(self._active)

    def running_tests(self) -> int:
        """Leases that hold a slot now."""
        return len(self._running(self.clock()))

    def _running(self, now: float) -> list[_Lease]:
        return [lease for lease in self._leases.values() if lease.holds_slot(now)]

    def _forget(self, now: float) -> None:
        for lease_id in [k for k, v in self._leases.items() if v.expires_at + FORGET_AFTER_S < now]:
            del self._leases[lease_id]

    def _owner(self, transfer: _Transfer) -> _Lease | None:
        """The lease a transfer belongs to: the one it names, else the latest of its address."""
        if transfer.lease_id is not None and transfer.lease_id in self._leases:
            return self._leases[transfer.lease_id]
        mine = [lease for lease in self._leases.values() if lease.holder == transfer.client]
        return max(mine, key=lambda lease: lease.granted_at) if mine else None

    def _disturbs(self, transfer: _Transfer, lease: _Lease) -> bool:
        if transfer.lease_id == lease.lease_id or transfer.client == lease.holder:
            return False
        owner = self._owner(transfer)
        return owner is None or owner.lease_id not in lease.peers


def _wait_for_rate(running: list[_Lease], reserve_mbps: float, budget_mbps: float,
                   now: float) -> float:  # fmt: skip
    """Seconds until ``reserve_mbps`` fits in the budget as the running leases (sorted by expiry)
    end at their expiry; 0 when it fits now."""
    used = sum(lease.reserved_mbps for lease in running)
    for lease in [None, *running]:
        if lease is not None:
            used -= lease.reserved_mbps
        if used + reserve_mbps <= budget_mbps * (1 + 1e-9):
            return 0.0 if lease is None else lease.expires_at - now
    return 0.0  # unreachable: with every lease ended the reservation (≤ budget) fits
