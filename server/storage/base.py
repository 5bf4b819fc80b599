"""The one small interface the server uses to keep results, whatever the database behind it.

Two adapters implement it: ``influx.InfluxStore`` (InfluxDB's v1 HTTP API, which 1.x serves
natively and 2.x/3.x serve for compatibility) and ``sqlite.SqliteStore`` (the embedded default).
``tests/server/storage/test_contract.py`` runs one suite against both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from probes.models import Access, Kind, Result


@dataclass(frozen=True, slots=True)
class ProbeIdentity:
    """Who a result belongs to, as the server's registry knows it (never taken from a payload)."""

    probe_id: str
    hamlet: str
    isp: str
    access: Access


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A validated result together with the identity of the probe that sent it."""

    identity: ProbeIdentity
    result: Result

    @property
    def kind(self) -> Kind:
        return Kind(self.result.kind)


class WriteOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Refused:
    """The store will not keep this item, for a reason about the item itself (the database's own
    words where it gave them): retrying it cannot help, so the probe quarantines it."""

    reason: str


#: What ``ResultStore.write`` says about one item.
ItemWrite = WriteOutcome | Refused

#: Rows per page of ``ResultStore.scan`` unless the caller asks otherwise.
SCAN_PAGE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class ScanRow:
    """One result as a scan gives it: who, when, and the scalar fields asked for.

    ``measured_at`` is UTC with microseconds, exactly as the result carried it. ``fields`` holds
    every field asked for (``None`` where the result does not set it), in the model's Python
    types: floats, ints, bools, strings (enums and UUIDs as their text); never lists or dicts.
    """

    probe_id: str
    hamlet: str
    isp: str
    access: str
    measured_at: datetime
    fields: Mapping[str, Any]


@runtime_checkable
class ResultStore(Protocol):
    """Where results live.

    ``write`` is all or nothing for the outcomes it reports: it returns one outcome per item, in
    order, only once every accepted item is durably stored; otherwise it raises
    ``server.errors.StorageUnavailable`` (the database is unavailable) and the caller reports
    nothing as accepted. Every accepted result is kept on its own, however many share its
    ``measured_at``. A result whose ``result_id`` is already stored (or appears earlier in the same
    call) with the same content is a ``DUPLICATE`` and is not stored again; with other content it
    is ``Refused`` (a re-used id must not hide a second measurement). An item the database itself
    refuses (outside a retention policy, a field type conflict) is ``Refused`` with its reason,
    and the other items are still stored.
    """

    name: str

    async def start(self) -> None:
        """Connect, create the database/tables if missing. Raises ``StorageUnavailable``."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def check(self) -> None:
        """Prove the store answers now (for ``/healthz``). Raises ``StorageUnavailable``."""

    async def write(self, items: Sequence[StoredResult]) -> list[ItemWrite]: ...

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
        """Results of one kind, filtered, ordered by ``measured_at`` (``start`` inclusive,
        ``end`` exclusive), re-validated into their models."""
        ...

    async def latest(self, kind: Kind) -> list[StoredResult]:
        """The newest result of ``kind`` for each probe that has one."""
        ...

    def scan(
        self,
        kind: Kind,
        start: datetime,
        end: datetime,
        *,
        probes: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        page_size: int = SCAN_PAGE_SIZE,
    ) -> AsyncIterator[list[ScanRow]]:
        """Every result of ``kind`` with ``start <= measured_at < end``, as pages of rows.

        Rows come ordered by (``measured_at``, ``probe_id``, ``result_id``); every page holds
        ``page_size`` rows but the last, and an empty window gives no page. Only one page (and
        one database reply) is in memory at a time, so a month of a commune's results never is.
        ``probes`` keeps the rows of those probes only (an empty list: none); ``fields`` names
        the scalar fields to carry (None: all of the kind's, ``server.storage.scan``). Both
        adapters give the same pages for the same stored results. Raises ``ValueError`` for a
        field no result kind has or a ``page_size`` below 1, ``StorageUnavailable`` when the
        database fails.
        """
        ...

    async def count_by_probe(
        self, kind: Kind, start: datetime, end: datetime, *, probes: Sequence[str] | None = None
    ) -> dict[str, int]:
        """How many results of ``kind`` each probe (of ``probes``, else every probe) has with
        ``start <= measured_at < end``, in one aggregate query (probes with none are absent):
        what tells whether a cached month of samples (``month_cache``) is still whole. Raises
        ``StorageUnavailable``."""
        ...
