"""The server's SQLite files (result store, probe registry, alert store) on real files: the
settings each connection gets (WAL, synchronous, foreign keys, busy timeout), the thread it runs
in, and the ``StorageUnavailable`` messages each file gives, which the admin API, the CLI and the
logs show; all three run on ``SqliteThread``, and these pin what each said before it did."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import pytest

from server.alerts.store import AlertStore
from server.errors import StorageUnavailable
from server.registry import Registry
from server.storage import SqliteStore

#: journal_mode, synchronous (2: FULL), foreign_keys, busy_timeout, row type, thread name.
Settings = tuple[str, int, int, int, str, str]


def _settings(conn: sqlite3.Connection) -> Settings:
    row = conn.execute("PRAGMA journal_mode").fetchone()
    return (
        row[0],
        conn.execute("PRAGMA synchronous").fetchone()[0],
        conn.execute("PRAGMA foreign_keys").fetchone()[0],
        conn.execute("PRAGMA busy_timeout").fetchone()[0],
        type(row).__name__,
        threading.current_thread().name.rsplit("_", 1)[0],
    )


@pytest.mark.parametrize(
    ("make", "name", "thread"),
    [(Registry, "probe registry", "registry"), (AlertStore, "alert store", "alerts-store")],
)
async def test_registry_and_alert_store_settings_and_messages(
    tmp_path: Path, make: type[Registry | AlertStore], name: str, thread: str
) -> None:
    path = tmp_path / "new-dir" / "file.sqlite3"
    db = make(path)
    closed = f"^the {name} is closed$"
    with pytest.raises(StorageUnavailable, match=closed):
        await db._run(_settings)
    await db.open()  # its directory is made
    try:
        assert await db._run(_settings) == ("wal", 2, 1, 5000, "Row", thread)
        with pytest.raises(StorageUnavailable) as failed:
            await db._run(lambda c: c.execute("SELECT * FROM no_such_table"))
        assert failed.value.detail == f"{name} {path}: no such table: no_such_table"
    finally:
        await db.close()
    with pytest.raises(StorageUnavailable, match=closed):
        await db._run(_settings)

    (tmp_path / "a-file").write_bytes(b"")
    under_a_file = tmp_path / "a-file" / "file.sqlite3"
    with pytest.raises(StorageUnavailable) as opening:
        await make(under_a_file).open()
    assert opening.value.detail.startswith(f"cannot open the {name} {under_a_file}: ")
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(StorageUnavailable) as not_a_database:
        await make(garbage).open()
    assert (
        not_a_database.value.detail == f"cannot open the {name} {garbage}: file is not a database"
    )


async def test_registry_raises_a_violated_constraint_as_it_is(tmp_path: Path) -> None:
    """The caller judges it; foreign keys are enforced."""
    registry = Registry(tmp_path / "registry.sqlite3")
    await registry.open()
    try:
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await registry._run(
                lambda c: c.execute(
                    "INSERT INTO probes (probe_id, hamlet, isp, access, token_sha256, created_at)"
                    " VALUES ('p', 'no-such-hamlet', 'VNPT', 'fiber', 'x', 'now')"
                )
            )
    finally:
        await registry.close()


@pytest.mark.parametrize(("synchronous", "level"), [("FULL", 2), ("normal", 1)])
async def test_sqlite_store_settings_and_messages(
    tmp_path: Path, synchronous: str, level: int
) -> None:
    path = tmp_path / "results.sqlite3"
    store = SqliteStore(path, synchronous=synchronous)
    await store.start()
    try:
        settings = await store._run(lambda: _settings(store._connection()))
        assert settings == ("wal", level, 0, 5000, "tuple", "sqlite-store")
        path.unlink()
        with pytest.raises(StorageUnavailable) as failed:
            await store.check()
        assert failed.value.detail == (
            f"SQLite database {path} failed (OperationalError: the database file was deleted;"
            " restart the server): check that its directory exists, is writable and the disk"
            " is not full"
        )
    finally:
        await store.close()
    with pytest.raises(StorageUnavailable) as closed:
        await store.check()
    assert closed.value.detail == f"SQLite store {path} is not started or is closed"

    (tmp_path / "garbage.sqlite3").write_bytes(b"not a database" * 100)
    with pytest.raises(StorageUnavailable) as garbage:
        await SqliteStore(tmp_path / "garbage.sqlite3").start()
    assert re.fullmatch(
        r"SQLite database .*garbage\.sqlite3 failed \(DatabaseError: file is not a database\):"
        r" check that its directory exists, is writable and the disk is not full",
        garbage.value.detail,
    )
