"""The result envelope: ``result_id``, ``measured_at``, ``duration_ms``, status and failure
fields, put around what a probe measured in exactly one place.

Probes return ``probes.spec.Measurement``; the caller, which owns the timeout and the timing,
builds the wire result here (STYLE.md, "The caller owns the envelope"). A failed or unfinished
test is a result too: the caller builds it here with a ``Failure`` and no fields.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from probes.models import ResultBase, Status
from probes.spec import Failure, Measurement, Span

R = TypeVar("R", bound=ResultBase)

#: The models' bounds of ``target`` (TagText) and ``error`` (LongText).
TARGET_MAX = 256
ERROR_MAX = 2048


def build_result(
    model: type[R],
    probe_id: str,
    *,
    engine: str,
    target: str | None,
    span: Span,
    failure: Failure | None = None,
    status: Status | None = None,
    fields: Mapping[str, Any] | None = None,
) -> R:
    """A result of ``model`` with a fresh ``result_id``. ``status`` defaults to failed with a
    ``failure``, else ok; any other status is passed through with the failure as given, and the
    model decides which combinations are valid."""
    return model(
        result_id=uuid.uuid4(),
        probe_id=probe_id,
        measured_at=span.measured_at,
        duration_ms=span.duration_ms,
        engine=engine,
        target=target[:TARGET_MAX] if target else None,
        status=status or (Status.FAILED if failure else Status.OK),
        failure_kind=failure.kind if failure else None,
        error=failure.error[:ERROR_MAX] if failure else None,
        **(fields or {}),
    )


def stamp(model: type[R], probe_id: str, measurement: Measurement, span: Span) -> R:
    """``measurement`` as a ``model`` result; ``span`` is the caller's timing of the call, used
    unless the probe timed this measurement itself."""
    return build_result(
        model,
        probe_id,
        engine=measurement.engine,
        target=measurement.target,
        span=measurement.span or span,
        failure=measurement.failure,
        fields=measurement.fields,
    )
