"""Token buckets per key, refilled continuously: requests per probe, failed logins per address."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

#: Past this many keys, buckets that have refilled completely are forgotten (they are no
#: different from a new one), so a flood of source addresses cannot grow the table for ever.
MAX_KEYS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """``rate_per_s`` sustained requests per key, bursts of up to ``burst``."""

    rate_per_s: float
    burst: int
    clock: object = field(default=time.monotonic, repr=False)
    _buckets: dict[str, _Bucket] = field(default_factory=dict, repr=False)

    def _refilled(self, key: str) -> _Bucket:
        now: float = self.clock()  # type: ignore[operator]
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(
            float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate_per_s
        )
        bucket.updated = now
        return bucket

    def _forget_full(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate_per_s >= self.burst:
                del self._buckets[key]

    def _wait(self, bucket: _Bucket) -> float:
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate_per_s

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if allowed, else the seconds to wait before retrying."""
        bucket = self._refilled(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return self._wait(bucket)

    def wait_s(self, key: str) -> float:
        """Seconds until ``key`` has a token again, without taking one (0.0: it has one now)."""
        return self._wait(self._refilled(key))


def source_key(remote: str | None) -> str:
    """The key a client address is limited under: the address itself, or for IPv6 its /64, since
    a host picks its own interface identifier, the low 64 bits (RFC 4291 §2.5.1)."""
    if remote is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
