"""``target.*`` settings: the target's capacity, each invalid case asserted by its message."""

from __future__ import annotations

import pytest

from server.errors import ConfigError
from server.settings import load_settings


def test_default_is_one_test_at_a_time() -> None:
    target = load_settings(environment=False).target
    assert (target.max_concurrent_tests, target.max_aggregate_mbps) == (1, None)


def test_concurrent_tests_with_a_budget() -> None:
    target = load_settings(
        environment=False, target={"max_concurrent_tests": 4, "max_aggregate_mbps": 940}
    ).target
    assert (target.max_concurrent_tests, target.max_aggregate_mbps) == (4, 940.0)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"max_concurrent_tests": 3}, "target.max_concurrent_tests: 3 concurrent tests need"
                                      " target.max_aggregate_mbps"),
        ({"max_concurrent_tests": 0}, "target.max_concurrent_tests"),
        ({"max_aggregate_mbps": -5}, "target.max_aggregate_mbps"),
        ({"slots": 2}, "target.slots"),
    ],
)  # fmt: skip
def test_invalid_capacity_names_the_key(target: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environment=False, target=target)
    assert message in str(caught.value)
