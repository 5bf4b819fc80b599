"""What only the InfluxDB adapter has: field types, retention policies, authentication, and how
it reads InfluxDB's error replies."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from probes.models import Kind
from server.errors import ConfigError, StorageUnavailable
from server.storage import InfluxStore, WriteOutcome
from server.storage.lineprotocol import FieldType, field_types
from tests.influxd import Influxd
from tests.server.storage.examples import IDENTITY, every_kind, make

ACCEPTED = WriteOutcome.ACCEPTED

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
        with pytest.raises(StorageUnavailable, match=f"database not found: {influx_db}"):
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
    # /ping, CREATE DATABASE, the duplicate query and the write all carry the token.
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
