"""The probe's durable local spool: every result is committed here before any upload attempt.

A result leaves the spool in exactly one of three ways, each recorded: the server acknowledged it
(accepted or duplicate: ``ack``), the server rejected it (moved to the ``rejected`` table with the
server's reason: ``quarantine``), or the spool's size or age bound pushed it out (oldest first,
added to a persistent ``evicted_count`` that the heartbeat reports: ``evict``). Uploads read
batches oldest first (``oldest``), in insertion order.

Durability. The spool is one SQLite file in WAL mode with ``PRAGMA synchronous=FULL``
(https://www.sqlite.org/pragma.html#pragma_synchronous, https://www.sqlite.org/wal.html):

* ``kill -9``: a committed transaction is in the WAL file (at least in the kernel's page cache)
  before ``COMMIT`` returns, so it survives the death of the process at any synchronous level
  ("transactions are durable across application crashes regardless of the synchronous setting
  or journal mode").
* Power cut: with ``synchronous=NORMAL`` WAL mode syncs only at checkpoints, and "a transaction
  committed in WAL mode with synchronous=NORMAL might roll back following a power loss or system
  crash": the last results before the cut would be lost although ``add`` had returned. With
  ``FULL`` the WAL is fsynced at every commit, so once ``add`` returns the result is on the
  storage device. ``EXTRA`` only adds a directory sync after deleting a rollback journal, which
  WAL mode never does. (No software can help a card that acknowledges a flush it has not done.)
* ``synchronous`` belongs to the connection, not the file, so ``open`` sets it every time and
  reads both pragmas back. ``open`` also fsyncs the directory holding the spool, so a freshly
  created file's directory entry survives a power cut as well.

A crash never duplicates a measurement either: ``result_id`` is UNIQUE and ``add`` is an
``INSERT OR IGNORE``, so adding the same result again (say, after a crash between the commit and
the caller learning of it) stores nothing twice; ``ack`` and ``quarantine`` go by ``result_id``.

Full disk. SQLite reports ENOSPC as SQLITE_FULL; every method then raises ``SpoolFullError``
and its transaction is rolled back, so nothing half-written remains. Deleting is writing too
(``ack`` and ``quarantine`` append to the WAL), and a commit that fits in WAL space already
allocated succeeds even on a full file system, so the error appears when the WAL must grow.

Byte accounting. Each row keeps ``size``, the UTF-8 length of its payload; triggers on the
``items`` table add and subtract it from a running total in the ``meta`` table inside the same
transaction as the row change, so the total never drifts and reading it costs one lookup.

Bounds. ``evict`` first drops results measured more than ``max_age`` ago (the server refuses
them anyway: ``probes.models.DEFAULT_MAX_RESULT_AGE``), then the oldest by insertion order until
the payloads total at most ``max_bytes``; ``add`` runs it in its own transaction. The ``rejected``
table keeps the newest ``max_rejected`` (10 000) quarantined results; older ones fall off and are
counted in ``rejected_dropped_count``, so nothing leaves without a trace.

Held results. A result measured while the kernel said the wall clock was not synchronised
(``probes.clock``) waits, unsigned, in the ``held`` table with the boot id and boot time of its
measurement, so it can be re-stamped once the clock is right, even by an agent restarted in the
meantime; ``release`` moves it, signed with its final stamp, into ``items`` in one transaction.

``Spool`` is synchronous and belongs to the thread that opened it (sqlite3's
``check_same_thread``); ``AsyncSpool`` runs every call on one dedicated worker thread so the
agent's event loop never waits on the SD card.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import ParamSpec, Self, TypeVar

from collector.errors import SpoolError, SpoolFullError
from probes.models import DEFAULT_MAX_RESULT_AGE, ResultBase

log = logging.getLogger(__name__)

#: Default bound on the payload bytes kept (about 30 000 typical results).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: How many rejected results are kept for the operator; older ones are counted and dropped.
DEFAULT_MAX_REJECTED = 10_000
#: A server's reason is stored up to this many characters (the wire models' ``LongText`` bound).
MAX_REASON_CHARS = 2048

#: Version of the file layout below, kept in ``PRAGMA user_version``.
SCHEMA_VERSION = 2

#: Layout 2 adds the ``held`` table to layout 1.
_HELD_SCHEMA = """
CREATE TABLE held (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    result_id TEXT NOT NULL UNIQUE,
    measured_at_us INTEGER NOT NULL,        -- the wall-clock stamp, from an unsynchronised clock
    boot_id TEXT NOT NULL,                  -- /proc/sys/kernel/random/boot_id at measurement
    boot_s REAL NOT NULL,                   -- CLOCK_BOOTTIME at measured_at
    payload TEXT NOT NULL                   -- the unsigned result's JSON
);
"""

_SCHEMA = """
CREATE TABLE items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order, never reused
    result_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    measured_at_us INTEGER NOT NULL,        -- microseconds since the Unix epoch, UTC
    size INTEGER NOT NULL,                  -- UTF-8 bytes of payload
    payload TEXT NOT NULL                   -- the result's JSON exactly as it will be sent
);
CREATE INDEX items_by_measured_at ON items (measured_at_us);

CREATE TABLE rejected (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    result_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    rejected_at_us INTEGER NOT NULL
);

CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES
    ('bytes', 0), ('evicted_count', 0), ('rejected_dropped_count', 0), ('last_ack_at_us', NULL);

CREATE TRIGGER items_bytes_in AFTER INSERT ON items BEGIN
    UPDATE meta SET value = value + NEW.size WHERE key = 'bytes';
END;
CREATE TRIGGER items_bytes_out AFTER DELETE ON items BEGIN
    UPDATE meta SET value = value - OLD.size WHERE key = 'bytes';
END;
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SYNCHRONOUS_FULL = 2  # what ``PRAGMA synchronous`` reads back for FULL


@dataclass(frozen=True, slots=True)
class SpooledItem:
    seq: int
    result_id: str
    kind: str
    measured_at: datetime
    payload: str  # the result's JSON exactly as it will be sent


@dataclass(frozen=True, slots=True)
class HeldItem:
    result_id: str
    measured_at: datetime
    boot_id: str
    boot_s: float
    payload: str  # the unsigned result's JSON


@dataclass(frozen=True, slots=True)
class RejectedItem:
    result_id: str
    kind: str
    payload: str
    reason: str
    rejected_at: datetime


@dataclass(frozen=True, slots=True)
class SpoolStats:
    depth: int  # results waiting for an acknowledgement
    bytes: int  # their payloads' total UTF-8 size
    oldest_measured_at: datetime | None
    oldest_age_s: float | None
    evicted_count: int  # ever evicted by the size or age bound (persistent)
    rejected_count: int  # rejected results kept aside now (what ``rejected()`` lists)
    last_ack_at: datetime | None
    rejected_dropped_count: int = 0  # rejected results that fell off the bound (persistent)
    held: int = 0  # results waiting for the clock to be synchronised (not yet in ``depth``)


class Spool:
    """The spool file at ``path``; call ``open`` (or use ``with``) before anything else."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: timedelta = DEFAULT_MAX_RESULT_AGE,
        max_rejected: int = DEFAULT_MAX_REJECTED,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"spool max_bytes is {max_bytes}; it must be positive")
        if max_age <= timedelta(0):
            raise ValueError(f"spool max_age is {max_age}; it must be positive")
        if max_rejected < 0:
            raise ValueError(f"spool max_rejected is {max_rejected}; it must be 0 or more")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.max_rejected = max_rejected
        self._conn: sqlite3.Connection | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory and file if needed, switch to WAL + synchronous=FULL."""
        if self._conn is not None:
            return
        new_dirs = [d for d in self.path.parents if not d.exists()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            error = SpoolFullError if exc.errno == errno.ENOSPC else SpoolError
            raise error(
                f"cannot create the spool directory {self.path.parent}: {exc.strerror};"
                " check the configured spool path and its permissions"
            ) from exc
        with self._translated("open"):
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) below.
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            try:
                self._configure(conn)
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
        self._conn = conn
        try:
            # A new file's (and new directories') entries must reach the disk too.
            for directory in dict.fromkeys([self.path.parent, *(d.parent for d in new_dirs)]):
                _fsync_directory(directory)
        except OSError as exc:
            self.close()
            raise SpoolError(
                f"cannot sync the spool directory {self.path.parent}: {exc.strerror};"
                " put the spool on a local file system"
            ) from exc

    def _configure(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SpoolError(
                f"spool {self.path}: the file system refused SQLite's WAL mode (got {mode!r});"
                " put the spool on a local file system (ext4, f2fs), not a network share"
            )
        conn.execute("PRAGMA synchronous = FULL")
        level = conn.execute("PRAGMA synchronous").fetchone()[0]
        if level != _SYNCHRONOUS_FULL:
            raise SpoolError(f"spool {self.path}: SQLite kept synchronous={level}, not FULL")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise SpoolError(
                f"spool {self.path} has layout version {version}, newer than this agent"
                f" understands ({SCHEMA_VERSION}); upgrade the agent or move the file aside"
            )
        if version == 1:
            conn.executescript(
                f"BEGIN IMMEDIATE; {_HELD_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
            return
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
        if tables.fetchone()[0]:
            raise SpoolError(
                f"{self.path} is a SQLite file but not a hamletnet spool; move it aside"
                " or configure another spool path"
            )
        conn.executescript(
            f"BEGIN IMMEDIATE; {_SCHEMA} {_HELD_SCHEMA}"
            f" PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        )

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with self._translated("close"):
                conn.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def add(self, result: ResultBase, *, now: datetime | None = None) -> bool:
        """Commit ``result`` durably; False if its ``result_id`` is already spooled or rejected.

        Eviction (``evict``) runs in the same transaction, so the bounds hold after every add.
        """
        result_id, kind, measured_at_us, size, payload = self._row(result)
        when = _now(now)
        with self._transaction("add a result to") as conn:
            # A result the server has rejected stays rejected: it is not queued again.
            cursor = conn.execute(
                "INSERT OR IGNORE INTO items (result_id, kind, measured_at_us, size, payload)"
                " SELECT ?, ?, ?, ?, ?"
                " WHERE NOT EXISTS (SELECT 1 FROM rejected WHERE result_id = ?)",
                (result_id, kind, measured_at_us, size, payload, result_id),
            )
            added = cursor.rowcount == 1
            if added:
                self._evict(conn, when)
        return added

    def hold(self, result: ResultBase, boot_id: str, boot_s: float) -> bool:
        """Keep an unsigned result measured with an unsynchronised clock until ``release``;
        False if its ``result_id`` is already held."""
        result_id = str(result.result_id)
        with self._transaction("hold a result in") as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO held (result_id, measured_at_us, boot_id, boot_s, payload)"
                " VALUES (?, ?, ?, ?, ?)",
                (result_id, _to_us(result.measured_at), boot_id, boot_s, result.model_dump_json()),
            )
            return cursor.rowcount == 1

    def held(self, limit: int = 1000) -> list[HeldItem]:
        """Held results, oldest first."""
        with self._translated("read"):
            rows = (
                self._connection()
                .execute(
                    "SELECT result_id, measured_at_us, boot_id, boot_s, payload FROM held"
                    " ORDER BY seq LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [HeldItem(r, _from_us(at), b, s, p) for r, at, b, s, p in rows]

    def release(self, results: Iterable[ResultBase], *, now: datetime | None = None) -> int:
        """Move held results, now stamped and signed, into the queue in one transaction (the
        held row goes only with its result in ``items``); how many were held."""
        rows = [self._row(result) for result in results]
        if not rows:
            return 0
        when = _now(now)
        released = 0
        with self._transaction("release held results into") as conn:
            for result_id, kind, measured_at_us, size, payload in rows:
                conn.execute(
                    "INSERT OR IGNORE INTO items (result_id, kind, measured_at_us, size, payload)"
                    " SELECT ?, ?, ?, ?, ?"
                    " WHERE NOT EXISTS (SELECT 1 FROM rejected WHERE result_id = ?)",
                    (result_id, kind, measured_at_us, size, payload, result_id),
                )
                deleted = conn.execute("DELETE FROM held WHERE result_id = ?", (result_id,))
                released += max(deleted.rowcount, 0)
            self._evict(conn, when)
        return released

    def _row(self, result: ResultBase) -> tuple[str, str, int, int, str]:
        payload = result.model_dump_json()
        size = len(payload.encode("utf-8"))
        result_id = str(result.result_id)
        kind = result.model_dump(mode="json", include={"kind"}).get("kind")
        if not isinstance(kind, str):
            raise ValueError(f"result {result_id} has no 'kind'; spool a probes.models.Result")
        if size > self.max_bytes:
            raise SpoolError(
                f"result {result_id} ({kind}) is {size} bytes, more than the whole spool"
                f" {self.path} may hold ({self.max_bytes} bytes); raise the spool's max_bytes"
            )
        return result_id, kind, _to_us(result.measured_at), size, payload

    def ack(self, result_ids: Iterable[str], *, now: datetime | None = None) -> int:
        """Delete results the server acknowledged (accepted or duplicate); how many were here."""
        ids = [_canonical_id(result_id) for result_id in result_ids]
        if not ids:
            return 0
        when = _to_us(_now(now))
        with self._transaction("acknowledge results in") as conn:
            cursor = conn.executemany(
                "DELETE FROM items WHERE result_id = ?", [(result_id,) for result_id in ids]
            )
            conn.execute("UPDATE meta SET value = ? WHERE key = 'last_ack_at_us'", (when,))
            return max(cursor.rowcount, 0)

    def quarantine(
        self, rejected: Iterable[tuple[str, str]], *, now: datetime | None = None
    ) -> int:
        """Move results the server rejected, with its reason, out of the queue; how many moved.

        Never retried and never silently dropped: they wait in ``rejected()`` for an operator.
        The table keeps the newest ``max_rejected``; what falls off is counted.
        """
        pairs = [
            (_canonical_id(result_id), reason[:MAX_REASON_CHARS]) for result_id, reason in rejected
        ]
        if not pairs:
            return 0
        when = _to_us(_now(now))
        moved = 0
        with self._transaction("quarantine results in") as conn:
            for result_id, reason in pairs:
                conn.execute(
                    "INSERT OR IGNORE INTO rejected"
                    " (result_id, kind, payload, reason, rejected_at_us)"
                    " SELECT result_id, kind, payload, ?, ? FROM items WHERE result_id = ?",
                    (reason, when, result_id),
                )
                cursor = conn.execute("DELETE FROM items WHERE result_id = ?", (result_id,))
                if cursor.rowcount:
                    moved += 1
                    log.warning(
                        "server rejected result %s, kept aside in the spool: %s", result_id, reason
                    )
            dropped = conn.execute(
                "DELETE FROM rejected WHERE seq <= "
                "(SELECT seq FROM rejected ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (self.max_rejected,),
            ).rowcount
            if dropped > 0:
                _bump(conn, "rejected_dropped_count", dropped)
                log.warning(
                    "spool %s keeps %d rejected results; dropped the %d oldest",
                    self.path,
                    self.max_rejected,
                    dropped,
                )
        return moved

    def evict(self, *, now: datetime | None = None) -> int:
        """Apply the age bound, then the size bound oldest first; how many results left."""
        with self._transaction("evict results from") as conn:
            return self._evict(conn, _now(now))

    def _evict(self, conn: sqlite3.Connection, now: datetime) -> int:
        cutoff = _to_us(now - self.max_age)
        by_age = conn.execute("DELETE FROM items WHERE measured_at_us < ?", (cutoff,)).rowcount
        by_size = 0
        excess = _meta(conn, "bytes") - self.max_bytes
        if excess > 0:
            last_seq, freed = None, 0
            cursor = conn.execute("SELECT seq, size FROM items ORDER BY seq")
            try:
                for seq, size in cursor:
                    last_seq, freed = seq, freed + size
                    if freed >= excess:
                        break
            finally:
                cursor.close()
            by_size = conn.execute("DELETE FROM items WHERE seq <= ?", (last_seq,)).rowcount
        evicted = by_age + by_size
        if evicted:
            _bump(conn, "evicted_count", evicted)
            log.warning(
                "spool %s evicted %d results (%d older than %s, %d over %d bytes)",
                self.path,
                evicted,
                by_age,
                self.max_age,
                by_size,
                self.max_bytes,
            )
        return evicted

    # -- reading ---------------------------------------------------------------------------

    def oldest(self, limit: int, *, max_bytes: int | None = None) -> list[SpooledItem]:
        """Up to ``limit`` results in insertion order, their payloads within ``max_bytes``.

        The first result is returned even if it alone exceeds ``max_bytes``, so an upload
        batch never comes back empty while results wait.
        """
        if limit < 1:
            raise ValueError(f"oldest(limit={limit}): limit must be at least 1")
        items: list[SpooledItem] = []
        total = 0
        with self._translated("read"):
            cursor = self._connection().execute(
                "SELECT seq, result_id, kind, measured_at_us, size, payload"
                " FROM items ORDER BY seq LIMIT ?",
                (limit,),
            )
            try:
                for seq, result_id, kind, measured_at_us, size, payload in cursor:
                    if max_bytes is not None and items and total + size > max_bytes:
                        break
                    total += size
                    items.append(
                        SpooledItem(seq, result_id, kind, _from_us(measured_at_us), payload)
                    )
            finally:
                cursor.close()
        return items

    def rejected(self, limit: int = 100) -> list[RejectedItem]:
        """The ``limit`` most recently rejected results, newest first."""
        with self._translated("read"):
            rows = (
                self._connection()
                .execute(
                    "SELECT result_id, kind, payload, reason, rejected_at_us FROM rejected"
                    " ORDER BY seq DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [
            RejectedItem(result_id, kind, payload, reason, _from_us(at))
            for result_id, kind, payload, reason, at in rows
        ]

    def stats(self, *, now: datetime | None = None) -> SpoolStats:
        """The figures the heartbeat reports, read from one snapshot."""
        when = _now(now)
        with self._transaction("read", mode="DEFERRED") as conn:
            depth, oldest_us = conn.execute(
                "SELECT count(*), min(measured_at_us) FROM items"
            ).fetchone()
            rejected_count = conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
            held = conn.execute("SELECT count(*) FROM held").fetchone()[0]
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        oldest = None if oldest_us is None else _from_us(oldest_us)
        last_ack_us = meta["last_ack_at_us"]
        return SpoolStats(
            depth=depth,
            bytes=meta["bytes"],
            oldest_measured_at=oldest,
            # A probe clock stepped back by NTP must not report a negative age.
            oldest_age_s=None if oldest is None else max(0.0, (when - oldest).total_seconds()),
            evicted_count=meta["evicted_count"],
            rejected_count=rejected_count,
            last_ack_at=None if last_ack_us is None else _from_us(last_ack_us),
            rejected_dropped_count=meta["rejected_dropped_count"],
            held=held,
        )

    # -- the one place sqlite3 errors become ours --------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SpoolError(f"spool {self.path} is not open: call open() first")
        return self._conn

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            # Classified by SQLite's result code (ENOSPC surfaces as SQLITE_FULL), not by text.
            code = getattr(exc, "sqlite_errorcode", None)
            if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
                raise SpoolFullError(
                    f"cannot {action} spool {self.path}: database or disk is full;"
                    f" free space on the file system holding {self.path.parent}"
                    " or lower the spool's max_bytes"
                ) from exc
            raise SpoolError(
                f"cannot {action} spool {self.path}: {exc}; check the file and its directory"
                " (permissions, free space, a disk error in dmesg)"
            ) from exc

    @contextmanager
    def _transaction(self, action: str, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        with self._translated(action):
            conn.execute(f"BEGIN {mode}")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back (it does on SQLITE_FULL); don't mask the
                # original error with a second one.
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise


_P = ParamSpec("_P")
_T = TypeVar("_T")


class AsyncSpool:
    """``Spool`` for asyncio code: every call runs on one dedicated worker thread, in order."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: timedelta = DEFAULT_MAX_RESULT_AGE,
        max_rejected: int = DEFAULT_MAX_REJECTED,
    ) -> None:
        self.spool = Spool(path, max_bytes=max_bytes, max_age=max_age, max_rejected=max_rejected)
        self._executor: ThreadPoolExecutor | None = None

    @property
    def path(self) -> Path:
        return self.spool.path

    async def _run(self, func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._executor is None:
            raise SpoolError(f"spool {self.spool.path} is not open: call open() first")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))

    async def open(self) -> None:
        if self._executor is None:
            # One thread for the spool's whole life: the sqlite3 connection is bound to it.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        await self._run(self.spool.open)

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await self._run(self.spool.close)
        finally:
            self._executor = None
            executor.shutdown(wait=False)  # idle by now: the close above was its last job

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def add(self, result: ResultBase, *, now: datetime | None = None) -> bool:
        return await self._run(self.spool.add, result, now=now)

    async def oldest(self, limit: int, *, max_bytes: int | None = None) -> list[SpooledItem]:
        return await self._run(self.spool.oldest, limit, max_bytes=max_bytes)

    async def ack(self, result_ids: Iterable[str], *, now: datetime | None = None) -> int:
        # Materialised here: an iterator must not be consumed on another thread.
        return await self._run(self.spool.ack, list(result_ids), now=now)

    async def quarantine(
        self, rejected: Iterable[tuple[str, str]], *, now: datetime | None = None
    ) -> int:
        return await self._run(self.spool.quarantine, list(rejected), now=now)

    async def hold(self, result: ResultBase, boot_id: str, boot_s: float) -> bool:
        return await self._run(self.spool.hold, result, boot_id, boot_s)

    async def held(self, limit: int = 1000) -> list[HeldItem]:
        return await self._run(self.spool.held, limit)

    async def release(self, results: Iterable[ResultBase], *, now: datetime | None = None) -> int:
        return await self._run(self.spool.release, list(results), now=now)

    async def rejected(self, limit: int = 100) -> list[RejectedItem]:
        return await self._run(self.spool.rejected, limit)

    async def evict(self, *, now: datetime | None = None) -> int:
        return await self._run(self.spool.evict, now=now)

    async def stats(self, *, now: datetime | None = None) -> SpoolStats:
        return await self._run(self.spool.stats, now=now)


def _meta(conn: sqlite3.Connection, key: str) -> int:
    value: int = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
    return value


def _bump(conn: sqlite3.Connection, key: str, by: int) -> None:
    conn.execute("UPDATE meta SET value = value + ? WHERE key = ?", (by, key))


def _canonical_id(result_id: str | uuid.UUID) -> str:
    """The stored form of a result id (``str(UUID)``), whatever case or braces the server used."""
    try:
        return str(uuid.UUID(str(result_id)))
    except ValueError:
        return str(result_id)  # cannot match a stored id; harmless in a DELETE


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else now


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no timezone; the spool takes UTC-aware times")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
