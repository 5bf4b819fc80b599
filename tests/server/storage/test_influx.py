"""What only the InfluxDB adapter has: field types, retention policies, authentication, and how
it reads InfluxDB's error replies."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from probes.models import Kind
from server.errors import ConfigError, StorageUnavailable
from server.storage import InfluxStore, Refused, StoredResult, WriteOutcome
from server.storage import ledger as ledger_module
from server.storage.influx import WriteVerdict, classify_write_reply
from server.storage.lineprotocol import FieldType, datetime_to_ns, field_types
from tests.influxd import Influxd
from tests.server.storage.examples import IDENTITY, NOW, every_kind, failed, make

ACCEPTED, DUPLICATE = WriteOutcome.ACCEPTED, WriteOutcome.DUPLICATE


def by_id(items: list[StoredResult]) -> list[StoredResult]:
    return sorted(items, key=lambda item: item.result.result_id)


_INFLUX_TYPE = {
    FieldType.FLOAT: "float",
    FieldType.INTEGER: "integer",
    FieldType.BOOLEAN: "boolean",
    FieldType.STRING: "string",
    FieldType.JSON: "string",
}


@pytest.fixture
async def store(influxd: Influxd, influx_db: str) -> AsyncIterator[InfluxStore]:
    backend = InfluxStore(influxd.url, influx_db, timeout_s=5)
    await backend.start()
    yield backend
    await backend.close()


async def test_field_types_in_influxdb_follow_the_model(
    store: InfluxStore, influxd: Influxd, influx_db: str
) -> None:
    items = every_kind()
    await store.write(items)
    reply = influxd.query("SHOW FIELD KEYS", database=influx_db)
    stored = {
        (series["name"], key): kind
        for series in reply["results"][0]["series"]
        for key, kind in series["values"]
    }
    expected = {
        (item.kind.value, name): _INFLUX_TYPE[kind]
        for item in items
        for name, kind in field_types(type(item.result)).items()
        if getattr(item.result, name) is not None
    }
    assert stored == expected
    assert stored["bandwidth", "upload_mbps"] == "float"  # 40.0, whole
    assert stored["bandwidth", "download_bytes"] == "integer"


async def test_start_creates_the_database_and_is_idempotent(
    influxd: Influxd, influx_db: str
) -> None:
    for _ in range(2):
        store = InfluxStore(influxd.url, influx_db)
        await store.start()
        await store.start()  # a second start on a started store changes nothing
        await store.check()
        await store.close()
    names = [row[0] for row in influxd.query("SHOW DATABASES")["results"][0]["series"][0]["values"]]
    assert influx_db in names


async def test_an_unrepresentable_tag_fails_the_whole_batch_and_stores_nothing(
    store: InfluxStore,
) -> None:
    good = make(Kind.LATENCY)
    bad = make(Kind.LATENCY, identity=dataclasses.replace(IDENTITY, hamlet="Thôn A\nThôn B"))
    with pytest.raises(
        StorageUnavailable, match="tag hamlet='Thôn A\\\\nThôn B' contains a newline"
    ):
        await store.write([good, bad])
    assert await store.query(kind=Kind.LATENCY) == []


async def test_retention_policy_and_measurement_names(influxd: Influxd, influx_db: str) -> None:
    influxd.query(f'CREATE DATABASE "{influx_db}"')
    influxd.query(f'CREATE RETENTION POLICY "a week" ON "{influx_db}" DURATION 7d REPLICATION 1')
    store = InfluxStore(
        influxd.url,
        influx_db,
        retention_policy="a week",
        measurements={Kind.LATENCY: "hamletnet.ping"},
        create_database=False,
    )
    await store.start()
    try:
        item = make(Kind.LATENCY)
        assert await store.write([item]) == [ACCEPTED]
        assert await store.write([item]) == [WriteOutcome.DUPLICATE]
        assert await store.query(kind=Kind.LATENCY) == [item]
        assert await store.latest(Kind.LATENCY) == [item]
    finally:
        await store.close()
    raw = influxd.query('SELECT "result_id" FROM "a week"."hamletnet.ping"', database=influx_db)
    assert raw["results"][0]["series"][0]["values"][0][1] == str(item.result.result_id)
    default_rp = influxd.query('SELECT * FROM "hamletnet.ping"', database=influx_db)
    assert "series" not in default_rp["results"][0]


async def test_missing_database_without_create_is_storage_unavailable(
    influxd: Influxd, influx_db: str
) -> None:
    store = InfluxStore(influxd.url, influx_db, create_database=False)
    await store.start()  # /ping answers; the database is only needed to read and write
    try:
        with pytest.raises(StorageUnavailable, match=f'database not found: "?{influx_db}'):
            await store.write([make(Kind.DNS)])
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "127.0.0.1:8086"}, "must start with http://"),
        ({"database": ""}, "database name is empty"),
        ({"username": "u", "token": "t"}, "not both"),
        ({"password": "p"}, "password is set without"),
        ({"measurements": {Kind.DNS: "latency"}}, "its own measurement"),
        ({"measurements": {Kind.DNS: "dns results"}}, "'dns results' for dns results"),
        ({"timeout_s": 0}, "must be positive"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"url": "http://127.0.0.1:8086", "database": "hamletnet"} | kwargs
    url, database = arguments.pop("url"), arguments.pop("database")
    with pytest.raises(ConfigError, match=message):
        InfluxStore(url, database, **arguments)


# --- authentication against a real influxd with auth-enabled -----------------------------------


async def test_basic_auth_works_end_to_end(influxd_auth: Influxd) -> None:
    assert influxd_auth.admin is not None
    user, password = influxd_auth.admin
    store = InfluxStore(
        influxd_auth.url, influxd_auth.new_database_name(), username=user, password=password
    )
    await store.start()
    try:
        item = make(Kind.HEARTBEAT)
        assert await store.write([item]) == [ACCEPTED]
        assert await store.write([item]) == [WriteOutcome.DUPLICATE]
        assert await store.latest(Kind.HEARTBEAT) == [item]
    finally:
        await store.close()


@pytest.mark.parametrize(
    "credentials",
    [{"username": "admin", "password": "wrong"}, {"username": "nobody"}, {}],
    ids=["wrong-password", "unknown-user", "none"],
)
async def test_wrong_credentials_are_an_authentication_error(
    influxd_auth: Influxd, credentials: dict[str, Any]
) -> None:
    database = influxd_auth.new_database_name()
    store = InfluxStore(influxd_auth.url, database, **credentials)
    with pytest.raises(StorageUnavailable, match="authentication failed") as caught:
        await store.start()  # CREATE DATABASE needs credentials
    assert "wrong" not in str(caught.value)  # the password is never in a message

    influxd_auth.query(f'CREATE DATABASE "{database}"', auth=influxd_auth.admin)
    store = InfluxStore(influxd_auth.url, database, create_database=False, **credentials)
    await store.start()  # /ping needs no credentials in InfluxDB 1.x
    try:
        with pytest.raises(StorageUnavailable, match="authentication failed"):
            await store.write([make(Kind.DNS)])
        with pytest.raises(StorageUnavailable, match="authentication failed"):
            await store.query(kind=Kind.DNS)
    finally:
        await store.close()


# --- replies a real InfluxDB 1.6 cannot be made to give ----------------------------------------
# InfluxDB 1.6 knows no "Authorization: Token" scheme (1.8 and 2.x/3.x do), and a healthy server
# does not fail with 5xx or hang on purpose; a small aiohttp server on loopback stands in for them.

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeInflux:
    """Records each request's Authorization header and answers like InfluxDB, or as told."""

    def __init__(self) -> None:
        self.authorization: list[str | None] = []
        self.write: Handler = self._no_content
        self.query: Handler = self._empty_results

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.authorization.append(request.headers.get("Authorization"))
        if request.path == "/write":
            return await self.write(request)
        if request.path == "/query":
            return await self.query(request)
        return await self._no_content(request)

    @staticmethod
    async def _no_content(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=204, headers={"X-Influxdb-Version": "fake"})

    @staticmethod
    async def _empty_results(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        statements = str(form["q"]).split(";")
        return web.json_response({"results": [{"statement_id": i} for i in range(len(statements))]})


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeInflux, str]]:
    recorder = FakeInflux()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield recorder, str(server.make_url("")).rstrip("/")
    await server.close()


async def test_token_is_sent_as_token_authorization(fake: tuple[FakeInflux, str]) -> None:
    recorder, url = fake
    store = InfluxStore(url, "hamletnet", token="s3cr3t-t0ken")
    assert "s3cr3t" not in repr(store)
    await store.start()
    try:
        assert await store.write([make(Kind.DNS)]) == [ACCEPTED]
    finally:
        await store.close()
    # /ping, CREATE DATABASE, the ledger's first look (SHOW MEASUREMENTS) and the write all
    # carry the token.
    assert recorder.authorization == ["Token s3cr3t-t0ken"] * 4


async def test_server_errors_are_storage_unavailable(fake: tuple[FakeInflux, str]) -> None:
    recorder, url = fake

    async def fail(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"error": "engine: cache maximum memory size exceeded"}, status=500
        )

    recorder.write = fail
    store = InfluxStore(url, "hamletnet")
    await store.start()
    try:
        with pytest.raises(StorageUnavailable, match="HTTP 500: engine: cache maximum memory"):
            await store.write([make(Kind.DNS)])
    finally:
        await store.close()


async def test_a_refused_query_is_a_bug_not_an_outage(fake: tuple[FakeInflux, str]) -> None:
    recorder, url = fake

    async def bad_query(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "error parsing query: found EOF"}, status=400)

    store = InfluxStore(url, "hamletnet")
    await store.start()
    recorder.query = bad_query
    try:
        with pytest.raises(ValueError, match="error parsing query"):
            await store.query(kind=Kind.DNS)
    finally:
        await store.close()


async def test_a_server_that_hangs_times_out(fake: tuple[FakeInflux, str]) -> None:
    recorder, url = fake

    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response(status=204)

    store = InfluxStore(url, "hamletnet", timeout_s=0.2)
    await store.start()
    recorder.write = hang
    try:
        with pytest.raises(StorageUnavailable, match=r"did not answer /write within 0\.2 s"):
            await store.write([make(Kind.DNS)])
    finally:
        await store.close()


# --- what InfluxDB refuses, point by point (issue 15) ------------------------------------------


async def test_points_outside_a_short_retention_policy_are_refused_one_by_one(
    influxd: Influxd, influx_db: str
) -> None:
    # A retention policy shorter than the server's max_result_age: InfluxDB drops the old
    # points with one 400 for the whole write and stores the others.
    influxd.query(f'CREATE DATABASE "{influx_db}"')
    influxd.query(f'CREATE RETENTION POLICY "hour" ON "{influx_db}" DURATION 1h REPLICATION 1')
    store = InfluxStore(influxd.url, influx_db, retention_policy="hour", create_database=False)
    await store.start()
    try:
        now = datetime.now(UTC).replace(microsecond=250)
        fresh = [make(Kind.LATENCY, measured_at=now - timedelta(minutes=i)) for i in range(3)]
        old = make(Kind.LATENCY, measured_at=now - timedelta(hours=5))
        outcomes = await store.write([fresh[0], old, fresh[1], fresh[2]])
        assert outcomes[0] == outcomes[2] == outcomes[3] == ACCEPTED
        assert isinstance(outcomes[1], Refused)
        assert "points beyond retention policy" in outcomes[1].reason
        assert by_id(await store.query(kind=Kind.LATENCY)) == by_id(fresh)
        # The accepted ones are stored: a re-send is a duplicate; the refused one is refused again.
        outcomes = await store.write([fresh[1], old])
        assert outcomes[0] == DUPLICATE and isinstance(outcomes[1], Refused)
    finally:
        await store.close()


async def test_a_field_type_conflict_refuses_only_the_points_that_carry_it(
    store: InfluxStore, influxd: Influxd, influx_db: str
) -> None:
    # Someone else's point (or an older schema) made "error" an integer in this shard.
    line = f"bandwidth,probe=other,engine=x error=7i {datetime_to_ns(NOW)}"
    influxd_write(influxd, influx_db, line)
    items = [make(Kind.BANDWIDTH, measured_at=NOW + timedelta(seconds=i)) for i in range(5)]
    broken = failed(Kind.BANDWIDTH, measured_at=NOW + timedelta(seconds=2, microseconds=5))
    outcomes = await store.write([*items[:2], broken, *items[2:]])
    assert outcomes[:2] + outcomes[3:] == [ACCEPTED] * 5
    refused = outcomes[2]
    assert isinstance(refused, Refused)
    assert 'field type conflict: input field "error"' in refused.reason
    mine = await store.query(kind=Kind.BANDWIDTH, probe_id=IDENTITY.probe_id)
    assert mine == items


async def test_an_unavailable_database_is_still_unavailable_for_the_whole_batch(
    fake: tuple[FakeInflux, str],
) -> None:
    recorder, url = fake

    async def overloaded(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "timeout"}, status=503)

    recorder.write = overloaded
    store = InfluxStore(url, "hamletnet")
    await store.start()
    try:
        with pytest.raises(StorageUnavailable, match="HTTP 503: timeout"):
            await store.write([make(Kind.DNS), make(Kind.DNS)])
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("status", "body", "verdict", "words"),
    [
        (204, b"", WriteVerdict.WRITTEN, ""),
        (
            400,
            b'{"error":"partial write: points beyond retention policy dropped=1"}\n',
            WriteVerdict.REFUSED,
            "InfluxDB refused it (HTTP 400): partial write: points beyond retention policy",
        ),
        (400, b'{"error":"unable to parse \'x\': missing fields"}', WriteVerdict.REFUSED, "parse"),
        (413, b'{"error":"Request Entity Too Large"}', WriteVerdict.REFUSED, "Too Large"),
        (401, b'{"error":"authorization failed"}', WriteVerdict.UNAVAILABLE, "authentication"),
        (403, b'{"error":"not authorized"}', WriteVerdict.UNAVAILABLE, "authentication"),
        (404, b'{"error":"database not found: \\"x\\""}', WriteVerdict.UNAVAILABLE, "not found"),
        (500, b'{"error":"engine: cache maximum memory"}', WriteVerdict.UNAVAILABLE, "HTTP 500"),
        (503, b"<html>busy</html>", WriteVerdict.UNAVAILABLE, "HTTP 503: <html>busy</html>"),
    ],
)
def test_write_replies_are_classified_in_one_place(
    status: int, body: bytes, verdict: WriteVerdict, words: str
) -> None:
    got, detail = classify_write_reply(status, body)
    assert got is verdict
    assert words in detail


async def test_a_truncated_query_reply_is_never_used_as_whole() -> None:
    with Influxd(max_row_limit=3) as small:
        store = InfluxStore(small.url, "partial", timeout_s=5)
        await store.start()
        try:
            items = [make(Kind.DNS, measured_at=NOW + timedelta(seconds=i)) for i in range(5)]
            assert await store.write(items) == [ACCEPTED] * 5
            assert await store.query(kind=Kind.DNS, limit=3) == items[:3]
            with pytest.raises(StorageUnavailable, match="max-row-limit"):
                await store.query(kind=Kind.DNS)
            # A fresh ledger is rebuilt from this database in windows small enough to be whole.
            again = InfluxStore(small.url, "partial", timeout_s=5)
            await again.start()
            try:
                assert await again.write(items) == [DUPLICATE] * 5
            finally:
                await again.close()
        finally:
            await store.close()


# --- the duplicate check reads only the batch's own items --------------------------------------


async def test_duplicate_check_does_not_read_the_stored_points(
    store: InfluxStore, influxd: Influxd, influx_db: str
) -> None:
    # Issue 15: a 2-item batch 29 days apart read every result_id of the probe in between.
    start = NOW - timedelta(days=29)
    stored = [
        make(Kind.LATENCY, measured_at=start + timedelta(minutes=15 * i)) for i in range(2000)
    ]
    assert await store.write(stored) == [ACCEPTED] * len(stored)
    batch = [make(Kind.LATENCY, measured_at=start), make(Kind.LATENCY, measured_at=NOW)]
    before = influxd.http_stats()
    assert await store.write([*batch, stored[1000]]) == [ACCEPTED, ACCEPTED, DUPLICATE]
    after = influxd.http_stats()
    assert after["queryReq"] - before["queryReq"] == 1  # the second SHOW STATS, nothing else
    assert after["writeReq"] - before["writeReq"] == 1
    assert after["pointsWrittenOK"] - before["pointsWrittenOK"] == 2


def test_the_ledger_finds_a_batch_by_primary_key(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    conn.executescript(ledger_module._SCHEMA)
    plan = conn.execute(
        "EXPLAIN QUERY PLAN " + ledger_module.LOOKUP_SQL.format(marks="?,?"), ["a", "b"]
    ).fetchall()
    details = " ".join(row[-1] for row in plan)
    assert "SEARCH points USING PRIMARY KEY (result_id=?)" in details, details
    assert "SCAN" not in details, details


# --- a crash between InfluxDB and the ledger converges -----------------------------------------


@pytest.mark.parametrize("influx_has_it", [False, True], ids=["before-write", "after-write"])
async def test_a_crash_around_the_write_neither_loses_nor_duplicates(
    influxd: Influxd, influx_db: str, tmp_path: Path, influx_has_it: bool
) -> None:
    ledger = tmp_path / "influx-ledger.sqlite3"
    neighbour = make(Kind.DNS)
    item = make(Kind.DNS)  # the same microsecond as its neighbour
    store = InfluxStore(influxd.url, influx_db, ledger_path=ledger)
    await store.start()
    assert await store.write([neighbour, item]) == [ACCEPTED, ACCEPTED]
    await store.close()
    # The state a crash leaves: the ledger's reservation is still pending, and InfluxDB has the
    # point (crash after the /write) or not (crash before it, or InfluxDB was down).
    with sqlite3.connect(ledger) as conn:
        conn.execute(
            "UPDATE points SET written = 0 WHERE result_id = ?", [str(item.result.result_id)]
        )
    if not influx_has_it:
        (time_ns,) = [
            t
            for (t,) in sqlite3.connect(ledger).execute(
                "SELECT time_ns FROM points WHERE result_id = ?", [str(item.result.result_id)]
            )
        ]
        influxd.query(f'DELETE FROM "dns" WHERE time = {time_ns}', database=influx_db)  # noqa: S608
        assert len(await_query_raw(influxd, influx_db)) == 1
    store = InfluxStore(influxd.url, influx_db, ledger_path=ledger)
    await store.start()
    try:
        assert await store.write([item]) == [ACCEPTED]  # the re-send, after no reply
        assert await store.write([item]) == [DUPLICATE]
        assert by_id(await store.query(kind=Kind.DNS)) == by_id([neighbour, item])
    finally:
        await store.close()


async def test_a_lost_ledger_is_rebuilt_from_the_database(
    influxd: Influxd, influx_db: str, tmp_path: Path
) -> None:
    first = make(Kind.DNS)
    store = InfluxStore(influxd.url, influx_db, ledger_path=tmp_path / "a.sqlite3")
    await store.start()
    assert await store.write([first]) == [ACCEPTED]
    await store.close()
    # A new data directory (or an upgrade from before the ledger): the same database.
    store = InfluxStore(influxd.url, influx_db, ledger_path=tmp_path / "b.sqlite3")
    await store.start()
    try:
        twins = [make(Kind.DNS) for _ in range(30)]  # the same microsecond as ``first``
        assert await store.write([first, *twins]) == [DUPLICATE] + [ACCEPTED] * 30
        assert by_id(await store.query(kind=Kind.DNS)) == by_id([first, *twins])
    finally:
        await store.close()


def await_query_raw(influxd: Influxd, database: str) -> list[Any]:
    reply = influxd.query('SELECT "result_id" FROM "dns"', database=database)
    return [row for series in reply["results"][0].get("series", ()) for row in series["values"]]


def influxd_write(influxd: Influxd, database: str, line: str) -> None:
    request = urllib.request.Request(  # noqa: S310 (http on loopback)
        f"{influxd.url}/write?db={database}&precision=ns", data=line.encode(), method="POST"
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10):
        pass
