"""The compliance sample cache (``cached_samples``, ``storage.month_cache``) on both adapters:
the report is the same, to the byte of its JSON, with a cold cache, a warm one, one made stale by
new results or by a deleted cache file, and as ``compute`` over plain samples; and a cached
probe-month whose count differs from the store's is never used.

The results are made here by hand (``examples.make``/``make_bare``: bandwidth results as the
agent sends them) to hit every edge: ties, an empty month, flags the result does not carry, the
month's edges at 00:00 Vietnam time, the peak hours' edges at 19:00 and 23:00, a result with
only a download, speeds with every bit of their mantissa set, a probe whose access changed.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.models import Access, CrossTraffic, Kind, SkipReason, Status
from server.compliance import cached_samples, rules
from server.compliance.engine import (
    CommuneInfo,
    Evidence,
    HamletInfo,
    ProbeLine,
    compute,
)
from server.compliance.page import render_page
from server.compliance.plan import Plan, load_plan
from server.compliance.report_json import report_to_json
from server.compliance.samples import PACK_VERSION, pack_samples, unpack_samples
from server.compliance.stats import VIETNAM, Period, parse_period
from server.storage import ProbeIdentity, ResultStore, StoredResult
from server.storage.month_cache import MonthCache, Packed
from tests.server.storage.examples import make, make_bare

PLAN_FILE = Path(__file__).parents[3] / "config" / "plan.yaml"

MONTH = parse_period("2026-11")
_US = timedelta(microseconds=1)

FIBRE = ProbeIdentity("probe-fibre", "thon-a", "VNPT", Access.FIBER)
LTE = ProbeIdentity("probe-4g", "thon-a", "Viettel", Access.LTE)
MOVED = ProbeIdentity("probe-5g", "thon-b", "Viettel", Access.NR)
MOVED_AS_LTE = ProbeIdentity("probe-5g", "thon-b", "Viettel", Access.LTE)
EMPTY = ProbeIdentity("probe-empty", "thon-c", "FPT", Access.FIBER)

LINES = {
    FIBRE.probe_id: rules.Line("thon-a", "VNPT", Access.FIBER, 1000.0, 500.0, 400.0),
    LTE.probe_id: rules.Line("thon-a", "Viettel", Access.LTE),
    MOVED.probe_id: rules.Line("thon-b", "Viettel", Access.NR),
    EMPTY.probe_id: rules.Line("thon-c", "FPT", Access.FIBER),
}


def vn(day: int, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    """A November 2026 Vietnam wall-clock time (as an aware datetime)."""
    return datetime(2026, 11, day, hour, minute, second, micro, tzinfo=VIETNAM)


def bandwidth(identity: ProbeIdentity, at: datetime, **fields: Any) -> StoredResult:
    base: dict[str, Any] = {
        "cpu_limited": False,
        "host_limited": False,
        "ran_alone": True,
        "clock_synced": True,
        "link_speed_mbps": 2500.0,
    }
    return make(Kind.BANDWIDTH, identity=identity, measured_at=at, **(base | fields))


def seeded() -> list[StoredResult]:
    rng = random.Random(11)
    items: list[StoredResult] = []
    # Speeds with full mantissas, at every hour, a few days: peak and off-peak alike.
    for i in range(400):
        at = vn(1 + i % 28, i % 24, rng.randrange(60), rng.randrange(60), rng.randrange(10**6))
        items.append(
            bandwidth(FIBRE, at, download_mbps=rng.uniform(200, 1400), upload_mbps=rng.random())
        )
    # Ties: the same speed many times, around the p5 rank and the median.
    items += [bandwidth(FIBRE, vn(5, 20, m), download_mbps=950.0) for m in range(30)]
    items += [bandwidth(FIBRE, vn(6, 8, m), download_mbps=400.0) for m in range(12)]
    # The month's edges at 00:00 Vietnam time, and the peak hours' edges.
    items += [
        bandwidth(FIBRE, MONTH.start - _US, download_mbps=1.0),
        bandwidth(FIBRE, MONTH.start, download_mbps=2.0),
        bandwidth(FIBRE, MONTH.end - _US, download_mbps=3.0),
        bandwidth(FIBRE, MONTH.end, download_mbps=4.0),
        bandwidth(FIBRE, vn(9, 18, 59, 59, 999999), download_mbps=5.0),
        bandwidth(FIBRE, vn(9, 19), download_mbps=6.0),
        bandwidth(FIBRE, vn(9, 22, 59, 59, 999999), download_mbps=7.0),
        bandwidth(FIBRE, vn(9, 23), download_mbps=8.0),
    ]
    # Each exclusion reason, alone and behind an earlier one.
    items += [
        bandwidth(FIBRE, vn(10, 20, 1), clock_synced=False, cpu_limited=True, download_mbps=9.0),
        bandwidth(FIBRE, vn(10, 20, 2), cpu_limited=True, host_limited=True, download_mbps=9.0),
        bandwidth(FIBRE, vn(10, 20, 3), host_limited=True, download_mbps=9.0),
        bandwidth(FIBRE, vn(10, 20, 4), ran_alone=False, download_mbps=9.0),
        make_bare(
            Kind.BANDWIDTH, identity=FIBRE, measured_at=vn(10, 20, 5), status="failed",
            failure_kind="timeout", error="timed out", engine="http", target="http://t/",
        ),
        # Tests not run (issue 16): deferred on cross-traffic or CPU, skipped on the budget;
        # and valid samples whose probe could not see the household's traffic.
        make_bare(
            Kind.BANDWIDTH, identity=FIBRE, measured_at=vn(10, 20, 11), status="deferred",
            skip_reason="cross_traffic", engine="http", cross_traffic="busy",
            cross_traffic_bytes_per_s=90000.0, cross_traffic_threshold_bytes_per_s=25000.0,
        ),
        make_bare(
            Kind.BANDWIDTH, identity=FIBRE, measured_at=vn(10, 20, 12), status="deferred",
            skip_reason="cpu_busy", engine="http", pretest_cpu_percent=80.0,
        ),
        make_bare(
            Kind.BANDWIDTH, identity=LTE, measured_at=vn(10, 20, 13), status="skipped",
            skip_reason="data_budget", engine="http",
        ),
        bandwidth(FIBRE, vn(10, 20, 14), download_mbps=951.0, cross_traffic="unknown"),
        bandwidth(FIBRE, vn(10, 20, 15), download_mbps=952.0, cross_traffic="quiet"),
        bandwidth(LTE, vn(10, 20, 16), download_mbps=42.0, cross_traffic="unknown"),
        # Flags the result does not carry: kept, never excluded on a guess.
        make_bare(
            Kind.BANDWIDTH, identity=FIBRE, measured_at=vn(10, 20, 6), engine="http",
            target="http://t/", download_mbps=1000.25, link_speed_mbps=2500.0,
        ),
        # Only a download; only an upload; no port speed; a 1 GbE port.
        bandwidth(FIBRE, vn(10, 21, 7), download_mbps=990.5, upload_mbps=None),
        bandwidth(FIBRE, vn(10, 21, 8), download_mbps=None, upload_mbps=300.0),
        bandwidth(FIBRE, vn(10, 21, 9), download_mbps=930.0, link_speed_mbps=None),
        bandwidth(FIBRE, vn(10, 21, 10), download_mbps=935.0, link_speed_mbps=1000.0),
        # Speeds the two-integer split cannot hold exactly: summed by math.fsum instead.
        bandwidth(FIBRE, vn(11, 21), download_mbps=1e-7, upload_mbps=3.0e5),
    ]  # fmt: skip
    # 4G: ties at the 40 Mb/s floor exactly; a download-only result.
    items += [bandwidth(LTE, vn(1 + i % 30, 9, i // 30), download_mbps=40.0) for i in range(25)]
    items += [
        bandwidth(LTE, vn(2, 10, i), download_mbps=39.999999, upload_mbps=10.0) for i in range(3)
    ]
    items.append(bandwidth(LTE, vn(3, 11), download_mbps=55.5, upload_mbps=None))
    # A 5G probe that was registered as 4G for part of the month: those are another access.
    items += [bandwidth(MOVED, vn(4, 12, i), download_mbps=120.0 + i) for i in range(7)]
    items += [bandwidth(MOVED_AS_LTE, vn(4, 13, i), download_mbps=60.0) for i in range(4)]
    return items


def sample_of(item: StoredResult) -> rules.Sample:
    r = item.result
    return rules.Sample(
        r.measured_at,
        getattr(r, "download_mbps", None),
        getattr(r, "upload_mbps", None),
        Status(r.status),
        getattr(r, "cpu_limited", None),
        getattr(r, "host_limited", None),
        getattr(r, "ran_alone", None),
        r.clock_synced,
        getattr(r, "link_speed_mbps", None),
        Access(item.identity.access),
        r.skip_reason and SkipReason(r.skip_reason),
        getattr(r, "cross_traffic", None) and CrossTraffic(r.cross_traffic),
    )


NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
#: Two months across the 00:00 boundary of 1 November (Vietnam time), a quarter, and one day
#: (a window that clips its month).
PERIODS = ("2026-10..2026-11", "2026-Q4", "2026-11-09")
COMMUNE = CommuneInfo("hiep-luc", "Hiệp Lực")
HAMLETS = [HamletInfo(code, code, COMMUNE.code, 100, 80) for code in ("thon-a", "thon-b", "thon-c")]
PROBES = [ProbeLine(pid, line, last_seen_at=NOW) for pid, line in LINES.items()]


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(PLAN_FILE)


def plain(items: list[StoredResult], period: Period) -> dict[str, list[rules.Sample]]:
    """The period's samples of each probe straight from the results, in the store's order."""
    ordered = sorted(items, key=lambda i: (i.result.measured_at, str(i.result.result_id)))
    found: dict[str, list[rules.Sample]] = {}
    for item in ordered:
        if period.contains(item.result.measured_at):
            found.setdefault(item.identity.probe_id, []).append(sample_of(item))
    return found


def report(plan: Plan, bandwidth: dict[str, list[rules.Sample]], period: Period) -> str:
    evidence = Evidence(bandwidth=bandwidth)
    made = compute(plan, [COMMUNE], HAMLETS, PROBES, evidence, period, NOW)
    return json.dumps(report_to_json(made), sort_keys=True, ensure_ascii=False)


def lose(directory: Path, name: str) -> None:
    """Delete a closed SQLite file and its WAL companions, as a lost data directory would."""
    for path in directory.glob(name + "*"):
        path.unlink()


async def through_cache(
    store: ResultStore, cache_file: Path, period: Period
) -> dict[str, list[rules.Sample]]:
    async with MonthCache(cache_file) as cache:
        return await cached_samples.bandwidth_samples(store, cache, period, list(LINES))


async def test_report_is_the_same_cold_warm_stale_and_without_its_file(
    store: ResultStore, plan: Plan, tmp_path: Path
) -> None:
    items = seeded()
    await store.write(items)
    cache_file = tmp_path / "cache.sqlite3"
    for label in PERIODS:
        period = parse_period(label)
        expected = plain(items, period)
        cold = await through_cache(store, cache_file, period)
        assert cold == expected, label
        assert report(plan, cold, period) == report(plan, expected, period), label
        warm = await through_cache(store, cache_file, period)
        assert warm == expected, label
    # Stale: new results, in the middle of the month and on its first microsecond.
    more = [
        bandwidth(FIBRE, vn(20, 21), download_mbps=950.0),
        bandwidth(FIBRE, MONTH.start, download_mbps=950.0),
        bandwidth(LTE, vn(20, 21), download_mbps=41.0),
        bandwidth(EMPTY, vn(21, 20), download_mbps=2000.0, link_speed_mbps=10000.0),
    ]
    await store.write(more)
    items += more
    for label in PERIODS:
        period = parse_period(label)
        stale = await through_cache(store, cache_file, period)
        assert stale == plain(items, period), label
        assert report(plan, stale, period) == report(plan, plain(items, period), period), label
    # A lost cache file: rebuilt, same answer.
    lose(tmp_path, "cache.sqlite3")
    period = parse_period(PERIODS[0])
    rebuilt = await through_cache(store, cache_file, period)
    assert report(plan, rebuilt, period) == report(plan, plain(items, period), period)
    async with MonthCache(cache_file) as cache:
        held = await cache.get(MONTH.label, PACK_VERSION, list(LINES))
    assert {p: h.results for p, h in held.items()} == await store.count_by_probe(
        Kind.BANDWIDTH, MONTH.start, MONTH.end
    )
    assert EMPTY.probe_id in held  # no longer empty


async def test_a_cached_month_whose_count_differs_is_never_used(
    store: ResultStore, tmp_path: Path
) -> None:
    items = seeded()
    await store.write(items)
    counts = await store.count_by_probe(Kind.BANDWIDTH, MONTH.start, MONTH.end)
    expected = plain(items, MONTH)
    wrong = [rules.Sample(vn(2, 20), 1.0, 1.0)]  # what a stale row would wrongly give
    cache_file = tmp_path / "cache.sqlite3"
    for off_by in (-1, 1):
        async with MonthCache(cache_file) as cache:
            await cache.put(
                MONTH.label,
                PACK_VERSION,
                [Packed(p, counts[p] + off_by, pack_samples(wrong)) for p in counts],
            )
        assert await through_cache(store, cache_file, MONTH) == expected
    # The same row with the store's count is used as it is: the check above is what kept it out.
    async with MonthCache(cache_file) as cache:
        await cache.put(
            MONTH.label,
            PACK_VERSION,
            [Packed(FIBRE.probe_id, counts[FIBRE.probe_id], pack_samples(wrong))],
        )
    assert (await through_cache(store, cache_file, MONTH))[FIBRE.probe_id] == wrong


async def test_count_by_probe_counts_the_window_of_scan(store: ResultStore) -> None:
    items = seeded()
    await store.write(items)
    got = await store.count_by_probe(Kind.BANDWIDTH, MONTH.start, MONTH.end)
    expected: dict[str, int] = {}
    for item in items:
        if MONTH.contains(item.result.measured_at):
            expected[item.identity.probe_id] = expected.get(item.identity.probe_id, 0) + 1
    assert got == expected
    assert EMPTY.probe_id not in got
    assert await store.count_by_probe(Kind.BANDWIDTH, MONTH.end, MONTH.end) == {}
    assert await store.count_by_probe(Kind.LATENCY, MONTH.start, MONTH.end) == {}


async def test_count_by_probe_of_named_probes(
    store: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Naming probes narrows the answer to them (a probe named twice, or with no result, or
    unknown, changes nothing), the same on both adapters; SQLite asks in chunks, here of 2."""
    monkeypatch.setattr("server.storage.sqlite.COUNT_PROBES_PER_QUERY", 2)
    await store.write(seeded())
    every = await store.count_by_probe(Kind.BANDWIDTH, MONTH.start, MONTH.end)
    assert len(every) >= 3, every
    named = sorted(every)[:3]
    asked = [*named, named[0], EMPTY.probe_id, "no-such-probe"]
    got = await store.count_by_probe(Kind.BANDWIDTH, MONTH.start, MONTH.end, probes=asked)
    assert got == {p: every[p] for p in named}
    assert await store.count_by_probe(Kind.BANDWIDTH, MONTH.start, MONTH.end, probes=[]) == {}


_flags = st.sampled_from([None, False, True])
_speeds = st.none() | st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False)
_samples = st.builds(
    rules.Sample,
    measured_at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    download_mbps=_speeds,
    upload_mbps=_speeds,
    status=st.sampled_from(list(Status)),
    cpu_limited=_flags,
    host_limited=_flags,
    ran_alone=_flags,
    clock_synced=_flags,
    link_speed_mbps=_speeds,
    access=st.none() | st.sampled_from(list(Access)),
    skip_reason=st.none() | st.sampled_from(list(SkipReason)),
    cross_traffic=st.none() | st.sampled_from(list(CrossTraffic)),
)


@given(st.lists(_samples, max_size=50))
def test_packed_samples_read_back_equal(samples: list[rules.Sample]) -> None:
    assert unpack_samples(pack_samples(samples)) == samples


def test_packed_samples_of_the_wrong_length_are_refused() -> None:
    packed = pack_samples([rules.Sample(vn(1, 1), 1.0)])
    with pytest.raises(ValueError, match="fewer bytes"):
        unpack_samples(packed[:-1])
    with pytest.raises(ValueError, match="more than"):
        unpack_samples(packed + b"x")


async def test_not_run_tests_and_unknown_traffic_reach_the_report_and_page(
    store: ResultStore, plan: Plan, tmp_path: Path
) -> None:
    """Issue 16 item 1, through each adapter and the cache, by hand: the fibre line has 4 valid
    samples (2 with cross_traffic unknown, 1 quiet, 1 that does not say), 2 deferred on
    cross-traffic, 1 deferred on CPU, 1 skipped on the data budget and 1 failed."""
    items = [
        bandwidth(FIBRE, vn(3, 20), download_mbps=900.0, cross_traffic="unknown"),
        bandwidth(FIBRE, vn(3, 21), download_mbps=910.0, cross_traffic="unknown"),
        bandwidth(FIBRE, vn(3, 22), download_mbps=920.0, cross_traffic="quiet"),
        bandwidth(FIBRE, vn(4, 8), download_mbps=930.0),
        *(
            make_bare(
                Kind.BANDWIDTH, identity=FIBRE, measured_at=vn(5, 8, i), status=status,
                skip_reason=reason, engine="http",
            )
            for i, (status, reason) in enumerate(
                [
                    ("deferred", "cross_traffic"),
                    ("deferred", "cross_traffic"),
                    ("deferred", "cpu_busy"),
                    ("skipped", "data_budget"),
                ]
            )
        ),
        make_bare(
            Kind.BANDWIDTH, identity=FIBRE, measured_at=vn(5, 9), status="failed",
            failure_kind="timeout", error="timed out", engine="http",
        ),
    ]  # fmt: skip
    await store.write(items)
    async with MonthCache(tmp_path / "cache.sqlite3") as cache:
        for _ in ("cold", "warm"):
            found = await cached_samples.bandwidth_samples(store, cache, MONTH, list(LINES))
            made = compute(plan, [COMMUNE], HAMLETS, PROBES, Evidence(bandwidth=found), MONTH, NOW)
            data = report_to_json(made)
            (hamlet,) = [h for h in data["communes"][0]["hamlets"] if h["code"] == "thon-a"]
            (line,) = [x for x in hamlet["lines"] if x["probe_id"] == FIBRE.probe_id]
            months = {r["rule_id"]: r["months"][0] for r in line["rules"]}
            for rule_id in ("fixed-gigabit", "qcvn34-declared-speed"):
                month = months[rule_id]
                assert month["n"] == 4, rule_id
                assert month["exclusions"] == {
                    "deferred_cpu_busy": 1,
                    "deferred_cross_traffic": 2,
                    "skipped_data_budget": 1,
                    "status_failed": 1,
                }, rule_id
                unknown = month["cross_traffic_unknown"]
                assert unknown["value"] == 2 and unknown["n"] == 4, rule_id
                assert unknown["aggregation"] == "count_cross_traffic_unknown"
            html = render_page(data)
            assert "Mẫu không rõ lưu lượng của hộ" in html
            assert "hoãn: đường dây nhà đang dùng: 2" in html
            assert "bỏ qua: hết hạn mức dữ liệu: 1" in html
            assert 'data-field="cross_traffic_unknown">2</td>' in html
