"""One month's compliance for a whole commune, on each storage adapter (issue 11 §7).

    .venv/bin/python bench/compliance.py [--probes 1000] [--days 30] [--hamlets 20] [--rounds 3]

Stores ``probes × days × 24`` hourly bandwidth results (720,000 at the defaults) through the real
adapters' write path (``ResultStore.write`` in batches: the ledger, the line protocol and one
``/write`` per batch for InfluxDB; one transaction per batch for SQLite), in a throw-away
``influxd`` (``tests/influxd.py``) and a temporary SQLite file. Then times, per adapter:

- scan: ``ResultStore.scan`` of the month with ``samples.SAMPLE_FIELDS`` (rows only);
- compliance: the same scan, ``samples.to_sample`` per row, grouped by probe, and
  ``rules.fixed_gigabit`` per probe line (what the engine does for the fixed-broadband rule);
- compliance with the probes filter listing every probe (as the engine scans a commune);

and, as the reference in the same run, the bare InfluxQL ``SELECT MEAN(download_mbps) FROM
bandwidth WHERE time >= .. AND time < .. GROUP BY hamlet`` over the same data. Prints figures
only (the best of ``--rounds``), and each figure's ratio to the reference.
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
from server.compliance import rules
from server.compliance.samples import SAMPLE_FIELDS, to_sample
from server.compliance.stats import Period, month_of
from server.storage import InfluxStore, ProbeIdentity, SqliteStore, StoredResult
from server.storage.base import ResultStore
from server.storage.influx import quote_ident
from server.storage.lineprotocol import datetime_to_ns
from tests.influxd import Influxd

DATABASE = "compliance_bench"
ISPS = ("VNPT", "Viettel", "FPT")
BATCH = 5000


def lines(probes: int, hamlets: int) -> dict[str, rules.Line]:
    return {
        f"probe-{n:04d}": rules.Line(f"thon-{n % hamlets:02d}", ISPS[n % len(ISPS)], Access.FIBER)
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


async def scan_only(store: ResultStore, month: Period) -> int:
    rows = 0
    async for page in store.scan(Kind.BANDWIDTH, month.start, month.end, fields=SAMPLE_FIELDS):
        rows += len(page)
    return rows


async def compliance(
    store: ResultStore,
    month: Period,
    probe_lines: dict[str, rules.Line],
    *,
    filtered: bool = False,
) -> dict[str, rules.VerdictKind]:
    """The fixed-gigabit verdict of every probe line over the month, from a scan."""
    samples: dict[str, list[rules.Sample]] = defaultdict(list)
    probes = list(probe_lines) if filtered else None
    async for page in store.scan(
        Kind.BANDWIDTH, month.start, month.end, probes=probes, fields=SAMPLE_FIELDS
    ):
        for row in page:
            samples[row.probe_id].append(to_sample(row))
    return {
        probe_id: rules.fixed_gigabit(samples[probe_id], line, month).verdict
        for probe_id, line in probe_lines.items()
    }


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
            print(f"\n{store.name} (best of {args.rounds})")
            figures = [
                ("scan only", lambda s=store: scan_only(s, month)),
                (
                    "scan + fixed_gigabit per line",
                    lambda s=store: compliance(s, month, probe_lines),
                ),
                (
                    "same, probes filter of every probe",
                    lambda s=store: compliance(s, month, probe_lines, filtered=True),
                ),
            ]
            for label, run in figures:
                took, answer = await best_of(args.rounds, run)
                if isinstance(answer, dict):
                    verdicts[store.name] = answer
                print(f"  {label:36} {took * 1000:10.1f} ms  {took / ref_s:8.1f}× reference")
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
