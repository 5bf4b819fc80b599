"""A one-year evidence export for 20 probes with hourly bandwidth results, on SQLite (issue 14 §5).

    .venv/bin/python bench/export.py [--probes 20] [--days 365] [--formats csv,xlsx,pdf]

Stores ``probes × days × 24`` signed bandwidth results (175,200 at the defaults) in one hamlet
through ``SqliteStore.write``, then measures, each in the same run:

- reference: the bare ``ResultStore.query`` of the whole window (every result as one list, what
  an export that did not stream would hold);
- export: ``build_export`` of the same hamlet and window to a temporary directory;
- verify: ``verify_export`` of that export (offline: hashes, signatures, the summary recomputed).

Each is run twice: once for the time (no tracing), once under ``tracemalloc`` for the peak of
Python allocations. Prints figures only, and the export's ratio to the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probes.models import Access, Kind, parse_result, unbounded_limits
from probes.signing import new_private_key, public_key_text, sign
from server.compliance.plan import load_plan
from server.evidence import minisign
from server.evidence.export import build_export, export_window
from server.evidence.verify import verify_export
from server.registry import Registry
from server.settings import load_settings
from server.storage.base import StoredResult
from server.storage.sqlite import SqliteStore

HAMLET = "thon-bench"
BATCH = 2000


async def seed(data_dir: Path, probes: int, first: date, days: int) -> tuple[Registry, SqliteStore]:
    settings = load_settings(None, environment=False, data_dir=str(data_dir),
                             hamlets=[{"code": HAMLET, "name": "Thôn Đo Thử",
                                       "isps": ["VNPT", "Viettel"]}])  # fmt: skip
    registry = Registry(data_dir / "registry.sqlite3")
    await registry.open()
    await registry.sync_hamlets(settings.hamlets, settings.communes)
    store = SqliteStore(data_dir / "results.sqlite3", synchronous="OFF")
    await store.start()
    start = export_window(first, first).start
    for n in range(probes):
        key = new_private_key()
        record, _ = await registry.add_probe(
            hamlet=HAMLET, isp=("VNPT", "Viettel")[n % 2], access=Access.FIBER,
            probe_id=f"bench-{n:02d}", public_key=public_key_text(key),
        )  # fmt: skip
        batch: list[StoredResult] = []
        for hour in range(days * 24):
            payload = {
                "kind": "bandwidth", "result_id": str(uuid.uuid4()), "probe_id": record.probe_id,
                "measured_at": (start + timedelta(hours=hour, minutes=n)).isoformat(),
                "engine": "http", "target": "http://target.example:8081", "family": "ipv4",
                "streams": 3, "download_mbps": 900.0 + (hour * 7 + n) % 100,
                "upload_mbps": 400.0 + hour % 50, "link_speed_mbps": 2500.0,
                "download_samples_mbps": [880.5, 901.25, 930.0, 944.5],
            }  # fmt: skip
            result = sign(parse_result(payload, unbounded_limits()), key)
            batch.append(StoredResult(record.identity, result))
            if len(batch) == BATCH:
                await store.write(batch)
                batch = []
        if batch:
            await store.write(batch)
        print(f"seeded probe {n + 1}/{probes}", file=sys.stderr)
    return registry, store


async def measure(name: str, run: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    began = time.perf_counter()
    await run()
    seconds = time.perf_counter() - began
    tracemalloc.start()
    await run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{name:<10} {seconds:8.2f} s   peak {peak / 2**20:8.1f} MiB (Python allocations)")
    return seconds, peak


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--formats", default="csv,xlsx,pdf")
    args = parser.parse_args()
    first = date(2025, 1, 1)
    last = first + timedelta(days=args.days - 1)
    with tempfile.TemporaryDirectory(prefix="hamletnet-bench-export-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        registry, store = await seed(data_dir, args.probes, first, args.days)
        settings = load_settings(None, environment=False, data_dir=str(data_dir),
                                 hamlets=[{"code": HAMLET, "name": "Thôn Đo Thử",
                                           "isps": ["VNPT", "Viettel"]}])  # fmt: skip
        plan = load_plan(settings.plan_path)
        key = minisign.load_or_create_key(data_dir)
        window = export_window(first, last)
        count = args.probes * args.days * 24
        print(f"{count} results, {args.probes} probes, {args.days} days, formats {args.formats}")

        async def reference() -> object:
            return await store.query(
                kind=Kind.BANDWIDTH, hamlet=HAMLET, start=window.start, end=window.end
            )

        out = Path(tmp) / "export"

        async def export() -> object:
            shutil.rmtree(out, ignore_errors=True)  # the last one stays, for verify
            outcome = await build_export(
                store, registry, settings, plan, hamlet=HAMLET, start=first, end=last,
                formats=args.formats, out_dir=out, key=key, previous_manifest=None,
                now=datetime.now(UTC),
            )  # fmt: skip
            assert outcome.results == count, outcome.results
            return outcome

        async def verify() -> object:
            report = await asyncio.to_thread(verify_export, out, key.public.base64_text())
            assert report.ok and report.results_verified == count, report.failures[:3]
            return report

        ref_s, ref_peak = await measure("reference", reference)
        exp_s, exp_peak = await measure("export", export)
        ver_s, ver_peak = await measure("verify", verify)
        for name, seconds, peak in (("export", exp_s, exp_peak), ("verify", ver_s, ver_peak)):
            ratio = f"time × {seconds / ref_s:.1f}, peak memory × {peak / ref_peak:.2f}"
            print(f"{name} / reference: {ratio}")
        await store.close()
        await registry.close()


if __name__ == "__main__":
    asyncio.run(main())
