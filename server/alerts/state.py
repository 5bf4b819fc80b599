"""The alert state machine: a pure function from (state, event, now, rule) to (state, notices).

One ``AlertState`` per (rule, subject), where the subject is a probe's line, a hamlet line or the
measurement target. Phases go ``ok → pending → firing → resolved (→ ok)``:

- an observation is bad or good; the last ``n`` are kept (newest last);
- ``ok``/``resolved`` → ``pending`` on a bad one, → ``firing`` once ``m`` of the last ``n`` are
  bad (``pending`` falls back to ``ok`` when no bad one is left in the window);
- ``firing`` → ``resolved`` after ``resolve_after`` (K) good observations in a row; the window
  starts afresh, so firing again takes ``m`` new bad ones;
- while firing and not acknowledged, a reminder at every ``remind_every`` after the firing
  notice; a mute (who, when, until) suppresses notices but never the state.

This is Alertmanager's split of evaluation from notification and SmokePing's matchers (fire on
an edge, hold until x good samples). Nothing here reads the clock or does I/O: ``now`` is an
argument, and the state is frozen plain data that round-trips through JSON (``state_to_json``),
so a restart neither loses a firing alert nor sends a notice twice; every notice carries an
``id`` that is the same however often the same transition is replayed, for the outbox to
deduplicate on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import TypeAdapter

from server.alerts.config import AlertRule
from server.errors import BadRequest, Conflict


class NotFiring(Conflict):
    """Only a firing alert can be acknowledged."""


class BadMute(BadRequest):
    """A mute must end in the future."""


def _aware(at: datetime, what: str) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} {at.isoformat()} has no timezone: pass UTC-aware datetimes")


class Phase(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Subject:
    """What an alert is about: a probe's line (probe, hamlet, isp), a hamlet line (hamlet, isp),
    or the measurement target (target). ``isp`` decides who is told (``Routing.contacts_for``)."""

    hamlet: str | None = None
    isp: str | None = None
    probe: str | None = None
    target: str | None = None

    @property
    def key(self) -> str:
        """Stable text key, e.g. ``hamlet=thon-a,isp=VNPT,probe=p1``."""
        parts = (
            ("hamlet", self.hamlet),
            ("isp", self.isp),
            ("probe", self.probe),
            ("target", self.target),
        )
        return ",".join(f"{k}={v}" for k, v in parts if v is not None)


# -- Events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observation:
    """One judged observation: bad or good, with the number measured against the threshold
    (``None`` when the rule has no number, e.g. IPv6 readiness). Built by
    ``server.alerts.evaluate``; an invalid test yields no observation at all."""

    at: datetime
    bad: bool
    measured: float | None = None
    threshold: float | None = None
    unit: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        _aware(self.at, "observation time")


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes with nothing observed: reminders fall due and mutes end."""


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """Someone has taken the alert on: no more reminders this episode (the recovery notice still
    goes out)."""

    by: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Mute:
    """No notices until ``until``; the state moves on as usual."""

    by: str
    until: datetime
    reason: str = ""

    def __post_init__(self) -> None:
        _aware(self.until, "mute end")


@dataclass(frozen=True, slots=True)
class Unmute:
    by: str


Event = Observation | Tick | Acknowledge | Mute | Unmute


# -- State --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mark:
    at: datetime
    bad: bool


@dataclass(frozen=True, slots=True)
class Acked:
    by: str
    at: datetime
    note: str = ""


@dataclass(frozen=True, slots=True)
class Muted:
    by: str
    at: datetime
    until: datetime
    reason: str = ""

    def active(self, now: datetime) -> bool:
        return now < self.until


@dataclass(frozen=True, slots=True)
class AlertState:
    """Everything the machine remembers about one (rule, subject)."""

    rule_id: str
    subject: Subject
    phase: Phase = Phase.OK
    recent: tuple[Mark, ...] = ()
    good_streak: int = 0
    #: Episodes fired so far; part of every notice id.
    episode: int = 0
    #: The first bad observation of the current trouble (pending or firing).
    since: datetime | None = None
    changed_at: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    #: The firing notice of this episode went out (False while it fired under a mute).
    announced: bool = False
    next_reminder_at: datetime | None = None
    reminders: int = 0
    last_bad: Observation | None = None
    last: Observation | None = None
    acked: Acked | None = None
    muted: Muted | None = None


def initial(rule_id: str, subject: Subject) -> AlertState:
    return AlertState(rule_id, subject)


class NoticeKind(StrEnum):
    FIRING = "firing"
    REMINDER = "reminder"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Notification:
    """One notice to deliver. ``id`` is the outbox's deduplication key: the same transition
    replayed (after a restart, from a stored state) gives the same id."""

    id: str
    kind: NoticeKind
    rule_id: str
    subject: Subject
    episode: int
    at: datetime
    since: datetime | None
    fired_at: datetime | None
    observation: Observation | None
    reminder: int = 0


# -- The transition -----------------------------------------------------------------------------


def transition(
    state: AlertState, event: Event, now: datetime, rule: AlertRule
) -> tuple[AlertState, list[Notification]]:
    """The next state and the notices to send, for ``event`` arriving at ``now``.

    ``Acknowledge`` raises ``NotFiring`` unless the alert fires; ``Mute`` raises ``BadMute``
    unless it ends after ``now``. See the module docstring and docs/alerts.md for the rules.
    """
    _aware(now, "now")
    before = state.phase
    match event:
        case Observation():
            state = _observe(state, event, now, rule)
        case Acknowledge():
            if state.phase is not Phase.FIRING:
                raise NotFiring(
                    f"alert {state.rule_id} ({state.subject.key}) is {state.phase.value},"
                    " not firing: nothing to acknowledge"
                )
            state = replace(state, acked=Acked(event.by, now, event.note))
        case Mute():
            if event.until <= now:
                raise BadMute(
                    f"mute until {event.until.isoformat()} is not after now ({now.isoformat()})"
                )
            state = replace(state, muted=Muted(event.by, now, event.until, event.reason))
        case Unmute():
            state = replace(state, muted=None)
        case Tick():
            pass
    return _notify(state, before, now, rule)


def _observe(state: AlertState, obs: Observation, now: datetime, rule: AlertRule) -> AlertState:
    recent = (*state.recent, Mark(obs.at, obs.bad))[-rule.n :]
    last_bad = obs if obs.bad else state.last_bad
    state = replace(state, recent=recent, last=obs, last_bad=last_bad)
    if state.phase is Phase.FIRING:
        streak = 0 if obs.bad else state.good_streak + 1
        if streak < rule.resolve_after:
            return replace(state, good_streak=streak)
        # Resolved: the window starts afresh, so firing again takes m new bad observations.
        return replace(
            state, phase=Phase.RESOLVED, changed_at=now, resolved_at=now, recent=(), good_streak=0
        )
    bad = [m for m in recent if m.bad]
    if len(bad) >= rule.m:
        return replace(
            state,
            phase=Phase.FIRING,
            changed_at=now,
            episode=state.episode + 1,
            since=bad[0].at,
            fired_at=now,
            resolved_at=None,
            announced=False,
            next_reminder_at=None,
            reminders=0,
            good_streak=0,
            acked=None,
        )
    if bad:
        changed = now if state.phase is not Phase.PENDING else state.changed_at
        return replace(state, phase=Phase.PENDING, changed_at=changed, since=bad[0].at)
    if state.phase is Phase.OK:
        return state
    # pending with its last bad observation out of the window, or resolved seeing a good one.
    return replace(state, phase=Phase.OK, changed_at=now, since=None)


def _notify(
    state: AlertState, before: Phase, now: datetime, rule: AlertRule
) -> tuple[AlertState, list[Notification]]:
    if state.muted is not None and not state.muted.active(now):
        state = replace(state, muted=None)
    muted = state.muted is not None
    notices: list[Notification] = []
    every = rule.remind_every
    if state.phase is Phase.FIRING:
        if not state.announced:
            # Just fired, or fired under a mute that has now ended: tell once.
            if not muted:
                notices.append(_notice(state, NoticeKind.FIRING, now, state.last_bad))
                state = replace(
                    state, announced=True, next_reminder_at=now + every if every else None
                )
        elif every is not None and state.next_reminder_at is None:
            # Reminders switched on (the rule changed) while it fired: count from now.
            state = replace(state, next_reminder_at=now + every)
        elif every is not None and state.next_reminder_at is not None:
            due = state.next_reminder_at
            if now >= due:
                if not muted and state.acked is None:
                    count = state.reminders + 1
                    state = replace(state, reminders=count)
                    notices.append(_notice(state, NoticeKind.REMINDER, now, state.last_bad))
                # One reminder however many due times passed since the last evaluation; the
                # next stays on the grid announced + k·interval, so the schedule never drifts.
                state = replace(state, next_reminder_at=_next_due(due, now, every))
    elif state.phase is Phase.RESOLVED and before is Phase.FIRING:
        # A recovery notice only for an alert that was announced: nobody heard of the others.
        if state.announced and not muted:
            notices.append(_notice(state, NoticeKind.RESOLVED, now, state.last))
        state = replace(state, next_reminder_at=None, acked=None)
    return state, notices


def _next_due(due: datetime, now: datetime, every: timedelta) -> datetime:
    """The first time ``due + k·every`` (k ≥ 1) after ``now``."""
    steps = math.floor((now - due) / every) + 1
    return due + steps * every


def _notice(
    state: AlertState, kind: NoticeKind, now: datetime, obs: Observation | None
) -> Notification:
    seq = state.reminders if kind is NoticeKind.REMINDER else 0
    return Notification(
        id=f"{state.rule_id}/{state.subject.key}/{state.episode}/{kind.value}/{seq}",
        kind=kind,
        rule_id=state.rule_id,
        subject=state.subject,
        episode=state.episode,
        at=now,
        since=state.since,
        fired_at=state.fired_at,
        observation=obs,
        reminder=seq,
    )


# -- Storage form -------------------------------------------------------------------------------

_STATE = TypeAdapter(AlertState)
_NOTICE = TypeAdapter(Notification)


def state_to_json(state: AlertState) -> str:
    return _STATE.dump_json(state).decode()


def state_from_json(text: str | bytes) -> AlertState:
    return _STATE.validate_json(text)


def notification_to_json(notice: Notification) -> str:
    return _NOTICE.dump_json(notice).decode()


def notification_from_json(text: str | bytes) -> Notification:
    return _NOTICE.validate_json(text)
