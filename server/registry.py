"""The probe registry: which probes exist, where they are, how they authenticate, when seen last.

It lives in its own SQLite file (``data_dir/registry.sqlite3``) whatever the result store is:
registry rows are few, relational and updated in place, which InfluxDB is not made for.

Tokens are 256-bit random strings, shown once and stored only as their SHA-256. A slow password
hash (bcrypt, scrypt) protects guessable human passwords; for a random 256-bit secret a single
SHA-256 is already preimage-proof, and it lets us look a token up by its hash in O(1).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import secrets
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal, TypeVar

from probes.models import Access
from server.compliance import rules
from server.errors import Conflict, NotFound, StorageUnavailable, Unprocessable
from server.settings import DEFAULT_COMMUNE_CODE, CommuneSettings, HamletSettings
from server.storage.base import ProbeIdentity
from server.storage.sqlite_thread import ErrorText, SqliteThread

TOKEN_PREFIX = "hn_"  # noqa: S105 (a prefix, not a secret)
#: How long an authenticated token is trusted from memory before the file is asked again, so a
#: probe disabled from the CLI is refused within this many seconds by a running server.
AUTH_CACHE_TTL_S = 5.0
#: Last-seen times are kept in memory and written at most this often.
LAST_SEEN_FLUSH_S = 10.0

#: Tables as a new file gets them. A file made by an earlier version is brought up to date by
#: ``_ADDED_COLUMNS`` (ALTER TABLE ... ADD COLUMN), so its probes and tokens are kept.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS communes (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    province TEXT
);
CREATE TABLE IF NOT EXISTS hamlets (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    population INTEGER,
    households INTEGER,
    commune TEXT,
    adults INTEGER,
    lat REAL,
    lon REAL,
    isps TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS probes (
    probe_id TEXT PRIMARY KEY,
    hamlet TEXT NOT NULL REFERENCES hamlets(code),
    isp TEXT NOT NULL,
    access TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    public_key TEXT,
    created_at TEXT NOT NULL,
    disabled_at TEXT,
    last_seen_at TEXT,
    declared_down_mbps REAL,
    declared_up_mbps REAL,
    declared_min_down_mbps REAL,
    plan_name TEXT,
    declared_by TEXT,
    declared_at TEXT,
    data_budget_bytes INTEGER
);
CREATE TABLE IF NOT EXISTS line_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    probe_id TEXT NOT NULL REFERENCES probes(probe_id),
    changed_by TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hand_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    indicator_id TEXT NOT NULL,
    commune TEXT NOT NULL,
    hamlet TEXT,
    value REAL,
    achieved INTEGER,
    as_of TEXT NOT NULL,
    source_document TEXT NOT NULL,
    entered_by TEXT NOT NULL,
    entered_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS surveys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hamlet TEXT NOT NULL REFERENCES hamlets(code),
    service TEXT NOT NULL,
    present INTEGER NOT NULL,
    surveyed_at TEXT NOT NULL,
    surveyed_by TEXT NOT NULL,
    source_document TEXT NOT NULL,
    entered_at TEXT NOT NULL,
    entered_by TEXT
);
"""
#: Columns added since the first release, per table: added to an older file when it is opened.
_ADDED_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "hamlets": [
        ("commune", "TEXT"), ("adults", "INTEGER"), ("lat", "REAL"), ("lon", "REAL"),
        ("isps", "TEXT NOT NULL DEFAULT '[]'"),
    ],
    "probes": [
        ("declared_down_mbps", "REAL"), ("declared_up_mbps", "REAL"),
        ("declared_min_down_mbps", "REAL"), ("plan_name", "TEXT"), ("declared_by", "TEXT"),
        ("declared_at", "TEXT"), ("data_budget_bytes", "INTEGER"),
    ],
}  # fmt: skip
#: The operator's declared line: what ``set_line`` changes and ``line_changes`` records.
LINE_FIELDS = (
    "declared_down_mbps", "declared_up_mbps", "declared_min_down_mbps", "plan_name",
    "data_budget_bytes",
)  # fmt: skip
#: A line's monthly data budget: at least a byte, at most what the probe's ledger counts.
MAX_DATA_BUDGET_BYTES = 2**62
SERVICES = ("fiber", "mobile", "5g")
Service = Literal["fiber", "mobile", "5g"]
#: Longest actor name, source document and plan name accepted.
MAX_TEXT = 256

T = TypeVar("T")
log = logging.getLogger("hamletnet.server.registry")


class Unchanged:
    """Marks an argument left out of ``set_line`` (``None`` there means "clear it")."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged()


def _number(value: float | str | None) -> float | None:
    return None if value is None else float(value)


def _check_place(conn: sqlite3.Connection, commune: str | None, hamlet: str | None) -> None:
    """``NotFound`` naming the commune or hamlet that is not configured (or not in the commune)."""
    if commune is not None:
        if conn.execute("SELECT 1 FROM communes WHERE code=?", (commune,)).fetchone() is None:
            known = [r[0] for r in conn.execute("SELECT code FROM communes ORDER BY code")]
            raise NotFound(
                f"commune {commune!r} is not configured; known: {', '.join(known) or 'none'}"
            )
    if hamlet is not None:
        row = conn.execute("SELECT commune FROM hamlets WHERE code=?", (hamlet,)).fetchone()
        if row is None:
            known = [r[0] for r in conn.execute("SELECT code FROM hamlets ORDER BY code")]
            raise NotFound(
                f"hamlet {hamlet!r} is not configured; known: {', '.join(known) or 'none'}"
            )
        if commune is not None and row[0] != commune:
            raise Unprocessable(f"hamlet {hamlet!r} is in commune {row[0]!r}, not {commune!r}")


@dataclass(frozen=True, slots=True)
class Hamlet:
    code: str
    name: str
    population: int | None
    households: int | None
    commune: str = DEFAULT_COMMUNE_CODE
    adults: int | None = None
    lat: float | None = None
    lon: float | None = None
    isps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Commune:
    code: str
    name: str
    province: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    probe_id: str
    hamlet: str
    isp: str
    access: Access
    created_at: datetime
    disabled_at: datetime | None
    last_seen_at: datetime | None
    public_key: str | None
    declared_down_mbps: float | None = None
    declared_up_mbps: float | None = None
    declared_min_down_mbps: float | None = None
    plan_name: str | None = None
    declared_by: str | None = None
    declared_at: datetime | None = None
    #: A metered line's monthly budget for bandwidth tests (None: none set by the office).
    data_budget_bytes: int | None = None

    @property
    def identity(self) -> ProbeIdentity:
        return ProbeIdentity(self.probe_id, self.hamlet, self.isp, self.access)

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None

    @property
    def line(self) -> rules.Line:
        """The probe's line as the compliance rules take it."""
        return rules.Line(
            hamlet=self.hamlet,
            isp=self.isp,
            access=self.access,
            declared_down_mbps=self.declared_down_mbps,
            declared_up_mbps=self.declared_up_mbps,
            declared_min_down_mbps=self.declared_min_down_mbps,
            plan_name=self.plan_name,
        )


@dataclass(frozen=True, slots=True)
class LineChange:
    """One change of a probe's declared line: who, when, and the values before and after."""

    probe_id: str
    changed_by: str
    changed_at: datetime
    old: dict[str, float | str | None]
    new: dict[str, float | str | None]


@dataclass(frozen=True, slots=True)
class HandEntryRecord:
    """A figure the office entered by hand (e.g. digital signatures as % of adults), for a
    commune or one of its hamlets, with who, when and the document it comes from."""

    indicator_id: str
    commune: str
    hamlet: str | None
    value: float | None
    achieved: bool | None
    as_of: date
    source_document: str
    entered_by: str
    entered_at: datetime

    def to_rule(self) -> rules.HandEntry:
        return rules.HandEntry(
            entered_by=self.entered_by,
            entered_at=self.entered_at,
            source_document=self.source_document,
            as_of=self.as_of,
            value=self.value,
            achieved=self.achieved,
        )


@dataclass(frozen=True, slots=True)
class SurveyRecord:
    """A field survey: whether a service is present in a hamlet, who surveyed it and when;
    ``entered_by`` is who typed it in (the actor), when not the surveyor."""

    hamlet: str
    service: Service
    present: bool
    surveyed_at: date
    surveyed_by: str
    source_document: str
    entered_at: datetime
    entered_by: str | None = None

    def to_rule(self) -> rules.Survey:
        return rules.Survey(
            present=self.present,
            surveyed_by=self.surveyed_by,
            surveyed_at=self.surveyed_at,
            source_document=self.source_document,
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def slug(text: str) -> str:
    """ASCII slug for identifiers: 'Viettel Thái Nguyên' -> 'viettel-thai-nguyen'."""
    text = text.replace("đ", "d").replace("Đ", "D")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "x"


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _row_to_probe(row: sqlite3.Row) -> ProbeRecord:
    return ProbeRecord(
        probe_id=row["probe_id"],
        hamlet=row["hamlet"],
        isp=row["isp"],
        access=Access(row["access"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        disabled_at=_ts(row["disabled_at"]),
        last_seen_at=_ts(row["last_seen_at"]),
        public_key=row["public_key"],
        declared_down_mbps=row["declared_down_mbps"],
        declared_up_mbps=row["declared_up_mbps"],
        declared_min_down_mbps=row["declared_min_down_mbps"],
        plan_name=row["plan_name"],
        declared_by=row["declared_by"],
        declared_at=_ts(row["declared_at"]),
        data_budget_bytes=row["data_budget_bytes"],
    )


def _row_to_hamlet(row: sqlite3.Row) -> Hamlet:
    return Hamlet(
        code=row["code"],
        name=row["name"],
        population=row["population"],
        households=row["households"],
        commune=row["commune"] or DEFAULT_COMMUNE_CODE,
        adults=row["adults"],
        lat=row["lat"],
        lon=row["lon"],
        isps=tuple(json.loads(row["isps"] or "[]")),
    )


def _row_to_hand_entry(row: sqlite3.Row) -> HandEntryRecord:
    achieved = row["achieved"]
    return HandEntryRecord(
        indicator_id=row["indicator_id"],
        commune=row["commune"],
        hamlet=row["hamlet"],
        value=row["value"],
        achieved=None if achieved is None else bool(achieved),
        as_of=date.fromisoformat(row["as_of"]),
        source_document=row["source_document"],
        entered_by=row["entered_by"],
        entered_at=datetime.fromisoformat(row["entered_at"]),
    )


def _row_to_survey(row: sqlite3.Row) -> SurveyRecord:
    return SurveyRecord(
        hamlet=row["hamlet"],
        service=row["service"],
        present=bool(row["present"]),
        surveyed_at=date.fromisoformat(row["surveyed_at"]),
        surveyed_by=row["surveyed_by"],
        source_document=row["source_document"],
        entered_at=datetime.fromisoformat(row["entered_at"]),
        entered_by=row["entered_by"],
    )


def _create(conn: sqlite3.Connection) -> None:
    """The tables as this version has them."""
    conn.executescript(_SCHEMA)
    _migrate(conn)


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a registry file from an earlier version lacks (its rows are kept)."""
    for table, columns in _ADDED_COLUMNS.items():
        present = {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns:
            if name not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


def check_text(key: str, value: str, *, limit: int = MAX_TEXT) -> str:
    """A free-text value (actor, source document, plan name): trimmed, 1..limit characters,
    no control characters; ``Unprocessable`` names ``key`` otherwise."""
    text = value.strip()
    if not 1 <= len(text) <= limit or re.search(r"[\x00-\x1f\x7f]", text):
        raise Unprocessable(
            f"{key}: {value!r} must be 1-{limit} characters without control characters"
        )
    return text


def check_line(down: float | None, up: float | None, minimum: float | None) -> None:
    """Declared speeds are positive and finite, and the declared minimum is at most the declared
    download speed (QCVN 34:2022 compares measurements with what the operator declares)."""
    for key, value in (
        ("declared_down_mbps", down),
        ("declared_up_mbps", up),
        ("declared_min_down_mbps", minimum),
    ):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise Unprocessable(f"{key}: {value:g} must be a positive number of Mb/s")
    if minimum is not None and down is not None and minimum > down:
        raise Unprocessable(
            f"declared_min_down_mbps: {minimum:g} is above declared_down_mbps {down:g};"
            " the declared minimum cannot exceed the declared speed"
        )


class Registry:
    """Async front of the registry file; every sqlite call runs on one dedicated thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = SqliteThread(
            path,
            what="probe registry",
            synchronous="FULL",
            thread_name="registry",
            # A constraint violated is the caller's to judge, not an unavailable file.
            errors=ErrorText.short(raised=(sqlite3.IntegrityError,)),
            make_directory=True,
            row_factory=sqlite3.Row,
            foreign_keys=True,
        )
        self._auth_cache: dict[str, tuple[float, ProbeRecord]] = {}
        self._seen: dict[str, datetime] = {}

    # -- plumbing -----------------------------------------------------------------------------
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the connection, in the registry's thread."""
        return await self._db.run(lambda: fn(self._db.connection()))

    async def open(self) -> None:
        await self._db.open(_create)

    async def close(self) -> None:
        """Close the file. Last-seen times that cannot be written (a full disk) are logged and
        dropped: they are a convenience, and a shutdown must not fail on them."""
        if not self._db.is_open:
            return
        try:
            await self.flush_last_seen()
        except StorageUnavailable as exc:
            log.warning(
                "probe registry: %d last-seen time(s) not saved on close: %s",
                len(self._seen),
                exc.detail,
            )
        await self._db.close()

    # -- hamlets ------------------------------------------------------------------------------
    async def sync_hamlets(
        self, hamlets: Sequence[HamletSettings], communes: Sequence[CommuneSettings] = ()
    ) -> None:
        """Make the commune and hamlet tables match the configuration (hamlets with probes are
        never deleted)."""

        def sync(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for c in communes:
                    conn.execute(
                        "INSERT INTO communes(code, name, province) VALUES (?,?,?)"
                        " ON CONFLICT(code) DO UPDATE SET name=excluded.name,"
                        " province=excluded.province",
                        (c.code, c.name, c.province),
                    )
                for h in hamlets:
                    conn.execute(
                        "INSERT INTO hamlets(code, name, population, households, commune, adults,"
                        " lat, lon, isps) VALUES (?,?,?,?,?,?,?,?,?)"
                        " ON CONFLICT(code) DO UPDATE SET name=excluded.name,"
                        " population=excluded.population, households=excluded.households,"
                        " commune=excluded.commune, adults=excluded.adults, lat=excluded.lat,"
                        " lon=excluded.lon, isps=excluded.isps",
                        (
                            h.code, h.name, h.population, h.households, h.commune or None,
                            h.adults, h.lat, h.lon, json.dumps(list(h.isps), ensure_ascii=False),
                        ),
                    )  # fmt: skip

        await self._run(sync)

    async def hamlets(self) -> list[Hamlet]:
        def fetch(conn: sqlite3.Connection) -> list[Hamlet]:
            rows = conn.execute("SELECT * FROM hamlets ORDER BY code").fetchall()
            return [_row_to_hamlet(r) for r in rows]

        return await self._run(fetch)

    async def communes(self) -> list[Commune]:
        def fetch(conn: sqlite3.Connection) -> list[Commune]:
            rows = conn.execute("SELECT * FROM communes ORDER BY code").fetchall()
            return [Commune(r["code"], r["name"], r["province"]) for r in rows]

        return await self._run(fetch)

    # -- declared lines -----------------------------------------------------------------------
    async def set_line(
        self,
        probe_id: str,
        *,
        declared_down_mbps: float | Unchanged | None = UNCHANGED,
        declared_up_mbps: float | Unchanged | None = UNCHANGED,
        declared_min_down_mbps: float | Unchanged | None = UNCHANGED,
        plan_name: str | Unchanged | None = UNCHANGED,
        data_budget_bytes: int | Unchanged | None = UNCHANGED,
        actor: str,
    ) -> ProbeRecord:
        """Change what the operator declared for the probe's line (``None`` clears a value, a
        value left out is kept); who and when go on the probe and into ``line_changes``."""
        actor = check_text("actor", actor)
        if isinstance(plan_name, str):
            plan_name = check_text("plan_name", plan_name)
        if isinstance(data_budget_bytes, int) and not (
            1 <= data_budget_bytes <= MAX_DATA_BUDGET_BYTES
        ):
            raise Unprocessable(
                f"data_budget_bytes: {data_budget_bytes} must be 1-{MAX_DATA_BUDGET_BYTES} bytes"
            )
        given: dict[str, float | str | None] = {
            key: value
            for key, value in (
                ("declared_down_mbps", declared_down_mbps),
                ("declared_up_mbps", declared_up_mbps),
                ("declared_min_down_mbps", declared_min_down_mbps),
                ("plan_name", plan_name),
                ("data_budget_bytes", data_budget_bytes),
            )
            if not isinstance(value, Unchanged)
        }
        when = datetime.now(UTC)

        def update(conn: sqlite3.Connection) -> ProbeRecord:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT * FROM probes WHERE probe_id=?", (probe_id,)).fetchone()
                if row is None:
                    raise NotFound(f"no probe {probe_id!r}")
                old = {key: row[key] for key in LINE_FIELDS}
                new = {**old, **given}
                check_line(
                    _number(new["declared_down_mbps"]),
                    _number(new["declared_up_mbps"]),
                    _number(new["declared_min_down_mbps"]),
                )
                if new != old:
                    conn.execute(
                        "UPDATE probes SET declared_down_mbps=?, declared_up_mbps=?,"
                        " declared_min_down_mbps=?, plan_name=?, data_budget_bytes=?,"
                        " declared_by=?, declared_at=? WHERE probe_id=?",
                        (*(new[key] for key in LINE_FIELDS), actor, when.isoformat(), probe_id),
                    )
                    conn.execute(
                        "INSERT INTO line_changes(probe_id, changed_by, changed_at, old, new)"
                        " VALUES (?,?,?,?,?)",
                        (
                            probe_id, actor, when.isoformat(),
                            json.dumps(old, ensure_ascii=False),
                            json.dumps(new, ensure_ascii=False),
                        ),
                    )  # fmt: skip
                row = conn.execute("SELECT * FROM probes WHERE probe_id=?", (probe_id,)).fetchone()
                return _row_to_probe(row)

        record = await self._run(update)
        self._auth_cache.clear()  # the next reply to the probe carries its new data budget
        return self._with_seen(record)

    async def line_changes(self, probe_id: str | None = None) -> list[LineChange]:
        """Every change of declared lines, oldest first (of one probe, if given)."""

        def fetch(conn: sqlite3.Connection) -> list[LineChange]:
            query = "SELECT * FROM line_changes"
            args: tuple[str, ...] = ()
            if probe_id is not None:
                query, args = query + " WHERE probe_id=?", (probe_id,)
            rows = conn.execute(query + " ORDER BY id", args).fetchall()
            return [
                LineChange(
                    probe_id=r["probe_id"],
                    changed_by=r["changed_by"],
                    changed_at=datetime.fromisoformat(r["changed_at"]),
                    old=json.loads(r["old"]),
                    new=json.loads(r["new"]),
                )
                for r in rows
            ]

        return await self._run(fetch)

    # -- hand-entered figures and surveys -----------------------------------------------------
    async def add_hand_entry(self, entry: HandEntryRecord) -> HandEntryRecord:
        """Store a hand-entered figure; its commune (and hamlet, if any) must be configured and
        the hamlet must be in that commune."""
        check_text("entered_by", entry.entered_by)
        check_text("source_document", entry.source_document)
        if entry.value is None and entry.achieved is None:
            raise Unprocessable("value: give a value (or achieved: true/false), not neither")
        if entry.value is not None and not math.isfinite(entry.value):
            raise Unprocessable(f"value: {entry.value!r} is not a number")

        def insert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                _check_place(conn, entry.commune, entry.hamlet)
                conn.execute(
                    "INSERT INTO hand_entries(indicator_id, commune, hamlet, value, achieved,"
                    " as_of, source_document, entered_by, entered_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        entry.indicator_id, entry.commune, entry.hamlet, entry.value,
                        None if entry.achieved is None else int(entry.achieved),
                        entry.as_of.isoformat(), entry.source_document, entry.entered_by,
                        entry.entered_at.isoformat(),
                    ),
                )  # fmt: skip

        await self._run(insert)
        return entry

    async def hand_entries(
        self, *, indicator_id: str | None = None, commune: str | None = None
    ) -> list[HandEntryRecord]:
        """Hand-entered figures, oldest entry first."""

        def fetch(conn: sqlite3.Connection) -> list[HandEntryRecord]:
            rows = conn.execute(
                "SELECT * FROM hand_entries WHERE (? IS NULL OR indicator_id=?)"
                " AND (? IS NULL OR commune=?) ORDER BY id",
                (indicator_id, indicator_id, commune, commune),
            ).fetchall()
            return [_row_to_hand_entry(r) for r in rows]

        return await self._run(fetch)

    async def add_survey(self, survey: SurveyRecord) -> SurveyRecord:
        check_text("surveyed_by", survey.surveyed_by)
        check_text("source_document", survey.source_document)
        if survey.entered_by is not None:
            check_text("entered_by", survey.entered_by)
        if survey.service not in SERVICES:
            raise Unprocessable(f"service: {survey.service!r} is not one of {', '.join(SERVICES)}")

        def insert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                _check_place(conn, None, survey.hamlet)
                conn.execute(
                    "INSERT INTO surveys(hamlet, service, present, surveyed_at, surveyed_by,"
                    " source_document, entered_at, entered_by) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        survey.hamlet, survey.service, int(survey.present),
                        survey.surveyed_at.isoformat(), survey.surveyed_by,
                        survey.source_document, survey.entered_at.isoformat(), survey.entered_by,
                    ),
                )  # fmt: skip

        await self._run(insert)
        return survey

    async def surveys(self, *, hamlet: str | None = None) -> list[SurveyRecord]:
        """Surveys, oldest entry first."""

        def fetch(conn: sqlite3.Connection) -> list[SurveyRecord]:
            rows = conn.execute(
                "SELECT * FROM surveys WHERE (? IS NULL OR hamlet=?) ORDER BY id",
                (hamlet, hamlet),
            ).fetchall()
            return [_row_to_survey(r) for r in rows]

        return await self._run(fetch)

    # -- probes -------------------------------------------------------------------------------
    async def add_probe(
        self,
        *,
        hamlet: str,
        isp: str,
        access: Access,
        probe_id: str | None = None,
        public_key: str | None = None,
    ) -> tuple[ProbeRecord, str]:
        """Register a probe; returns its record and its token, which is never retrievable again."""
        token = new_token()
        created = datetime.now(UTC)

        def insert(conn: sqlite3.Connection) -> ProbeRecord:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                if conn.execute("SELECT 1 FROM hamlets WHERE code=?", (hamlet,)).fetchone() is None:
                    known = [r[0] for r in conn.execute("SELECT code FROM hamlets ORDER BY code")]
                    raise NotFound(
                        f"hamlet {hamlet!r} is not configured; known: {', '.join(known) or 'none'}"
                    )
                pid = probe_id
                if pid is None:
                    base = f"{hamlet}-{slug(isp)}-{access.value}"[:60]
                    pid, n = base, 1
                    while conn.execute("SELECT 1 FROM probes WHERE probe_id=?", (pid,)).fetchone():
                        n += 1
                        pid = f"{base}-{n}"
                elif conn.execute("SELECT 1 FROM probes WHERE probe_id=?", (pid,)).fetchone():
                    raise Conflict(f"probe {pid!r} already exists")
                conn.execute(
                    "INSERT INTO probes(probe_id, hamlet, isp, access, token_sha256, public_key,"
                    " created_at) VALUES (?,?,?,?,?,?,?)",
                    (
                        pid,
                        hamlet,
                        isp,
                        access.value,
                        hash_token(token),
                        public_key,
                        created.isoformat(),
                    ),
                )
                row = conn.execute("SELECT * FROM probes WHERE probe_id=?", (pid,)).fetchone()
                return _row_to_probe(row)

        if not 1 <= len(isp) <= 64 or re.search(r"[\x00-\x1f\x7f\\]", isp):
            raise Unprocessable(
                f"isp {isp!r} must be 1-64 characters without control characters or backslashes"
            )
        if probe_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", probe_id):
            raise Unprocessable(
                f"probe id {probe_id!r} must be 1-64 ASCII letters, digits, '.', '_' or '-'"
            )
        return await self._run(insert), token

    async def set_disabled(self, probe_id: str, disabled: bool) -> ProbeRecord:
        when = datetime.now(UTC).isoformat() if disabled else None

        def update(conn: sqlite3.Connection) -> ProbeRecord:
            with conn:
                cur = conn.execute(
                    "UPDATE probes SET disabled_at=? WHERE probe_id=?", (when, probe_id)
                )
                if cur.rowcount == 0:
                    raise NotFound(f"no probe {probe_id!r}")
                row = conn.execute("SELECT * FROM probes WHERE probe_id=?", (probe_id,)).fetchone()
                return _row_to_probe(row)

        record = await self._run(update)
        self._auth_cache.clear()
        return record

    async def set_public_key(self, probe_id: str, public_key: str | None) -> ProbeRecord:
        """Record the probe's signing key once; a different key needs an admin reset first
        (``public_key=None``), so a stolen token alone cannot replace a probe's key."""

        def update(conn: sqlite3.Connection) -> ProbeRecord:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT * FROM probes WHERE probe_id=?", (probe_id,)).fetchone()
                if row is None:
                    raise NotFound(f"no probe {probe_id!r}")
                current = row["public_key"]
                if public_key is not None and current not in (None, public_key):
                    raise Conflict(
                        f"probe {probe_id!r} already has a different key; an admin must reset it"
                        " (PATCH /api/v1/admin/probes/ID with reset_key) before it can change"
                    )
                conn.execute(
                    "UPDATE probes SET public_key=? WHERE probe_id=?", (public_key, probe_id)
                )
                row = conn.execute("SELECT * FROM probes WHERE probe_id=?", (probe_id,)).fetchone()
                return _row_to_probe(row)

        record = await self._run(update)
        self._auth_cache.clear()
        return record

    async def probes(self) -> list[ProbeRecord]:
        def fetch(conn: sqlite3.Connection) -> list[ProbeRecord]:
            rows = conn.execute("SELECT * FROM probes ORDER BY hamlet, probe_id").fetchall()
            return [_row_to_probe(r) for r in rows]

        records = await self._run(fetch)
        return [self._with_seen(r) for r in records]

    async def get(self, probe_id: str) -> ProbeRecord:
        def fetch(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM probes WHERE probe_id=?", (probe_id,)
            ).fetchone()
            return row

        row = await self._run(fetch)
        if row is None:
            raise NotFound(f"no probe {probe_id!r}")
        return self._with_seen(_row_to_probe(row))

    async def authenticate(self, token: str) -> ProbeRecord | None:
        """The probe this token belongs to (enabled or not), or None."""
        digest = hash_token(token)
        cached = self._auth_cache.get(digest)
        now = time.monotonic()
        if cached is not None and now - cached[0] < AUTH_CACHE_TTL_S:
            return cached[1]

        def fetch(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM probes WHERE token_sha256=?", (digest,)
            ).fetchone()
            return row

        row = await self._run(fetch)
        if row is None:
            return None
        record = _row_to_probe(row)
        if len(self._auth_cache) > 10_000:
            self._auth_cache.clear()
        self._auth_cache[digest] = (now, record)
        return record

    # -- last seen ----------------------------------------------------------------------------
    def touch(self, probe_id: str, when: datetime | None = None) -> None:
        self._seen[probe_id] = when or datetime.now(UTC)

    def _with_seen(self, record: ProbeRecord) -> ProbeRecord:
        seen = self._seen.get(record.probe_id)
        if seen is None or (record.last_seen_at is not None and record.last_seen_at >= seen):
            return record
        return replace(record, last_seen_at=seen)

    async def flush_last_seen(self) -> None:
        if not self._seen:
            return
        pending, self._seen = self._seen, {}

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.executemany(
                    "UPDATE probes SET last_seen_at=? WHERE probe_id=?"
                    " AND (last_seen_at IS NULL OR last_seen_at < ?)",
                    [(t.isoformat(), p, t.isoformat()) for p, t in pending.items()],
                )

        try:
            await self._run(write)
        except StorageUnavailable:
            # Keep them for the next flush; a newer touch meanwhile wins.
            for pid, when in pending.items():
                self._seen.setdefault(pid, when)
            raise
