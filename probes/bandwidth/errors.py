"""Why a bandwidth test failed, as one exception type carrying the result's ``failure_kind``."""

from __future__ import annotations

from probes.models import FailureKind


class BandwidthError(Exception):
    """A test that cannot give a figure; the message names the target or value at fault."""

    def __init__(self, failure_kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.failure_kind = failure_kind
