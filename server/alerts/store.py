"""Durable alert state and the notification outbox, in their own SQLite file
(``data_dir/alerts.sqlite3``, WAL, ``synchronous=FULL``), whatever the result store is.

One transaction per evaluation step holds the new state of a (rule, subject), the notices it
produced and their deliveries (one row per notice and channel), and the history row of a phase
change. A crash before the commit leaves the previous state, and replaying from it gives the same
notices with the same ids (``server.alerts.state``), which ``INSERT OR IGNORE`` on the notice id
keeps from being queued twice; a crash after the commit leaves the notices queued. So a restart
neither loses a firing alert nor sends it twice.

Channels are stored as keys (``office/0``, ``isp/VNPT/1``: the contact and the position of the URL
in its list), never as URLs: the URLs hold secrets and stay in the configuration.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from server.alerts.state import (
    AlertState,
    Notification,
    Phase,
    Subject,
    notification_to_json,
    state_from_json,
    state_to_json,
)
from server.storage.sqlite_thread import ErrorText, SqliteThread

FILE_NAME = "alerts.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS states (
    rule_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    phase TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (rule_id, subject)
);
CREATE TABLE IF NOT EXISTS notices (
    notice_id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    isp TEXT,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    notice TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    notice_id TEXT NOT NULL REFERENCES notices(notice_id),
    channel TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    delivered_at TEXT,
    gave_up_at TEXT,
    PRIMARY KEY (notice_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    from_phase TEXT NOT NULL,
    to_phase TEXT NOT NULL,
    episode INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_at ON transitions(at);
"""

T = TypeVar("T")


def _ts(at: datetime) -> str:
    """Fixed-width UTC text, so SQL compares times as strings correctly."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dt(text: str | None) -> datetime | None:
    return (
        None
        if text is None
        else datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    )


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A notice ready to queue: rendered, and the channel keys it goes to."""

    notice: Notification
    title: str
    body: str
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (notice, channel) row of the outbox."""

    notice_id: str
    channel: str
    kind: str
    isp: str | None
    title: str
    body: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None
    gave_up_at: datetime | None


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    at: datetime
    rule_id: str
    subject: str
    from_phase: Phase
    to_phase: Phase
    episode: int
    state: AlertState


def _row_to_delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        notice_id=row["notice_id"],
        channel=row["channel"],
        kind=row["kind"],
        isp=row["isp"],
        title=row["title"],
        body=row["body"],
        created_at=_dt(row["created_at"]) or datetime.min.replace(tzinfo=UTC),
        attempts=row["attempts"],
        next_attempt_at=_dt(row["next_attempt_at"]) or datetime.min.replace(tzinfo=UTC),
        last_error=row["last_error"],
        delivered_at=_dt(row["delivered_at"]),
        gave_up_at=_dt(row["gave_up_at"]),
    )


_DELIVERY_SELECT = """
SELECT d.notice_id, d.channel, d.attempts, d.next_attempt_at, d.last_error, d.delivered_at,
       d.gave_up_at, n.kind, n.isp, n.title, n.body, n.created_at
FROM deliveries d JOIN notices n ON n.notice_id = d.notice_id
"""


class AlertStore:
    """Async front of the alerts file; every sqlite call runs on one dedicated thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = SqliteThread(
            path,
            what="alert store",
            synchronous="FULL",
            thread_name="alerts-store",
            errors=ErrorText.short(),
            make_directory=True,
            row_factory=sqlite3.Row,
            foreign_keys=True,
        )

    # -- plumbing -----------------------------------------------------------------------------
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the connection, in the store's thread."""
        return await self._db.run(lambda: fn(self._db.connection()))

    async def open(self) -> None:
        await self._db.open(_SCHEMA)

    async def close(self) -> None:
        await self._db.close()

    # -- states -------------------------------------------------------------------------------
    async def state(self, rule_id: str, subject: Subject) -> AlertState | None:
        def fetch(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT state FROM states WHERE rule_id=? AND subject=?", (rule_id, subject.key)
            ).fetchone()
            return None if row is None else str(row["state"])

        text = await self._run(fetch)
        return None if text is None else state_from_json(text)

    async def states(self, *, phases: Sequence[Phase] = ()) -> list[AlertState]:
        """Every stored state (or those in ``phases``), by rule and subject."""

        def fetch(conn: sqlite3.Connection) -> list[str]:
            sql = "SELECT state FROM states"
            args: tuple[str, ...] = ()
            if phases:
                sql += f" WHERE phase IN ({','.join('?' * len(phases))})"
                args = tuple(p.value for p in phases)
            return [r["state"] for r in conn.execute(sql + " ORDER BY rule_id, subject", args)]

        return [state_from_json(t) for t in await self._run(fetch)]

    async def commit(
        self,
        before: AlertState,
        after: AlertState,
        outgoing: Sequence[Outgoing],
        now: datetime,
    ) -> int:
        """Store ``after`` and queue ``outgoing`` in one transaction, with a history row when
        the stored phase changes (``before`` counts for a subject not stored yet). Returns the
        deliveries newly queued: a notice already in the outbox (the same transition replayed
        after a crash) is not queued again."""
        state_text = state_to_json(after)
        stamp = _ts(now)

        def write(conn: sqlite3.Connection) -> int:
            queued = 0
            conn.execute("BEGIN IMMEDIATE")
            try:
                # History follows the stored phase, not the caller's: a replayed step (the
                # same transition after a crash) finds its phase stored already and adds none.
                row = conn.execute(
                    "SELECT phase FROM states WHERE rule_id=? AND subject=?",
                    (after.rule_id, after.subject.key),
                ).fetchone()
                stored = Phase(row["phase"]) if row is not None else before.phase
                conn.execute(
                    "INSERT INTO states (rule_id, subject, phase, state, updated_at)"
                    " VALUES (?,?,?,?,?) ON CONFLICT (rule_id, subject) DO UPDATE SET"
                    " phase=excluded.phase, state=excluded.state, updated_at=excluded.updated_at",
                    (after.rule_id, after.subject.key, after.phase.value, state_text, stamp),
                )
                if after.phase is not stored:
                    conn.execute(
                        "INSERT INTO transitions (at, rule_id, subject, from_phase, to_phase,"
                        " episode, state) VALUES (?,?,?,?,?,?,?)",
                        (
                            stamp,
                            after.rule_id,
                            after.subject.key,
                            stored.value,
                            after.phase.value,
                            after.episode,
                            state_text,
                        ),
                    )
                for out in outgoing:
                    notice = out.notice
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO notices (notice_id, rule_id, subject, kind, isp,"
                        " title, body, notice, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            notice.id,
                            notice.rule_id,
                            notice.subject.key,
                            notice.kind.value,
                            notice.subject.isp,
                            out.title,
                            out.body,
                            notification_to_json(notice),
                            stamp,
                        ),
                    )
                    if cur.rowcount == 0:
                        continue  # queued before (a replay): its deliveries stand as they are
                    for channel in out.channels:
                        conn.execute(
                            "INSERT INTO deliveries (notice_id, channel, next_attempt_at)"
                            " VALUES (?,?,?)",
                            (notice.id, channel, stamp),
                        )
                        queued += 1
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return queued

        return await self._run(write)

    async def transitions(
        self, *, since: datetime | None = None, limit: int = 1000
    ) -> list[TransitionRecord]:
        """History, newest first."""

        def fetch(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            sql = "SELECT * FROM transitions"
            args: tuple[object, ...] = ()
            if since is not None:
                sql += " WHERE at >= ?"
                args = (_ts(since),)
            return list(conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)))

        return [
            TransitionRecord(
                at=_dt(r["at"]) or datetime.min.replace(tzinfo=UTC),
                rule_id=r["rule_id"],
                subject=r["subject"],
                from_phase=Phase(r["from_phase"]),
                to_phase=Phase(r["to_phase"]),
                episode=r["episode"],
                state=state_from_json(r["state"]),
            )
            for r in await self._run(fetch)
        ]

    # -- the outbox ---------------------------------------------------------------------------
    async def due(
        self, now: datetime, *, limit: int = 100, exclude: Sequence[tuple[str, str]] = ()
    ) -> list[Delivery]:
        """Deliveries not yet made nor given up whose next attempt is due, oldest first;
        ``exclude`` leaves out (notice id, channel) pairs already in flight."""
        skip = set(exclude)

        def fetch(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return list(
                conn.execute(
                    _DELIVERY_SELECT + " WHERE d.delivered_at IS NULL AND d.gave_up_at IS NULL"
                    " AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at, n.created_at"
                    " LIMIT ?",
                    (_ts(now), limit + len(skip)),
                )
            )

        rows = [_row_to_delivery(r) for r in await self._run(fetch)]
        return [d for d in rows if (d.notice_id, d.channel) not in skip][:limit]

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending delivery falls due; none pending: ``None``."""

        def fetch(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT MIN(next_attempt_at) FROM deliveries"
                " WHERE delivered_at IS NULL AND gave_up_at IS NULL"
            ).fetchone()
            return None if row is None else row[0]

        return _dt(await self._run(fetch))

    async def deliveries(self, *, notice_id: str | None = None) -> list[Delivery]:
        def fetch(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            where, args = ("", ()) if notice_id is None else (" WHERE d.notice_id=?", (notice_id,))
            return list(
                conn.execute(_DELIVERY_SELECT + where + " ORDER BY n.created_at, d.channel", args)
            )

        return [_row_to_delivery(r) for r in await self._run(fetch)]

    async def mark_delivered(self, notice_id: str, channel: str, at: datetime) -> None:
        await self._update(
            "attempts=attempts+1, delivered_at=?, last_error=NULL", (_ts(at),), notice_id, channel
        )

    async def mark_failed(
        self, notice_id: str, channel: str, error: str, retry_at: datetime
    ) -> None:
        """A failed attempt: ``error`` must already be free of secrets (``delivery.redact``)."""
        await self._update(
            "attempts=attempts+1, last_error=?, next_attempt_at=?",
            (error[:500], _ts(retry_at)),
            notice_id,
            channel,
        )

    async def mark_given_up(self, notice_id: str, channel: str, error: str, at: datetime) -> None:
        await self._update("last_error=?, gave_up_at=?", (error[:500], _ts(at)), notice_id, channel)

    async def _update(
        self, assignments: str, args: tuple[object, ...], notice_id: str, channel: str
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE deliveries SET {assignments} WHERE notice_id=? AND channel=?",  # noqa: S608 (fixed text)
                (*args, notice_id, channel),
            )

        await self._run(write)
