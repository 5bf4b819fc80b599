"""One SQLite connection owned by one worker thread, for the server's small side files.

sqlite3 calls block (an SD card can stall for seconds), so they never run on the event loop:
every call goes to the one thread that opened the connection, and sqlite3's exceptions become
``StorageUnavailable`` naming the file, in one place. Used by the InfluxDB adapter's ledger
(``ledger``) and the compliance sample cache (``month_cache``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from server.errors import StorageUnavailable

T = TypeVar("T")


class SqliteThread:
    """A connection to ``path`` (None: in memory) and the thread that alone uses it."""

    def __init__(self, path: Path | None, *, what: str, synchronous: str = "FULL") -> None:
        """``what`` names the file in errors ("InfluxDB ledger"); ``synchronous`` is the WAL
        durability (https://www.sqlite.org/pragma.html#pragma_synchronous)."""
        self._path = path
        self._what = what
        self._synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only in the worker thread

    @property
    def where(self) -> str:
        return str(self._path) if self._path is not None else "(in memory)"

    async def open(self, schema: str) -> None:
        """Connect (WAL for a file) and run ``schema``; idempotent."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-side")
        try:
            await self.run(self._open, schema)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
        finally:
            executor.shutdown(wait=False)

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in the worker thread; sqlite3 errors as ``StorageUnavailable``."""
        executor = self._executor
        if executor is None:
            raise StorageUnavailable(f"{self._what} {self.where} is not started or is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, func, *args)
        except sqlite3.Error as exc:
            raise StorageUnavailable(
                f"{self._what} {self.where} failed ({type(exc).__name__}: {exc}): check that"
                " the data directory exists, is writable and the disk is not full"
            ) from exc

    # Below: only in the worker thread.

    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("the connection is closed")
        return self._conn

    def _open(self, schema: str) -> None:
        conn = sqlite3.connect(self._path or ":memory:", isolation_level=None)
        try:
            if self._path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(schema)
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
