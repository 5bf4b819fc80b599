"""Keeps results in an embedded SQLite file: the default store, for an office PC or a Pi.

One row per result: the identity columns to filter on, and the validated result as its JSON
(``payload``) so reading back is lossless. Every sqlite3 call runs in one dedicated worker
thread that owns the connection (``SqliteThread``), never on the event loop (an SD card can
stall for seconds).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from probes.models import RESULT_ADAPTER, Access, Kind, unbounded_limits
from server.errors import ConfigError
from server.storage import alert_rows, compliance_rows
from server.storage.alert_rows import AlertRow
from server.storage.base import (
    SCAN_PAGE_SIZE,
    ItemWrite,
    ProbeIdentity,
    Refused,
    ScanRow,
    StoredResult,
    WriteOutcome,
)
from server.storage.compliance_rows import ComplianceRow
from server.storage.lineprotocol import FieldType, datetime_to_ns, ns_to_datetime
from server.storage.scan import check_page_size, probe_filter, retype, scan_fields
from server.storage.sqlite_thread import ErrorText, SqliteThread, transaction

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
-- In the order of ``scan``: a month of one kind is one range of this index, read in order.
-- Files made before it get it at their next start (built once, in one statement).
CREATE INDEX IF NOT EXISTS results_kind_time
    ON results (kind, measured_at_ns, probe_id, result_id);
"""

_INSERT = """
INSERT OR IGNORE INTO results
    (result_id, kind, probe_id, hamlet, isp, access, engine, target, measured_at_ns, payload)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_SELECT = "SELECT probe_id, hamlet, isp, access, payload FROM results"

#: ``count_by_probe``'s query for every probe (a test reads its plan: the index alone, never the
#: table).
COUNT_SQL = (
    "SELECT probe_id, COUNT(*) FROM results INDEXED BY results_kind_time"
    " WHERE kind = ? AND measured_at_ns >= ? AND measured_at_ns < ? GROUP BY probe_id"
)
#: How many probes one ``count_by_probe`` query names (SQLite limits a statement's parameters).
COUNT_PROBES_PER_QUERY = 500


def count_sql(probes: int) -> str:
    """``count_by_probe``'s query for ``probes`` named probes: one range of
    ``results_kind_probe_time`` per probe, counted in index order (no sort to group them), so it
    reads only those probes' results of the window."""
    marks = ", ".join("?" * probes)
    return (
        "SELECT probe_id, COUNT(*) FROM results INDEXED BY results_kind_probe_time"  # noqa: S608
        f" WHERE kind = ? AND probe_id IN ({marks})"  # (marks only)
        " AND measured_at_ns >= ? AND measured_at_ns < ? GROUP BY probe_id"
    )


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
        self._db = SqliteThread(
            self._path,
            what="SQLite store",
            synchronous=synchronous.upper(),
            thread_name="sqlite-store",
            errors=ErrorText(
                failed="SQLite database {where} failed ({kind}: {exc}): check that its directory"
                " exists, is writable and the disk is not full"
            ),
            require_wal=True,
        )

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    async def start(self) -> None:
        if self._db.is_open:
            return
        await self._db.open(self._create)
        log.info("storing results in SQLite at %s", self._path)

    async def close(self) -> None:
        await self._db.close()

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
        """Pages read by keyset (each page starts after the last row of the one before) along
        ``results_kind_time``, so no cursor stays open between pages and writes go on."""
        wanted = scan_fields(kind, fields)
        check_page_size(page_size)
        start_ns, end_ns = datetime_to_ns(start), datetime_to_ns(end)
        keep = probe_filter(probes)
        if keep == []:
            return
        probe_list = None if keep is None else json.dumps(keep)
        window = (Kind(kind).value, start_ns, end_ns, probe_list, wanted)
        after: tuple[int, str, str] | None = None
        while True:
            page, after = await self._run(self._scan_page, *window, after, page_size)
            if page:
                yield page
            if len(page) < page_size:
                return

    async def count_by_probe(
        self, kind: Kind, start: datetime, end: datetime, *, probes: Sequence[str] | None = None
    ) -> dict[str, int]:
        """One ``COUNT(*) ... GROUP BY probe_id`` answered by an index alone (it holds the
        probe), no payload read: over one range of ``results_kind_time`` for every probe, or one
        range of ``results_kind_probe_time`` per probe asked for (``count_sql``)."""
        window = (datetime_to_ns(start), datetime_to_ns(end))
        named = None if probes is None else sorted(set(probes))
        return await self._run(self._count_by_probe, Kind(kind).value, window, named)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` in the worker thread (sqlite3's exceptions as ``StorageUnavailable``)."""
        return await self._db.run(func, *args)

    # -- Published compliance rows (server.compliance.publish; helper "grafana") ----------------

    async def replace_compliance(
        self, start: datetime, end: datetime, rows: Sequence[ComplianceRow]
    ) -> None:
        """Delete the compliance rows with ``start <= at < end`` and keep ``rows``, in one
        transaction: re-publishing a month replaces it."""
        await self._run(self._replace_compliance, start, end, list(rows))

    async def compliance_rows(self, start: datetime, end: datetime) -> list[ComplianceRow]:
        return await self._run(self._compliance_rows, start, end)

    def _replace_compliance(
        self, start: datetime, end: datetime, rows: list[ComplianceRow]
    ) -> None:
        conn = self._connection()
        conn.executescript(compliance_rows.SQLITE_SCHEMA)
        with transaction(conn):
            conn.execute(
                compliance_rows.SQLITE_DELETE, (datetime_to_ns(start), datetime_to_ns(end))
            )
            conn.executemany(
                compliance_rows.SQLITE_INSERT, [compliance_rows.sqlite_values(r) for r in rows]
            )

    def _compliance_rows(self, start: datetime, end: datetime) -> list[ComplianceRow]:
        found = self._rows_between(
            compliance_rows.SQLITE_SCHEMA, compliance_rows.SQLITE_SELECT, start, end
        )
        return [compliance_rows.sqlite_row(*row) for row in found]

    # -- End of published compliance rows --------------------------------------------------------

    # -- Alert history (server.alerts.service; helper "alerts3") --------------------------------

    async def write_alert_rows(self, rows: Sequence[AlertRow]) -> None:
        """Keep alert history rows (one per phase change); the same row twice is kept once."""
        await self._run(self._write_alert_rows, list(rows))

    async def alert_rows(self, start: datetime, end: datetime) -> list[AlertRow]:
        return await self._run(self._alert_rows, start, end)

    def _write_alert_rows(self, rows: list[AlertRow]) -> None:
        conn = self._connection()
        conn.executescript(alert_rows.SQLITE_SCHEMA)
        with transaction(conn):
            conn.executemany(alert_rows.SQLITE_INSERT, [alert_rows.sqlite_values(r) for r in rows])

    def _alert_rows(self, start: datetime, end: datetime) -> list[AlertRow]:
        found = self._rows_between(alert_rows.SQLITE_SCHEMA, alert_rows.SQLITE_SELECT, start, end)
        return [alert_rows.sqlite_row(*row) for row in found]

    def _rows_between(
        self, schema: str, select: str, start: datetime, end: datetime
    ) -> list[tuple[Any, ...]]:
        """The rows of a side table (made by ``schema`` if missing) with ``start <= at < end``."""
        conn = self._connection()
        conn.executescript(schema)
        rows: list[tuple[Any, ...]] = conn.execute(
            select, (datetime_to_ns(start), datetime_to_ns(end))
        ).fetchall()
        return rows

    # -- End of alert history ---------------------------------------------------------------------

    # Everything below runs in the worker thread.

    def _create(self, conn: sqlite3.Connection) -> None:
        _log_index_build(conn, self._path)
        conn.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn = self._db.connection()
        # A deleted file keeps taking writes through the open descriptor, and loses them all at
        # the next start: refuse instead of reporting them accepted.
        if not self._path.exists():
            raise sqlite3.OperationalError("the database file was deleted; restart the server")
        return conn

    def _count_by_probe(
        self, kind: str, window: tuple[int, int], probes: list[str] | None
    ) -> dict[str, int]:
        conn = self._connection()
        if probes is None:
            rows = conn.execute(COUNT_SQL, (kind, *window)).fetchall()
        else:
            rows = []
            for first in range(0, len(probes), COUNT_PROBES_PER_QUERY):
                chunk = probes[first : first + COUNT_PROBES_PER_QUERY]
                rows += conn.execute(count_sql(len(chunk)), (kind, *chunk, *window)).fetchall()
        return {str(probe_id): int(count) for probe_id, count in rows}

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

    def _scan_page(
        self,
        kind: str,
        start_ns: int,
        end_ns: int,
        probes: str | None,
        wanted: dict[str, FieldType],
        after: tuple[int, str, str] | None,
        limit: int,
    ) -> tuple[list[ScanRow], tuple[int, str, str] | None]:
        """One page of ``scan`` and the key of its last row."""
        names = list(wanted)
        # The fields come out of the stored JSON in SQL: one json_extract with every path parses
        # the payload once and answers a JSON array (booleans stay booleans, numbers keep their
        # text); with one path it answers that value alone.
        paths = ", ".join(f"'$.{name}'" for name in names)  # names are checked identifiers
        extract = f"json_extract(payload, {paths})" if names else "NULL"
        sql = (
            f"SELECT probe_id, hamlet, isp, access, measured_at_ns, result_id, {extract}"  # noqa: S608
            " FROM results WHERE kind = ? AND measured_at_ns >= ? AND measured_at_ns < ?"
        )
        args: list[Any] = [kind, start_ns, end_ns]
        if probes is not None:
            sql += " AND probe_id IN (SELECT value FROM json_each(?))"
            args.append(probes)
        if after is not None:
            sql += " AND (measured_at_ns, probe_id, result_id) > (?, ?, ?)"
            args.extend(after)
        sql += " ORDER BY measured_at_ns, probe_id, result_id LIMIT ?"
        args.append(limit)
        rows = self._connection().execute(sql, args).fetchall()
        # The JSON array keeps the model's own JSON types; one value alone comes back as an SQL
        # value, a boolean as 0 or 1.
        booleans = [n for n in names if wanted[n] is FieldType.BOOLEAN] if len(names) == 1 else []
        page = [
            ScanRow(
                probe_id=probe_id,
                hamlet=hamlet,
                isp=isp,
                access=access,
                measured_at=ns_to_datetime(measured_at_ns),
                fields=retype(
                    dict(zip(names, json.loads(extracted), strict=True))
                    if len(names) > 1
                    else dict(zip(names, [extracted][: len(names)], strict=True)),
                    booleans,
                    FieldType.BOOLEAN,
                ),
            )
            for probe_id, hamlet, isp, access, measured_at_ns, _, extracted in rows
        ]
        last = (rows[-1][4], rows[-1][0], rows[-1][5]) if rows else after
        return page, last


def _log_index_build(conn: sqlite3.Connection, path: Path) -> None:
    """Say so before ``_SCHEMA`` builds the scan index over a file made before it: on an SD card
    with months of results that takes a while, once."""
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    if "results_kind_probe_time" in names and "results_kind_time" not in names:
        log.info(
            "building the scan index (results_kind_time) of %s, once: this may take a while", path
        )


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
