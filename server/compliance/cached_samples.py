"""A period's bandwidth samples per probe, through the sample cache (``storage.month_cache``).

For each Vietnam month of the period, one aggregate query asks the store how many bandwidth
results each probe has (``ResultStore.count_by_probe``). A probe-month whose cached count equals
it is read from the cache; any other (never cached, new results, results deleted by retention, a
lost cache file, another packing format) is scanned from the store (one scan for all of them)
and cached again with the number of results the scan gave. The samples the rules read are thus
those of the store, whichever adapter holds it: the cache only saves reading them again.

A month not yet over gains results every hour, so each query rebuilds the probes that reported
since the last one: a scan of the month so far, limited to those probes. Counting cannot tell a
month that lost k results and gained k others between two queries (retention deletes whole old
months, results arrive for the current one: both in one month between two queries is not a case
the server meets), and it does not see a result edited in place (results are never edited).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from probes.models import Kind
from server.compliance.rules import Sample
from server.compliance.samples import (
    PACK_VERSION,
    SAMPLE_FIELDS,
    pack_samples,
    to_sample,
    unpack_samples,
)
from server.compliance.stats import Period
from server.storage.month_cache import MonthCache, Packed

if TYPE_CHECKING:
    from server.storage.base import ResultStore

log = logging.getLogger(__name__)


async def bandwidth_samples(
    store: ResultStore, cache: MonthCache, period: Period, probes: Sequence[str]
) -> dict[str, list[Sample]]:
    """The bandwidth samples of ``probes`` with ``period.start <= measured_at < period.end``,
    in the store's order (``measured_at``, then result id), equal to those of a plain scan."""
    found: dict[str, list[Sample]] = {}
    wanted = sorted(set(probes))
    if not wanted:
        return found
    for month in period.months():
        start, end = max(month.start, period.start), min(month.end, period.end)
        if start >= end:
            continue
        whole = await month_samples(store, cache, month, wanted)
        for probe_id, samples in whole.items():
            if (start, end) != (month.start, month.end):
                samples = [s for s in samples if start <= s.measured_at < end]
            if samples:
                found.setdefault(probe_id, []).extend(samples)
    return found


async def month_samples(
    store: ResultStore, cache: MonthCache, month: Period, probes: Sequence[str]
) -> dict[str, list[Sample]]:
    """The whole Vietnam ``month``'s bandwidth samples of each of ``probes`` that has any."""
    counts = await store.count_by_probe(Kind.BANDWIDTH, month.start, month.end)
    held = await cache.get(month.label, PACK_VERSION, [p for p in probes if p in counts])
    found: dict[str, list[Sample]] = {}
    stale = []
    for probe_id in probes:
        stored = counts.get(probe_id, 0)
        if not stored:
            continue
        packed = held.get(probe_id)
        if usable(packed, stored):
            assert packed is not None
            found[probe_id] = unpack_samples(packed.samples)
        else:
            stale.append(probe_id)
    if stale:
        rebuilt = await _scan(store, month, stale)
        await cache.put(
            month.label,
            PACK_VERSION,
            [Packed(p, len(samples), pack_samples(samples)) for p, samples in rebuilt.items()],
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
