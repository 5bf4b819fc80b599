"""Keeps results in InfluxDB through its v1 HTTP API (``/write``, ``/query``, ``/ping``).

InfluxDB 1.x serves this API natively; 2.x and 3.x serve it for compatibility (with
``Authorization: Token``). One measurement per result kind, one point per result; the point
layout is ``lineprotocol``'s. InfluxDB has no unique keys and a point is only its series and
timestamp, so a ``ledger`` beside it says which ``result_id`` values are stored and gives each
result a nanosecond timestamp of its own within the microsecond of its ``measured_at``.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from probes.models import DEFAULT_MAX_RESULT_AGE, Kind
from server.errors import ConfigError, StorageUnavailable
from server.storage import alert_rows, compliance_rows
from server.storage.alert_rows import AlertRow
from server.storage.base import (
    SCAN_PAGE_SIZE,
    ItemWrite,
    Refused,
    ScanRow,
    StoredResult,
    WriteOutcome,
)
from server.storage.compliance_rows import ComplianceRow
from server.storage.ledger import Entry, Ledger, Write, content_hash
from server.storage.lineprotocol import (
    TAG_KEYS,
    FieldType,
    datetime_to_ns,
    ns_to_datetime,
    result_to_line,
    row_to_result,
)
from server.storage.scan import check_page_size, probe_filter, repage, retype, scan_fields

log = logging.getLogger(__name__)

# Plain names keep measurements clear of line protocol's escaping rules altogether.
_MEASUREMENT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

# How much of an error reply goes into a message.
_MAX_ERROR_CHARS = 500

# Query replies larger than this are parsed in a worker thread, off the event loop.
_PARSE_INLINE_BYTES = 64 * 1024
_CONVERT_INLINE_ROWS = 64

#: Ledger rows are kept this long past the oldest ``measured_at`` the server accepts: results
#: older than that are refused before they reach the store, so their rows can no longer matter.
LEDGER_MARGIN = timedelta(days=2)
_PRUNE_EVERY_S = 3600.0
# The ledger is rebuilt from the database in windows of this length (halved on a truncated reply).
_REBUILD_WINDOW = timedelta(days=1)
# A scan's first time slice; each next one is sized from the density of the one before, and at
# most this many times longer.
_SCAN_FIRST_SLICE = timedelta(hours=1)
_SCAN_GROWTH = 16
# Points per slice query at most: InfluxDB 1.x (1.6 at least) flags a reply of more than one
# internal chunk of 10,000 rows ``partial`` even when it holds them all, and a partial reply is
# read again in halves; slices sized below it seldom are.
_SCAN_ROWS_PER_QUERY = 5_000
# Up to this many probes are filtered in InfluxQL (``probe = 'a' OR ...``); a longer list is
# filtered here instead: 1,000 ORed conditions in every slice's query cost InfluxDB more than
# reading the other probes' points (bench/compliance.py).
_PROBES_IN_QUERY = 50
_MICROSECOND = timedelta(microseconds=1)
# The columns a scan always reads: who, and the id that orders results of one microsecond.
_SCAN_KEYS = ("probe", "hamlet", "isp", "access", "result_id")


class WriteVerdict(enum.Enum):
    """What one ``/write`` reply says about the points it carried."""

    WRITTEN = "written"  # every point is stored
    REFUSED = "refused"  # the database refused some or all points for a reason about them
    UNAVAILABLE = "unavailable"  # nothing can be said of the points; try again later


def classify_write_reply(status: int, body: bytes) -> tuple[WriteVerdict, str]:
    """The verdict on a ``/write`` reply and the database's words for it: the one place that
    reads InfluxDB's write statuses.

    InfluxDB 1.x answers 400 when it refused points for a reason retrying cannot cure, and
    still stores the others: ``partial write: points beyond retention policy dropped=N``, a
    field type conflict, a line it cannot parse, ``max-values-per-tag`` (``services/httpd/
    handler.go``, ``serveWrite``). It does not say which points. 413 (body over
    ``max-body-size``) is a refusal of this body's size, cured by sending fewer points. Everything
    else (401/403, a missing database, 5xx) means the database cannot take writes now.
    """
    if 200 <= status < 300:
        return WriteVerdict.WRITTEN, ""
    text = _error_text(body)
    if status in (400, 413):
        return WriteVerdict.REFUSED, f"InfluxDB refused it (HTTP {status}): {text}"
    if status in (401, 403):
        return WriteVerdict.UNAVAILABLE, (
            f"authentication failed (HTTP {status}: {text});"
            " check the InfluxDB username and password, or the token"
        )
    return WriteVerdict.UNAVAILABLE, f"HTTP {status}: {text}"


class _Truncated(StorageUnavailable):
    """InfluxDB cut a query reply short (``partial``: its ``max-row-limit``)."""


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
        ledger_path: Path | str | None = None,
        max_result_age: timedelta = DEFAULT_MAX_RESULT_AGE,
    ) -> None:
        """``ledger_path`` is the ledger's SQLite file (the server keeps it in its data
        directory); None keeps it in memory and rebuilds it from the database at each start.
        ``max_result_age`` is the oldest ``measured_at`` the server accepts."""
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
        self._ledger = Ledger(Path(ledger_path) if ledger_path is not None else None)
        self._ledger_keep = max_result_age + LEDGER_MARGIN
        self._pruned_at: float | None = None
        # The ledger is checked against the database before the first write (not at start: the
        # database may be missing or refuse our credentials until then, as /ping does not).
        self._ledger_checked = False
        self._ledger_lock = asyncio.Lock()

    def __repr__(self) -> str:  # never the credentials
        return f"InfluxStore({self._url!r}, {self._database!r})"

    async def start(self) -> None:
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        try:
            await self._ledger.open()
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
        await self._ledger.close()
        self._ledger_checked = False  # an in-memory ledger is gone with it

    async def check(self) -> None:
        await self._ping()

    async def write(self, items: Sequence[StoredResult]) -> list[ItemWrite]:
        """Ask the ledger about the batch's own ids, write the new points in one ``/write``,
        then record them in the ledger.

        A crash (or an unavailable database) between the ledger's reservation and its record
        leaves the reservation pending: the re-sent result is written again at the same
        timestamp, the same point, so it is stored once. Two calls racing with the same result
        both write that same point.
        """
        if not items:
            return []
        try:
            entries = [
                Entry(
                    result_id=str(item.result.result_id),
                    probe_id=item.identity.probe_id,
                    measurement=self._measurements[item.kind],
                    microsecond_ns=datetime_to_ns(item.result.measured_at),
                    content=content_hash(item),
                )
                for item in items
            ]
            # Checked before the ledger reserves anything: a tag InfluxDB cannot carry.
            for item, entry in zip(items, entries, strict=True):
                result_to_line(item, entry.measurement)
        except ValueError as exc:
            raise StorageUnavailable(f"InfluxDB cannot store this batch: {exc}") from exc
        await self._prepare_ledger()
        steps = await self._ledger.plan(entries)
        to_write = [
            (index, result_to_line(items[index], entries[index].measurement, step.time_ns))
            for index, step in enumerate(steps)
            if isinstance(step, Write)
        ]
        outcomes: list[ItemWrite] = [
            WriteOutcome.ACCEPTED if isinstance(step, Write) else step for step in steps
        ]
        refusals = await self._write_lines([line for _, line in to_write])
        for (index, _), refusal in zip(to_write, refusals, strict=True):
            if refusal is not None:
                outcomes[index] = Refused(refusal)
                log.warning(
                    "InfluxDB refused result %s of probe %s: %s",
                    entries[index].result_id, entries[index].probe_id, refusal,
                )  # fmt: skip
        await self._ledger.settle(
            written=[
                entries[i].result_id for i, _ in to_write if outcomes[i] is WriteOutcome.ACCEPTED
            ],
            refused=[entries[i].result_id for i, _ in to_write if isinstance(outcomes[i], Refused)],
        )
        # A repeat within the call shares the fate of the first copy.
        first: dict[str, int] = {}
        for index, entry in enumerate(entries):
            earlier = first.setdefault(entry.result_id, index)
            if earlier != index and isinstance(outcomes[earlier], Refused):
                if outcomes[index] is WriteOutcome.DUPLICATE:
                    outcomes[index] = outcomes[earlier]
        return outcomes

    async def _write_lines(self, lines: list[str]) -> list[str | None]:
        """Write ``lines``; for each, None once stored or the database's reason for refusing it.

        InfluxDB 1.x's 400 does not say which points it refused (and stored the others), so the
        refused ones are found by writing halves again until each refusal is down to one line:
        writing a point again is idempotent. Costs about 2·k·log2(n) more writes for k refused
        points of n, and nothing when none is refused. Raises ``StorageUnavailable`` when the
        database is unavailable.
        """
        if not lines:
            return []
        verdict, detail = await self._write("\n".join(lines))
        if verdict is WriteVerdict.WRITTEN:
            return [None] * len(lines)
        if verdict is WriteVerdict.UNAVAILABLE:
            raise StorageUnavailable(
                f"InfluxDB refused the write to database {self._database!r}: {detail}"
                " (resending the same results is safe: each is stored once)"
            )
        if len(lines) == 1:
            return [detail]
        middle = len(lines) // 2
        return await self._write_lines(lines[:middle]) + await self._write_lines(lines[middle:])

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
        return await _convert(kind, result)

    async def latest(self, kind: Kind) -> list[StoredResult]:
        statement = _select(
            "*",
            self._source(self._measurements[kind]),
            [],
            f"GROUP BY {quote_ident('probe')} ORDER BY time DESC LIMIT 1",
        )
        (result,) = await self._query([statement])
        return await _convert(kind, result)

    async def scan(
        self,
        kind: Kind,
        start: datetime,
        end: datetime,
        *,
        probes: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        page_size: int = SCAN_PAGE_SIZE,
    ) -> AsyncIterator[list[ScanRow]]:
        """Reads the window in consecutive time slices, one query of up to about ``page_size``
        points each (``_SCAN_ROWS_PER_QUERY`` at most), and hands the rows on in pages.

        InfluxDB 1.x pages by ``LIMIT``/``OFFSET`` by reading every skipped point again, so the
        window is cut by time instead, each slice sized from the density of the one before (a
        slice InfluxDB truncates, ``partial``, is read again in halves). Slices start and end on
        whole microseconds: the results of one microsecond, whose points differ only in their
        sub-microsecond offsets (``ledger``), always share a slice and are sorted together.
        """
        kind = Kind(kind)
        wanted = scan_fields(kind, fields)
        check_page_size(page_size)
        keep = probe_filter(probes)
        start_ns, end_ns = datetime_to_ns(start), datetime_to_ns(end)  # refuses naive times
        if keep == [] or start_ns >= end_ns:
            return
        rows_per_query = min(page_size, _SCAN_ROWS_PER_QUERY)
        slices = self._scan_slices(kind, start, end, keep, wanted, rows_per_query)
        async for page in repage(slices, page_size):
            yield page

    async def _scan_slices(
        self,
        kind: Kind,
        start: datetime,
        end: datetime,
        keep: list[str] | None,
        wanted: dict[str, FieldType],
        target_rows: int,
    ) -> AsyncIterator[list[ScanRow]]:
        """The rows of consecutive slices of ``start``..``end``, each slice in scan order."""
        columns = list(dict.fromkeys([*_SCAN_KEYS, *wanted]))
        selected = ", ".join(quote_ident(column) for column in columns)
        source = self._source(self._measurements[kind])
        filters = []
        only = frozenset(keep) if keep is not None and len(keep) > _PROBES_IN_QUERY else None
        if keep is not None and only is None:
            wanted_probes = " OR ".join(
                f"{quote_ident('probe')} = {quote_string(probe)}" for probe in keep
            )
            filters.append(f"({wanted_probes})")
        span = _SCAN_FIRST_SLICE
        while start < end:
            stop = min(start + span, end)
            conditions = [
                *filters,
                f"time >= {datetime_to_ns(start)}",
                f"time < {datetime_to_ns(stop)}",
            ]
            try:
                (result,) = await self._query([_select(selected, source, conditions)])
            except _Truncated:
                if stop - start <= _MICROSECOND:
                    raise
                span = max((stop - start) / 2, _MICROSECOND)
                continue
            count = sum(len(series.get("values", ())) for series in result.get("series", ()))
            if count > _CONVERT_INLINE_ROWS:
                rows = await asyncio.to_thread(_scan_rows, result, wanted, only)
            else:
                rows = _scan_rows(result, wanted, only)
            if rows:
                yield rows
            longest = (stop - start) * _SCAN_GROWTH
            span = longest if not count else (stop - start) * (target_rows / count)
            span = min(max(span, _MICROSECOND), longest)
            start = stop

    async def count_by_probe(
        self, kind: Kind, start: datetime, end: datetime, *, probes: Sequence[str] | None = None
    ) -> dict[str, int]:
        """``SELECT COUNT(result_id) ... GROUP BY probe``: every point carries ``result_id`` (it
        names the result, ``lineprotocol``), whatever else the result leaves unset. A point's
        time is ``measured_at`` plus under a microsecond (``ledger``), and both bounds are whole
        microseconds, so the window holds the same results as ``scan``'s. ``probes`` narrows the
        answer, not the query (one series per probe: counting the others costs little)."""
        start_ns, end_ns = datetime_to_ns(start), datetime_to_ns(end)
        if start_ns >= end_ns:
            return {}
        statement = _select(
            f"COUNT({quote_ident('result_id')})",
            self._source(self._measurements[Kind(kind)]),
            [f"time >= {start_ns}", f"time < {end_ns}"],
            f"GROUP BY {quote_ident('probe')}",
        )
        (result,) = await self._query([statement])
        wanted = None if probes is None else set(probes)
        return {
            str(row["probe"]): int(row["count"])
            for _, row in _rows(result)
            if row["count"] and (wanted is None or row["probe"] in wanted)
        }

    def _source(self, measurement: str) -> str:
        if self._retention_policy is None:
            return quote_ident(measurement)
        return f"{quote_ident(self._retention_policy)}.{quote_ident(measurement)}"

    async def _ping(self) -> str | None:
        status, body, version = await self._request("GET", "/ping", params={})
        _raise_for_status(status, body, f"InfluxDB at {self._url} does not answer /ping")
        return version

    async def _write(self, body: str) -> tuple[WriteVerdict, str]:
        params = {"db": self._database, "precision": "ns"}
        if self._retention_policy is not None:
            params["rp"] = self._retention_policy
        status, reply, _ = await self._request("POST", "/write", params=params, data=body.encode())
        return classify_write_reply(status, reply)

    async def _prepare_ledger(self) -> None:
        async with self._ledger_lock:
            if not self._ledger_checked:
                await self._rebuild_ledger_if_new()
                self._ledger_checked = True
            await self._prune_ledger()

    async def _prune_ledger(self) -> None:
        """Forget ledger rows too old to matter, at start and then once an hour."""
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < _PRUNE_EVERY_S:
            return
        self._pruned_at = now
        gone = await self._ledger.prune(datetime_to_ns(datetime.now(UTC) - self._ledger_keep))
        if gone:
            log.info("forgot %d ledger rows older than %s", gone, self._ledger_keep)

    async def _rebuild_ledger_if_new(self) -> None:
        """Fill a ledger that has never described this database from the points it holds.

        Without it, a result stored before the ledger existed (an upgrade, a lost data
        directory, an in-memory ledger) and sent again would become a second point, and a new
        result could take its timestamp. Content is unknown for these rows: a re-sent id among
        them is a duplicate.
        """
        described = f"{self._url} {self._database} {self._retention_policy or ''}"
        if await self._ledger.get_meta("database") == described:
            return
        await self._ledger.reset()
        (shown,) = await self._query(["SHOW MEASUREMENTS"])
        present = {row["name"] for _, row in _rows(shown, timed=False)}
        since = datetime.now(UTC) - self._ledger_keep
        total = 0
        for measurement in sorted(set(self._measurements.values()) & present):
            start = since
            while True:
                last = start + _REBUILD_WINDOW > datetime.now(UTC) + LEDGER_MARGIN
                end = None if last else start + _REBUILD_WINDOW
                rows = await self._ids_between(measurement, start, end)
                await self._ledger.add_written(rows)
                total += len(rows)
                if end is None:
                    break
                start = end
        await self._ledger.set_meta("database", described)
        log.info("ledger %s rebuilt from %d stored results", self._ledger.where, total)

    async def _ids_between(
        self, measurement: str, start: datetime, end: datetime | None
    ) -> list[tuple[str, str, str, int]]:
        """``(result_id, probe, measurement, time_ns)`` of the points from ``start`` to ``end``;
        a window InfluxDB truncates (its ``max-row-limit``) is read again in halves."""
        conditions = [f"time >= {datetime_to_ns(start)}"]
        if end is not None:
            conditions.append(f"time < {datetime_to_ns(end)}")
        columns = f"{quote_ident('result_id')}, {quote_ident('probe')}"
        statement = _select(columns, self._source(measurement), conditions)
        try:
            (result,) = await self._query([statement])
        except _Truncated:
            if end is None:
                end = datetime.now(UTC) + LEDGER_MARGIN
            if end - start <= timedelta(seconds=1):
                raise
            middle = start + (end - start) / 2
            return await self._ids_between(measurement, start, middle) + await self._ids_between(
                measurement, middle, end
            )
        return [
            (str(row["result_id"]), str(row["probe"]), measurement, time_ns)
            for time_ns, row in _rows(result)
        ]

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
            if len(body) > _PARSE_INLINE_BYTES:
                decoded = await asyncio.to_thread(json.loads, body)
            else:
                decoded = json.loads(body)
            results: list[dict[str, Any]] = decoded["results"]
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
            if is_truncated(result):
                raise _Truncated(
                    f"InfluxDB at {self._url} cut its reply short (partial: its [http]"
                    " max-row-limit): ask for less (a narrower time range or a limit), or raise"
                    " max-row-limit in influxdb.conf"
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

    # -- Published compliance rows (server.compliance.publish; helper "grafana") ----------------

    async def replace_compliance(
        self, start: datetime, end: datetime, rows: Sequence[ComplianceRow]
    ) -> None:
        """Delete the ``compliance`` points with ``start <= time < end``, then write ``rows``:
        re-publishing a month replaces it. Raises ``StorageUnavailable`` if either step fails."""
        lines = [compliance_rows.row_to_line(row) for row in rows]
        await self._query(
            [compliance_rows.delete_statement(compliance_rows.MEASUREMENT, start, end)]
        )
        if not lines:
            return
        verdict, reason = await self._write("\n".join(lines))
        if verdict is not WriteVerdict.WRITTEN:
            raise StorageUnavailable(
                f"InfluxDB at {self._url} did not keep compliance rows: {reason}"
            )

    async def compliance_rows(self, start: datetime, end: datetime) -> list[ComplianceRow]:
        statement = compliance_rows.select_statement(compliance_rows.MEASUREMENT, start, end)
        (result,) = await self._query([statement])
        rows = [compliance_rows.influx_row(t, columns) for t, columns in _rows(result)]
        return sorted(rows, key=compliance_rows.sort_key)

    # -- End of published compliance rows --------------------------------------------------------

    # -- Alert history (server.alerts.service; helper "alerts3") --------------------------------

    async def write_alert_rows(self, rows: Sequence[AlertRow]) -> None:
        """Write alert history points (one per phase change) to the ``alerts`` measurement.
        Raises ``StorageUnavailable`` when InfluxDB does not keep them."""
        if not rows:
            return
        verdict, reason = await self._write("\n".join(alert_rows.row_to_line(r) for r in rows))
        if verdict is not WriteVerdict.WRITTEN:
            raise StorageUnavailable(
                f"InfluxDB at {self._url} did not keep alert history: {reason}"
            )

    async def alert_rows(self, start: datetime, end: datetime) -> list[AlertRow]:
        (result,) = await self._query([alert_rows.select_statement(start, end)])
        rows = [alert_rows.influx_row(t, columns) for t, columns in _rows(result)]
        return sorted(rows, key=alert_rows.sort_key)

    # -- End of alert history ---------------------------------------------------------------------


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


def is_truncated(result: Mapping[str, Any]) -> bool:
    """Whether InfluxDB cut one statement's result short: ``partial`` on the result (more chunks
    follow) or on a series (``max-row-limit`` reached; ``services/httpd/handler.go``)."""
    return bool(result.get("partial")) or any(
        series.get("partial") for series in result.get("series", ())
    )


def _rows(result: Mapping[str, Any], *, timed: bool = True) -> list[tuple[int, dict[str, Any]]]:
    """``(time_ns, columns)`` of every row of one statement's result (time 0 when not
    ``timed``, as in SHOW replies). Tags a ``GROUP BY`` moved into the series' ``tags`` object
    are put back among the columns."""
    rows = []
    for series in result.get("series", ()):
        grouped = {k: v for k, v in (series.get("tags") or {}).items() if v}
        columns = series["columns"]
        for values in series.get("values", ()):
            row = dict(zip(columns, values, strict=True)) | grouped
            rows.append((int(row.pop("time")) if timed else 0, row))
    return rows


def _to_stored_all(kind: Kind, result: Mapping[str, Any]) -> list[StoredResult]:
    return [_to_stored(kind, time_ns, row) for time_ns, row in _rows(result)]


async def _convert(kind: Kind, result: Mapping[str, Any]) -> list[StoredResult]:
    """The stored results of a query reply; a large one is converted off the event loop."""
    rows = sum(len(series.get("values", ())) for series in result.get("series", ()))
    if rows > _CONVERT_INLINE_ROWS:
        return await asyncio.to_thread(_to_stored_all, kind, result)
    return _to_stored_all(kind, result)


def _scan_rows(
    result: Mapping[str, Any], wanted: Mapping[str, FieldType], only: frozenset[str] | None = None
) -> list[ScanRow]:
    """The rows of one slice's reply (of the probes ``only``, if given), in scan order:
    ``measured_at`` (the point's time without its sub-microsecond offset), then probe, then
    result id."""
    keyed: list[tuple[int, str, str, ScanRow]] = []
    # InfluxDB's JSON gives a whole float as an integer; every other type comes back as stored.
    floats = [name for name, field_type in wanted.items() if field_type is FieldType.FLOAT]
    for series in result.get("series", ()):
        at = {column: index for index, column in enumerate(series["columns"])}
        time_, probe, hamlet, isp, access, result_id = (
            at[column] for column in ("time", *_SCAN_KEYS)
        )
        names = list(wanted)
        picks = [at[name] for name in names]
        for values in series.get("values", ()):
            if only is not None and values[probe] not in only:
                continue
            microsecond = int(values[time_]) // 1000
            row = ScanRow(
                probe_id=values[probe],
                hamlet=values[hamlet] or "",
                isp=values[isp] or "",
                access=values[access],
                measured_at=ns_to_datetime(microsecond * 1000),
                fields=retype(
                    dict(zip(names, [values[index] for index in picks], strict=True)),
                    floats,
                    FieldType.FLOAT,
                ),
            )
            keyed.append((microsecond, values[probe], values[result_id], row))
    keyed.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in keyed]


def _to_stored(kind: Kind, time_ns: int, row: Mapping[str, Any]) -> StoredResult:
    tags = {key: row[key] for key in TAG_KEYS if row.get(key) is not None}
    fields = {key: value for key, value in row.items() if key not in TAG_KEYS}
    return row_to_result(kind, tags, fields, time_ns)
