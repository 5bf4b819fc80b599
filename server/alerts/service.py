"""The app's alert service: judges results as they arrive and on a schedule, steps the state
machine, keeps the state and the outbox (``store.AlertStore.commit``), wakes the outbox worker,
and writes each phase change to the result store's ``alerts`` history for Grafana.

Ingest never waits on alerts: the ingest handler hands accepted results to ``offer``, which puts
them on a bounded queue and returns at once; a full queue drops the batch (counted and logged)
and the next scheduled evaluation carries on. Rules that need more than the result at hand (the
line's own median, whether it was IPv6-ready, the month's sample count, the other probes'
attempts against the target) read the result store with a bounded ``scan`` (one window, the
fields they use) from the evaluation task, never from the ingest handler. That one task (``run``)
takes the queue and the schedule in turn, and a lock serialises every step (results, schedule,
acknowledge, mute), so one (rule, subject) is never stepped from two stored states at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable

from probes.models import (
    BandwidthResult,
    FailureKind,
    Ipv6Result,
    Kind,
    LatencyResult,
    Result,
    Status,
)
from server.alerts import evaluate
from server.alerts.config import (
    AlertRule,
    AlertsConfig,
    BelowDeclared,
    BelowOwnMedian,
    BelowPlanTarget,
    Ipv6ReadinessLost,
    LoadedLatencyAbove,
    ProbeSilent,
    SamplePaceBehind,
    TargetUnreachable,
)
from server.alerts.delivery import Deliverer, channels_for
from server.alerts.message import Place, annotation, render
from server.alerts.state import (
    AlertState,
    Event,
    Observation,
    Phase,
    Subject,
    Tick,
    initial,
    transition,
)
from server.alerts.store import AlertStore, Outgoing, TransitionRecord
from server.compliance import samples as scanned
from server.compliance.rules import Ipv6Sample, Sample
from server.compliance.stats import Period, month_of
from server.errors import NotFound, StorageUnavailable
from server.registry import ProbeRecord, Registry
from server.settings import Settings
from server.storage.alert_rows import AlertRow
from server.storage.base import ResultStore, ScanRow

log = logging.getLogger("hamletnet.server.alerts.service")

#: Batches of accepted results waiting to be judged; past this, ``offer`` drops.
QUEUE_SIZE = 1000
#: ``ipv6_readiness_lost``: a line "was ready" when a valid result in this window before the
#: test said so. A line not ready for longer gives no more observations, so a firing alert
#: stays firing (with its reminders) until a ready result resolves it.
IPV6_BASELINE = timedelta(days=30)
#: ``target_unreachable`` reads these of each attempt against the target...
TARGET_FIELDS = ("status", "failure_kind", "target")
#: ...in the results of these kinds (both name their ``target``).
TARGET_KINDS = (Kind.LATENCY, Kind.BANDWIDTH)
#: A scan's end is exclusive: this past "now" takes a result stamped exactly now.
_INCLUSIVE = timedelta(microseconds=1)

T = TypeVar("T")


@runtime_checkable
class AlertHistoryStore(Protocol):
    """What a result store offers to keep the alert history (both adapters do)."""

    async def write_alert_rows(self, rows: Sequence[AlertRow]) -> None: ...

    async def alert_rows(self, start: datetime, end: datetime) -> list[AlertRow]: ...


def to_sample(result: BandwidthResult, probe: ProbeRecord) -> Sample:
    """The compliance rules' view of one bandwidth result, for ``evaluate``'s validity filter."""
    return Sample(
        measured_at=result.measured_at,
        download_mbps=result.download_mbps,
        upload_mbps=result.upload_mbps,
        status=result.status,
        cpu_limited=result.cpu_limited,
        host_limited=result.host_limited,
        ran_alone=result.ran_alone,
        clock_synced=result.clock_synced,
        link_speed_mbps=result.link_speed_mbps,
        access=probe.access,
    )


def observe_result(rule: AlertRule, result: Result, probe: ProbeRecord) -> Observation | None:
    """The observation one accepted result makes for ``rule``, if any. Rules judged from one
    result alone: speed against the declared speed or the plan's target, loaded latency."""
    if not isinstance(result, BandwidthResult):
        return None
    sample = to_sample(result, probe)
    match rule:
        case BelowDeclared():
            return evaluate.below_declared(rule, sample, probe.line)
        case BelowPlanTarget():
            return evaluate.below_plan_target(rule, sample)
        case LoadedLatencyAbove():
            return evaluate.loaded_latency_above(
                rule,
                sample,
                loaded_down_ms=result.loaded_latency_down_ms,
                loaded_up_ms=result.loaded_latency_up_ms,
            )
    return None


def to_ipv6_sample(result: Ipv6Result) -> Ipv6Sample:
    return Ipv6Sample(
        measured_at=result.measured_at,
        ipv6_ready=result.ipv6_ready,
        ipv6_only_ready=result.ipv6_only_ready,
        status=result.status,
        clock_synced=result.clock_synced,
    )


def to_attempt(row: ScanRow) -> evaluate.TargetAttempt:
    """One scanned latency or bandwidth result as an attempt against its target."""
    status = row.fields.get("status")
    failure = row.fields.get("failure_kind")
    return evaluate.TargetAttempt(
        probe_id=row.probe_id,
        measured_at=row.measured_at,
        status=Status.OK if status is None else Status(status),
        failure_kind=None if failure is None else FailureKind(failure),
    )


def line_subject(probe: ProbeRecord) -> Subject:
    return Subject(hamlet=probe.hamlet, isp=probe.isp, probe=probe.probe_id)


@dataclass(frozen=True, slots=True)
class Step:
    """What one step did: the state after it and the deliveries newly queued."""

    state: AlertState
    queued: int


class AlertService:
    def __init__(
        self,
        config: AlertsConfig,
        settings: Settings,
        registry: Registry,
        results: object,
        store: AlertStore,
        deliverer: Deliverer,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.config = config
        self.registry = registry
        self.history = results if isinstance(results, AlertHistoryStore) else None
        #: Where the rules that need a history read it; None: those rules give no observation.
        self.results = results if isinstance(results, ResultStore) else None
        self.store = store
        self.deliverer = deliverer
        self._clock = clock
        self._queue: asyncio.Queue[tuple[str, list[Result]]] = asyncio.Queue(queue_size)
        self._lock = asyncio.Lock()
        self._places = _places(settings)
        #: Batches ``offer`` dropped because the queue was full.
        self.dropped = 0
        #: History points the result store did not keep (the transitions table still has them).
        self.history_failures = 0

    # -- ingest side --------------------------------------------------------------------------
    def offer(self, probe_id: str, results: Sequence[Result]) -> bool:
        """Queue accepted results for judging; never blocks, never raises. A full queue drops
        the batch (the schedule catches up on silence; a dropped test is one observation
        fewer, never a false one)."""
        if not results:
            return True
        try:
            self._queue.put_nowait((probe_id, list(results)))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning(
                "alerts: queue full, %d result(s) of probe %s not judged (%d batches dropped)",
                len(results),
                probe_id,
                self.dropped,
            )
            return False
        return True

    async def drain(self) -> None:
        """Wait until every queued batch has been judged."""
        await self._queue.join()

    # -- evaluation ---------------------------------------------------------------------------
    async def evaluate_results(self, probe_id: str, results: Sequence[Result]) -> None:
        """Judge accepted results of one probe, oldest first, against every enabled rule. A
        rule whose store read fails is skipped for this batch (logged); the others go on."""
        probe = await self.registry.get(probe_id)  # the line as declared now
        ordered = sorted(results, key=lambda r: r.measured_at)
        for rule in self.config.rules:
            if not rule.enabled:
                continue
            try:
                found = await self._judge(rule, probe, ordered)
            except StorageUnavailable as exc:
                log.warning(
                    "alerts: rule %s not judged for probe %s, the result store failed: %s",
                    rule.id,
                    probe_id,
                    exc.detail,
                )
                continue
            for subject, obs in found:
                await self.step(rule, subject, obs)

    async def _judge(
        self, rule: AlertRule, probe: ProbeRecord, ordered: Sequence[Result]
    ) -> list[tuple[Subject, Observation]]:
        """The observations ``rule`` makes of one probe's batch, with their subjects."""
        found: list[Observation | None]
        match rule:
            case BelowOwnMedian():
                found = await self._below_own_median(rule, probe, ordered)
            case Ipv6ReadinessLost():
                found = await self._ipv6_readiness_lost(rule, probe, ordered)
            case TargetUnreachable():
                return await self._target_unreachable(rule, ordered)
            case _:
                found = [observe_result(rule, result, probe) for result in ordered]
        subject = line_subject(probe)
        return [(subject, obs) for obs in found if obs is not None]

    async def _scan(
        self,
        kind: Kind,
        start: datetime,
        end: datetime,
        fields: Sequence[str],
        convert: Callable[[ScanRow], T],
        probes: Sequence[str] | None = None,
    ) -> list[T]:
        """Rows of one bounded window, converted page by page (no page outlives its turn)."""
        found: list[T] = []
        if self.results is None:
            return found
        async for page in self.results.scan(kind, start, end, probes=probes, fields=fields):
            found.extend(convert(row) for row in page)
        return found

    async def _below_own_median(
        self, rule: BelowOwnMedian, probe: ProbeRecord, ordered: Sequence[Result]
    ) -> list[Observation | None]:
        """Each bandwidth test against the line's own median over the ``baseline_days`` before
        it: one scan of this probe's bandwidth results, from the oldest test's baseline start
        to the newest test (exclusive, so a test is never its own baseline)."""
        tests = [r for r in ordered if isinstance(r, BandwidthResult)]
        if not tests or self.results is None:
            return []
        days = timedelta(days=rule.baseline_days)
        history = await self._scan(
            Kind.BANDWIDTH,
            tests[0].measured_at - days,
            tests[-1].measured_at,
            scanned.SAMPLE_FIELDS,
            scanned.to_sample,
            probes=[probe.probe_id],
        )
        return [evaluate.below_own_median(rule, to_sample(t, probe), history) for t in tests]

    async def _ipv6_readiness_lost(
        self, rule: Ipv6ReadinessLost, probe: ProbeRecord, ordered: Sequence[Result]
    ) -> list[Observation | None]:
        """Each IPv6 result against whether the line was ready in the ``IPV6_BASELINE`` before
        it: one scan of this probe's IPv6 results over that window."""
        tests = [r for r in ordered if isinstance(r, Ipv6Result)]
        if not tests or self.results is None:
            return []
        history = await self._scan(
            Kind.IPV6,
            tests[0].measured_at - IPV6_BASELINE,
            tests[-1].measured_at,
            scanned.IPV6_SAMPLE_FIELDS,
            scanned.to_ipv6_sample,
            probes=[probe.probe_id],
        )
        found = []
        for test in tests:
            at = test.measured_at
            window = Period("ipv6-baseline", "range", at - IPV6_BASELINE, at)
            was_ready = evaluate.was_ipv6_ready(history, window)
            found.append(evaluate.ipv6_readiness_lost(rule, to_ipv6_sample(test), was_ready))
        return found

    async def _target_unreachable(
        self, rule: TargetUnreachable, ordered: Sequence[Result]
    ) -> list[tuple[Subject, Observation]]:
        """For each target this batch tested within ``window_min``: one observation about the
        target (not the probe), from every probe's latest attempt against it in that window
        (one scan of latency and one of bandwidth results, all probes, three fields)."""
        now = self._clock()
        start = now - timedelta(minutes=rule.window_min)
        tested = {
            r.target
            for r in ordered
            if isinstance(r, LatencyResult | BandwidthResult)
            and r.target is not None
            and start <= r.measured_at <= now
        }
        if not tested or self.results is None:
            return []
        by_target: defaultdict[str, list[evaluate.TargetAttempt]] = defaultdict(list)
        for kind in TARGET_KINDS:
            rows = await self._scan(kind, start, now + _INCLUSIVE, TARGET_FIELDS, lambda r: r)
            for row in rows:
                target = row.fields.get("target")
                if target in tested:
                    by_target[target].append(to_attempt(row))
        found = []
        for target in sorted(tested):
            obs = evaluate.target_unreachable(rule, by_target[target], now)
            if obs is not None:
                found.append((Subject(target=target), obs))
        return found

    async def _month_counts(self, month: Period, now: datetime, probes: list[str]) -> Counter[str]:
        """Valid download tests per probe in ``month`` up to ``now``: one scan of the month's
        bandwidth results of ``probes``, counted page by page (no month of rows kept)."""
        counts: Counter[str] = Counter()
        if self.results is None or not probes:
            return counts
        end = min(month.end, now + _INCLUSIVE)
        async for page in self.results.scan(
            Kind.BANDWIDTH, month.start, end, probes=probes, fields=scanned.SAMPLE_FIELDS
        ):
            by_probe: defaultdict[str, list[Sample]] = defaultdict(list)
            for row in page:
                by_probe[row.probe_id].append(scanned.to_sample(row))
            for probe_id, page_samples in by_probe.items():
                counts[probe_id] += evaluate.valid_download_count(page_samples, month)
        return counts

    async def evaluate_schedule(self) -> None:
        """What time alone decides: probe silence, each line's sample pace, then a ``Tick``
        for every firing or muted alert (reminders fall due, mutes end)."""
        now = self._clock()
        await self._sample_pace(now)
        silent = [r for r in self.config.rules if isinstance(r, ProbeSilent) and r.enabled]
        if silent:
            for probe in await self.registry.probes():
                for rule in silent:
                    obs = evaluate.probe_silent(
                        rule,
                        last_seen_at=probe.last_seen_at,
                        registered_at=probe.created_at,
                        now=now,
                        enabled=probe.enabled,
                    )
                    if obs is not None:
                        await self.step(rule, line_subject(probe), obs)
        for state in await self.store.states():
            stored_rule = self._rule(state.rule_id)
            if stored_rule is None or not stored_rule.enabled:
                continue
            if state.phase is Phase.FIRING or state.muted is not None:
                await self.step(stored_rule, state.subject, Tick())

    async def _sample_pace(self, now: datetime) -> None:
        """``sample_pace_behind`` for every enabled probe's line, this (Vietnam-time) month."""
        rules = [r for r in self.config.rules if isinstance(r, SamplePaceBehind) and r.enabled]
        if not rules or self.results is None:
            return
        month = month_of(now)
        probes = [p for p in await self.registry.probes() if p.enabled]
        try:
            counts = await self._month_counts(month, now, [p.probe_id for p in probes])
        except StorageUnavailable as exc:
            log.warning("alerts: sample pace not judged, the result store failed: %s", exc.detail)
            return
        for probe in probes:
            for rule in rules:
                obs = evaluate.sample_pace_behind(rule, counts[probe.probe_id], month, now)
                if obs is not None:
                    await self.step(rule, line_subject(probe), obs)

    async def act(self, rule_id: str, subject_key: str, event: Event) -> AlertState:
        """Acknowledge, mute or unmute a stored alert (the admin API). ``NotFound`` for an
        alert never stored; the state machine's ``NotFiring``/``BadMute`` pass through."""
        rule = self._rule(rule_id)
        if rule is None:
            raise NotFound(f"no alert rule {rule_id!r} in the alerts configuration")
        for state in await self.store.states():
            if state.rule_id == rule_id and state.subject.key == subject_key:
                return (await self.step(rule, state.subject, event)).state
        raise NotFound(f"no alert {rule_id!r} about {subject_key!r}")

    async def step(self, rule: AlertRule, subject: Subject, event: Event) -> Step:
        """One transition: state machine, then state, notices and history row in one commit;
        then the outbox worker is woken and the phase change goes to the result store."""
        async with self._lock:
            now = self._clock()
            before = await self.store.state(rule.id, subject) or initial(rule.id, subject)
            after, notices = transition(before, event, now, rule)
            if after == before and not notices:
                return Step(after, 0)
            place = self._places(subject)
            outgoing = []
            for notice in notices:
                message = render(notice, rule, self.config.links, place)
                channels = channels_for(self.config.routing, subject.isp)
                outgoing.append(Outgoing(notice, message.title, message.body, channels))
            queued = await self.store.commit(before, after, outgoing, now)
        if queued:
            self.deliverer.wake()
        if after.phase is not before.phase:
            await self._write_history(after, rule, now, place)
        return Step(after, queued)

    async def _write_history(
        self, state: AlertState, rule: AlertRule, now: datetime, place: Place
    ) -> None:
        if self.history is None:
            return
        point = annotation(state, rule, now, place)
        try:
            await self.history.write_alert_rows([AlertRow(point.time, point.tags, point.fields)])
        except StorageUnavailable as exc:
            # The transitions table in alerts.sqlite3 still holds it; Grafana misses one mark.
            self.history_failures += 1
            log.warning("alerts: history point for %s not kept: %s", state.rule_id, exc.detail)

    def _rule(self, rule_id: str) -> AlertRule | None:
        try:
            return self.config.rule(rule_id)
        except KeyError:
            return None

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Judge queued results as they come and the schedule every ``evaluate_every_s`` (the
        first at once: after a restart, reminders and ended mutes are caught up). A failing
        step is logged and the loop goes on. Cancel it to stop."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            try:
                probe_id, results = await asyncio.wait_for(
                    self._queue.get(), max(0.0, next_tick - loop.time())
                )
            except TimeoutError:
                await self._guarded("the schedule", self.evaluate_schedule())
                next_tick = loop.time() + self.config.evaluate_every_s
                continue
            try:
                job = self.evaluate_results(probe_id, results)
                await self._guarded(f"results of {probe_id}", job)
            finally:
                self._queue.task_done()

    async def _guarded(self, what: str, job: Any) -> None:
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("alerts: evaluating %s failed; carrying on", what)

    # -- reading ------------------------------------------------------------------------------
    async def active(self) -> list[AlertState]:
        return await self.store.states(phases=(Phase.PENDING, Phase.FIRING))

    async def past(self, limit: int = 200) -> list[TransitionRecord]:
        return await self.store.transitions(limit=limit)


def _places(settings: Settings) -> Callable[[Subject], Place]:
    hamlets = {h.code: h for h in settings.hamlets}
    communes = {c.code: c.name for c in settings.communes}

    def place(subject: Subject) -> Place:
        hamlet = hamlets.get(subject.hamlet or "")
        if hamlet is None:
            return Place()
        return Place(hamlet_name=hamlet.name, commune_name=communes.get(hamlet.commune))

    return place


# -- views for the admin API (no channel URLs, no secrets: states and history only) -------------


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _observation(obs: Observation | None) -> dict[str, Any] | None:
    if obs is None:
        return None
    return {
        "at": _iso(obs.at),
        "bad": obs.bad,
        "measured": obs.measured,
        "threshold": obs.threshold,
        "unit": obs.unit,
        "note": obs.note,
    }


def state_view(state: AlertState) -> dict[str, Any]:
    subject = state.subject
    return {
        "rule": state.rule_id,
        "subject": subject.key,
        "hamlet": subject.hamlet,
        "isp": subject.isp,
        "probe": subject.probe,
        "target": subject.target,
        "phase": state.phase.value,
        "episode": state.episode,
        "since": _iso(state.since),
        "changed_at": _iso(state.changed_at),
        "fired_at": _iso(state.fired_at),
        "resolved_at": _iso(state.resolved_at),
        "reminders": state.reminders,
        "last_bad": _observation(state.last_bad),
        "acked": None
        if state.acked is None
        else {"by": state.acked.by, "at": _iso(state.acked.at), "note": state.acked.note},
        "muted": None
        if state.muted is None
        else {
            "by": state.muted.by,
            "at": _iso(state.muted.at),
            "until": _iso(state.muted.until),
            "reason": state.muted.reason,
        },
    }


def transition_view(record: TransitionRecord) -> dict[str, Any]:
    return {
        "at": _iso(record.at),
        "rule": record.rule_id,
        "subject": record.subject,
        "from": record.from_phase.value,
        "to": record.to_phase.value,
        "episode": record.episode,
    }
