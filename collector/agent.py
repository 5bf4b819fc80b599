"""The long-running probe agent: scheduled tests, signed results into the spool, uploads.

Each test kind runs on its own APScheduler trigger with jitter. A bandwidth test runs alone: it
takes the gate exclusively, so no other test runs during it (their traffic would be measured as
the line's). Every result, failed tests included, is signed and committed to the spool before any
upload; the uploader drains the spool in its own task. SIGTERM stops the scheduler, abandons a
running test, tries one last upload, and closes the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector import __version__
from collector.config import ProbeConfig, Schedule
from collector.errors import SpoolError
from collector.identity import Credentials, write_private
from collector.spool import AsyncSpool
from collector.upload import Backoff, Uploader
from probes import heartbeat
from probes.models import MODEL_BY_KIND, FailureKind, Kind, ResultBase, Status
from probes.registry import PROBES, ProbeSpec
from probes.signing import sign

log = logging.getLogger(__name__)

#: How long a final upload may take at shutdown before the agent exits anyway (the spool keeps
#: whatever did not go; systemd's default stop timeout is 90 s).
SHUTDOWN_UPLOAD_S = 5.0


class MeasurementGate:
    """Many ordinary tests at once, or one bandwidth test alone (a readers-writer lock that lets
    a waiting bandwidth test in before new ordinary tests, so it is never starved)."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive and not self._waiting_exclusive)
            self._shared += 1
        try:
            yield
        finally:
            async with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            self._waiting_exclusive += 1
            try:
                await self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
            finally:
                self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            yield
        finally:
            async with self._cond:
                self._exclusive = False
                self._cond.notify_all()

    @property
    def exclusive_held(self) -> bool:
        return self._exclusive


def failed_result(
    kind: Kind,
    probe_id: str,
    engine: str,
    failure: FailureKind,
    error: str,
    measured_at: datetime,
    duration_ms: float | None = None,
) -> ResultBase:
    """A failed test is a result too, with its reason."""
    return MODEL_BY_KIND[kind](
        result_id=uuid.uuid4(),
        probe_id=probe_id,
        measured_at=measured_at,
        duration_ms=duration_ms,
        engine=engine,
        status=Status.FAILED,
        failure_kind=failure,
        error=error[:2048],
    )


def classify_failure(exc: BaseException) -> FailureKind:
    """Map an exception from a probe to a failure kind, by type (never by message text)."""
    if isinstance(exc, TimeoutError):
        return FailureKind.TIMEOUT
    if isinstance(exc, PermissionError):
        return FailureKind.PERMISSION
    if isinstance(exc, ConnectionRefusedError):
        return FailureKind.REFUSED
    if isinstance(exc, FileNotFoundError):
        return FailureKind.TOOL_MISSING
    if isinstance(exc, OSError):
        return FailureKind.UNREACHABLE
    return FailureKind.INTERNAL


def trigger_for(schedule: Schedule) -> IntervalTrigger | CronTrigger:
    jitter = int(schedule.jitter_s) or None
    if schedule.cron is not None:
        return CronTrigger(**_cron_fields(schedule.cron), timezone=UTC, jitter=jitter)
    assert schedule.every_s is not None
    return IntervalTrigger(seconds=schedule.every_s, jitter=jitter, timezone=UTC)


def _cron_fields(line: str) -> dict[str, str]:
    """A five-field crontab line as APScheduler's fields (day_of_week names: mon..sun)."""
    minute, hour, day, month, day_of_week = line.split()
    return {"minute": minute, "hour": hour, "day": day, "month": month, "day_of_week": day_of_week}


@dataclass
class AgentState:
    started_monotonic: float = field(default_factory=time.monotonic)
    last_errors: dict[str, str] = field(default_factory=dict)
    last_run_at: dict[str, str] = field(default_factory=dict)
    tests_run: int = 0
    results_kept: int = 0


class Agent:
    def __init__(
        self,
        config: ProbeConfig,
        credentials: Credentials,
        key: Ed25519PrivateKey,
        spool: AsyncSpool,
        http: aiohttp.ClientSession,
        *,
        ssl_context: Any = True,
    ) -> None:
        self.config = config
        self.creds = credentials
        self.key = key
        self.spool = spool
        self.gate = MeasurementGate()
        self.state = AgentState()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.uploader = Uploader(
            spool,
            http,
            server_url=credentials.server_url,
            token=credentials.token,
            batch_size=config.upload.batch_size,
            max_batch_bytes=config.upload.max_batch_bytes,
            backoff=Backoff(config.upload.backoff_min_s, config.upload.backoff_max_s),
            ssl_context=ssl_context,
            timeout_s=config.upload.timeout_s,
        )
        self._wakeup = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()

    # -- tests ----------------------------------------------------------------------------------
    async def run_kind(self, kind: Kind) -> None:
        """Run one scheduled test of ``kind`` and spool its results (the scheduler's job)."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            results = await self._measure(kind)
            for result in results:
                kept = await self._keep(result)
                if not kept and kind is Kind.HEARTBEAT:
                    # The spool cannot take it (full disk): send the heartbeat straight away, so
                    # the office learns why this probe has gone quiet.
                    await self.uploader.send_heartbeat(sign(result, self.key))
            self.state.tests_run += 1
            self.state.last_run_at[kind.value] = datetime.now(UTC).isoformat()
            self._wakeup.set()
            await self.write_status()
        finally:
            if task is not None:
                self._running.discard(task)

    async def _measure(self, kind: Kind) -> list[ResultBase]:
        schedule = self.config.schedules[kind]
        if kind is Kind.HEARTBEAT:
            return [await self._heartbeat()]
        entry = PROBES[kind]
        spec = ProbeSpec(
            probe_id=self.creds.probe_id,
            targets=schedule.targets,
            timeout_s=schedule.timeout_s,
            engine=schedule.engine,
            options=schedule.options,
        )
        gate = self.gate.exclusive() if kind is Kind.BANDWIDTH else self.gate.shared()
        async with gate:
            measured_at = datetime.now(UTC)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(schedule.timeout_s):
                    results = await entry.run(spec)
                self.state.last_errors.pop(kind.value, None)
                for r in results:
                    if r.status is Status.FAILED and r.error:
                        self.state.last_errors[kind.value] = r.error
                return results
            except Exception as exc:
                failure = classify_failure(exc)
                message = (
                    f"no result within {schedule.timeout_s} s"
                    if failure is FailureKind.TIMEOUT
                    else f"{type(exc).__name__}: {exc}"
                )
                if failure is FailureKind.INTERNAL:
                    log.exception("%s test failed unexpectedly", kind.value)
                self.state.last_errors[kind.value] = message
                elapsed = (time.perf_counter() - started) * 1000
                engine = schedule.engine or entry.engine
                return [
                    failed_result(
                        kind, self.creds.probe_id, engine, failure, message, measured_at, elapsed
                    )
                ]

    async def _heartbeat(self) -> ResultBase:
        depth: int | None = None
        oldest: float | None = None
        evicted: int | None = None
        try:
            stats = await self.spool.stats()
            depth, oldest, evicted = stats.depth, stats.oldest_age_s, stats.evicted_count
        except SpoolError:
            pass  # the heartbeat still goes out, without spool figures
        return heartbeat.snapshot(
            self.creds.probe_id,
            agent_version=__version__,
            spool_depth=depth,
            spool_oldest_age_s=oldest,
            evicted_count=evicted,
            last_errors=dict(self.state.last_errors),
            disk_path=self.config.state_dir,
        )

    async def _keep(self, result: ResultBase) -> bool:
        """Sign and commit to the spool; a full disk is reported and the agent carries on."""
        try:
            if await self.spool.add(sign(result, self.key)):
                self.state.results_kept += 1
        except SpoolError as exc:  # SpoolFullError included: same handling, its own message
            self.state.last_errors["spool"] = str(exc)
            log.error("result %s not kept: %s", result.result_id, exc)
            return False
        self.state.last_errors.pop("spool", None)
        return True

    # -- upload -----------------------------------------------------------------------------------
    async def upload_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wakeup.clear()
            try:
                delay = await self.uploader.drain()
            except SpoolError as exc:
                log.error("cannot read the spool: %s", exc)
                delay = self.config.upload.backoff_max_s
            await self.write_status()
            waiters = [asyncio.ensure_future(stop.wait())]
            if delay is None:  # idle: a new result or the interval starts the next upload
                waiters.append(asyncio.ensure_future(self._wakeup.wait()))
            timeout = delay if delay is not None else self.config.upload.every_s
            _, pending = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()

    # -- status -----------------------------------------------------------------------------------
    def next_runs(self) -> dict[str, str | None]:
        runs: dict[str, str | None] = {}
        for job in self.scheduler.get_jobs():
            when = getattr(job, "next_run_time", None)
            runs[job.id] = when.isoformat() if when else None
        return runs

    async def write_status(self) -> None:
        try:
            stats = await self.spool.stats()
            spool: dict[str, Any] = {
                "depth": stats.depth,
                "bytes": stats.bytes,
                "oldest_age_s": stats.oldest_age_s,
                "evicted": stats.evicted_count,
                "rejected": stats.rejected_count,
            }
        except SpoolError as exc:
            spool = {"error": str(exc)}
        report = self.uploader.report
        status = {
            "probe_id": self.creds.probe_id,
            "server_url": self.creds.server_url,
            "agent_version": __version__,
            "written_at": datetime.now(UTC).isoformat(),
            "uptime_s": round(time.monotonic() - self.state.started_monotonic, 1),
            "next_runs": self.next_runs(),
            "last_runs": self.state.last_run_at,
            "results_kept": self.state.results_kept,
            "last_errors": self.state.last_errors,
            "spool": spool,
            "upload": {
                "sent": report.sent,
                "acknowledged": report.acknowledged,
                "quarantined": report.quarantined,
                "last_success_at": report.last_success_at.isoformat()
                if report.last_success_at
                else None,
                "last_error": report.last_error,
            },
        }
        try:
            await asyncio.to_thread(
                write_private, self.config.status_path, json.dumps(status, indent=2).encode()
            )
        except OSError as exc:  # a full disk must not stop the agent
            log.warning("cannot write %s: %s", self.config.status_path, exc)

    # -- lifecycle --------------------------------------------------------------------------------
    def schedule(self) -> None:
        now = datetime.now(UTC)
        for kind, sched in self.config.schedules.items():
            if not sched.enabled:
                continue
            # The heartbeat goes out at once, so the server sees a starting probe. (An explicit
            # next_run_time=None would mean "paused" to APScheduler, hence the conditional.)
            first: dict[str, Any] = {"next_run_time": now} if kind is Kind.HEARTBEAT else {}
            self.scheduler.add_job(
                self.run_kind,
                trigger_for(sched),
                args=[kind],
                id=kind.value,
                name=f"{kind.value} test",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(60, int(sched.every_s or 3600) // 2),
                **first,
            )

    async def run(self, stop: asyncio.Event) -> None:
        self.schedule()
        self.scheduler.start()
        log.info(
            "probe %s started: %s", self.creds.probe_id,
            ", ".join(f"{k}={v}" for k, v in self.next_runs().items()),
        )  # fmt: skip
        uploader = asyncio.create_task(self.upload_loop(stop), name="upload")
        try:
            await stop.wait()
        finally:
            log.info("stopping: abandoning %d running test(s)", len(self._running))
            self.scheduler.shutdown(wait=False)
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            uploader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await uploader
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_UPLOAD_S):
                    await self.uploader.drain()
            await self.write_status()
