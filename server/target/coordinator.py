"""Time slots on the measurement target, so bandwidth tests from many probes do not overlap.

Plain in-memory state over an injected clock (testable without a server). One lease at a time:
a probe asks for a slot, gets a lease id and a duration, or "busy, retry after N s". Every
transfer the target serves is reported here; a transfer that does not belong to a lease's holder
while that lease is tracked (from grant until release) disturbs it, and the release tells the
probe whether its test ran alone. The target cannot stop clients that ask for no slot (a
browser on the LibreSpeed page, speedtest-cli); it can only say that they were there.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: A lease nobody released is forgotten this long after it expired, seconds.
FORGET_AFTER_S = 300.0


@dataclass(frozen=True, slots=True)
class Granted:
    lease_id: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class Busy:
    retry_after_s: float


@dataclass(slots=True)
class _Lease:
    lease_id: str
    holder: str
    expires_at: float
    disturbed: bool = False


@dataclass(frozen=True, slots=True)
class _Transfer:
    lease_id: str | None
    client: str


@dataclass
class SlotCoordinator:
    """``holder``/``client`` is the peer's IP address; a transfer is the lease's own when it
    carries the lease id or comes from the holder's address (speedtest-cli cannot carry one)."""

    max_slot_s: float
    clock: Callable[[], float] = time.monotonic
    _leases: dict[str, _Lease] = field(default_factory=dict)
    _active: dict[int, _Transfer] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def request(self, holder: str, duration_s: float) -> Granted | Busy:
        now = self.clock()
        self._forget(now)
        current = self._current(now)
        if current is not None:
            return Busy(retry_after_s=current.expires_at - now)
        duration_s = min(max(duration_s, 0.0), self.max_slot_s)
        lease = _Lease(secrets.token_hex(8), holder, now + duration_s)
        # Someone without a slot may be mid-transfer already: then this test is not alone.
        lease.disturbed = any(not self._owns(lease, t) for t in self._active.values())
        self._leases[lease.lease_id] = lease
        return Granted(lease.lease_id, duration_s)

    def release(self, lease_id: str) -> bool | None:
        """Whether the lease ran alone (True) or was disturbed; None for an unknown lease."""
        lease = self._leases.pop(lease_id, None)
        return None if lease is None else not lease.disturbed

    def transfer_started(self, lease_id: str | None, client: str) -> int:
        transfer = _Transfer(lease_id, client)
        for lease in self._leases.values():
            if not self._owns(lease, transfer):
                lease.disturbed = True
        token = next(self._ids)
        self._active[token] = transfer
        return token

    def transfer_ended(self, token: int) -> None:
        self._active.pop(token, None)

    @property
    def active_transfers(self) -> int:
        return len(self._active)

    def _current(self, now: float) -> _Lease | None:
        return next((lease for lease in self._leases.values() if lease.expires_at > now), None)

    def _forget(self, now: float) -> None:
        for lease_id in [k for k, v in self._leases.items() if v.expires_at + FORGET_AFTER_S < now]:
            del self._leases[lease_id]

    @staticmethod
    def _owns(lease: _Lease, transfer: _Transfer) -> bool:
        return transfer.lease_id == lease.lease_id or transfer.client == lease.holder
