"""The long-running probe agent: scheduled tests, signed results into the spool, uploads.

Each test kind runs on its own APScheduler trigger: random exponential gaps
(``collector.schedule``), or fixed times with jitter. A bandwidth test runs alone: it takes the
gate exclusively, so no other test runs during it (their traffic would be measured as the line's).
Every result, failed tests included, is signed and committed to the spool before any upload; the
uploader drains the spool in its own task. SIGTERM stops the scheduler, abandons a running test,
tries one last upload, and closes the spool.

Before a bandwidth test the agent asks the month's data budget (``collector.budget``) and then,
holding the gate, whether the line is quiet (``collector.crosstraffic``); a test either of them
stops is still a result, ``skipped`` or ``deferred`` with why, one per target. Every reply the
server sends may carry the line's budget, which the agent takes.

Nothing stops delivering silently: the background tasks (upload, clock) run under ``supervise``,
which restarts one that ends with any exception, after a back-off, and counts and reports what
ended it (``task_restarts`` in status.json, ``task.NAME`` in the heartbeat's ``last_errors``).
A run over several targets that times out keeps what its finished targets measured. Results
measured while the kernel says the wall clock is not synchronised wait in the spool, unsigned,
and are re-stamped from the boot-time clock once it is (``probes.clock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector import __version__, crosstraffic
from collector.budget import (
    BudgetError,
    DataBudget,
    directive_from_reply,
    reply_speaks_of_budget,
)
from collector.config import ProbeConfig, Schedule
from collector.crosstraffic import Counters, CpuTimes, Verdict
from collector.errors import SpoolError
from collector.identity import Credentials, write_private
from collector.schedule import gap_plan
from collector.schedule_trigger import ExponentialTrigger
from collector.spool import AsyncSpool
from collector.upload import Backoff, Uploader
from probes import clock, heartbeat
from probes.envelope import build_result, stamp
from probes.models import (
    MODEL_BY_KIND,
    BandwidthResult,
    FailureKind,
    Kind,
    ResultBase,
    Status,
    parse_result,
    unbounded_limits,
)
from probes.registry import PROBES, engine_for
from probes.signing import sign
from probes.spec import Failure, ProbeFn, ProbeSpec, Span, Stopwatch

log = logging.getLogger(__name__)

#: How long a final upload may take at shutdown before the agent exits anyway (the spool keeps
#: whatever did not go; systemd's default stop timeout is 90 s).
SHUTDOWN_UPLOAD_S = 5.0
#: How often the clock task asks the kernel whether held results can be re-stamped.
CLOCK_POLL_S = 5.0
#: A supervised task that ran this long before it died starts again from the shortest back-off.
HEALTHY_RUN_S = 300.0
#: The heartbeat carries at most this many ``last_errors`` (its model's bound).
MAX_REPORTED_ERRORS = 16

#: Kinds whose results are one or more per target: a run is split by target, so a timeout
#: costs only the targets not finished. (ipv6 measures its one host; cellular its one modem.)
PER_TARGET_KINDS = frozenset({Kind.LATENCY, Kind.DNS, Kind.BANDWIDTH})
#: Engines that measure all their targets at once rather than one after another: icmp's series
#: run side by side, so in turn they would stretch a run far past the timeout it was given.
CONCURRENT_ENGINES = frozenset({(Kind.LATENCY, "icmp")})


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


def with_fields(result: ResultBase, fields: dict[str, Any]) -> ResultBase:
    """``result`` with ``fields`` added, validated again as its model."""
    if not fields:
        return result
    return type(result)(**{**result.model_dump(), **fields})


def trigger_for(schedule: Schedule) -> BaseTrigger:
    """Random gaps (``mean_gap_s``), or the fixed times of ``every_s``/``cron`` with jitter."""
    if schedule.mean_gap_s is not None:
        return ExponentialTrigger(
            gap_plan(schedule.mean_gap_s, schedule.min_gap_s, schedule.max_gap_s, schedule.peak)
        )
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
    results_kept: int = 0  # signed into the spool, held ones once released
    results_held: int = 0  # measured with an unsynchronised clock, held for re-stamping
    #: How many times each supervised task or scheduled test ended with an exception.
    task_restarts: dict[str, int] = field(default_factory=dict)


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
        clock_synced: clock.SyncReader = clock.kernel_synced,
        boottime: Callable[[], float] = clock.boottime_s,
        read_counters: Callable[[str], Counters] = crosstraffic.read_counters,
        read_cpu: Callable[[], CpuTimes] = crosstraffic.read_cpu_times,
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
            on_reply=self._server_replied,
        )
        self._wakeup = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()
        self._clock_synced = clock_synced
        self._boottime = boottime
        self._boot_id = clock.boot_id()
        self._maybe_held = True  # until a look at the spool says otherwise
        self._read_counters = read_counters
        self._read_cpu = read_cpu
        self._budget: DataBudget | None = None
        self._budget_lock = asyncio.Lock()

    def anchor(self) -> clock.Anchor:
        """Both clocks now, and the kernel's word on the wall clock."""
        return clock.Anchor(
            wall=datetime.now(UTC),
            boot_s=self._boottime(),
            boot_id=self._boot_id,
            synced=self._clock_synced(),
        )

    # -- tests ----------------------------------------------------------------------------------
    async def run_kind(self, kind: Kind) -> None:
        """Run one scheduled test of ``kind`` and spool its results (the scheduler's job)."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            anchor, results = await self._measure(kind)
            # Once measured, the results are kept even if shutdown cancels this test: the spool
            # commits in a worker thread a cancel cannot stop, so a cancelled wait would leave a
            # result spooled (and delivered) that the counters never saw.
            keeping = asyncio.ensure_future(self._keep_all(kind, anchor, results))
            try:
                await asyncio.shield(keeping)
            except asyncio.CancelledError:
                await keeping
                raise
            self.state.tests_run += 1
            self.state.last_run_at[kind.value] = datetime.now(UTC).isoformat()
            self._wakeup.set()
            await self.write_status()
        except Exception as exc:  # APScheduler would log it and run the job again: count it too
            self._record_crash(f"test.{kind.value}", exc)
        except asyncio.CancelledError:
            # Abandoned at shutdown (``run`` cancels running tests on SIGTERM): what it had
            # measured is kept (above), and it is no crash. Ending here keeps APScheduler from
            # logging the cancellation as a job failure with a traceback.
            log.info("%s test abandoned at shutdown", kind.value)
        finally:
            if task is not None:
                self._running.discard(task)

    async def _keep_all(self, kind: Kind, anchor: clock.Anchor, results: list[ResultBase]) -> None:
        if self._maybe_held and not clock.should_hold(anchor, self.config.clock.max_hold_s):
            await self._release_held(anchor)  # first, so the spool stays in measuring order
        for result in results:
            kept = await self._keep(result, anchor)
            if not kept and kind is Kind.HEARTBEAT:
                # The spool cannot take it (full disk): send the heartbeat straight away, so
                # the office learns why this probe has gone quiet.
                await self.uploader.send_heartbeat(sign(result, self.key))

    async def _measure(self, kind: Kind) -> tuple[clock.Anchor, list[ResultBase]]:
        schedule = self.config.schedules[kind]
        if kind is Kind.HEARTBEAT:
            anchor = self.anchor()
            return anchor, [await self._heartbeat()]
        entry = PROBES[kind]
        spec = ProbeSpec(
            probe_id=self.creds.probe_id,
            targets=schedule.targets,
            timeout_s=schedule.timeout_s,
            engine=schedule.engine,
            options=schedule.options,
        )
        engine = engine_for(kind, schedule.engine, schedule.targets)
        parts: list[tuple[str | None, ProbeSpec]]
        if kind in PER_TARGET_KINDS and spec.targets:
            parts = [(t, replace(spec, targets=(t,))) for t in spec.targets]
        else:
            parts = [(None, spec)]
        if kind is Kind.BANDWIDTH:
            anchor, results = await self._measure_bandwidth(entry.run, parts, engine)
        else:
            async with self.gate.shared():
                anchor = self.anchor()
                results = await self._run_parts(
                    kind, entry.run, parts, engine, concurrent=(kind, engine) in CONCURRENT_ENGINES
                )
        failed = [r.error for r in results if r.status is Status.FAILED and r.error]
        if failed:
            self.state.last_errors[kind.value] = failed[-1]
        else:
            self.state.last_errors.pop(kind.value, None)
        return anchor, results

    async def _measure_bandwidth(
        self, run: ProbeFn, parts: list[tuple[str | None, ProbeSpec]], engine: str
    ) -> tuple[clock.Anchor, list[ResultBase]]:
        """A bandwidth test, when the month's data budget allows it and the line is quiet.

        The budget is asked first, outside the gate (a skipped test need not wait for others).
        The line is watched holding the gate, so the agent's own tests are not counted as the
        household's traffic (SamKnows' cross-traffic check, methodology.md §4). Every result
        carries what both said; what a test moved is counted against the month.
        """
        budget = await self.data_budget()
        plan = budget.decide(datetime.now(UTC))
        if not plan.run:
            return self.anchor(), self._not_run(
                parts, engine, plan.status, plan.result_fields(), Stopwatch().span()
            )
        async with self.gate.exclusive():
            anchor = self.anchor()
            watch = Stopwatch()
            line = await crosstraffic.check_line(
                self.config.cross_traffic, counters=self._read_counters, cpu=self._read_cpu
            )
            if line.verdict is Verdict.DEFER or (
                line.verdict is Verdict.UNKNOWN and self.config.cross_traffic.inline
            ):
                self.state.last_errors["cross_traffic"] = line.describe()[:2048]
            else:
                self.state.last_errors.pop("cross_traffic", None)
            said = {**line.result_fields(), **plan.result_fields()}
            if line.verdict is Verdict.DEFER:
                log.info("bandwidth test deferred: %s", line.describe())
                return anchor, self._not_run(parts, engine, line.status, said, watch.span())
            measured = await self._run_parts(Kind.BANDWIDTH, run, parts, engine, concurrent=False)
        results = [with_fields(r, said) for r in measured]
        try:
            moved = [r for r in results if isinstance(r, BandwidthResult)]
            await budget.record(moved, datetime.now(UTC))
        except BudgetError as exc:  # counted in memory all the same; the results are kept
            self._budget_trouble("data_budget", exc)
        return anchor, results

    def _not_run(
        self,
        parts: list[tuple[str | None, ProbeSpec]],
        engine: str,
        status: Status,
        fields: dict[str, Any],
        span: Span,
    ) -> list[ResultBase]:
        """One bandwidth result per target for a test that did not run (deferred, skipped)."""
        model, probe_id = MODEL_BY_KIND[Kind.BANDWIDTH], self.creds.probe_id
        return [
            build_result(
                model,
                probe_id,
                engine=engine,
                target=target,
                span=span,
                status=status,
                fields=fields,
            )
            for target, _ in parts
        ]

    # -- data budget ----------------------------------------------------------------------------
    async def data_budget(self) -> DataBudget:
        """The line's data budget, its ledger read from the state directory on first use."""
        async with self._budget_lock:
            if self._budget is None:
                self._budget, problem = await DataBudget.open_or_restart(
                    self.config.data_budget, self.config.data_budget_path, datetime.now(UTC)
                )
                if problem is not None:
                    self._budget_trouble("data_budget", BudgetError(problem))
            return self._budget

    def _budget_trouble(self, key: str, exc: BudgetError) -> None:
        self.state.last_errors[key] = str(exc)[:2048]
        log.error("%s", exc)

    async def _server_replied(self, body: Any) -> None:
        """Take the line's data budget from a server reply that has a word on it."""
        if not reply_speaks_of_budget(body):
            return
        try:
            directive = directive_from_reply(body)
            budget = await self.data_budget()
            before = budget.ledger.budget_bytes
            await budget.apply(directive, datetime.now(UTC))
        except BudgetError as exc:  # a budget the probe cannot use must not stop uploads
            self._budget_trouble("data_budget.server", exc)
            return
        self.state.last_errors.pop("data_budget.server", None)
        if budget.ledger.budget_bytes != before:
            log.info(
                "data budget from the server: %s bytes a month (was %s)",
                budget.ledger.budget_bytes, before,
            )  # fmt: skip

    async def _run_parts(
        self,
        kind: Kind,
        run: ProbeFn,
        parts: list[tuple[str | None, ProbeSpec]],
        engine: str,
        *,
        concurrent: bool,
    ) -> list[ResultBase]:
        """Run each part (one per target, or the whole spec) within the schedule's timeout and
        put the envelope on what it measured (``probes.envelope``); what finished parts measured
        is kept, and each unfinished part becomes one failed result."""
        timeout_s = self.config.schedules[kind].timeout_s
        model, probe_id = MODEL_BY_KIND[kind], self.creds.probe_id
        done: list[list[ResultBase] | None] = [None] * len(parts)
        began: list[Stopwatch | None] = [None] * len(parts)

        def failed(target: str | None, why: FailureKind, error: str, span: Span) -> ResultBase:
            return build_result(
                model,
                probe_id,
                engine=engine,
                target=target,
                span=span,
                failure=Failure(why, error),
            )

        async def one(i: int, target: str | None, spec: ProbeSpec) -> None:
            watch = began[i] = Stopwatch()
            try:
                measured = await run(spec)
                span = watch.span()
                done[i] = [stamp(model, probe_id, m, span) for m in measured]
            except Exception as exc:  # the run's own timeout arrives as CancelledError instead
                failure = classify_failure(exc)
                if failure is FailureKind.INTERNAL:
                    log.exception("%s test of %s failed unexpectedly", kind.value, target)
                done[i] = [failed(target, failure, f"{type(exc).__name__}: {exc}", watch.span())]

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                if concurrent:
                    async with asyncio.TaskGroup() as tg:
                        for i, (target, spec) in enumerate(parts):
                            tg.create_task(one(i, target, spec))
                else:
                    for i, (target, spec) in enumerate(parts):
                        await one(i, target, spec)
        results: list[ResultBase] = []
        now = Stopwatch()
        for (target, _), measured, watch in zip(parts, done, began, strict=True):
            if measured is not None:
                results.extend(measured)
                continue
            message = (
                f"no result within {timeout_s} s"
                if watch is not None
                else f"not started: the run's {timeout_s} s ran out on earlier targets"
            )
            span = (watch or now).span()
            results.append(failed(target, FailureKind.TIMEOUT, message, span))
        return results

    async def _heartbeat(self) -> ResultBase:
        depth: int | None = None
        oldest: float | None = None
        evicted: int | None = None
        try:
            stats = await self.spool.stats()
            depth, oldest, evicted = stats.depth, stats.oldest_age_s, stats.evicted_count
        except SpoolError:
            pass  # the heartbeat still goes out, without spool figures
        budget = await self.data_budget()
        beat = heartbeat.snapshot(
            self.creds.probe_id,
            agent_version=__version__,
            spool_depth=depth,
            spool_oldest_age_s=oldest,
            evicted_count=evicted,
            last_errors=dict(list(self.state.last_errors.items())[-MAX_REPORTED_ERRORS:]),
            disk_path=self.config.state_dir,
        )
        return with_fields(beat, budget.heartbeat_fields(datetime.now(UTC)))

    async def _keep(self, result: ResultBase, anchor: clock.Anchor) -> bool:
        """Sign and commit to the spool, or hold it unsigned while the clock is unsynchronised;
        a full disk is reported and the agent carries on."""
        try:
            if clock.should_hold(anchor, self.config.clock.max_hold_s):
                boot_s = clock.boot_time_of(result.measured_at, anchor)
                if await self.spool.hold(result, anchor.boot_id, boot_s):
                    self.state.results_held += 1
                    self._maybe_held = True
            elif await self.spool.add(sign(self._clock_marked(result, anchor), self.key)):
                self.state.results_kept += 1
        except SpoolError as exc:  # SpoolFullError included: same handling, its own message
            self.state.last_errors["spool"] = str(exc)
            log.error("result %s not kept: %s", result.result_id, exc)
            return False
        self.state.last_errors.pop("spool", None)
        return True

    def _clock_marked(self, result: ResultBase, anchor: clock.Anchor) -> ResultBase:
        if anchor.synced is False:
            self.state.last_errors["clock"] = (
                "the kernel says the wall clock is not synchronised (adjtimex): results go out"
                " marked clock_synced false; check NTP (timedatectl timesync-status)"
            )
        else:
            self.state.last_errors.pop("clock", None)
        return result.model_copy(update={"clock_synced": anchor.synced})

    async def _release_held(self, now: clock.Anchor) -> None:
        """Sign and queue every held result ``clock.settle`` lets go, re-stamped where it can."""
        items = await self.spool.held()
        out: list[ResultBase] = []
        for item in items:
            held = clock.Held(item.measured_at, item.boot_s, item.boot_id)
            release = clock.settle(held, now, self.config.clock.max_hold_s)
            if release is None:
                continue
            result = parse_result(json.loads(item.payload), unbounded_limits())
            stamped = result.model_copy(
                update={
                    "measured_at": release.measured_at,
                    "clock_synced": False,
                    "clock_restamped": release.restamped,
                }
            )
            out.append(sign(stamped, self.key))
        released = await self.spool.release(out)
        self.state.results_kept += released
        if released:
            log.info("released %d held result(s), %d re-stamped", released,
                     sum(1 for r in out if r.clock_restamped))  # fmt: skip
            self._wakeup.set()
        self._maybe_held = len(out) < len(items) or len(items) >= 1000

    async def clock_loop(self, stop: asyncio.Event) -> None:
        """Release held results as soon as the kernel says the clock is synchronised."""
        while not stop.is_set():
            if self._maybe_held:
                try:
                    await self._release_held(self.anchor())
                except SpoolError as exc:
                    log.error("cannot release held results: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOCK_POLL_S):
                    await stop.wait()

    # -- supervision ----------------------------------------------------------------------------
    def _record_crash(self, name: str, exc: BaseException | None) -> int:
        count = self.state.task_restarts[name] = self.state.task_restarts.get(name, 0) + 1
        what = f"{type(exc).__name__}: {exc}" if exc is not None else "returned early"
        self.state.last_errors[f"task.{name}"] = f"ended {count} time(s); last: {what}"[:2048]
        log.error("%s ended (%d time(s)): %s", name, count, what, exc_info=exc)
        return count

    async def supervise(
        self, name: str, body: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        """Run ``body(stop)`` until ``stop`` is set, restarting it after a back-off whenever it
        ends any other way, and recording what ended it."""
        backoff = Backoff(self.config.upload.backoff_min_s, self.config.upload.backoff_max_s)
        while not stop.is_set():
            started = time.monotonic()
            error: Exception | None = None
            try:
                await body(stop)
            except Exception as exc:
                error = exc
            if stop.is_set():
                return
            if time.monotonic() - started >= HEALTHY_RUN_S:
                backoff.reset()
            self._record_crash(name, error)
            await self.write_status()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next_delay()):
                    await stop.wait()

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
                "held": stats.held,
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
            "results_held": self.state.results_held,
            "last_errors": self.state.last_errors,
            "task_restarts": self.state.task_restarts,
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
                misfire_grace_time=max(60, int(sched.every_s or sched.mean_gap_s or 3600) // 2),
                **first,
            )

    async def run(self, stop: asyncio.Event) -> None:
        await self.data_budget()
        self.schedule()
        self.scheduler.start()
        log.info(
            "probe %s started: %s", self.creds.probe_id,
            ", ".join(f"{k}={v}" for k, v in self.next_runs().items()),
        )  # fmt: skip
        background = [
            asyncio.create_task(self.supervise(name, body, stop), name=name)
            for name, body in (("upload", self.upload_loop), ("clock", self.clock_loop))
        ]
        try:
            await stop.wait()
        finally:
            log.info("stopping: abandoning %d running test(s)", len(self._running))
            self.scheduler.shutdown(wait=False)
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_UPLOAD_S):
                    await self.uploader.drain()
            await self.write_status()
