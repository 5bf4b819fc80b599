"""One month's compliance for a whole commune, on each storage adapter (issue 11 §7).

    .venv/bin/python bench/compliance.py [--probes 1000] [--days 30] [--hamlets 20] [--rounds 3]

Stores ``probes × days × 24`` hourly bandwidth results (720,000 at the defaults) through the real
adapters' write path (``ResultStore.write`` in batches: the ledger, the line protocol and one
``/write`` per batch for InfluxDB; one transaction per batch for SQLite), in a throw-away
``influxd`` (``tests/influxd.py``) and a temporary SQLite file. Then times, per adapter, one
month's compliance of every probe line of the commune as the engine gets it: the month's samples
through the sample cache (``cached_samples.bandwidth_samples``: one count per probe, then the
cache or a scan), ``rules.stats_for_line`` once per line and the two fixed-broadband rules on it:

- cold: the first query, the cache file empty (every probe-month scanned and cached);
- warm: the same query again (the best of ``--rounds``);

and, as the reference in the same run, the bare InfluxQL ``SELECT MEAN(download_mbps) FROM
bandwidth WHERE time >= .. AND time < .. GROUP BY hamlet`` over the same data. Prints figures
only, each with its ratio to the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probes.models import RESULT_ADAPTER, Access, Kind, unbounded_limits
from server.compliance import cached_samples, rules
from server.compliance.stats import Period, month_of
from server.storage import InfluxStore, ProbeIdentity, SqliteStore, StoredResult
from server.storage.base import ResultStore
from server.storage.influx import quote_ident
from server.storage.lineprotocol import datetime_to_ns
from server.storage.month_cache import MonthCache
from tests.influxd import Influxd

DATABASE = "compliance_bench"
ISPS = ("VNPT", "Viettel", "FPT")
BATCH = 5000


def lines(probes: int, hamlets: int) -> dict[str, rules.Line]:
    return {
        f"probe-{n:04d}": rules.Line(
            f"thon-{n % hamlets:02d}", ISPS[n % len(ISPS)], Access.FIBER, 1000.0, 500.0
        )
        for n in range(probes)
    }


def results(
    probe_lines: dict[str, rules.Line], month: Period, days: int, seed: int = 7
) -> list[StoredResult]:
    """Hourly results of every probe, each at a random microsecond of its hour; a link of
    2.5 GbE on most lines, a few results CPU-limited or failed."""
    rng = random.Random(seed)
    items = []
    limits = {"limits": unbounded_limits()}
    for probe_id, line in probe_lines.items():
        identity = ProbeIdentity(probe_id, line.hamlet, line.isp, line.access)
        link = 1000.0 if rng.random() < 0.1 else 2500.0
        typical = rng.uniform(700, 2300)
        for hour in range(days * 24):
            at = month.start + timedelta(hours=hour, microseconds=rng.randrange(3_600_000_000))
            payload = {
                "kind": "bandwidth",
                "result_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "probe_id": probe_id,
                "measured_at": at,
                "engine": "http",
                "target": "http://speedtest.vnpt.vn:8080/",
                "download_mbps": round(max(0.0, rng.gauss(typical, 150)), 2),
                "upload_mbps": round(max(0.0, rng.gauss(typical / 2, 80)), 2),
                "cpu_limited": rng.random() < 0.02,
                "host_limited": False,
                "ran_alone": True,
                "clock_synced": True,
                "link_speed_mbps": link,
            }
            if rng.random() < 0.01:
                payload.update(
                    status="failed",
                    failure_kind="timeout",
                    error="timed out after 30 s",
                    download_mbps=None,
                    upload_mbps=None,
                )
            result = RESULT_ADAPTER.validate_python(payload, context=limits)
            items.append(StoredResult(identity, result))
    return items


async def seed(store: ResultStore, items: list[StoredResult]) -> float:
    started = time.perf_counter()
    for first in range(0, len(items), BATCH):
        await store.write(items[first : first + BATCH])
    return time.perf_counter() - started


async def compliance(
    store: ResultStore, cache: MonthCache, month: Period, probe_lines: dict[str, rules.Line]
) -> dict[str, rules.VerdictKind]:
    """The fixed-gigabit verdict of every probe line over the month (QCVN 34 judged too)."""
    samples = await cached_samples.bandwidth_samples(store, cache, month, list(probe_lines))
    verdicts = {}
    for probe_id, line in probe_lines.items():
        stats = rules.stats_for_line(samples.get(probe_id, []), line, month)
        rules.qcvn34_declared_stats(stats, line, month)
        verdicts[probe_id] = rules.fixed_gigabit_stats(stats, line, month).verdict
    return verdicts


async def reference(store: InfluxStore, month: Period) -> int:
    """The bare InfluxQL mean per hamlet, through the adapter's own HTTP session."""
    statement = (
        f"SELECT MEAN({quote_ident('download_mbps')}) FROM {quote_ident('bandwidth')}"  # noqa: S608
        f" WHERE time >= {datetime_to_ns(month.start)} AND time < {datetime_to_ns(month.end)}"
        f" GROUP BY {quote_ident('hamlet')}"
    )
    (result,) = await store._query([statement])
    return len(result.get("series", ()))


async def best_of(rounds: int, run: Callable[[], Awaitable[object]]) -> tuple[float, object]:
    times, answer = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        answer = await run()
        times.append(time.perf_counter() - started)
    return min(times), answer


async def bench(args: argparse.Namespace, influxd: Influxd, workdir: Path) -> None:
    month = month_of(datetime.now(UTC) - timedelta(days=70))
    days = min(args.days, int(month.duration / timedelta(days=1)))
    probe_lines = lines(args.probes, args.hamlets)
    started = time.perf_counter()
    items = results(probe_lines, month, days)
    print(
        f"{len(items):,} results ({args.probes} probes × {days} days × 24,"
        f" {args.hamlets} hamlets), month {month.label}: built in"
        f" {time.perf_counter() - started:.1f} s"
    )
    influx = InfluxStore(
        influxd.url, DATABASE, timeout_s=120, ledger_path=workdir / "influx-ledger.sqlite3"
    )
    sqlite = SqliteStore(workdir / "results.sqlite3", synchronous="NORMAL")
    stores: list[ResultStore] = [influx, sqlite]
    for store in stores:
        await store.start()
    try:
        for store in stores:
            took = await seed(store, items)
            print(f"seeded {store.name:8} in {took:7.1f} s ({len(items) / took:,.0f} results/s)")
        del items
        ref_s, hamlets = await best_of(args.rounds, lambda: reference(influx, month))
        print(f"\nreference: bare InfluxQL MEAN GROUP BY hamlet ({hamlets} hamlets)")
        print(f"  {ref_s * 1000:10.1f} ms")
        verdicts = {}
        for store in stores:
            print(f"\n{store.name}: sample cache + rules per line")

            async def count(s: ResultStore = store) -> object:
                return await s.count_by_probe(Kind.BANDWIDTH, month.start, month.end)

            took, _ = await best_of(args.rounds, count)
            print(f"  {'count per probe (the cache check)':36} {took * 1000:10.1f} ms"
                  f"  {took / ref_s:8.1f}×")  # fmt: skip
            async with MonthCache(workdir / f"{store.name}-cache.sqlite3") as cache:
                started = time.perf_counter()
                cold = await compliance(store, cache, month, probe_lines)
                took = time.perf_counter() - started
                print(f"  {'cold (cache empty)':36} {took * 1000:10.1f} ms  {took / ref_s:8.1f}×")

                async def again(s: ResultStore = store, c: MonthCache = cache) -> object:
                    return await compliance(s, c, month, probe_lines)

                took, warm = await best_of(args.rounds, again)
                print(f"  {'warm (best of ' + str(args.rounds) + ')':36} {took * 1000:10.1f} ms"
                      f"  {took / ref_s:8.1f}×")  # fmt: skip
            assert cold == warm, f"{store.name}: the warm cache changed a verdict"
            verdicts[store.name] = warm
        tally = {name: _count(v) for name, v in verdicts.items()}
        same = len({tuple(sorted(v.items())) for v in verdicts.values()}) == 1
        print(f"\nverdicts per line: {tally}; identical on both adapters: {same}")
    finally:
        for store in stores:
            await store.close()


def _count(verdicts: dict[str, rules.VerdictKind]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for verdict in verdicts.values():
        counts[verdict.value] += 1
    return dict(sorted(counts.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=1000, help="fibre probes in the commune")
    parser.add_argument("--days", type=int, default=30, help="days of hourly results")
    parser.add_argument("--hamlets", type=int, default=20, help="hamlets the probes spread over")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each query")
    args = parser.parse_args()
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # each figure as it comes, even into a file
    with Influxd() as influxd, tempfile.TemporaryDirectory(prefix="bench-compliance-") as tmp:
        asyncio.run(bench(args, influxd, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
