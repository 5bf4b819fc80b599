"""A metered line's monthly data budget: bandwidth tests paced to fit it evenly through the month.

A 4G probe testing hourly at 40 Mb/s moves about 70 GB a month, more than most prepaid plans
hold. With a budget (bytes per Vietnam-time calendar month, from the configuration or, when the
server has sent one, from the server), a test runs only when the month's usage is on or below
the even-pacing line and the test's expected volume still fits; otherwise it is recorded as
``skipped`` with ``skip_reason: data_budget``. The expected volume is the mean of the last few
tests' volumes on this line. The month's usage goes out in the heartbeat.

The ledger and every decision are plain values and functions (integer arithmetic, no clock);
``DataBudget`` keeps the ledger in a JSON file in the state directory across restarts.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collector.errors import CollectorError
from collector.identity import write_private
from probes.models import BandwidthResult, SkipReason, Status

#: Vietnam time: UTC+7 all year since 1975, no daylight saving, so a fixed offset is exact and
#: needs no tz database on the Pi. (``server.compliance.stats.VIETNAM`` is the server's copy;
#: the collector does not import the server.)
VIETNAM = timezone(timedelta(hours=7), "ICT")

#: A test's volume before this line has any: 40 Mb/s both ways for 10 s, with warm-up.
DEFAULT_FIRST_TEST_BYTES = 120_000_000
#: How many recent tests' volumes the expected volume is the mean of.
DEFAULT_RECENT_TESTS = 5
MAX_BYTES = 2**62

_MICROSECOND = timedelta(microseconds=1)


class DataBudgetSettings(BaseModel):
    """The ``data_budget`` section of the probe's configuration."""

    model_config = ConfigDict(extra="forbid")

    monthly_bytes: int | None = Field(
        default=None,
        ge=1,
        le=MAX_BYTES,
        description="Bytes bandwidth tests may use per Vietnam-time month; None: unmetered. A"
        " budget sent by the server replaces it.",
    )
    recent_tests: int = Field(default=DEFAULT_RECENT_TESTS, ge=1, le=100)
    first_test_bytes: int = Field(default=DEFAULT_FIRST_TEST_BYTES, ge=0, le=MAX_BYTES)


class DataBudgetDirective(BaseModel):
    """What a server reply may carry under ``data_budget``: the line's budget, set by the
    office. ``monthly_bytes: null`` makes the line unmetered; a reply without ``data_budget``
    (or with ``data_budget: null``) leaves the probe's budget as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    monthly_bytes: int | None = Field(ge=1, le=MAX_BYTES)


class BudgetError(CollectorError):
    """The budget's state file or a server's budget directive cannot be used."""


# -- The month ------------------------------------------------------------------------------------


def month_bounds(at: datetime) -> tuple[datetime, datetime]:
    """The Vietnam-time calendar month holding ``at``, as UTC instants: start included, end
    excluded (00:00 on the 1st in Vietnam is 17:00 UTC the day before)."""
    local = at.astimezone(VIETNAM)
    start = datetime(local.year, local.month, 1, tzinfo=VIETNAM)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    end = datetime(year, month, 1, tzinfo=VIETNAM)
    return start.astimezone(UTC), end.astimezone(UTC)


def month_label(at: datetime) -> str:
    """``YYYY-MM`` of the Vietnam-time month holding ``at``."""
    local = at.astimezone(VIETNAM)
    return f"{local.year:04d}-{local.month:02d}"


# -- Volumes --------------------------------------------------------------------------------------


def volume_bytes(result: BandwidthResult) -> int:
    """The bytes a bandwidth test moved, as far as its result tells: each direction's measured
    bytes, stretched at the measured rate over its warm-up, which ``download_bytes`` and
    ``upload_bytes`` leave out (methodology.md §3: the warm-up is excluded from the figure, not
    from the line). TCP/IP headers (about 4 %) are not counted: leave that margin in the budget.
    """
    total = 0
    for moved, measured_ms, warmup_ms in (
        (result.download_bytes, result.download_duration_ms, result.download_warmup_ms),
        (result.upload_bytes, result.upload_duration_ms, result.upload_warmup_ms),
    ):
        if not moved:
            continue
        if measured_ms and warmup_ms:
            total += math.ceil(moved * (measured_ms + warmup_ms) / measured_ms)
        else:
            total += moved
    return total


def expected_bytes(recent: Sequence[int], first_test_bytes: int) -> int:
    """The next test's expected volume: the mean of ``recent`` (rounded up), or
    ``first_test_bytes`` before there is any."""
    if not recent:
        return first_test_bytes
    return -(-sum(recent) // len(recent))


# -- The ledger -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ledger:
    """What the budget knows: this month's usage and the pacing line it is held to."""

    month: str
    used_bytes: int
    #: The budget in force (None: unmetered), and the server's word on it (None: none received).
    budget_bytes: int | None
    #: Pacing runs from ``paced_from`` (the month's start, or the instant the budget last
    #: changed in it) with ``used_at_pace_start`` already used, to the month's end.
    paced_from: datetime
    used_at_pace_start: int = 0
    recent_bytes: tuple[int, ...] = ()
    directive: DataBudgetDirective | None = None


def new_ledger(at: datetime, budget_bytes: int | None) -> Ledger:
    start, _ = month_bounds(at)
    return Ledger(month_label(at), 0, budget_bytes, start)


def rolled(ledger: Ledger, at: datetime) -> Ledger:
    """``ledger`` in the month of ``at``: a new month starts from zero usage (the recent
    volumes and the server's budget carry over)."""
    if month_label(at) == ledger.month:
        return ledger
    start, _ = month_bounds(at)
    return replace(
        ledger, month=month_label(at), used_bytes=0, paced_from=start, used_at_pace_start=0
    )


def with_budget(ledger: Ledger, budget_bytes: int | None, at: datetime) -> Ledger:
    """``ledger`` under a budget set at ``at``. A change in mid-month re-paces: what is left of
    the new budget is spread evenly over what is left of the month, so raising it brings no
    burst of catch-up tests and lowering it below the usage stops tests until the month ends."""
    ledger = rolled(ledger, at)
    if budget_bytes == ledger.budget_bytes:
        return ledger
    start, _ = month_bounds(at)
    return replace(
        ledger,
        budget_bytes=budget_bytes,
        paced_from=max(at, start),
        used_at_pace_start=ledger.used_bytes,
    )


def recorded(ledger: Ledger, moved_bytes: int, at: datetime, keep: int) -> Ledger:
    """``ledger`` after a test at ``at`` moved ``moved_bytes``; a test that moved nothing (it
    failed before any transfer) adds to no mean."""
    ledger = rolled(ledger, at)
    recent = ledger.recent_bytes if moved_bytes <= 0 else (*ledger.recent_bytes, moved_bytes)
    used = ledger.used_bytes + max(moved_bytes, 0)
    return replace(ledger, used_bytes=used, recent_bytes=recent[-keep:])


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    run: bool
    budget_bytes: int | None
    used_bytes: int
    expected_bytes: int
    #: What even pacing allows to have been used by now (None: no budget).
    allowance_bytes: int | None

    @property
    def status(self) -> Status:
        return Status.OK if self.run else Status.SKIPPED

    def result_fields(self) -> dict[str, Any]:
        """The budget fields of a bandwidth result, ``skip_reason`` on a skipped one."""
        if self.budget_bytes is None:
            return {}
        fields: dict[str, Any] = {
            "data_budget_bytes": self.budget_bytes,
            "data_used_bytes": self.used_bytes,
            "data_expected_bytes": self.expected_bytes,
        }
        if not self.run:
            fields["skip_reason"] = SkipReason.DATA_BUDGET
        return fields

    def describe(self) -> str:
        return (
            f"data budget: {self.used_bytes} of {self.budget_bytes} bytes used this month,"
            f" {self.allowance_bytes} allowed by now, next test about {self.expected_bytes}"
        )


def decide(ledger: Ledger, at: datetime, settings: DataBudgetSettings) -> BudgetDecision:
    """Whether a bandwidth test at ``at`` fits the budget.

    Even pacing: the usage may follow a straight line from (``paced_from``,
    ``used_at_pace_start``) to (the month's end, the budget). A test runs when the usage is on
    or below that line now and the test's expected volume still fits the whole budget, so the
    first test of a month runs at once, the usage is never more than one test ahead of the line,
    and never over the budget by more than a test's error of estimate. Integer arithmetic in
    microseconds and bytes, so a test falling exactly on the line is decided exactly.
    """
    ledger = rolled(ledger, at)
    expected = expected_bytes(ledger.recent_bytes, settings.first_test_bytes)
    budget = ledger.budget_bytes
    if budget is None:
        return BudgetDecision(True, None, ledger.used_bytes, expected, None)
    _, end = month_bounds(at)
    span = (end - ledger.paced_from) // _MICROSECOND
    elapsed = max(0, (at - ledger.paced_from) // _MICROSECOND)
    left = max(0, budget - ledger.used_at_pace_start)
    on_pace = (ledger.used_bytes - ledger.used_at_pace_start) * span <= left * elapsed
    fits = ledger.used_bytes + expected <= budget
    allowance = ledger.used_at_pace_start + left * elapsed // span
    return BudgetDecision(on_pace and fits, budget, ledger.used_bytes, expected, allowance)


def heartbeat_fields(ledger: Ledger, at: datetime) -> dict[str, Any]:
    """The heartbeat's budget fields: the budget in force and the month's usage so far."""
    ledger = rolled(ledger, at)
    return {"data_budget_bytes": ledger.budget_bytes, "data_used_bytes": ledger.used_bytes}


def effective_budget(settings: DataBudgetSettings, ledger: Ledger | None) -> int | None:
    """The server's budget once one has come, else the configuration's."""
    if ledger is not None and ledger.directive is not None:
        return ledger.directive.monthly_bytes
    return settings.monthly_bytes


def reply_speaks_of_budget(body: Any) -> bool:
    """Whether a server reply has a word on the budget at all: a ``data_budget`` key, even
    ``null``. (A server from before budgets sends none, and the probe's budget stays as it is.)"""
    return isinstance(body, dict) and "data_budget" in body


def directive_from_reply(body: Any) -> DataBudgetDirective | None:
    """The ``data_budget`` a server reply carries, or None when it carries none (no key, or
    ``null``: the office has set no budget for this probe, so its configuration's stands)."""
    if not isinstance(body, dict) or body.get("data_budget") is None:
        return None
    try:
        return DataBudgetDirective.model_validate(body["data_budget"])
    except ValidationError as exc:
        reason = exc.errors(include_url=False)[0]["msg"]
        raise BudgetError(
            f"the server's data_budget {body['data_budget']!r} is not usable: {reason}"
        ) from exc


# -- The state file --------------------------------------------------------------------------------


def ledger_to_json(ledger: Ledger) -> bytes:
    return json.dumps(
        {
            "month": ledger.month,
            "used_bytes": ledger.used_bytes,
            "budget_bytes": ledger.budget_bytes,
            "paced_from": ledger.paced_from.isoformat(),
            "used_at_pace_start": ledger.used_at_pace_start,
            "recent_bytes": list(ledger.recent_bytes),
            "directive": ledger.directive.model_dump() if ledger.directive else None,
        },
        indent=1,
    ).encode()


def ledger_from_json(data: bytes, where: Path | str = "the budget file") -> Ledger:
    try:
        raw = json.loads(data)
        directive = raw["directive"]
        return Ledger(
            month=str(raw["month"]),
            used_bytes=int(raw["used_bytes"]),
            budget_bytes=None if raw["budget_bytes"] is None else int(raw["budget_bytes"]),
            paced_from=datetime.fromisoformat(raw["paced_from"]).astimezone(UTC),
            used_at_pace_start=int(raw["used_at_pace_start"]),
            recent_bytes=tuple(int(v) for v in raw["recent_bytes"]),
            directive=None if directive is None else DataBudgetDirective(**directive),
        )
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise BudgetError(
            f"{where} is not a data-budget ledger ({type(exc).__name__}: {exc}); delete it to"
            " start this month's count from zero"
        ) from exc


class DataBudget:
    """The agent's budget: the ledger, kept in ``path`` (written atomically after each change)."""

    def __init__(self, settings: DataBudgetSettings, path: Path, ledger: Ledger) -> None:
        self.settings = settings
        self.path = path
        self.ledger = ledger

    @classmethod
    async def open(cls, settings: DataBudgetSettings, path: Path, at: datetime) -> DataBudget:
        """The ledger in ``path`` (a new one if there is none), under the budget in force."""
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            ledger = None
        except OSError as exc:
            raise BudgetError(f"cannot read {path}: {exc}") from exc
        else:
            ledger = ledger_from_json(data, path)
        budget = effective_budget(settings, ledger)
        ledger = with_budget(ledger, budget, at) if ledger else new_ledger(at, budget)
        self = cls(settings, path, ledger)
        await self._save()
        return self

    @classmethod
    async def open_or_restart(
        cls, settings: DataBudgetSettings, path: Path, at: datetime
    ) -> tuple[DataBudget, str | None]:
        """``open``, or, when the ledger cannot be read or written, a new ledger and what was
        wrong: a damaged file must not stop a probe's tests. The damaged file is kept beside
        as ``*.broken`` for a look; a ledger that cannot be written lives in memory."""
        try:
            return await cls.open(settings, path, at), None
        except BudgetError as exc:
            problem = str(exc)
        aside = path.with_name(path.name + ".broken")
        try:
            await asyncio.to_thread(os.replace, path, aside)
            problem += f"; kept as {aside.name}, this month counted from zero"
        except OSError:
            pass  # nothing there to keep (the write failed, not the read)
        try:
            return await cls.open(settings, path, at), problem
        except BudgetError as exc:
            ledger = new_ledger(at, settings.monthly_bytes)
            return cls(settings, path, ledger), f"{problem}; {exc}"

    def decide(self, at: datetime) -> BudgetDecision:
        return decide(self.ledger, at, self.settings)

    def heartbeat_fields(self, at: datetime) -> dict[str, Any]:
        return heartbeat_fields(self.ledger, at)

    async def record(self, results: Iterable[BandwidthResult], at: datetime) -> None:
        """Count the volume of one test's results (all its targets) against the month."""
        volume = sum(volume_bytes(r) for r in results)
        self.ledger = recorded(self.ledger, volume, at, self.settings.recent_tests)
        await self._save()

    async def apply(self, directive: DataBudgetDirective | None, at: datetime) -> None:
        """Take the server's budget; it stays in force (across restarts) until the next one.
        ``None`` (the office has cleared its budget) puts the configuration's back in force."""
        if directive == self.ledger.directive:
            return
        ledger = replace(self.ledger, directive=directive)
        self.ledger = with_budget(ledger, effective_budget(self.settings, ledger), at)
        await self._save()

    async def _save(self) -> None:
        try:
            await asyncio.to_thread(write_private, self.path, ledger_to_json(self.ledger))
        except OSError as exc:
            raise BudgetError(f"cannot write {self.path}: {exc}") from exc
