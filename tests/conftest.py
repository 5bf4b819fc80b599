"""Session fixtures that start real InfluxDB 1.x servers (``tests/influxd.py``) on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.influxd import Influxd


def _start(server: Influxd) -> Influxd:
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return server


@pytest.fixture(scope="session")
def influxd() -> Iterator[Influxd]:
    """One InfluxDB for the session, without authentication."""
    server = _start(Influxd())
    yield server
    server.stop()


@pytest.fixture
def influx_db(influxd: Influxd) -> str:
    """A database name no other test uses (the store creates it on start)."""
    return influxd.new_database_name()


@pytest.fixture(scope="session")
def influxd_auth() -> Iterator[Influxd]:
    """An InfluxDB with ``auth-enabled`` and one administrator, ``.admin`` = (user, password).

    InfluxDB 1.x lets anyone create the first user, and only an administrator; every other
    request needs credentials from then on.
    """
    server = _start(Influxd(auth_enabled=True))
    server.create_admin("admin", "correct horse 'battery' \\ staple")
    yield server
    server.stop()
