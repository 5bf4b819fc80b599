"""The compliance sample cache: one probe's bandwidth samples of one Vietnam month, packed.

A small SQLite file in the data directory, one row per (probe, month, format version): the packed
samples (``server.compliance.samples.pack_samples``, opaque bytes here) and how many stored
results they were made from. It holds nothing the result store does not: a lost or stale file
costs a rebuild, never a wrong answer, because a row is used only while its count equals the
store's count of that probe's results in that month (``server.compliance.cached_samples``).
Results the store accepted are appended to their row (``append``), so the current month stays
warm; an append lost in a crash leaves the count short, and the row is rebuilt.
Both storage adapters share it, so the rules always read the same samples whatever the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from server.storage.sqlite_thread import SqliteThread, transaction

#: The file's name in the data directory.
FILE_NAME = "compliance-cache.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS month_samples (
    probe_id TEXT NOT NULL,
    month TEXT NOT NULL,          -- the Vietnam month, '2026-11'
    version INTEGER NOT NULL,     -- the packing format (samples.PACK_VERSION)
    results INTEGER NOT NULL,     -- stored results the samples were made from
    samples BLOB NOT NULL,
    PRIMARY KEY (probe_id, month, version)
) WITHOUT ROWID;
"""

# SQLite's default limit on host parameters in one statement is 999 (before 3.32).
_PROBES_PER_LOOKUP = 500


@dataclass(frozen=True, slots=True)
class Appended:
    """What ``MonthCache.append`` did with its rows."""

    appended: int  # rows that grew
    absent: int  # probes without a row (nothing to append to)
    dropped: int  # rows ``merge`` refused, deleted


#: ``merge(held, new)``: a row's packed samples with new ones added, or None to drop the row.
Merge = Callable[[bytes, bytes], bytes | None]


@dataclass(frozen=True, slots=True)
class Packed:
    """One probe-month as the cache holds it."""

    probe_id: str
    results: int
    samples: bytes


class MonthCache:
    """The cache file (None: in memory, for a one-off run), used from one worker thread."""

    def __init__(self, path: Path | None) -> None:
        # NORMAL: a row lost to a power cut is rebuilt on the next query; nothing depends on it.
        self._db = SqliteThread(path, what="compliance sample cache", synchronous="NORMAL")

    @property
    def where(self) -> str:
        return self._db.where

    async def open(self) -> None:
        await self._db.open(_SCHEMA)

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> MonthCache:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get(self, month: str, version: int, probes: Sequence[str]) -> dict[str, Packed]:
        """The rows held for ``probes`` in ``month`` at ``version``, by probe id."""
        return await self._db.run(self._get, month, version, sorted(set(probes)))

    async def put(self, month: str, version: int, rows: Sequence[Packed]) -> None:
        """Keep ``rows`` for ``month``, replacing what was held for those probes."""
        if rows:
            await self._db.run(self._put, month, version, list(rows))

    async def append(
        self, month: str, version: int, rows: Sequence[Packed], merge: Merge
    ) -> Appended:
        """Add ``rows`` (each: new samples packed, and how many results they were made from) to
        the rows held for ``month`` at ``version``: ``merge(held, new)`` gives the row's new
        bytes, its count grows by the new results. A probe with no row is left without one (a
        query builds it); ``merge`` returning None drops the row (rebuilt on the next query)."""
        if not rows:
            return Appended(0, 0, 0)
        return await self._db.run(self._append, month, version, list(rows), merge)

    # Below: only in the worker thread.

    def _get(self, month: str, version: int, probes: list[str]) -> dict[str, Packed]:
        conn = self._db.connection()
        found: dict[str, Packed] = {}
        for first in range(0, len(probes), _PROBES_PER_LOOKUP):
            chunk = probes[first : first + _PROBES_PER_LOOKUP]
            marks = ",".join("?" * len(chunk))
            for probe_id, results, samples in conn.execute(
                "SELECT probe_id, results, samples FROM month_samples"  # noqa: S608 (marks only)
                f" WHERE month = ? AND version = ? AND probe_id IN ({marks})",
                [month, version, *chunk],
            ):
                found[probe_id] = Packed(probe_id, int(results), bytes(samples))
        return found

    def _put(self, month: str, version: int, rows: list[Packed]) -> None:
        conn = self._db.connection()
        with transaction(conn):
            conn.executemany(
                "INSERT OR REPLACE INTO month_samples"
                " (probe_id, month, version, results, samples) VALUES (?, ?, ?, ?, ?)",
                [(r.probe_id, month, version, r.results, r.samples) for r in rows],
            )

    def _append(self, month: str, version: int, rows: list[Packed], merge: Merge) -> Appended:
        conn = self._db.connection()
        appended = absent = dropped = 0
        # One transaction: the read and the write of a row cannot interleave with a rebuild's
        # ``put`` of the same row from another connection.
        with transaction(conn):
            for row in rows:
                key = (row.probe_id, month, version)
                held = conn.execute(
                    "SELECT results, samples FROM month_samples"
                    " WHERE probe_id = ? AND month = ? AND version = ?",
                    key,
                ).fetchone()
                if held is None:
                    absent += 1
                    continue
                merged = merge(bytes(held[1]), row.samples)
                if merged is None:
                    conn.execute(
                        "DELETE FROM month_samples"
                        " WHERE probe_id = ? AND month = ? AND version = ?",
                        key,
                    )
                    dropped += 1
                    continue
                conn.execute(
                    "UPDATE month_samples SET results = ?, samples = ?"
                    " WHERE probe_id = ? AND month = ? AND version = ?",
                    (int(held[0]) + row.results, merged, *key),
                )
                appended += 1
        return Appended(appended, absent, dropped)
