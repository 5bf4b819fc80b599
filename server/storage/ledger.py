"""Which results the InfluxDB adapter has written, and at which nanosecond: a small SQLite file.

InfluxDB has no unique keys and identifies a point by series and timestamp alone, so two results
of one probe measured in the same microsecond would overwrite each other, and a ``result_id``
re-sent with other content would become a second point. The ledger keeps one row per result
(``result_id``, its probe, a hash of its content, the point's timestamp) so that ``write`` can

- answer ``duplicate`` or refuse a conflicting re-use by looking up the batch's own ids (an
  index lookup per item, whatever the database holds), and
- give each result a timestamp no other result of its probe and measurement has: the
  microsecond of ``measured_at`` plus a sub-microsecond offset (0-999 ns) derived from the
  ``result_id``, moved to the next free offset when another result holds it.

A row is ``pending`` from before the ``/write`` until InfluxDB has the point, so a crash in
between neither loses the result nor stores it twice: the re-sent result finds its pending row
and is written again at the same timestamp (a write of the same point is idempotent). Rows are
pruned once ``measured_at`` is older than the server accepts (``max_result_age``) plus a margin:
a result that old is refused before it reaches the store. The pure planning step
(``plan_writes``) is apart from the sqlite3 I/O (``Ledger``), which runs in its own thread.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from server.storage.base import Refused, StoredResult, WriteOutcome
from server.storage.sqlite_thread import SqliteThread, transaction

T = TypeVar("T")

#: Nanoseconds in a microsecond: ``measured_at`` has microseconds, InfluxDB nanoseconds.
SLOTS_PER_MICROSECOND = 1000

# SQLite's default limit on host parameters in one statement is 999 (before 3.32).
_IDS_PER_LOOKUP = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    result_id TEXT PRIMARY KEY,
    probe_id TEXT NOT NULL,
    measurement TEXT NOT NULL,
    time_ns INTEGER NOT NULL,   -- the point's timestamp in InfluxDB
    content BLOB,               -- sha256 of the result; NULL when read back from InfluxDB
    written INTEGER NOT NULL    -- 0 while the /write is pending, 1 once InfluxDB has it
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS points_slot ON points (measurement, probe_id, time_ns);
CREATE INDEX IF NOT EXISTS points_time ON points (time_ns);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def content_hash(item: StoredResult) -> bytes:
    """What tells a re-sent result from another one re-using its id: a hash of its content."""
    return hashlib.sha256(item.result.model_dump_json().encode()).digest()


def preferred_offset(result_id: str) -> int:
    """The sub-microsecond offset (0-999 ns) a result's point takes unless another holds it.

    Derived from the id alone, so the same result lands on the same point even without the
    ledger's help, and results of one microsecond rarely meet.
    """
    digest = hashlib.sha256(result_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % SLOTS_PER_MICROSECOND


@dataclass(frozen=True, slots=True)
class Entry:
    """One result of a batch, as the ledger sees it."""

    result_id: str
    probe_id: str
    measurement: str
    microsecond_ns: int  # measured_at in nanoseconds (a whole microsecond)
    content: bytes

    @property
    def slot_key(self) -> tuple[str, str, int]:
        return (self.measurement, self.probe_id, self.microsecond_ns)


@dataclass(frozen=True, slots=True)
class Known:
    """A result the ledger holds."""

    probe_id: str
    time_ns: int
    content: bytes | None
    written: bool


@dataclass(frozen=True, slots=True)
class Write:
    """Write the result's point at ``time_ns``; ``new`` when the ledger did not hold it yet."""

    time_ns: int
    new: bool


Step = Write | WriteOutcome | Refused


def plan_writes(
    entries: Sequence[Entry],
    known: dict[str, Known],
    taken: dict[tuple[str, str, int], set[int]],
) -> list[Step]:
    """What to do with each entry, in order: write it (where), or answer at once.

    ``known`` holds the ledger's rows for the entries' ids; ``taken`` the offsets already used
    in each (measurement, probe, microsecond) of the new entries. A point's series includes more
    tags than measurement and probe, so keeping offsets apart per probe and measurement is
    stricter than InfluxDB needs, and never wrong. Neither argument is changed.
    """
    seen: dict[str, bytes] = {}
    used = {key: set(offsets) for key, offsets in taken.items()}
    steps: list[Step] = []
    for entry in entries:
        rid = entry.result_id
        earlier = known.get(rid)
        content = seen.get(rid, earlier.content if earlier is not None else None)
        if rid in seen or earlier is not None:
            if content is not None and content != entry.content:
                steps.append(Refused(_reused(rid)))
            elif rid in seen or (earlier is not None and earlier.written):
                steps.append(WriteOutcome.DUPLICATE)
            else:
                # Pending: an earlier call reserved this point and may have written it.
                assert earlier is not None
                steps.append(Write(earlier.time_ns, new=False))
            seen.setdefault(rid, entry.content)
            continue
        seen[rid] = entry.content
        offsets = used.setdefault(entry.slot_key, set())
        offset = _free_offset(preferred_offset(rid), offsets)
        if offset is None:
            steps.append(
                Refused(
                    f"probe {entry.probe_id!r} sent more than {SLOTS_PER_MICROSECOND} results"
                    f" of one kind in one microsecond; result_id {rid} cannot be told apart"
                )
            )
            continue
        offsets.add(offset)
        steps.append(Write(entry.microsecond_ns + offset, new=True))
    return steps


def _free_offset(preferred: int, used: set[int]) -> int | None:
    for step in range(SLOTS_PER_MICROSECOND):
        offset = (preferred + step) % SLOTS_PER_MICROSECOND
        if offset not in used:
            return offset
    return None


def _reused(result_id: str) -> str:
    return (
        f"result_id {result_id} is already stored with different content: a result id names one"
        " result; give a new measurement a new result_id"
    )


class Ledger:
    """The ledger's SQLite file (or memory), used from one worker thread (``SqliteThread``)."""

    def __init__(self, path: Path | None) -> None:
        """``path`` None keeps the ledger in memory: it is then rebuilt from InfluxDB at every
        start (``InfluxStore`` does that), which is right but slow for a large database."""
        # FULL: a pending row must survive a power cut that the /write after it survives.
        self._db = SqliteThread(path, what="InfluxDB ledger", synchronous="FULL")

    @property
    def where(self) -> str:
        return self._db.where

    async def open(self) -> None:
        await self._db.open(_SCHEMA)

    async def close(self) -> None:
        await self._db.close()

    async def get_meta(self, key: str) -> str | None:
        return await self._run(self._get_meta, key)

    async def set_meta(self, key: str, value: str) -> None:
        await self._run(self._set_meta, key, value)

    async def reset(self) -> None:
        """Forget every row (the ledger is rebuilt from the database it describes)."""
        await self._run(self._reset)

    async def add_written(self, rows: list[tuple[str, str, str, int]]) -> None:
        """Record points read back from InfluxDB: ``(result_id, probe_id, measurement, time_ns)``,
        content unknown."""
        await self._run(self._add_written, rows)

    async def plan(self, entries: Sequence[Entry]) -> list[Step]:
        """``plan_writes`` against the ledger, reserving the new points as pending."""
        return await self._run(self._plan, list(entries))

    async def settle(self, written: Iterable[str], refused: Iterable[str]) -> None:
        """Mark ``written`` ids as stored; forget the pending rows of ``refused`` ids."""
        await self._run(self._settle, list(written), list(refused))

    async def prune(self, before_ns: int) -> int:
        """Forget results measured before ``before_ns``; how many were forgotten."""
        return await self._run(self._prune, before_ns)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        return await self._db.run(func, *args)

    # Everything below runs in the worker thread.

    def _connection(self) -> sqlite3.Connection:
        return self._db.connection()

    def _get_meta(self, key: str) -> str | None:
        row = self._connection().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._connection().execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
        )

    def _reset(self) -> None:
        self._connection().execute("DELETE FROM points")

    def _add_written(self, rows: list[tuple[str, str, str, int]]) -> None:
        conn = self._connection()
        with transaction(conn):
            conn.executemany(
                "INSERT OR IGNORE INTO points"
                " (result_id, probe_id, measurement, time_ns, content, written)"
                " VALUES (?, ?, ?, ?, NULL, 1)",
                rows,
            )

    def _plan(self, entries: list[Entry]) -> list[Step]:
        conn = self._connection()
        with transaction(conn):
            known = self._known(conn, sorted({e.result_id for e in entries}))
            taken: dict[tuple[str, str, int], set[int]] = {}
            for key in sorted({e.slot_key for e in entries if e.result_id not in known}):
                measurement, probe_id, microsecond_ns = key
                rows = conn.execute(
                    "SELECT time_ns FROM points WHERE measurement = ? AND probe_id = ?"
                    " AND time_ns BETWEEN ? AND ?",
                    (measurement, probe_id, microsecond_ns, microsecond_ns + 999),
                )
                taken[key] = {row[0] - microsecond_ns for row in rows}
            steps = plan_writes(entries, known, taken)
            conn.executemany(
                "INSERT INTO points (result_id, probe_id, measurement, time_ns, content, written)"
                " VALUES (?, ?, ?, ?, ?, 0)",
                [
                    (e.result_id, e.probe_id, e.measurement, step.time_ns, e.content)
                    for e, step in zip(entries, steps, strict=True)
                    if isinstance(step, Write) and step.new
                ],
            )
        return steps

    @staticmethod
    def _known(conn: sqlite3.Connection, ids: list[str]) -> dict[str, Known]:
        """The ledger's rows for ``ids``: one primary-key lookup each (``LOOKUP_SQL``)."""
        known: dict[str, Known] = {}
        for start in range(0, len(ids), _IDS_PER_LOOKUP):
            chunk = ids[start : start + _IDS_PER_LOOKUP]
            marks = ",".join("?" * len(chunk))
            for rid, probe_id, time_ns, content, written in conn.execute(
                LOOKUP_SQL.format(marks=marks), chunk
            ):
                known[rid] = Known(probe_id, time_ns, content, bool(written))
        return known

    def _settle(self, written: list[str], refused: list[str]) -> None:
        conn = self._connection()
        with transaction(conn):
            conn.executemany(
                "UPDATE points SET written = 1 WHERE result_id = ?", [(r,) for r in written]
            )
            conn.executemany(
                "DELETE FROM points WHERE result_id = ? AND written = 0", [(r,) for r in refused]
            )

    def _prune(self, before_ns: int) -> int:
        cursor = self._connection().execute("DELETE FROM points WHERE time_ns < ?", (before_ns,))
        return cursor.rowcount


#: How the ledger finds a batch's ids: by primary key, never by scanning (see the test that
#: reads its query plan).
LOOKUP_SQL = (
    "SELECT result_id, probe_id, time_ns, content, written FROM points WHERE result_id IN ({marks})"
)
