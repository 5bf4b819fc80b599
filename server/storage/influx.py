"""Keeps results in InfluxDB through its v1 HTTP API (``/write``, ``/query``, ``/ping``).

InfluxDB 1.x serves this API natively; 2.x and 3.x serve it for compatibility (with
``Authorization: Token``). One measurement per result kind, one point per result; the point
layout is ``lineprotocol``'s. InfluxDB has no unique keys, so ``write`` asks the database which
``result_id`` values it already holds before writing.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp

from probes.models import Kind
from server.errors import ConfigError, StorageUnavailable
from server.storage.base import StoredResult, WriteOutcome
from server.storage.lineprotocol import TAG_KEYS, datetime_to_ns, result_to_line, row_to_result

log = logging.getLogger(__name__)

# Plain names keep measurements clear of line protocol's escaping rules altogether.
_MEASUREMENT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

# How much of an error reply goes into a message.
_MAX_ERROR_CHARS = 500


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes (``"a \\"b\\""``)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes, with backslash escapes."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return "'" + escaped + "'"


class InfluxStore:
    """``ResultStore`` on InfluxDB's v1 HTTP API, through one ``aiohttp.ClientSession``."""

    name = "influxdb"

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        measurements: Mapping[Kind, str] | None = None,
        timeout_s: float = 10.0,
        create_database: bool = True,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"InfluxDB url {url!r} must start with http:// or https://")
        if not database:
            raise ConfigError("InfluxDB database name is empty; set influxdb.database")
        if token is not None and username is not None:
            raise ConfigError(
                "set either influxdb.token (InfluxDB 2.x/3.x) or influxdb.username and"
                " influxdb.password (1.x), not both"
            )
        if password is not None and username is None:
            raise ConfigError("influxdb.password is set without influxdb.username")
        if timeout_s <= 0:
            raise ConfigError(f"influxdb.timeout_s must be positive, not {timeout_s}")
        names = {kind: kind.value for kind in Kind} | dict(measurements or {})
        for kind, measurement in names.items():
            if not _MEASUREMENT_NAME.match(measurement):
                raise ConfigError(
                    f"measurement name {measurement!r} for {kind.value} results is not plain:"
                    " use letters, digits, '_', '.' and '-' (at most 128 characters)"
                )
        if len(set(names.values())) != len(names):
            raise ConfigError(
                f"each result kind needs its own measurement; got {dict(sorted(names.items()))}"
            )
        self._url = url.rstrip("/")
        self._database = database
        self._retention_policy = retention_policy or None
        self._measurements: dict[Kind, str] = names
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._create_database = create_database
        self._headers: dict[str, str] = {}
        if username is not None:  # InfluxDB 1.x (RFC 7617 basic authentication)
            pair = f"{username}:{password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif token is not None:  # InfluxDB 1.8+, 2.x and 3.x compatibility API
            self._headers["Authorization"] = f"Token {token}"
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the credentials
        return f"InfluxStore({self._url!r}, {self._database!r})"

    async def start(self) -> None:
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        try:
            version = await self._ping()
            if self._create_database:
                # Idempotent: creating a database that exists changes nothing.
                await self._query([f"CREATE DATABASE {quote_ident(self._database)}"], use_db=False)
        except BaseException:
            await self.close()
            raise
        log.info(
            "storing results in InfluxDB %s at %s, database %s",
            version or "(version unknown)",
            self._url,
            self._database,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def check(self) -> None:
        await self._ping()

    async def write(self, items: Sequence[StoredResult]) -> list[WriteOutcome]:
        """Ask InfluxDB which result ids it holds, then write the others in one ``/write``.

        Two calls racing with the same result both write it, but a result always becomes the
        same point (same series, same timestamp), so InfluxDB still holds it once.
        """
        if not items:
            return []
        try:
            lines = [result_to_line(item, self._measurements[item.kind]) for item in items]
        except ValueError as exc:
            raise StorageUnavailable(f"InfluxDB cannot store this batch: {exc}") from exc
        # One statement per (measurement, probe), over the time span of that group's items.
        spans: dict[tuple[str, str], tuple[int, int]] = {}
        for item in items:
            key = (self._measurements[item.kind], item.identity.probe_id)
            ns = datetime_to_ns(item.result.measured_at)
            low, high = spans.get(key, (ns, ns))
            spans[key] = (min(low, ns), max(high, ns))
        groups = list(spans)
        statements = [
            _select(
                quote_ident("result_id"),
                self._source(measurement),
                [
                    f"{quote_ident('probe')} = {quote_string(probe)}",
                    f"time >= {spans[measurement, probe][0]}",
                    f"time <= {spans[measurement, probe][1]}",
                ],
            )
            for measurement, probe in groups
        ]
        results = await self._query(statements)
        stored: dict[tuple[str, str], set[str]] = {key: set() for key in groups}
        for key, result in zip(groups, results, strict=True):
            for _, row in _rows(result):
                stored[key].add(str(row.get("result_id")))
        outcomes: list[WriteOutcome] = []
        to_write: list[str] = []
        for item, line in zip(items, lines, strict=True):
            key = (self._measurements[item.kind], item.identity.probe_id)
            result_id = str(item.result.result_id)
            if result_id in stored[key]:
                outcomes.append(WriteOutcome.DUPLICATE)
            else:
                outcomes.append(WriteOutcome.ACCEPTED)
                to_write.append(line)
                stored[key].add(result_id)  # a repeat later in this call is a duplicate
        if to_write:
            await self._write("\n".join(to_write))
        return outcomes

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
        if limit == 0:
            return []  # InfluxQL reads LIMIT 0 as no limit at all
        conditions = []
        if probe_id is not None:
            conditions.append(f"{quote_ident('probe')} = {quote_string(probe_id)}")
        if hamlet is not None:
            conditions.append(f"{quote_ident('hamlet')} = {quote_string(hamlet)}")
        if start is not None:
            conditions.append(f"time >= {datetime_to_ns(start)}")
        if end is not None:
            conditions.append(f"time < {datetime_to_ns(end)}")
        order = "DESC" if newest_first else "ASC"
        tail = f"ORDER BY time {order}" + (f" LIMIT {int(limit)}" if limit is not None else "")
        statement = _select("*", self._source(self._measurements[kind]), conditions, tail)
        (result,) = await self._query([statement])
        return [_to_stored(kind, time_ns, row) for time_ns, row in _rows(result)]

    async def latest(self, kind: Kind) -> list[StoredResult]:
        statement = _select(
            "*",
            self._source(self._measurements[kind]),
            [],
            f"GROUP BY {quote_ident('probe')} ORDER BY time DESC LIMIT 1",
        )
        (result,) = await self._query([statement])
        return [_to_stored(kind, time_ns, row) for time_ns, row in _rows(result)]

    def _source(self, measurement: str) -> str:
        if self._retention_policy is None:
            return quote_ident(measurement)
        return f"{quote_ident(self._retention_policy)}.{quote_ident(measurement)}"

    async def _ping(self) -> str | None:
        status, body, version = await self._request("GET", "/ping", params={})
        _raise_for_status(status, body, f"InfluxDB at {self._url} does not answer /ping")
        return version

    async def _write(self, body: str) -> None:
        params = {"db": self._database, "precision": "ns"}
        if self._retention_policy is not None:
            params["rp"] = self._retention_policy
        status, reply, _ = await self._request("POST", "/write", params=params, data=body.encode())
        _raise_for_status(
            status,
            reply,
            f"InfluxDB refused the write to database {self._database!r}"
            " (resending the same results is safe: each is stored once)",
        )

    async def _query(self, statements: list[str], *, use_db: bool = True) -> list[dict[str, Any]]:
        """Run ``statements`` in one ``/query`` call; one result object per statement."""
        params = {"epoch": "ns"}
        if use_db:
            params["db"] = self._database
        status, body, _ = await self._request(
            "POST", "/query", params=params, data={"q": ";".join(statements)}
        )
        if status == 400:
            # Our statement is malformed: a bug here, not a storage outage.
            raise ValueError(f"InfluxDB refused the query: {_error_text(body)}")
        _raise_for_status(status, body, f"InfluxDB at {self._url} failed a query")
        try:
            results: list[dict[str, Any]] = json.loads(body)["results"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageUnavailable(
                f"InfluxDB at {self._url} sent an unreadable query reply: {body[:200]!r}"
            ) from exc
        if len(results) != len(statements):
            raise StorageUnavailable(
                f"InfluxDB at {self._url} answered {len(results)} of {len(statements)} statements"
            )
        for result in results:
            if "error" in result:
                raise StorageUnavailable(
                    f"InfluxDB at {self._url} could not run a query on database"
                    f" {self._database!r}: {result['error']}"
                )
        return results

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str],
        data: bytes | Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, str | None]:
        """Status, body and server version of one HTTP call: the one place that translates
        aiohttp's and asyncio's exceptions into ``StorageUnavailable``."""
        session = self._session
        if session is None:
            raise StorageUnavailable(f"InfluxDB store for {self._url} is not started or is closed")
        try:
            async with session.request(
                method, self._url + path, params=params, data=data
            ) as response:
                return (
                    response.status,
                    await response.read(),
                    response.headers.get("X-Influxdb-Version"),
                )
        except TimeoutError as exc:
            raise StorageUnavailable(
                f"InfluxDB at {self._url} did not answer {path} within"
                f" {self._timeout.total:g} s: check that influxd is running and not overloaded"
            ) from exc
        except aiohttp.ClientError as exc:
            raise StorageUnavailable(
                f"InfluxDB at {self._url} is unreachable ({type(exc).__name__}: {exc}):"
                " check that influxd is running and the url is right"
            ) from exc


def _select(columns: str, source: str, conditions: Sequence[str], tail: str = "") -> str:
    """One InfluxQL SELECT from parts already quoted with ``quote_ident``/``quote_string``."""
    statement = f"SELECT {columns} FROM {source}"  # noqa: S608 (every part is quoted)
    if conditions:
        statement += " WHERE " + " AND ".join(conditions)
    return f"{statement} {tail}".rstrip()


def _raise_for_status(status: int, body: bytes, what: str) -> None:
    if 200 <= status < 300:
        return
    if status in (401, 403):
        raise StorageUnavailable(
            f"{what}: authentication failed (HTTP {status}: {_error_text(body)});"
            " check the InfluxDB username and password, or the token"
        )
    raise StorageUnavailable(f"{what}: HTTP {status}: {_error_text(body)}")


def _error_text(body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        error = body.decode("utf-8", errors="replace").strip() or "(no detail)"
    return str(error)[:_MAX_ERROR_CHARS]


def _rows(result: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """``(time_ns, columns)`` of every row of one statement's result. Tags a ``GROUP BY`` moved
    into the series' ``tags`` object are put back among the columns."""
    rows = []
    for series in result.get("series", ()):
        grouped = {k: v for k, v in (series.get("tags") or {}).items() if v}
        columns = series["columns"]
        for values in series.get("values", ()):
            row = dict(zip(columns, values, strict=True)) | grouped
            rows.append((int(row.pop("time")), row))
    return rows


def _to_stored(kind: Kind, time_ns: int, row: Mapping[str, Any]) -> StoredResult:
    tags = {key: row[key] for key in TAG_KEYS if row.get(key) is not None}
    fields = {key: value for key, value in row.items() if key not in TAG_KEYS}
    return row_to_result(kind, tags, fields, time_ns)
