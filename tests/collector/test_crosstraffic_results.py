"""Deferred and skipped results on the wire: the model's rules, the signature, and what the
server's compliance rules make of them (stored in a real SQLite store, scanned back, filtered).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from probes.models import (
    Access,
    BandwidthResult,
    CrossTraffic,
    FailureKind,
    HeartbeatResult,
    Kind,
    SkipReason,
    Status,
    parse_result,
)
from probes.signing import canonical_bytes, new_private_key, sign, verify
from server.compliance.rules import valid_samples
from server.compliance.samples import SAMPLE_FIELDS, to_sample
from server.compliance.stats import month_of
from server.storage.base import ProbeIdentity, StoredResult
from server.storage.sqlite import SqliteStore

NOW = datetime.now(UTC).replace(microsecond=0)


def bandwidth(**fields: Any) -> BandwidthResult:
    base: dict[str, Any] = {
        "result_id": uuid.uuid4(),
        "probe_id": "p1",
        "measured_at": NOW,
        "engine": "http",
    }
    return BandwidthResult(**(base | fields))


DEFERRED = {
    "status": Status.DEFERRED,
    "skip_reason": SkipReason.CROSS_TRAFFIC,
    "cross_traffic": CrossTraffic.BUSY,
    "cross_traffic_bytes_per_s": 118_000.5,
    "cross_traffic_threshold_bytes_per_s": 25_000.0,
    "cross_traffic_interface": "br0",
    "pretest_cpu_percent": 12.5,
}
SKIPPED = {
    "status": Status.SKIPPED,
    "skip_reason": SkipReason.DATA_BUDGET,
    "data_budget_bytes": 10_000_000_000,
    "data_used_bytes": 9_960_000_000,
    "data_expected_bytes": 120_000_000,
}


def test_deferred_and_skipped_results_validate_and_round_trip() -> None:
    for fields in (DEFERRED, SKIPPED):
        result = bandwidth(**fields)
        again = parse_result(result.model_dump(mode="json"))
        assert again == result


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": Status.DEFERRED}, "a deferred result needs 'skip_reason' cpu_busy,"),
        (
            {"status": Status.SKIPPED, "skip_reason": SkipReason.CROSS_TRAFFIC},
            "a skipped result needs 'skip_reason' data_budget, not cross_traffic",
        ),
        ({"skip_reason": SkipReason.DATA_BUDGET}, "status ok must not carry 'skip_reason'"),
        (
            {**DEFERRED, "failure_kind": FailureKind.DEFERRED, "error": "busy"},
            "a deferred result must not carry 'failure_kind' or 'error'",
        ),
        ({"cross_traffic": "noisy"}, "cross_traffic"),
        ({"cross_traffic_interface": "br 0"}, "cross_traffic_interface"),
        ({"pretest_cpu_percent": 101.0}, "pretest_cpu_percent"),
        ({"data_used_bytes": -1}, "data_used_bytes"),
    ],
)
def test_inconsistent_results_are_refused_by_name(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        bandwidth(**fields)


def test_new_fields_are_signed_and_old_results_keep_their_bytes() -> None:
    key = new_private_key()
    for fields in (DEFERRED, SKIPPED):
        signed = sign(bandwidth(**fields), key)
        assert verify(signed, key.public_key()) == 2
        altered = signed.model_copy(update={"cross_traffic_bytes_per_s": 1.0})
        with pytest.raises(ValueError, match="does not match"):
            verify(altered, key.public_key())
    # None fields are left out of the canonical form: an ok result that does not set the new
    # fields has the same bytes as before them (the vectors in tests/probes/vectors pin it).
    assert b"cross_traffic" not in canonical_bytes(bandwidth(download_mbps=40.0))
    assert b"skip_reason" not in canonical_bytes(bandwidth(download_mbps=40.0))


def test_heartbeat_carries_the_month_usage() -> None:
    beat = HeartbeatResult(
        result_id=uuid.uuid4(), probe_id="p1", measured_at=NOW, engine="agent",
        data_budget_bytes=10_000_000_000, data_used_bytes=1_234_000_000,
    )  # fmt: skip
    assert parse_result(beat.model_dump(mode="json")) == beat


async def test_compliance_excludes_deferred_and_skipped_results_by_reason(tmp_path: Path) -> None:
    """Stored, scanned and filtered as the compliance engine does: the not-run tests are left
    out and counted, each under its own reason (docs/methodology.md), never as a failed test."""
    store = SqliteStore(tmp_path / "results.sqlite3")
    await store.start()
    try:
        identity = ProbeIdentity("p1", "thon-a", "VNPT", Access.LTE)
        at = NOW - timedelta(minutes=30)
        results = [
            bandwidth(measured_at=at, download_mbps=41.0, upload_mbps=20.0,
                      cross_traffic=CrossTraffic.QUIET),
            bandwidth(measured_at=at + timedelta(seconds=1), download_mbps=39.0,
                      cross_traffic=CrossTraffic.UNKNOWN),
            bandwidth(measured_at=at + timedelta(seconds=2), **DEFERRED),
            bandwidth(measured_at=at + timedelta(seconds=3), **SKIPPED),
            bandwidth(measured_at=at + timedelta(seconds=4), status=Status.DEFERRED,
                      skip_reason=SkipReason.CPU_BUSY, pretest_cpu_percent=64.0),
        ]  # fmt: skip
        await store.write([StoredResult(identity, r) for r in results])
        rows = [
            row
            async for page in store.scan(
                Kind.BANDWIDTH, at - timedelta(1), NOW + timedelta(1), fields=SAMPLE_FIELDS
            )
            for row in page
        ]
    finally:
        await store.close()
    samples = [to_sample(row) for row in rows]
    assert [s.status for s in samples] == [
        Status.OK, Status.OK, Status.DEFERRED, Status.SKIPPED, Status.DEFERRED,
    ]  # fmt: skip
    filtered = valid_samples(samples, month_of(at))
    assert [s.download_mbps for s in filtered.valid] == [41.0, 39.0]
    assert filtered.exclusions == {
        "deferred_cross_traffic": 1, "skipped_data_budget": 1, "deferred_cpu_busy": 1,
    }  # fmt: skip
