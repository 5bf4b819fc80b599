"""``samples``: scanned rows become the rules' samples, flags and all, from a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from probes.models import Access, Kind, Status
from server.compliance import rules
from server.compliance.samples import (
    IPV6_SAMPLE_FIELDS,
    SAMPLE_FIELDS,
    to_ipv6_sample,
    to_sample,
)
from server.compliance.stats import month_of
from server.storage import SqliteStore
from server.storage.base import ScanRow
from tests.server.storage.examples import IDENTITY, NOW, failed, make, make_bare

AT = datetime(2026, 10, 31, 17, 0, tzinfo=UTC)  # 00:00 on 1 November, Vietnam time


def row(**fields: object) -> ScanRow:
    return ScanRow(
        "probe-01", "thon-a", "VNPT", "fiber", AT, {**dict.fromkeys(SAMPLE_FIELDS), **fields}
    )


def test_a_bandwidth_row_carries_every_flag() -> None:
    sample = to_sample(
        row(
            status="ok",
            download_mbps=2300,  # InfluxDB's JSON gives whole floats as integers
            upload_mbps=950.5,
            cpu_limited=False,
            host_limited=True,
            ran_alone=False,
            clock_synced=True,
            link_speed_mbps=2500.0,
        )
    )
    assert sample == rules.Sample(
        measured_at=AT,
        download_mbps=2300.0,
        upload_mbps=950.5,
        status=Status.OK,
        cpu_limited=False,
        host_limited=True,
        ran_alone=False,
        clock_synced=True,
        link_speed_mbps=2500.0,
        access=Access.FIBER,
    )
    assert isinstance(sample.download_mbps, float)


def test_missing_stays_none_and_failed_stays_failed() -> None:
    sample = to_sample(row(status="failed"))
    assert sample.status is Status.FAILED
    assert (sample.download_mbps, sample.cpu_limited, sample.clock_synced) == (None, None, None)


def test_a_row_scanned_without_a_flag_is_refused() -> None:
    bare = ScanRow("probe-07", "thon-a", "VNPT", "fiber", AT, {"download_mbps": 990.0})
    with pytest.raises(ValueError, match=r"probe-07 .* without status, upload_mbps"):
        to_sample(bare)
    with pytest.raises(ValueError, match="without status, ipv6_ready"):
        to_ipv6_sample(bare)


def test_an_ipv6_row() -> None:
    fields = {"status": "ok", "ipv6_ready": True, "ipv6_only_ready": False, "clock_synced": None}
    sample = to_ipv6_sample(ScanRow("probe-01", "thon-a", "VNPT", "fiber", AT, fields))
    assert sample == rules.Ipv6Sample(AT, ipv6_ready=True, ipv6_only_ready=False)


async def test_stored_results_become_the_samples_they_describe(tmp_path: Path) -> None:
    # Through a real store: what the scan reads is what the results said.
    month = month_of(NOW - timedelta(days=40))
    at = month.start + timedelta(days=2, hours=13, microseconds=42)
    fast = make(
        Kind.BANDWIDTH,
        measured_at=at,
        download_mbps=2350.0,
        link_speed_mbps=2500.0,
        cpu_limited=True,
        clock_synced=False,
    )
    bare = make_bare(Kind.BANDWIDTH, measured_at=at + timedelta(hours=1), engine="http")
    down = failed(Kind.BANDWIDTH, measured_at=at + timedelta(hours=2))
    ready = make(Kind.IPV6, measured_at=at, ipv6_ready=True, ipv6_only_ready=False)
    store = SqliteStore(tmp_path / "results.sqlite3")
    await store.start()
    try:
        await store.write([fast, bare, down, ready])
        samples = [
            to_sample(r)
            async for page in store.scan(
                Kind.BANDWIDTH, month.start, month.end, fields=SAMPLE_FIELDS
            )
            for r in page
        ]
        ipv6 = [
            to_ipv6_sample(r)
            async for page in store.scan(
                Kind.IPV6, month.start, month.end, fields=IPV6_SAMPLE_FIELDS
            )
            for r in page
        ]
        presence = [
            to_sample(r)
            async for page in store.scan(Kind.IPV6, month.start, month.end, fields=SAMPLE_FIELDS)
            for r in page
        ]
    finally:
        await store.close()
    assert samples == [
        rules.Sample(
            at,
            download_mbps=2350.0,
            upload_mbps=40.0,
            cpu_limited=True,
            host_limited=False,
            ran_alone=True,
            clock_synced=False,
            link_speed_mbps=2500.0,
            access=IDENTITY.access,
        ),
        rules.Sample(at + timedelta(hours=1), access=Access.FIBER),
        rules.Sample(at + timedelta(hours=2), status=Status.FAILED, access=Access.FIBER),
    ]
    assert ipv6 == [rules.Ipv6Sample(at, ipv6_ready=True, ipv6_only_ready=False)]
    assert presence == [rules.Sample(at, access=Access.FIBER)]
    # The rules read the flags: the unsynchronised clock and the failure are excluded by reason.
    line = rules.Line("thon-a", "VNPT", Access.FIBER)
    verdict = rules.fixed_gigabit(samples, line, month)
    assert verdict.exclusions == {"clock_not_synced": 1, "no_value": 1, "status_failed": 1}
    assert verdict.verdict is rules.VerdictKind.INSUFFICIENT_DATA
