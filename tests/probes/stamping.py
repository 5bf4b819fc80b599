"""A probe's measurements as results, with the envelope the agent puts on them
(``probes.envelope``), so probe tests can assert on the wire model."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from probes.envelope import stamp
from probes.models import ResultBase
from probes.spec import Measurement, Stopwatch

R = TypeVar("R", bound=ResultBase)


def as_result(model: type[R], measurement: Measurement) -> R:
    return stamp(model, "p1", measurement, Stopwatch().span())


def as_results(model: type[R], measurements: Iterable[Measurement]) -> list[R]:
    return [as_result(model, m) for m in measurements]
