"""One contract for every ``ResultStore``: each test runs against SQLite and a real InfluxDB
(the ``store`` fixture, ``adapters.py``)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from probes.models import Access, BandwidthResult, Kind, LatencyResult
from server.errors import StorageUnavailable
from server.storage import (
    InfluxStore,
    ProbeIdentity,
    Refused,
    ResultStore,
    SqliteStore,
    StoredResult,
    WriteOutcome,
)
from tests.influxd import Influxd
from tests.server.storage.examples import IDENTITY, NOW, every_kind, failed, make

ACCEPTED, DUPLICATE = WriteOutcome.ACCEPTED, WriteOutcome.DUPLICATE

_MICROSECOND = timedelta(microseconds=1)

OTHER = ProbeIdentity(probe_id="probe-02", hamlet="thon-b", isp="Viettel", access=Access.LTE)


def by_time(items: list[StoredResult]) -> list[StoredResult]:
    return sorted(items, key=lambda item: item.result.measured_at)


def by_id(items: list[StoredResult]) -> list[StoredResult]:
    return sorted(items, key=lambda item: item.result.result_id)


async def test_is_a_result_store(store: ResultStore) -> None:
    assert isinstance(store, ResultStore)
    await store.check()


async def test_every_kind_reads_back_equal(store: ResultStore) -> None:
    items = every_kind()
    assert await store.write(items) == [ACCEPTED] * len(items)
    for kind in Kind:
        expected = by_time([item for item in items if item.kind is kind])
        assert await store.query(kind=kind) == expected, kind
    (bandwidth,) = await store.query(kind=Kind.BANDWIDTH, start=NOW)
    # Whole floats stay floats, samples stay lists, identity comes back whole.
    assert isinstance(bandwidth.result, BandwidthResult)
    assert bandwidth.result.upload_mbps == 40.0
    assert isinstance(bandwidth.result.upload_mbps, float)
    assert bandwidth.result.download_samples_mbps == [88.1, 93.7, 95.0, 92.25]
    assert bandwidth.identity == IDENTITY


async def test_failed_result_is_stored_with_its_reason(store: ResultStore) -> None:
    item = failed(Kind.LATENCY, engine="icmp", target="8.8.8.8")
    assert await store.write([item]) == [ACCEPTED]
    (back,) = await store.query(kind=Kind.LATENCY)
    assert back == item
    assert isinstance(back.result, LatencyResult)
    assert back.result.status == "failed"
    assert back.result.failure_kind == "timeout"
    assert back.result.error is not None and "timed out" in back.result.error
    assert back.result.rtt_median_ms is None  # missing is None, never 0


async def test_duplicate_in_a_later_call_is_stored_once(store: ResultStore) -> None:
    first = make(Kind.BANDWIDTH)
    second = make(Kind.BANDWIDTH, measured_at=NOW + timedelta(minutes=5))
    assert await store.write([first]) == [ACCEPTED]
    assert await store.write([first, second]) == [DUPLICATE, ACCEPTED]
    assert await store.write([second, first]) == [DUPLICATE, DUPLICATE]
    assert await store.query(kind=Kind.BANDWIDTH) == [first, second]


async def test_duplicate_within_one_call_is_stored_once(store: ResultStore) -> None:
    item = make(Kind.LATENCY)
    other = make(Kind.LATENCY, measured_at=NOW + timedelta(seconds=1))
    outcomes = await store.write([item, other, item])
    assert outcomes == [ACCEPTED, ACCEPTED, DUPLICATE]
    assert await store.query(kind=Kind.LATENCY) == [item, other]


async def test_duplicate_detection_spans_kinds_and_probes(store: ResultStore) -> None:
    batch = [make(Kind.DNS), make(Kind.DNS, identity=OTHER), make(Kind.HEARTBEAT)]
    assert await store.write(batch) == [ACCEPTED] * 3
    again = [*reversed(batch), make(Kind.HEARTBEAT, identity=OTHER)]
    assert await store.write(again) == [DUPLICATE, DUPLICATE, DUPLICATE, ACCEPTED]
    assert len(await store.query(kind=Kind.DNS)) == 2


async def test_results_in_one_microsecond_are_each_kept_whole(store: ResultStore) -> None:
    # Two DNS results of one probe with the same measured_at and tags (issue 15): each is its
    # own result, with its own fields, and a re-send of either changes nothing.
    first = make(Kind.DNS, qtype="A", resolve_ms=11.0, answers=1)
    second = make(Kind.DNS, qtype="AAAA", resolve_ms=12.0, answers=2)
    assert await store.write([first, second]) == [ACCEPTED, ACCEPTED]
    third = make(Kind.DNS, qname="example.vn", resolve_ms=13.0, answers=3)
    assert await store.write([second, third, first]) == [DUPLICATE, ACCEPTED, DUPLICATE]
    assert by_id(await store.query(kind=Kind.DNS)) == by_id([first, second, third])
    assert by_id(await store.query(kind=Kind.DNS, start=NOW, end=NOW + _MICROSECOND)) == by_id(
        [first, second, third]
    )
    assert await store.query(kind=Kind.DNS, end=NOW) == []


async def test_many_results_in_one_microsecond_are_each_kept(store: ResultStore) -> None:
    items = [make(Kind.HEARTBEAT, uptime_s=float(i)) for i in range(40)]
    assert await store.write(items) == [ACCEPTED] * 40
    assert by_id(await store.query(kind=Kind.HEARTBEAT)) == by_id(items)


async def test_a_result_id_reused_with_other_content_is_refused(store: ResultStore) -> None:
    # Answering "duplicate" would make the probe delete a measurement that is stored nowhere;
    # refused, it stays in the probe's quarantine with the reason.
    item = make(Kind.DNS, resolve_ms=12.0)
    altered = StoredResult(item.identity, item.result.model_copy(update={"resolve_ms": 99.0}))
    assert await store.write([item]) == [ACCEPTED]
    (outcome,) = await store.write([altered])
    assert isinstance(outcome, Refused)
    assert f"result_id {item.result.result_id} is already stored" in outcome.reason
    assert await store.write([item]) == [DUPLICATE]
    # Within one call, and across probes: the id names one result, whoever sends it.
    fresh = make(Kind.DNS, resolve_ms=1.0)
    twin = StoredResult(fresh.identity, fresh.result.model_copy(update={"resolve_ms": 2.0}))
    theirs = make(Kind.DNS, identity=OTHER)
    stolen = StoredResult(item.identity, theirs.result.model_copy(update={"probe_id": "probe-01"}))
    outcomes = await store.write([fresh, twin, theirs, stolen])
    assert outcomes[0] == ACCEPTED and outcomes[2] == ACCEPTED
    assert isinstance(outcomes[1], Refused) and isinstance(outcomes[3], Refused)
    assert by_id(await store.query(kind=Kind.DNS)) == by_id([item, fresh, theirs])


async def test_empty_write_returns_nothing(store: ResultStore) -> None:
    assert await store.write([]) == []


async def test_query_filters(store: ResultStore) -> None:
    times = [NOW + timedelta(minutes=i) for i in range(5)]
    mine = [make(Kind.LATENCY, measured_at=t) for t in times]
    theirs = [make(Kind.LATENCY, identity=OTHER, measured_at=t) for t in times[1:3]]
    assert await store.write([*theirs, *mine]) == [ACCEPTED] * 7

    assert await store.query(kind=Kind.LATENCY, probe_id="probe-01") == mine
    assert await store.query(kind=Kind.LATENCY, probe_id="probe-02") == theirs
    assert await store.query(kind=Kind.LATENCY, probe_id="nobody") == []
    assert await store.query(kind=Kind.LATENCY, hamlet="thon-b") == theirs
    assert await store.query(kind=Kind.BANDWIDTH) == []
    # start inclusive, end exclusive
    window = await store.query(kind=Kind.LATENCY, probe_id="probe-01", start=times[1], end=times[3])
    assert window == mine[1:3]
    assert await store.query(kind=Kind.LATENCY, hamlet="thon-a", start=times[4]) == mine[4:]
    assert await store.query(kind=Kind.LATENCY, hamlet="thon-a", end=times[0]) == []
    # order and limit
    assert await store.query(kind=Kind.LATENCY, probe_id="probe-01", limit=2) == mine[:2]
    newest = await store.query(kind=Kind.LATENCY, probe_id="probe-01", newest_first=True)
    assert newest == mine[::-1]
    top = await store.query(kind=Kind.LATENCY, hamlet="thon-a", newest_first=True, limit=2)
    assert top == [mine[4], mine[3]]
    assert await store.query(kind=Kind.LATENCY, limit=0) == []
    everything = await store.query(kind=Kind.LATENCY, newest_first=True)
    assert len(everything) == 7
    times_back = [item.result.measured_at for item in everything]
    assert times_back == sorted(times_back, reverse=True)


async def test_latest_is_the_newest_per_probe(store: ResultStore) -> None:
    older = make(Kind.LATENCY, measured_at=NOW - timedelta(minutes=2), target="1.1.1.1")
    newest = make(Kind.LATENCY, measured_at=NOW, target="8.8.8.8")  # another series, same probe
    middle = make(Kind.LATENCY, measured_at=NOW - timedelta(minutes=1), target="9.9.9.9")
    theirs = make(Kind.LATENCY, identity=OTHER, measured_at=NOW - timedelta(hours=3))
    heartbeat = make(Kind.HEARTBEAT, measured_at=NOW + timedelta(minutes=1))
    await store.write([older, newest, theirs, middle, heartbeat])

    latest = await store.latest(Kind.LATENCY)
    assert sorted(latest, key=lambda item: item.identity.probe_id) == [newest, theirs]
    assert await store.latest(Kind.HEARTBEAT) == [heartbeat]
    assert await store.latest(Kind.CELLULAR) == []


async def test_unicode_and_line_protocol_metacharacters_survive(store: ResultStore) -> None:
    identity = ProbeIdentity(
        probe_id="probe-x.1",
        hamlet='Thôn Đồng Tâm, xã "Hiệp Lực" = 1 \\it\'s \\\\u1',
        isp="VNPT Bắc Kạn, chi nhánh=2",
        access=Access.NR,
    )
    item = make(
        Kind.DNS,
        identity=identity,
        # Targets carry no backslash (the model refuses it: InfluxDB alters it in a tag).
        target="máy chủ 'DNS', \"chính\"=1 x",
        resolver='C:\\dns\\ "resolver", a=b',
        qname="tên-miền.việt.vn",
        rcode='NX "\\"',
    )
    hb = make(
        Kind.HEARTBEAT,
        identity=identity,
        last_errors={"dns": 'lỗi:\n "quoted" \\ backslash\ttab, comma=equals'},
    )
    assert await store.write([item, hb]) == [ACCEPTED, ACCEPTED]
    assert await store.query(kind=Kind.DNS, hamlet=identity.hamlet) == [item]
    assert await store.query(kind=Kind.DNS, probe_id="probe-x.1") == [item]
    assert await store.query(kind=Kind.HEARTBEAT, hamlet=identity.hamlet) == [hb]
    assert await store.latest(Kind.DNS) == [item]
    assert await store.write([item]) == [DUPLICATE]


# --- when the store is gone -------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "influxdb"])
async def lost_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResultStore]:
    """A store that worked, then lost its database: influxd killed, or the SQLite dir removed."""
    if request.param == "sqlite":
        directory = tmp_path / "data"
        directory.mkdir()
        store: ResultStore = SqliteStore(directory / "results.sqlite3")
        await store.start()
        assert await store.write([make(Kind.DNS)]) == [ACCEPTED]
        shutil.rmtree(directory)
        yield store
        await store.close()
    else:
        with Influxd() as influxd:
            store = InfluxStore(influxd.url, "lost", timeout_s=2)
            await store.start()
            assert await store.write([make(Kind.DNS)]) == [ACCEPTED]
        yield store
        await store.close()


async def test_lost_store_raises_and_accepts_nothing(lost_store: ResultStore) -> None:
    with pytest.raises(StorageUnavailable):
        await lost_store.check()
    with pytest.raises(StorageUnavailable):
        await lost_store.write([make(Kind.DNS), make(Kind.LATENCY)])


async def test_closed_store_raises(store: ResultStore) -> None:
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StorageUnavailable, match="not started or is closed"):
        await store.write([make(Kind.DNS)])
    with pytest.raises(StorageUnavailable):
        await store.check()
    with pytest.raises(StorageUnavailable):
        await store.query(kind=Kind.DNS)


async def test_unreachable_influxdb_fails_to_start(unused_tcp_port: int) -> None:
    store = InfluxStore(f"http://127.0.0.1:{unused_tcp_port}", "hamletnet", timeout_s=2)
    with pytest.raises(StorageUnavailable, match=f"127.0.0.1:{unused_tcp_port} is unreachable"):
        await store.start()
    with pytest.raises(StorageUnavailable):
        await store.write([make(Kind.DNS)])


async def test_sqlite_in_a_missing_directory_fails_to_start(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "no-such-dir" / "results.sqlite3")
    with pytest.raises(StorageUnavailable, match="no-such-dir"):
        await store.start()
    with pytest.raises(StorageUnavailable):
        await store.write([make(Kind.DNS)])
