"""Statistics over raw samples, as plain functions (pure, so every figure can be recomputed)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def jitter_masd(values: Sequence[float]) -> float | None:
    """Mean absolute difference of successive samples (RFC 4689 §3.2.5 "jitter"; also what
    Cloudflare's speed test reports). Not RFC 3550's exponentially smoothed estimator, which
    depends on the order of arrival and on a 1/16 gain chosen for RTP, not for probing."""
    if len(values) < 2:
        return None
    return math.fsum(abs(b - a) for a, b in itertools.pairwise(values)) / (len(values) - 1)
