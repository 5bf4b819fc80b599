"""The ``ResultStore.scan`` contract: SQLite and a real InfluxDB give the same pages for the same
stored results, and both match what the results themselves say (computed here in plain Python).
"""

from __future__ import annotations

import enum
import logging
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from probes.models import Access, Kind
from server.compliance.stats import month_of
from server.storage import InfluxStore, ProbeIdentity, ResultStore, SqliteStore, StoredResult
from server.storage.base import ScanRow, WriteOutcome
from server.storage.scan import scalar_fields
from tests.influxd import Influxd
from tests.server.storage.examples import IDENTITY, NOW, failed, make

# A month well inside the stored past: 00:00 on its first day, Vietnam time, is 17:00 UTC.
MONTH = month_of(NOW - timedelta(days=62))
NEXT_MONTH = month_of(MONTH.end)
PREVIOUS_MONTH = month_of(MONTH.start - timedelta(days=1))

OTHERS = [
    ProbeIdentity("probe-02", "thon-b", "Viettel", Access.LTE),
    ProbeIdentity("probe-03", "thon-b", "VNPT", Access.FIBER),
    ProbeIdentity("probe-10", "thon-c", "FPT", Access.NR),
]
PROBES = [IDENTITY, *OTHERS]

SAMPLE_FIELDS = ["download_mbps", "upload_mbps", "status", "cpu_limited", "link_speed_mbps"]


@pytest.fixture
async def stores(tmp_path: Path, influxd: Influxd) -> AsyncIterator[list[ResultStore]]:
    """Both adapters, started empty: the same results go to each."""
    both: list[ResultStore] = [
        SqliteStore(tmp_path / "results.sqlite3"),
        InfluxStore(
            influxd.url,
            influxd.new_database_name(),
            timeout_s=10,
            ledger_path=tmp_path / "influx-ledger.sqlite3",
        ),
    ]
    for store in both:
        await store.start()
    yield both
    for store in both:
        await store.close()


async def write_all(stores: Sequence[ResultStore], items: list[StoredResult]) -> None:
    for store in stores:
        for first in range(0, len(items), 500):
            batch = items[first : first + 500]
            assert await store.write(batch) == [WriteOutcome.ACCEPTED] * len(batch), store.name


async def scan_pages(store: ResultStore, *args: Any, **kwargs: Any) -> list[list[ScanRow]]:
    return [page async for page in store.scan(*args, **kwargs)]


def scalar(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def expected_rows(
    items: list[StoredResult],
    kind: Kind,
    start: datetime,
    end: datetime,
    *,
    probes: Sequence[str] | None = None,
    fields: Sequence[str] | None = None,
) -> list[ScanRow]:
    """What a scan must give, from the results themselves."""
    chosen = [
        item
        for item in items
        if item.kind is kind
        and start <= item.result.measured_at < end
        and (probes is None or item.identity.probe_id in probes)
    ]
    chosen.sort(key=lambda i: (i.result.measured_at, i.identity.probe_id, str(i.result.result_id)))
    names = list(scalar_fields(kind)) if fields is None else list(fields)
    return [
        ScanRow(
            probe_id=item.identity.probe_id,
            hamlet=item.identity.hamlet,
            isp=item.identity.isp,
            access=item.identity.access.value,
            measured_at=item.result.measured_at,
            fields={name: scalar(getattr(item.result, name, None)) for name in names},
        )
        for item in chosen
    ]


def paged(rows: list[ScanRow], size: int) -> list[list[ScanRow]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def seeded_month(seed: int = 11) -> list[StoredResult]:
    """Bandwidth results over ``MONTH`` and the hours around it: hourly per probe at random
    microseconds, plus ties (several results in one microsecond, of one probe and of several),
    failed results, results on both sides of both month boundaries, and other kinds."""
    rng = random.Random(seed)
    items: list[StoredResult] = []
    hour = MONTH.start - timedelta(hours=3)
    while hour < MONTH.end + timedelta(hours=3):
        for identity in PROBES:
            if rng.random() < 0.3:
                continue
            at = hour + timedelta(microseconds=rng.randrange(3_600_000_000))
            items.append(
                make(
                    Kind.BANDWIDTH,
                    identity=identity,
                    measured_at=at,
                    download_mbps=round(rng.uniform(0, 2500), rng.randrange(0, 6)),
                    upload_mbps=float(rng.randrange(0, 1000)),  # whole floats stay floats
                    cpu_limited=rng.choice([True, False, None]),
                    link_speed_mbps=rng.choice([1000.0, 2500.0, None]),
                )
            )
        hour += timedelta(hours=7)
    tie = MONTH.start + timedelta(days=3, microseconds=777)
    for n in range(5):  # one probe, one microsecond: apart only in InfluxDB's sub-µs offsets
        items.append(make(Kind.BANDWIDTH, measured_at=tie, download_mbps=float(n)))
    for identity in reversed(PROBES):  # several probes, one microsecond
        items.append(make(Kind.BANDWIDTH, identity=identity, measured_at=tie))
    for edge in (MONTH.start, MONTH.end):  # 00:00 Vietnam time, and the microsecond before
        for at in (edge - timedelta(microseconds=1), edge):
            items.append(make(Kind.BANDWIDTH, identity=OTHERS[0], measured_at=at))
    items.append(failed(Kind.BANDWIDTH, measured_at=MONTH.start + timedelta(days=9)))
    items.append(make(Kind.LATENCY, measured_at=MONTH.start + timedelta(days=2)))
    items.append(make(Kind.IPV6, measured_at=MONTH.start + timedelta(days=2)))
    rng.shuffle(items)
    return items


async def test_is_part_of_the_result_store_interface(stores: list[ResultStore]) -> None:
    for store in stores:
        assert isinstance(store, ResultStore)
        assert await scan_pages(store, Kind.BANDWIDTH, MONTH.start, MONTH.end) == []


async def test_a_month_reads_back_whole_in_order_on_both(stores: list[ResultStore]) -> None:
    items = seeded_month()
    await write_all(stores, items)
    expected = expected_rows(items, Kind.BANDWIDTH, MONTH.start, MONTH.end)
    assert len(expected) > 300
    for store in stores:
        pages = await scan_pages(store, Kind.BANDWIDTH, MONTH.start, MONTH.end)
        assert pages == paged(expected, 10_000), store.name


@pytest.mark.parametrize("page_size", [1, 2, 7, 64, 1000])
async def test_pages_split_anywhere_even_inside_a_tie(
    stores: list[ResultStore], page_size: int
) -> None:
    items = seeded_month(seed=page_size)
    await write_all(stores, items)
    expected = expected_rows(items, Kind.BANDWIDTH, MONTH.start, MONTH.end)
    for store in stores:
        pages = await scan_pages(store, Kind.BANDWIDTH, MONTH.start, MONTH.end, page_size=page_size)
        assert pages == paged(expected, page_size), store.name


async def test_ties_in_one_microsecond_come_by_probe_then_result_id(
    stores: list[ResultStore],
) -> None:
    tie = MONTH.start + timedelta(days=1, microseconds=5)
    items = [make(Kind.BANDWIDTH, identity=p, measured_at=tie) for p in reversed(PROBES)] + [
        make(Kind.BANDWIDTH, measured_at=tie, download_mbps=float(n)) for n in range(20)
    ]
    await write_all(stores, items)
    expected = expected_rows(items, Kind.BANDWIDTH, MONTH.start, MONTH.end)
    assert [row.probe_id for row in expected][:22] == ["probe-01"] * 21 + ["probe-02"]
    for store in stores:
        pages = await scan_pages(store, Kind.BANDWIDTH, tie, tie + timedelta(microseconds=1))
        assert pages == [expected], store.name
        # measured_at is the stored microsecond exactly, never the InfluxDB point's nanosecond.
        assert {row.measured_at for row in pages[0]} == {tie}


async def test_an_empty_month_gives_no_page(stores: list[ResultStore]) -> None:
    items = [
        make(Kind.BANDWIDTH, measured_at=PREVIOUS_MONTH.end - timedelta(microseconds=1)),
        make(Kind.BANDWIDTH, measured_at=NEXT_MONTH.start),
    ]
    await write_all(stores, items)
    for store in stores:
        assert await scan_pages(store, Kind.BANDWIDTH, MONTH.start, MONTH.end) == [], store.name
        assert await scan_pages(store, Kind.DNS, PREVIOUS_MONTH.start, NEXT_MONTH.end) == []
        assert await scan_pages(store, Kind.BANDWIDTH, MONTH.end, MONTH.start) == []


async def test_the_month_starts_at_midnight_vietnam_time(stores: list[ResultStore]) -> None:
    # 00:00 on the 1st in Vietnam (UTC+7) is 17:00 UTC on the last day of the month before.
    assert MONTH.start.astimezone(UTC).hour == 17
    before, first = MONTH.start - timedelta(microseconds=1), MONTH.start
    last, after = MONTH.end - timedelta(microseconds=1), MONTH.end
    items = [make(Kind.BANDWIDTH, measured_at=at) for at in (before, first, last, after)]
    await write_all(stores, items)
    for store in stores:
        times = [
            row.measured_at
            for page in await scan_pages(store, Kind.BANDWIDTH, MONTH.start, MONTH.end)
            for row in page
        ]
        assert times == [first, last], store.name
        (page,) = await scan_pages(store, Kind.BANDWIDTH, PREVIOUS_MONTH.start, PREVIOUS_MONTH.end)
        assert [row.measured_at for row in page] == [before]


async def test_probes_filter(stores: list[ResultStore]) -> None:
    items = seeded_month(seed=3)
    await write_all(stores, items)
    wanted = ["probe-10", "probe-02", "no-such-probe"]
    expected = expected_rows(items, Kind.BANDWIDTH, MONTH.start, MONTH.end, probes=wanted)
    assert {row.probe_id for row in expected} == {"probe-02", "probe-10"}
    for store in stores:
        pages = await scan_pages(
            store, Kind.BANDWIDTH, MONTH.start, MONTH.end, probes=wanted, page_size=50
        )
        assert pages == paged(expected, 50), store.name
        # A long list (InfluxDB filters it after the query rather than in it): the same rows.
        many = [*wanted, *(f"absent-{n:03d}" for n in range(120))]
        pages = await scan_pages(
            store, Kind.BANDWIDTH, MONTH.start, MONTH.end, probes=many, page_size=50
        )
        assert pages == paged(expected, 50), store.name
        assert await scan_pages(store, Kind.BANDWIDTH, MONTH.start, MONTH.end, probes=[]) == []
        with pytest.raises(ValueError, match="not the string 'probe-01'"):
            await scan_pages(store, Kind.BANDWIDTH, MONTH.start, MONTH.end, probes="probe-01")


async def test_fields_filter(stores: list[ResultStore]) -> None:
    items = seeded_month(seed=5)
    await write_all(stores, items)
    expected = expected_rows(items, Kind.BANDWIDTH, MONTH.start, MONTH.end, fields=SAMPLE_FIELDS)
    # Missing stays None, whole floats stay floats, booleans stay booleans.
    assert any(row.fields["cpu_limited"] is None for row in expected)
    assert any(row.fields["download_mbps"] is None for row in expected)  # the failed result
    for store in stores:
        pages = await scan_pages(
            store, Kind.BANDWIDTH, MONTH.start, MONTH.end, fields=SAMPLE_FIELDS, page_size=100
        )
        assert pages == paged(expected, 100), store.name
        rows = [row for page in pages for row in page]
        assert all(type(row.fields["upload_mbps"]) in (float, type(None)) for row in rows)
        assert {type(row.fields["cpu_limited"]) for row in rows} == {bool, type(None)}
        # One field alone (SQLite answers a lone JSON boolean as 0/1), and none at all.
        alone = expected_rows(items, Kind.BANDWIDTH, MONTH.start, MONTH.end, fields=["ran_alone"])
        assert {row.fields["ran_alone"] for row in alone} == {True, None}
        pages = await scan_pages(
            store, Kind.BANDWIDTH, MONTH.start, MONTH.end, fields=["ran_alone"], page_size=10**6
        )
        assert pages == [alone], store.name
        (page,) = await scan_pages(
            store, Kind.BANDWIDTH, MONTH.start, MONTH.end, fields=[], page_size=10**6
        )
        assert [row.fields for row in page] == [{}] * len(rows)


async def test_a_field_of_another_kind_is_none_and_an_unknown_one_is_refused(
    stores: list[ResultStore],
) -> None:
    items = [
        make(Kind.IPV6, measured_at=MONTH.start, ipv6_ready=True),
        make(Kind.IPV6, measured_at=MONTH.start + timedelta(hours=1), ipv6_ready=False),
    ]
    await write_all(stores, items)
    fields = ["ipv6_ready", "download_mbps", "status", "clock_synced"]
    for store in stores:
        (page,) = await scan_pages(store, Kind.IPV6, MONTH.start, MONTH.end, fields=fields)
        assert [row.fields for row in page] == [
            {"ipv6_ready": True, "download_mbps": None, "status": "ok", "clock_synced": None},
            {"ipv6_ready": False, "download_mbps": None, "status": "ok", "clock_synced": None},
        ], store.name
        with pytest.raises(ValueError, match="'downlaod_mbps' is not a scalar field"):
            await scan_pages(
                store, Kind.BANDWIDTH, MONTH.start, MONTH.end, fields=["downlaod_mbps"]
            )
        with pytest.raises(ValueError, match="'download_samples_mbps' is not a scalar"):
            await scan_pages(
                store, Kind.BANDWIDTH, MONTH.start, MONTH.end, fields=["download_samples_mbps"]
            )
        with pytest.raises(ValueError, match="page_size must be"):
            await scan_pages(store, Kind.BANDWIDTH, MONTH.start, MONTH.end, page_size=0)


async def test_every_scalar_field_of_every_kind_reads_back_alike(
    stores: list[ResultStore],
) -> None:
    items = [
        make(kind, identity=identity, measured_at=MONTH.start + timedelta(minutes=n))
        for n, (kind, identity) in enumerate((k, p) for k in Kind for p in PROBES)
    ]
    await write_all(stores, items)
    for kind in Kind:
        expected = expected_rows(items, kind, MONTH.start, MONTH.end)
        assert expected and expected[0].fields["result_id"]
        for store in stores:
            assert await scan_pages(store, kind, MONTH.start, MONTH.end) == [expected], (
                store.name,
                kind,
            )


async def test_influxdb_reads_a_truncated_slice_again_in_halves(tmp_path: Path) -> None:
    with Influxd(max_row_limit=5) as small:
        store = InfluxStore(small.url, "scan", timeout_s=10)
        await store.start()
        try:
            items = [
                make(Kind.BANDWIDTH, measured_at=MONTH.start + timedelta(minutes=n))
                for n in range(40)
            ]
            await write_all([store], items)
            expected = expected_rows(items, Kind.BANDWIDTH, MONTH.start, MONTH.end)
            pages = await scan_pages(store, Kind.BANDWIDTH, MONTH.start, MONTH.end, page_size=3)
            assert pages == paged(expected, 3)
        finally:
            await store.close()


async def test_sqlite_scans_along_its_index(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite3"
    store = SqliteStore(path)
    await store.start()
    await write_all([store], seeded_month())
    await store.close()
    # The query scan runs, as the adapter builds it (a page after a key, probes filtered).
    with sqlite3.connect(path) as conn:
        sql = (
            "SELECT probe_id FROM results WHERE kind = ? AND measured_at_ns >= ?"
            " AND measured_at_ns < ? AND (measured_at_ns, probe_id, result_id) > (?, ?, ?)"
            " ORDER BY measured_at_ns, probe_id, result_id LIMIT ?"
        )
        plan = " ".join(
            str(row[-1])
            for row in conn.execute("EXPLAIN QUERY PLAN " + sql, ["bandwidth", 0, 1, 0, "", "", 9])
        )
    assert "results_kind_time" in plan
    assert "TEMP B-TREE" not in plan


async def test_an_older_sqlite_file_gains_the_scan_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.sqlite3"
    # The schema SQLite files had before scans existed (server/storage/sqlite.py, issue 10).
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE results (
                result_id TEXT PRIMARY KEY, kind TEXT NOT NULL, probe_id TEXT NOT NULL,
                hamlet TEXT NOT NULL, isp TEXT NOT NULL, access TEXT NOT NULL,
                engine TEXT NOT NULL, target TEXT, measured_at_ns INTEGER NOT NULL,
                payload TEXT NOT NULL
            );
            CREATE INDEX results_kind_probe_time ON results (kind, probe_id, measured_at_ns);
            CREATE INDEX results_kind_hamlet_time ON results (kind, hamlet, measured_at_ns);
            """
        )
    conn.close()
    store = SqliteStore(path)
    with caplog.at_level(logging.INFO, logger="server.storage.sqlite"):
        await store.start()
    assert "building the scan index" in caplog.text
    try:
        item = make(Kind.BANDWIDTH, measured_at=MONTH.start)
        await write_all([store], [item])
        assert await scan_pages(store, Kind.BANDWIDTH, MONTH.start, MONTH.end) == [
            expected_rows([item], Kind.BANDWIDTH, MONTH.start, MONTH.end)
        ]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "results_kind_time" in names
