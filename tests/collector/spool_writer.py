"""Adds results to a spool until killed, writing each result_id to stdout once ``add`` returned.

The subject of the kill -9 test: ``python -m tests.collector.spool_writer SPOOL_PATH``. Every
tenth round it also re-adds an earlier result, which must be refused as already spooled.
"""

from __future__ import annotations

import sys
from pathlib import Path

from collector.spool import Spool
from probes.models import ResultBase
from tests.collector.results import bandwidth_result, latency_result


def main(path: str) -> None:
    added: list[ResultBase] = []
    with Spool(Path(path)) as spool:
        while True:
            result = latency_result() if len(added) % 2 else bandwidth_result()
            if not spool.add(result):
                raise SystemExit(f"a new result {result.result_id} was refused as known")
            added.append(result)
            sys.stdout.write(f"{result.result_id}\n")
            sys.stdout.flush()
            if len(added) % 10 == 0 and spool.add(added[-7]):
                raise SystemExit(f"result {added[-7].result_id} was stored twice")


if __name__ == "__main__":
    main(sys.argv[1])
