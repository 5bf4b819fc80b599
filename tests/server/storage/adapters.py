"""The ``store`` fixture: each ``ResultStore`` adapter in turn, started for real (SQLite in the
test's directory, the session's ``influxd`` with a database of its own). Registered by the
``conftest.py`` of the tests that run on both: the storage contract and the compliance cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.storage import InfluxStore, ResultStore, SqliteStore
from tests.influxd import Influxd


@pytest.fixture(params=["sqlite", "influxdb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResultStore]:
    if request.param == "sqlite":
        backend: ResultStore = SqliteStore(tmp_path / "results.sqlite3")
    else:
        influxd: Influxd = request.getfixturevalue("influxd")
        backend = InfluxStore(
            influxd.url,
            influxd.new_database_name(),
            timeout_s=10,
            ledger_path=tmp_path / "influx-ledger.sqlite3",
        )
    await backend.start()
    yield backend
    await backend.close()
