"""The InfluxDB adapter's duplicate check against a large store: a 2-item batch 29 days apart.

    .venv/bin/python bench/duplicate_check.py [--stored N]

Stores ``N`` latency results of one probe spread over 29 days in a throw-away ``influxd``
(``tests/influxd.py``), then times writing a 2-item batch whose items are 29 days apart (the
ledger's lookup of the batch's own ids), and, for comparison, the query the adapter used to run
for the same batch (every ``result_id`` of the probe between the two items). Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probes.models import Kind
from server.storage.influx import InfluxStore, quote_ident, quote_string
from server.storage.lineprotocol import datetime_to_ns
from tests.influxd import Influxd
from tests.server.storage.examples import make

ROUNDS = 5


async def run(stored_count: int) -> None:
    now = datetime.now(UTC) - timedelta(hours=1)
    start = now - timedelta(days=29)
    step = (now - start) / stored_count
    with Influxd() as influxd, tempfile.TemporaryDirectory() as directory:
        store = InfluxStore(
            influxd.url, "bench", ledger_path=Path(directory) / "ledger.sqlite3", timeout_s=60
        )
        await store.start()
        try:
            for first in range(0, stored_count, 5000):
                chunk = range(first, min(first + 5000, stored_count))
                await store.write([make(Kind.LATENCY, measured_at=start + step * i) for i in chunk])
            new_batch: list[float] = []
            for _ in range(ROUNDS):
                batch = [make(Kind.LATENCY, measured_at=start), make(Kind.LATENCY, measured_at=now)]
                began = time.perf_counter()
                await store.write(batch)
                new_batch.append(time.perf_counter() - began)
            old_query: list[float] = []
            statement = (
                f"SELECT {quote_ident('result_id')} FROM {quote_ident('latency')}"  # noqa: S608
                f" WHERE {quote_ident('probe')} = {quote_string('probe-01')}"
                f" AND time >= {datetime_to_ns(start)} AND time <= {datetime_to_ns(now)}"
            )
            for _ in range(ROUNDS):
                began = time.perf_counter()
                await asyncio.to_thread(influxd.query, statement, database="bench")
                old_query.append(time.perf_counter() - began)
        finally:
            await store.close()
    best_new, best_old = min(new_batch), min(old_query)
    print(f"stored results of the probe:          {stored_count}")
    print(f"2-item batch 29 days apart, written:  {best_new * 1000:8.1f} ms (best of {ROUNDS})")
    print(f"the old span query alone:             {best_old * 1000:8.1f} ms (best of {ROUNDS})")
    print(f"ratio old query / new write:          {best_old / best_new:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=50_000, help="results stored first")
    args = parser.parse_args()
    asyncio.run(run(args.stored))


if __name__ == "__main__":
    main()
