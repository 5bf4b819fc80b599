"""One SQLite connection owned by one worker thread, for the server's SQLite files.

sqlite3 calls block (an SD card can stall for seconds), so they never run on the event loop:
every call goes to the one thread that opened the connection, and sqlite3's exceptions become
``StorageUnavailable`` naming the file, in one place. Used by the SQLite result store
(``sqlite``), the InfluxDB adapter's ledger (``ledger``), the compliance sample cache
(``month_cache``), the probe registry (``server.registry``) and the alert store
(``server.alerts.store``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from server.errors import StorageUnavailable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ErrorText:
    """What a file's ``StorageUnavailable`` messages say: ``str.format`` templates over ``what``
    and ``where`` (the file) and, for a failure, ``kind`` and ``exc`` (the exception's class
    name and text)."""

    closed: str = "{what} {where} is not started or is closed"
    failed: str = (
        "{what} {where} failed ({kind}: {exc}): check that the data directory exists, is"
        " writable and the disk is not full"
    )
    #: A failed ``open``, an ``OSError`` included (None: ``failed``, for sqlite3's errors only).
    opening: str | None = None
    #: sqlite3 exceptions raised as they are, for the caller to judge (a constraint violated).
    raised: tuple[type[sqlite3.Error], ...] = ()

    @classmethod
    def short(cls, raised: tuple[type[sqlite3.Error], ...] = ()) -> ErrorText:
        """The probe registry's and the alert store's: "the probe registry is closed",
        "probe registry PATH: TEXT", "cannot open the probe registry PATH: TEXT"."""
        return cls(
            closed="the {what} is closed",
            failed="{what} {where}: {exc}",
            opening="cannot open the {what} {where}: {exc}",
            raised=raised,
        )


class SqliteThread:
    """A connection to ``path`` (None: in memory) and the thread that alone uses it."""

    def __init__(
        self,
        path: Path | None,
        *,
        what: str,
        synchronous: str = "FULL",
        thread_name: str = "sqlite-side",
        errors: ErrorText | None = None,
        require_wal: bool = False,
        make_directory: bool = False,
        row_factory: type[sqlite3.Row] | None = None,
        foreign_keys: bool = False,
    ) -> None:
        """``what`` names the file in errors ("InfluxDB ledger"); ``synchronous`` is the WAL
        durability (https://www.sqlite.org/pragma.html#pragma_synchronous). ``require_wal``
        refuses a file that stays out of WAL mode (on a network file system);
        ``make_directory`` creates the file's directory first; ``row_factory`` and
        ``foreign_keys`` are sqlite3's (``sqlite3.Row``: rows by column name)."""
        self._path = path
        self._what = what
        self._synchronous = synchronous
        self._thread_name = thread_name
        self._errors = errors or ErrorText()
        self._require_wal = require_wal
        self._make_directory = make_directory
        self._row_factory = row_factory
        self._foreign_keys = foreign_keys
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only in the worker thread

    @property
    def where(self) -> str:
        return str(self._path) if self._path is not None else "(in memory)"

    @property
    def is_open(self) -> bool:
        return self._executor is not None

    async def open(self, schema: str | Callable[[sqlite3.Connection], None]) -> None:
        """Connect (WAL for a file) and run ``schema``: the script, or a function that brings
        the file up to date (a migration, a row factory) in the worker thread; idempotent."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._open, schema)
        except BaseException as exc:
            await self.close()
            opening = self._errors.opening
            if opening is not None and isinstance(exc, OSError | sqlite3.Error):
                raise self._unavailable(opening, exc) from exc
            if isinstance(exc, sqlite3.Error):
                raise self._unavailable(self._errors.failed, exc) from exc
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            # Queued behind any work still running, so it closes after the last write.
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
        finally:
            executor.shutdown(wait=False)

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in the worker thread; sqlite3 errors as ``StorageUnavailable``."""
        executor = self._executor
        if executor is None:
            raise StorageUnavailable(self._errors.closed.format(what=self._what, where=self.where))
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, func, *args)
        except self._errors.raised:
            raise
        except sqlite3.Error as exc:
            raise self._unavailable(self._errors.failed, exc) from exc

    def _unavailable(self, text: str, exc: Exception) -> StorageUnavailable:
        return StorageUnavailable(
            text.format(what=self._what, where=self.where, kind=type(exc).__name__, exc=exc)
        )

    # Below: only in the worker thread.

    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("the connection is closed")
        return self._conn

    def _open(self, schema: str | Callable[[sqlite3.Connection], None]) -> None:
        if self._make_directory and self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path or ":memory:", isolation_level=None)
        conn.row_factory = self._row_factory
        try:
            if self._path is not None:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if self._require_wal and str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(
                        f"cannot switch to WAL mode (got {mode!r}); put the file on a local disk"
                    )
                conn.execute(f"PRAGMA synchronous={self._synchronous}")
            if self._foreign_keys:
                conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            if isinstance(schema, str):
                conn.executescript(schema)
            else:
                schema(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        elif self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
