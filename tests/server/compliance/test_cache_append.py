"""Appending accepted results to the compliance sample cache (``cached_samples.append_accepted``,
the ingest hook's work), on both adapters: after an append the current month is read without a
scan and equals a plain scan; an append lost between the store's write and the cache (a crash)
leaves a count mismatch and that probe-month alone is rebuilt, from a scan of that probe only; an
append of a result a rebuild already saw drops the row rather than count it twice. Last, through
the real app: results posted to the signed ingest API are appended off the request.

The results are hand-made (``test_sample_cache.seeded``: bandwidth results as the agent sends them).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from aiohttp.test_utils import TestClient

from probes.models import Kind, ValidationLimits, parse_result
from probes.signing import sign
from server.app import create_app
from server.appkeys import REGISTRY, SAMPLE_APPENDER, SETTINGS, STORE
from server.compliance import cached_samples, rules
from server.compliance.columns import PACK_VERSION
from server.compliance.engine import evaluate
from server.compliance.plan import load_plan
from server.compliance.report_json import report_to_json
from server.compliance.stats import Period, month_of, parse_period
from server.storage import ResultStore, StoredResult
from server.storage.base import ScanRow
from server.storage.month_cache import MonthCache
from tests.server.compliance.test_api_compliance import seeded_settings
from tests.server.compliance.test_sample_cache import (
    FIBRE,
    LINES,
    LTE,
    MONTH,
    PLAN_FILE,
    bandwidth,
    plain,
    seeded,
    vn,
)
from tests.server.conftest import GuardedTestServer, add_probe, auth
from tests.server.storage.examples import make_bare


class Recording:
    """The store, with every scan's probes written down (what a rebuild read)."""

    def __init__(self, inner: ResultStore) -> None:
        self.inner = inner
        self.scanned: list[list[str]] = []  # bandwidth scans only

    async def count_by_probe(
        self, kind: Kind, start: datetime, end: datetime, *, probes: Sequence[str] | None = None
    ) -> dict[str, int]:
        return await self.inner.count_by_probe(kind, start, end, probes=probes)

    async def scan(
        self, kind: Kind, start: datetime, end: datetime, **kw: Any
    ) -> AsyncIterator[Sequence[ScanRow]]:
        if kind is Kind.BANDWIDTH:
            self.scanned.append(sorted(kw.get("probes") or []))
        async for page in self.inner.scan(kind, start, end, **kw):
            yield page


async def query(
    recording: Recording, cache_file: Path, period: Period = MONTH
) -> dict[str, list[rules.Sample]]:
    recording.scanned.clear()
    store = cast(ResultStore, recording)
    async with MonthCache(cache_file) as cache:
        return await cached_samples.bandwidth_samples(store, cache, period, list(LINES))


async def write_and_append(
    store: ResultStore, cache_file: Path, items: list[StoredResult], *, append: bool = True
) -> None:
    """What ingest does: the store's write, then (``append``) the accepted results appended."""
    outcomes = await store.write(items)
    accepted = [i for i, o in zip(items, outcomes, strict=True) if o.value == "accepted"]
    assert len(accepted) == len(items)
    if append:
        async with MonthCache(cache_file) as cache:
            await cached_samples.append_accepted(cache, accepted)


def an_hour_later() -> list[StoredResult]:
    """New results inside the month (not at its end, so order matters), a not-run one, one of
    the month before, and one per probe."""
    return [
        bandwidth(FIBRE, vn(20, 21, 30), download_mbps=955.5, cross_traffic="unknown"),
        bandwidth(FIBRE, vn(2, 3, 4, 5, 6), download_mbps=944.0),
        make_bare(
            Kind.BANDWIDTH, identity=FIBRE, measured_at=vn(20, 22), status="deferred",
            skip_reason="cross_traffic", engine="http",
        ),
        bandwidth(LTE, vn(20, 21, 31), download_mbps=41.5),
        bandwidth(FIBRE, MONTH.start - timedelta(days=3), download_mbps=990.0),
    ]  # fmt: skip


async def test_appended_results_keep_the_month_warm(store: ResultStore, tmp_path: Path) -> None:
    items = seeded()
    await store.write(items)
    cache_file = tmp_path / "cache.sqlite3"
    recording = Recording(store)
    both = parse_period("2026-10..2026-11")
    assert await query(recording, cache_file, both) == plain(items, both)  # cold: every probe
    assert recording.scanned
    more = an_hour_later()
    await write_and_append(store, cache_file, more)
    items += more
    warm = await query(recording, cache_file, both)
    assert recording.scanned == []  # nothing read again from the store
    assert warm == plain(items, both)


async def test_a_lost_append_rebuilds_that_probe_month_only(
    store: ResultStore, tmp_path: Path
) -> None:
    items = seeded()
    await store.write(items)
    cache_file = tmp_path / "cache.sqlite3"
    recording = Recording(store)
    await query(recording, cache_file)
    # The 4G probe's results reach the cache; the fibre probe's are stored, then the server
    # dies before it appends them.
    lte = [bandwidth(LTE, vn(21, 9, 45, 1), download_mbps=44.0)]
    fibre = [bandwidth(FIBRE, vn(21, 9, 45, 1), download_mbps=960.0)]
    await write_and_append(store, cache_file, lte)
    await write_and_append(store, cache_file, fibre, append=False)
    items += lte + fibre
    got = await query(recording, cache_file)
    assert recording.scanned == [[FIBRE.probe_id]]  # that probe-month alone, scanned alone
    assert got == plain(items, MONTH)
    assert await query(recording, cache_file) == got and recording.scanned == []


async def test_an_append_a_rebuild_already_saw_drops_the_row(
    store: ResultStore, tmp_path: Path
) -> None:
    items = seeded()
    await store.write(items)
    cache_file = tmp_path / "cache.sqlite3"
    recording = Recording(store)
    await query(recording, cache_file)
    late = [bandwidth(FIBRE, vn(22, 20), download_mbps=700.0)]
    await write_and_append(store, cache_file, late, append=False)
    items += late
    await query(recording, cache_file)  # a query between the write and the append: rebuilt
    assert recording.scanned == [[FIBRE.probe_id]]
    async with MonthCache(cache_file) as cache:
        done = await cached_samples.append_accepted(cache, late)  # the append, late
    assert (done.appended, done.dropped) == (0, 1)
    # Counted twice, the row would hide the next lost append (count N+2 = store's N+2).
    lost = [bandwidth(FIBRE, vn(23, 20), download_mbps=710.0)]
    await write_and_append(store, cache_file, lost, append=False)
    items += lost
    assert await query(recording, cache_file) == plain(items, MONTH)
    assert recording.scanned == [[FIBRE.probe_id]]
    async with MonthCache(cache_file) as cache:
        held = await cache.get(MONTH.label, PACK_VERSION, [FIBRE.probe_id])
    counts = await store.count_by_probe(Kind.BANDWIDTH, MONTH.start, MONTH.end)
    assert held[FIBRE.probe_id].results == counts[FIBRE.probe_id]


async def test_ingest_appends_accepted_results_off_the_request(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """The real app on SQLite: signed results posted to the ingest API reach the cache, so the
    next query scans nothing and gives the answer of a cold cache."""
    client: TestClient = await aiohttp_client(
        GuardedTestServer(create_app(seeded_settings(tmp_path)))
    )
    app = client.app
    assert app is not None
    probe = await add_probe(client, hamlet="dat", isp="VNPT", access="fiber")
    pid = probe["probe_id"]
    now = datetime.now(UTC)
    limits = ValidationLimits(now, max_age=timedelta(days=3650))
    month = month_of(now)

    async def post(count: int, first: datetime) -> None:
        items = [
            sign(
                parse_result(
                    {
                        "kind": "bandwidth", "result_id": str(uuid.uuid4()),
                        "probe_id": pid, "measured_at": (first + timedelta(seconds=i)).isoformat(),
                        "engine": "http", "download_mbps": 900.0 + i, "upload_mbps": 400.0,
                        "link_speed_mbps": 2500.0, "cross_traffic": "unknown",
                    },
                    limits,
                ),
                probe["key"],
            ).model_dump(mode="json")
            for i in range(count)
        ]  # fmt: skip
        resp = await client.post(
            "/api/v1/results", json={"results": items}, headers=auth(probe["token"])
        )
        assert resp.status == 200 and (await resp.json())["accepted"] == count

    plan = load_plan(PLAN_FILE)
    recording = Recording(app[STORE])
    store = cast(ResultStore, recording)

    async def report() -> dict[str, Any]:
        made = await evaluate(store, app[REGISTRY], app[SETTINGS], plan, month, now=now)
        return report_to_json(made)

    await post(5, month.start + timedelta(hours=1))
    first = await report()  # builds the probe-month
    assert recording.scanned
    await post(3, month.start + timedelta(hours=2))
    await app[SAMPLE_APPENDER].drain()
    recording.scanned.clear()
    warm = await report()
    assert recording.scanned == []  # bandwidth from the cache
    assert warm != first
    # The same as a cold cache (the file lost) gives.
    for path in await asyncio.to_thread(lambda: list(tmp_path.glob("compliance-cache*"))):
        await asyncio.to_thread(path.unlink)
    cold = await report()
    assert cold == warm
