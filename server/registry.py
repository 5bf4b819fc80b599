"""The probe registry: which probes exist, where they are, how they authenticate, when seen last.

It lives in its own SQLite file (``data_dir/registry.sqlite3``) whatever the result store is:
registry rows are few, relational and updated in place, which InfluxDB is not made for.

Tokens are 256-bit random strings, shown once and stored only as their SHA-256. A slow password
hash (bcrypt, scrypt) protects guessable human passwords; for a random 256-bit secret a single
SHA-256 is already preimage-proof, and it lets us look a token up by its hash in O(1).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from probes.models import Access
from server.errors import Conflict, NotFound, StorageUnavailable, Unprocessable
from server.settings import HamletSettings
from server.storage.base import ProbeIdentity

TOKEN_PREFIX = "hn_"  # noqa: S105 (a prefix, not a secret)
#: How long an authenticated token is trusted from memory before the file is asked again, so a
#: probe disabled from the CLI is refused within this many seconds by a running server.
AUTH_CACHE_TTL_S = 5.0
#: Last-seen times are kept in memory and written at most this often.
LAST_SEEN_FLUSH_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hamlets (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    population INTEGER,
    households INTEGER
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
    last_seen_at TEXT
);
"""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Hamlet:
    code: str
    name: str
    population: int | None
    households: int | None


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

    @property
    def identity(self) -> ProbeIdentity:
        return ProbeIdentity(self.probe_id, self.hamlet, self.isp, self.access)

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


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
    )


class Registry:
    """Async front of the registry file; every sqlite call runs on one dedicated thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry")
        self._conn: sqlite3.Connection | None = None
        self._auth_cache: dict[str, tuple[float, ProbeRecord]] = {}
        self._seen: dict[str, datetime] = {}

    # -- plumbing -----------------------------------------------------------------------------
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                raise StorageUnavailable("the probe registry is closed")
            try:
                return fn(self._conn)
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"probe registry {self.path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        self._conn = conn

    async def open(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.open_sync)
        except (OSError, sqlite3.Error) as exc:
            raise StorageUnavailable(f"cannot open the probe registry {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._conn is None:
            return
        await self.flush_last_seen()

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

    # -- hamlets ------------------------------------------------------------------------------
    async def sync_hamlets(self, hamlets: Sequence[HamletSettings]) -> None:
        """Make the hamlet table match the configuration (hamlets with probes are never deleted)."""

        def sync(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for h in hamlets:
                    conn.execute(
                        "INSERT INTO hamlets(code, name, population, households) VALUES (?,?,?,?)"
                        " ON CONFLICT(code) DO UPDATE SET name=excluded.name,"
                        " population=excluded.population, households=excluded.households",
                        (h.code, h.name, h.population, h.households),
                    )

        await self._run(sync)

    async def hamlets(self) -> list[Hamlet]:
        def fetch(conn: sqlite3.Connection) -> list[Hamlet]:
            rows = conn.execute("SELECT * FROM hamlets ORDER BY code").fetchall()
            return [Hamlet(r["code"], r["name"], r["population"], r["households"]) for r in rows]

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
        return ProbeRecord(
            record.probe_id, record.hamlet, record.isp, record.access, record.created_at,
            record.disabled_at, seen, record.public_key,
        )  # fmt: skip

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
