from __future__ import annotations

import pytest

from probes.stats import jitter_masd, mean, median


def test_median_mean_jitter() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert mean([1.0, 2.0, 4.0]) == pytest.approx(7 / 3)
    # successive differences 1, 3, 2 -> 2
    assert jitter_masd([10.0, 11.0, 8.0, 10.0]) == pytest.approx(2.0)


def test_missing_is_none_not_zero() -> None:
    assert median([]) is None and mean([]) is None
    assert jitter_masd([5.0]) is None
