"""Per-probe request rate limit: a token bucket per key, refilled continuously."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


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

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if allowed, else the seconds to wait before retrying."""
        now: float = self.clock()  # type: ignore[operator]
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(
            float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate_per_s
        )
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s
