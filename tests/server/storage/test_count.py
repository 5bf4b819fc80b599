"""SQLite answers ``count_by_probe`` from one range of its scan index, never the table: the check
that guards the compliance sample cache stays cheap however large the payloads grow."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from server.storage import SqliteStore
from server.storage.sqlite import COUNT_SQL, count_sql


async def query_plan(tmp_path: Path, sql: str, args: tuple[object, ...]) -> str:
    """SQLite's plan for ``sql`` on a store's schema, its steps joined in one line."""
    path = tmp_path / "results.sqlite3"
    store = SqliteStore(path)
    await store.start()
    await store.close()
    with sqlite3.connect(path) as conn:
        return " ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args))


async def test_count_reads_one_range_of_the_covering_index(tmp_path: Path) -> None:
    plan = await query_plan(tmp_path, COUNT_SQL, ("bandwidth", 0, 1))
    assert "COVERING INDEX results_kind_time" in plan, plan
    assert "measured_at_ns>? AND measured_at_ns<?" in plan.replace("=", ""), plan


async def test_count_of_named_probes_reads_their_ranges_in_index_order(tmp_path: Path) -> None:
    """Probes named: one range of ``results_kind_probe_time`` per probe, grouped as the index
    runs (no temporary B-tree to sort a month of entries by probe)."""
    plan = await query_plan(tmp_path, count_sql(2), ("bandwidth", "p1", "p2", 0, 1))
    assert "COVERING INDEX results_kind_probe_time" in plan, plan
    assert "probe_id=? AND measured_at_ns>? AND measured_at_ns<?" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
