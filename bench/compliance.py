"""One month's compliance for a whole commune, on each storage adapter (issue 11 §7).

    .venv/bin/python bench/compliance.py [--probes 1000] [--days 30] [--hamlets 20] [--rounds 3]

Stores ``probes × days × 24`` hourly bandwidth results (720,000 at the defaults) through the real
adapters' write path (``ResultStore.write`` in batches: the ledger, the line protocol and one
``/write`` per batch for InfluxDB; one transaction per batch for SQLite), in a throw-away
``influxd`` (``tests/influxd.py``) and a temporary SQLite file, the probes registered in a real
registry. Then times, per adapter, what ``GET /api/v1/compliance?period=MONTH`` does for the whole
commune: ``engine.evaluate`` (registry, sample cache, IPv6 and latency scans, every rule, the
roll-ups) plus ``report_json.report_to_json``:

- cold: the cache file empty (every probe-month scanned and cached);
- warm: the same query again (the best of ``--rounds``);
- an hour later, not appended: every probe gets one new result, stored but not appended to the
  cache (as before ingest appended): every probe-month is rebuilt from a scan;
- an hour later, appended: one new result per probe again, appended as ingest does after the
  store's write (``cached_samples.append_accepted``, one call per probe's batch, timed apart
  beside the store's write of the same results), then the query;

and the components: the count per probe (the cache check) and the sample cache + rules alone,
cold and warm;

and, as the reference in the same run, the bare InfluxQL ``SELECT MEAN(download_mbps) FROM
bandwidth WHERE time >= .. AND time < .. GROUP BY hamlet`` over the same data. One adapter at a
time, SQLite first (seeded, then timed, before influxd is given the month: an InfluxDB compacting
what it was just given slows the whole machine). Prints figures as they come, then each with its
ratio to the reference.
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
from server.compliance.engine import evaluate
from server.compliance.plan import Plan, load_plan
from server.compliance.report_json import report_to_json
from server.compliance.stats import Period, month_of
from server.registry import Registry
from server.settings import Settings, load_settings
from server.storage import InfluxStore, ProbeIdentity, SqliteStore, StoredResult, month_cache
from server.storage.base import ResultStore
from server.storage.influx import quote_ident
from server.storage.lineprotocol import datetime_to_ns
from server.storage.month_cache import MonthCache
from tests.influxd import Influxd

PLAN_FILE = Path(__file__).resolve().parents[1] / "config" / "plan.yaml"
COMMUNE = "hiep-luc"

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
    probe_lines: dict[str, rules.Line],
    month: Period,
    days: int,
    seed: int = 7,
    *,
    first_hour: int = 0,
) -> list[StoredResult]:
    """Hourly results of every probe from ``first_hour`` of the month, each at a random
    microsecond of its hour; a link of 2.5 GbE on most lines, a few results CPU-limited or
    failed, a few deferred, some not seeing the household's traffic."""
    rng = random.Random(seed)
    items = []
    limits = {"limits": unbounded_limits()}
    for probe_id, line in probe_lines.items():
        identity = ProbeIdentity(probe_id, line.hamlet, line.isp, line.access)
        link = 1000.0 if rng.random() < 0.1 else 2500.0
        typical = rng.uniform(700, 2300)
        for hour in range(first_hour, first_hour + days * 24):
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
                "cross_traffic": "unknown" if rng.random() < 0.2 else "quiet",
            }
            if rng.random() < 0.01:
                payload.update(
                    status="deferred", skip_reason="cross_traffic", download_mbps=None,
                    upload_mbps=None, cross_traffic="busy",
                )  # fmt: skip
            elif rng.random() < 0.01:
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
    found = await cached_samples.bandwidth_columns(store, cache, month, list(probe_lines))
    batch = [rules.line_columns(found.get(p, ()), line) for p, line in probe_lines.items()]
    verdicts = {}
    for (probe_id, line), stats in zip(
        probe_lines.items(), rules.lines_month_stats(batch, month), strict=True
    ):
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


async def registered(
    workdir: Path, probe_lines: dict[str, rules.Line], hamlets: int
) -> tuple[Settings, Registry]:
    """The commune's settings and a real registry holding every probe and its declared line."""
    settings = load_settings(
        None,
        environment=False,
        data_dir=str(workdir),
        communes=[{"code": COMMUNE, "name": "Xã Hiệp Lực"}],
        hamlets=[
            {"code": f"thon-{n:02d}", "name": f"Thôn {n}", "population": 100 + n, "isps": ISPS}
            for n in range(hamlets)
        ],
    )
    registry = Registry(workdir / "registry.sqlite3")
    await registry.open()
    await registry.sync_hamlets(settings.hamlets, settings.communes)
    for probe_id, line in probe_lines.items():
        await registry.add_probe(
            hamlet=line.hamlet, isp=line.isp, access=line.access, probe_id=probe_id
        )
        await registry.set_line(
            probe_id,
            declared_down_mbps=line.declared_down_mbps,
            declared_up_mbps=line.declared_up_mbps,
            actor="bench",
        )
    return settings, registry


async def bench(args: argparse.Namespace, influxd: Influxd, workdir: Path) -> None:
    month = month_of(datetime.now(UTC) - timedelta(days=70))
    days = min(args.days, int(month.duration / timedelta(days=1)) - 1)
    probe_lines = lines(args.probes, args.hamlets)
    started = time.perf_counter()
    items = results(probe_lines, month, days)
    print(
        f"{len(items):,} results ({args.probes} probes × {days} days × 24,"
        f" {args.hamlets} hamlets), month {month.label}: built in"
        f" {time.perf_counter() - started:.1f} s"
    )
    plan: Plan = load_plan(PLAN_FILE)
    influx = InfluxStore(
        influxd.url, DATABASE, timeout_s=120, ledger_path=workdir / "influx-ledger.sqlite3"
    )
    sqlite = SqliteStore(workdir / "results.sqlite3", synchronous="NORMAL")
    stores: list[ResultStore] = [sqlite, influx]
    for store in stores:
        await store.start()
    settings, registry = await registered(workdir, probe_lines, args.hamlets)
    now = month.end + timedelta(days=1)
    timed: list[tuple[str, str, float]] = []  # (store, what, seconds)
    current = [""]  # the store being measured

    def row(label: str, took: float) -> None:
        timed.append((current[0], label, took))
        print(f"  {label:44} {took * 1000:10.1f} ms")

    async def measure(store: ResultStore, n: int) -> dict[str, rules.VerdictKind]:
        current[0] = store.name
        print(f"\n{store.name}: what the API does (evaluate + report_to_json)")
        cache_file = settings.data_dir / month_cache.FILE_NAME

        async def api(s: ResultStore = store) -> dict[str, object]:
            report = await evaluate(s, registry, settings, plan, month, now=now)
            return report_to_json(report)

        _forget_cache(workdir)
        started = time.perf_counter()
        cold = await api()
        row("cold (cache empty)", time.perf_counter() - started)
        took, warm = await best_of(args.rounds, api)
        row(f"warm (best of {args.rounds})", took)
        assert cold == warm, f"{store.name}: the warm cache changed the report"
        # An hour later, twice: one new result per probe, in the month's last hours.
        for hour, append in ((days * 24, False), (days * 24 + 1, True)):
            # Each probe's result of that hour (the day's results come 24 per probe).
            more = results(probe_lines, month, 1, 100 + hour, first_hour=hour)[::24]
            started = time.perf_counter()
            for item in more:  # one batch per probe, as probes post
                await store.write([item])
            write_s = time.perf_counter() - started
            if append:
                async with MonthCache(cache_file) as cache:
                    started = time.perf_counter()
                    for item in more:
                        await cached_samples.append_accepted(cache, [item])
                    append_s = time.perf_counter() - started
                print(
                    f"  {'ingest: store write, one result per batch':44}"
                    f" {write_s / len(more) * 1e6:10.0f} µs/result"
                )
                print(
                    f"  {'ingest: cache append, one result per batch':44}"
                    f" {append_s / len(more) * 1e6:10.0f} µs/result"
                    f"  {append_s / write_s:8.2f}× the write"
                )
            started = time.perf_counter()
            later = await api()
            label = "an hour later, " + ("appended" if append else "not appended (rebuild)")
            row(label, time.perf_counter() - started)
        took, again = await best_of(args.rounds, api)
        row(f"warm again (best of {args.rounds})", took)
        assert later == again, f"{store.name}: the appended cache changed the report"

        print(f"  components (month {month.label}):")

        async def count(s: ResultStore = store) -> object:
            return await s.count_by_probe(
                Kind.BANDWIDTH, month.start, month.end, probes=list(probe_lines)
            )

        took, _ = await best_of(args.rounds, count)
        row("  count per probe (the cache check)", took)
        async with MonthCache(workdir / f"{store.name}-{n}-cache.sqlite3") as cache:
            started = time.perf_counter()
            await compliance(store, cache, month, probe_lines)
            row("  sample cache + rules, cold", time.perf_counter() - started)

            async def rules_only(s: ResultStore = store, c: MonthCache = cache) -> object:
                return await compliance(s, c, month, probe_lines)

            took, _ = await best_of(args.rounds, rules_only)
            row("  sample cache + rules, warm", took)
        return _verdicts(again)

    try:
        verdicts: dict[str, dict[str, rules.VerdictKind]] = {}
        # One adapter at a time, SQLite first: its figures are taken before influxd holds the
        # month (an InfluxDB busy compacting what it was just given slows every process).
        for n, store in enumerate(stores):
            took = await seed(store, items)
            print(f"seeded {store.name:8} in {took:7.1f} s ({len(items) / took:,.0f} results/s)")
            verdicts[store.name] = await measure(store, n)
        del items
        ref_s, hamlets = await best_of(args.rounds, lambda: reference(influx, month))
        print(f"\nreference: bare InfluxQL MEAN GROUP BY hamlet ({hamlets} hamlets)")
        print(f"  {ref_s * 1000:10.1f} ms")
        print("\nagainst the reference:")
        for name, label, took in timed:
            print(f"  {name:8} {label:44} {took * 1000:10.1f} ms  {took / ref_s:8.1f}×")
        tally = {name: _count(v) for name, v in verdicts.items()}
        same = len({tuple(sorted(v.items())) for v in verdicts.values()}) == 1
        print(f"\nline verdicts: {tally}; identical on both adapters: {same}")
    finally:
        await registry.close()
        for store in stores:
            await store.close()


def _forget_cache(workdir: Path) -> None:
    """Delete the sample cache file (and its WAL companions): the next query is cold."""
    for path in workdir.glob(month_cache.FILE_NAME + "*"):
        path.unlink()


def _verdicts(report: dict[str, object]) -> dict[str, rules.VerdictKind]:
    """Each line's fixed-gigabit verdict, from the JSON report."""
    found = {}
    for commune in report["communes"]:  # type: ignore[attr-defined]
        for hamlet in commune["hamlets"]:
            for line in hamlet["lines"]:
                for rule in line["rules"]:
                    if rule["rule_id"] == rules.FIXED_GIGABIT.id:
                        found[line["probe_id"]] = rules.VerdictKind(rule["verdict"])
    return found


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
