"""Keeps results in an embedded SQLite file: the default store, for an office PC or a Pi.

One row per result: the identity columns to filter on, and the validated result as its JSON
(``payload``) so reading back is lossless. Every sqlite3 call runs in one dedicated worker
thread that owns the connection, never on the event loop (an SD card can stall for seconds).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from probes.models import RESULT_ADAPTER, Access, Kind, unbounded_limits
from server.errors import ConfigError, StorageUnavailable
from server.storage.base import ItemWrite, ProbeIdentity, Refused, StoredResult, WriteOutcome
from server.storage.lineprotocol import datetime_to_ns

log = logging.getLogger(__name__)

T = TypeVar("T")

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    result_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    probe_id TEXT NOT NULL,
    hamlet TEXT NOT NULL,
    isp TEXT NOT NULL,
    access TEXT NOT NULL,
    engine TEXT NOT NULL,
    target TEXT,
    measured_at_ns INTEGER NOT NULL,
    payload TEXT NOT NULL  -- the result's model_dump_json()
);
CREATE INDEX IF NOT EXISTS results_kind_probe_time ON results (kind, probe_id, measured_at_ns);
CREATE INDEX IF NOT EXISTS results_kind_hamlet_time ON results (kind, hamlet, measured_at_ns);
"""

_INSERT = """
INSERT OR IGNORE INTO results
    (result_id, kind, probe_id, hamlet, isp, access, engine, target, measured_at_ns, payload)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_SELECT = "SELECT probe_id, hamlet, isp, access, payload FROM results"


class SqliteStore:
    """``ResultStore`` on one SQLite file in WAL mode."""

    name = "sqlite"

    def __init__(self, path: Path | str, *, synchronous: str = "FULL") -> None:
        """``synchronous`` defaults to FULL: in WAL mode, NORMAL may lose the last commits on a
        power cut (https://www.sqlite.org/pragma.html#pragma_synchronous), and the server must
        never report ``accepted`` for a result the probe will then delete from its spool."""
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigError(
                f"SQLite synchronous={synchronous!r} is not one of {', '.join(_SYNCHRONOUS)}"
            )
        self._path = Path(path)
        self._synchronous = synchronous.upper()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only in the worker thread

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            await self._run(self._open)
        except BaseException:
            await self.close()
            raise
        log.info("storing results in SQLite at %s", self._path)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            # Queued behind any work still running, so it closes after the last write.
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
        finally:
            executor.shutdown(wait=False)

    async def check(self) -> None:
        await self._run(self._check)

    async def write(self, items: Sequence[StoredResult]) -> list[ItemWrite]:
        if not items:
            return []
        return await self._run(self._write, list(items))

    async def query(
        self,
        *,
        kind: Kind,
        probe_id: str | None = None,
        hamlet: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[StoredResult]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        sql = _SELECT + " WHERE kind = ?"
        args: list[Any] = [Kind(kind).value]
        if probe_id is not None:
            sql += " AND probe_id = ?"
            args.append(probe_id)
        if hamlet is not None:
            sql += " AND hamlet = ?"
            args.append(hamlet)
        if start is not None:
            sql += " AND measured_at_ns >= ?"
            args.append(datetime_to_ns(start))
        if end is not None:
            sql += " AND measured_at_ns < ?"
            args.append(datetime_to_ns(end))
        sql += " ORDER BY measured_at_ns DESC" if newest_first else " ORDER BY measured_at_ns"
        sql += ", result_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return await self._run(self._select, sql, args)

    async def latest(self, kind: Kind) -> list[StoredResult]:
        # With a single max() aggregate, SQLite takes the bare columns from the row holding the
        # maximum (https://www.sqlite.org/lang_select.html#bare_columns_in_an_aggregate_query).
        sql = (
            "SELECT probe_id, hamlet, isp, access, payload, max(measured_at_ns) FROM results"
            " WHERE kind = ? GROUP BY probe_id ORDER BY probe_id"
        )
        return await self._run(self._select, sql, [Kind(kind).value])

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` in the worker thread: the one place sqlite3's exceptions are translated."""
        executor = self._executor
        if executor is None:
            raise StorageUnavailable(f"SQLite store {self._path} is not started or is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, func, *args)
        except sqlite3.Error as exc:
            raise StorageUnavailable(
                f"SQLite database {self._path} failed ({type(exc).__name__}: {exc}):"
                " check that its directory exists, is writable and the disk is not full"
            ) from exc

    # Everything below runs in the worker thread.

    def _open(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None)  # explicit transactions
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(
                    f"cannot switch to WAL mode (got {mode!r}); put the file on a local disk"
                )
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("the connection is closed")
        # A deleted file keeps taking writes through the open descriptor, and loses them all at
        # the next start: refuse instead of reporting them accepted.
        if not self._path.exists():
            raise sqlite3.OperationalError("the database file was deleted; restart the server")
        return self._conn

    def _check(self) -> None:
        self._connection().execute("SELECT 1 FROM results LIMIT 1").fetchall()

    def _write(self, items: list[StoredResult]) -> list[ItemWrite]:
        conn = self._connection()
        rows = [_row(item) for item in items]
        conn.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [
                WriteOutcome.ACCEPTED
                if conn.execute(_INSERT, row).rowcount == 1
                # Ignored: the result_id is stored already, or earlier in this same call.
                else self._same_or_reused(conn, item)
                for item, row in zip(items, rows, strict=True)
            ]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    @staticmethod
    def _same_or_reused(conn: sqlite3.Connection, item: StoredResult) -> ItemWrite:
        """``DUPLICATE`` when the stored result with this id is this one, else ``Refused``."""
        result_id = str(item.result.result_id)
        (payload,) = conn.execute(
            "SELECT payload FROM results WHERE result_id = ?", (result_id,)
        ).fetchone()
        if payload == item.result.model_dump_json() or (
            RESULT_ADAPTER.validate_json(payload, context={"limits": unbounded_limits()})
            == item.result
        ):
            return WriteOutcome.DUPLICATE
        return Refused(
            f"result_id {result_id} is already stored with different content: a result id"
            " names one result; give a new measurement a new result_id"
        )

    def _select(self, sql: str, args: list[Any]) -> list[StoredResult]:
        rows = self._connection().execute(sql, args).fetchall()
        context = {"limits": unbounded_limits()}
        return [
            StoredResult(
                identity=ProbeIdentity(
                    probe_id=row[0], hamlet=row[1], isp=row[2], access=Access(row[3])
                ),
                result=RESULT_ADAPTER.validate_json(row[4], context=context),
            )
            for row in rows
        ]


def _row(item: StoredResult) -> tuple[Any, ...]:
    result, identity = item.result, item.identity
    return (
        str(result.result_id),
        item.kind.value,
        identity.probe_id,
        identity.hamlet,
        identity.isp,
        Access(identity.access).value,
        result.engine,
        result.target,
        datetime_to_ns(result.measured_at),
        result.model_dump_json(),
    )
