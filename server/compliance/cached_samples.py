"""A period's bandwidth samples per probe, as columns (``columns.SampleColumns``), through the
sample cache (``storage.month_cache``).

For each Vietnam month of the period, one aggregate query asks the store how many bandwidth
results each probe has (``ResultStore.count_by_probe``). A probe-month whose cached count equals
it is read from the cache; any other (never cached, new results, results deleted by retention, a
lost cache file, another packing format) is scanned from the store (one scan for all of them)
and cached again with the number of results the scan gave. The samples the rules read are thus
those of the store, whichever adapter holds it: the cache only saves reading them again.

A month not yet over gains results every hour. So that a query does not rebuild every probe that
reported since the last one, ingest appends the results the store accepted to their cached
probe-month and adds them to its count (``append_accepted``, off the request by
``CacheAppender``). The count check stays the only guard: an append lost (a crash after the
store's write, a full queue) leaves the row's count short of the store's, and that probe-month
alone is rebuilt from a scan of that probe; an append that would add a sample the row may already
hold (same ``measured_at``: a rebuild that saw it) drops the row instead. Counting cannot tell a
month that lost k results and gained k others between two queries (retention deletes whole old
months, results arrive for the current one: both in one month between two queries is not a case
the server meets), and it does not see a result edited in place (results are never edited).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from probes.models import Kind
from server.compliance.columns import (
    PACK_VERSION,
    SampleColumns,
    columns_of,
    merge_packed,
    pack,
    unpack,
)
from server.compliance.rules import Sample
from server.compliance.samples import SAMPLE_FIELDS, result_sample, samples_of, to_sample
from server.compliance.stats import Period, month_of
from server.storage.month_cache import Appended, MonthCache, Packed

if TYPE_CHECKING:
    from server.storage.base import ResultStore, StoredResult

log = logging.getLogger(__name__)


async def bandwidth_columns(
    store: ResultStore, cache: MonthCache, period: Period, probes: Sequence[str]
) -> dict[str, SampleColumns]:
    """The bandwidth samples of ``probes`` with ``period.start <= measured_at < period.end``, as
    columns, in the store's order (``measured_at``, then result id), equal to those of a plain
    scan. Probes without any are left out."""
    parts: dict[str, list[SampleColumns]] = defaultdict(list)
    wanted = sorted(set(probes))
    if not wanted:
        return {}
    for month in period.months():
        start, end = max(month.start, period.start), min(month.end, period.end)
        if start >= end:
            continue
        whole = await month_columns(store, cache, month, wanted)
        for probe_id, columns in whole.items():
            if (start, end) != (month.start, month.end):
                columns = columns.between(start, end)
            if len(columns):
                parts[probe_id].append(columns)
    return {p: SampleColumns.concatenate(c) for p, c in parts.items()}


async def bandwidth_samples(
    store: ResultStore, cache: MonthCache, period: Period, probes: Sequence[str]
) -> dict[str, list[Sample]]:
    """``bandwidth_columns`` as sample objects."""
    found = await bandwidth_columns(store, cache, period, probes)
    return {p: samples_of(c) for p, c in found.items()}


async def month_columns(
    store: ResultStore, cache: MonthCache, month: Period, probes: Sequence[str]
) -> dict[str, SampleColumns]:
    """The whole Vietnam ``month``'s bandwidth samples of each of ``probes`` that has any."""
    # The cached rows are read while the store counts (InfluxDB counts in its own process).
    counts, held = await asyncio.gather(
        store.count_by_probe(Kind.BANDWIDTH, month.start, month.end, probes=probes),
        cache.get(month.label, PACK_VERSION, probes),
    )
    found: dict[str, SampleColumns] = {}
    stale = []
    for probe_id in probes:
        stored = counts.get(probe_id, 0)
        if not stored:
            continue
        packed = held.get(probe_id)
        if usable(packed, stored):
            assert packed is not None
            found[probe_id] = unpack(packed.samples)
        else:
            stale.append(probe_id)
    if stale:
        rebuilt = {p: columns_of(s) for p, s in (await _scan(store, month, stale)).items()}
        await cache.put(
            month.label,
            PACK_VERSION,
            [Packed(p, len(columns), pack(columns)) for p, columns in rebuilt.items()],
        )
        found.update(rebuilt)
        log.info(
            "compliance sample cache: %d of %d probes rebuilt for %s",
            len(stale),
            len(found),
            month.label,
        )
    return found


def usable(packed: Packed | None, stored: int) -> bool:
    """Whether a cached probe-month may be used: only when it was made from exactly as many
    results as the store holds now."""
    return packed is not None and packed.results == stored


async def _scan(store: ResultStore, month: Period, probes: list[str]) -> dict[str, list[Sample]]:
    found: dict[str, list[Sample]] = defaultdict(list)
    async for page in store.scan(
        Kind.BANDWIDTH, month.start, month.end, probes=probes, fields=SAMPLE_FIELDS
    ):
        for row in page:
            found[row.probe_id].append(to_sample(row))
    return found


# -- Appending at ingest --------------------------------------------------------------------------


async def append_accepted(cache: MonthCache, accepted: Sequence[StoredResult]) -> Appended:
    """Append the bandwidth results among ``accepted`` (those the store has just accepted, never
    duplicates) to their probe-month rows, one row per probe and Vietnam month, in one
    transaction per month. Other kinds are ignored."""
    by_month: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for item in accepted:
        if item.result.kind is Kind.BANDWIDTH:
            month = month_of(item.result.measured_at).label
            sample = result_sample(item.result, item.identity.access)
            by_month[month][item.identity.probe_id].append(sample)
    done = Appended(0, 0, 0)
    for month, probes in by_month.items():
        rows = [Packed(p, len(s), pack(columns_of(s))) for p, s in probes.items()]
        got = await cache.append(month, PACK_VERSION, rows, merge_packed)
        done = Appended(
            done.appended + got.appended, done.absent + got.absent, done.dropped + got.dropped
        )
    return done


class CacheAppender:
    """Appends accepted results to the sample cache off the request (``offer`` never waits): a
    bounded queue, drained by ``run`` (owned by the app's lifecycle) one merged batch at a time.
    A batch dropped (full queue, shutdown, an error) only costs its probes a rebuild."""

    def __init__(self, cache: MonthCache, *, max_batches: int = 10_000) -> None:
        self._cache = cache
        self._queue: asyncio.Queue[list[StoredResult]] = asyncio.Queue(max_batches)
        self.dropped = 0

    def offer(self, accepted: Sequence[StoredResult]) -> None:
        """Queue results the store accepted; never blocks, never raises."""
        if not any(item.result.kind is Kind.BANDWIDTH for item in accepted):
            return
        try:
            self._queue.put_nowait(list(accepted))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning(
                "compliance sample cache: queue full, %d result(s) not appended (rebuilt on the"
                " next query)",
                len(accepted),
            )

    async def drain(self) -> None:
        """Wait until every queued batch has been appended (tests, benches)."""
        await self._queue.join()

    async def run(self) -> None:
        """Append queued batches until cancelled; what is queued together goes in one call."""
        while True:
            batches = [await self._queue.get()]
            while not self._queue.empty():
                batches.append(self._queue.get_nowait())
            try:
                await append_accepted(self._cache, [item for b in batches for item in b])
            except Exception:  # the cache is a shortcut: a failed append costs a rebuild
                log.exception("compliance sample cache: %d batch(es) not appended", len(batches))
            finally:
                for _ in batches:
                    self._queue.task_done()
