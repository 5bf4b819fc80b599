"""The alert state machine: hysteresis, reminders, acknowledge and mute, and restart safety."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.alerts.config import BelowDeclared
from server.alerts.state import (
    Acknowledge,
    AlertState,
    BadMute,
    Event,
    Mute,
    NotFiring,
    NoticeKind,
    Notification,
    Observation,
    Phase,
    Subject,
    Tick,
    Unmute,
    initial,
    state_from_json,
    state_to_json,
    transition,
)

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
SUBJECT = Subject(hamlet="thon-a", isp="VNPT", probe="p1")


def rule(**overrides: Any) -> BelowDeclared:
    fields: dict[str, Any] = {
        "id": "low",
        "kind": "below_declared",
        "title_vi": "Tốc độ thấp",
        "text_vi": "Dưới 80 % tốc độ công bố.",
        "fraction": 0.8,
        "m": 3,
        "n": 5,
        "resolve_after": 2,
        "remind_every_h": None,
    }
    fields.update(overrides)
    return BelowDeclared(**fields)


def obs(i: int, bad: bool) -> Observation:
    return Observation(T0 + timedelta(minutes=i), bad, 100.0 if bad else 900.0, 800.0, "Mb/s")


def feed(
    bads: Sequence[bool], r: BelowDeclared, state: AlertState | None = None
) -> tuple[AlertState, list[list[Notification]], list[Phase]]:
    """Each bool an observation one minute apart; the notices and phase after each."""
    state = state or initial(r.id, SUBJECT)
    notices, phases = [], []
    for i, bad in enumerate(bads):
        state, out = transition(state, obs(i, bad), T0 + timedelta(minutes=i), r)
        notices.append(out)
        phases.append(state.phase)
    return state, notices, phases


def kinds(notices: list[list[Notification]]) -> list[list[str]]:
    return [[n.kind.value for n in step] for step in notices]


def test_fires_once_after_m_of_n_and_resolves_after_k_good() -> None:
    r = rule()
    seq = [True, False, True, False, True, True, False, True, False, False, True]
    state, notices, phases = feed(seq, r)
    assert phases == [
        Phase.PENDING, Phase.PENDING, Phase.PENDING, Phase.PENDING,
        Phase.FIRING,  # 3 bad of the last 5
        Phase.FIRING, Phase.FIRING, Phase.FIRING, Phase.FIRING,
        Phase.RESOLVED,  # 2 good in a row
        Phase.PENDING,  # the window started afresh
    ]  # fmt: skip
    assert kinds(notices) == [[], [], [], [], ["firing"], [], [], [], [], ["resolved"], []]
    firing = notices[4][0]
    assert firing.since == T0 and firing.observation == obs(4, True)
    assert firing.id == "low/hamlet=thon-a,isp=VNPT,probe=p1/1/firing/0"
    resolved = notices[9][0]
    assert resolved.id.endswith("/1/resolved/0") and resolved.observation == obs(9, False)
    assert state.episode == 1 and state.since == T0 + timedelta(minutes=10)


def test_pending_falls_back_to_ok_when_the_bad_one_leaves_the_window() -> None:
    _, notices, phases = feed([True, False, False, False, False, False], rule())
    assert phases[:5] == [Phase.PENDING] * 5 and phases[5] is Phase.OK
    assert not any(notices)


def test_resolved_goes_to_ok_on_the_next_good_one() -> None:
    _, _, phases = feed([True, True, True, False, False, False], rule())
    assert phases == [
        Phase.PENDING, Phase.PENDING, Phase.FIRING, Phase.FIRING, Phase.RESOLVED, Phase.OK
    ]  # fmt: skip


def _bad_in_window(history: Sequence[bool], n: int) -> int:
    return sum(history[-n:])


@settings(max_examples=300, deadline=None)
@given(
    seq=st.lists(st.booleans(), max_size=60),
    n=st.integers(1, 8),
    data=st.data(),
)
def test_hysteresis_properties(seq: list[bool], n: int, data: st.DataObject) -> None:
    """Never fires with fewer than m bad in the last n (since the last resolution), always fires
    once there are m; never resolves before k good in a row, always at the k-th; one firing and
    one recovery notice per episode, never two with the same id."""
    m = data.draw(st.integers(1, n))
    k = data.draw(st.integers(1, 5))
    r = rule(m=m, n=n, resolve_after=k)
    _, notices, phases = feed(seq, r)
    history: list[bool] = []  # observations since the last resolution
    streak = 0
    previous = Phase.OK
    for bad, phase, out in zip(seq, phases, notices, strict=True):
        history.append(bad)
        if previous is Phase.FIRING:
            streak = 0 if bad else streak + 1
            assert (phase is Phase.RESOLVED) == (streak >= k)
            if phase is Phase.RESOLVED:
                assert history[-k:] == [False] * k
                history, streak = [], 0
        else:
            fires = _bad_in_window(history, n) >= m
            assert (phase is Phase.FIRING) == fires
        sent = [x.kind for x in out]
        if phase is Phase.FIRING and previous is not Phase.FIRING:
            assert sent == [NoticeKind.FIRING]
        elif phase is Phase.RESOLVED and previous is Phase.FIRING:
            assert sent == [NoticeKind.RESOLVED]
        else:
            assert sent == []
        previous = phase
    ids = [x.id for step in notices for x in step]
    assert len(ids) == len(set(ids))


@settings(max_examples=200, deadline=None)
@given(seq=st.lists(st.booleans(), max_size=40), m=st.integers(1, 3), k=st.integers(1, 3))
def test_a_mute_suppresses_notices_but_not_state(seq: list[bool], m: int, k: int) -> None:
    r = rule(m=m, n=3, resolve_after=k, remind_every_h=0.05)  # a reminder every 3 minutes
    _, loud_notices, loud_phases = feed(seq, r)
    muted = initial(r.id, SUBJECT)
    muted, out = transition(muted, Mute("lan", T0 + timedelta(days=1), "bảo trì"), T0, r)
    assert out == []
    state, quiet_notices, quiet_phases = feed(seq, r, muted)
    assert quiet_phases == loud_phases
    assert any(loud_notices) == (Phase.FIRING in loud_phases)
    assert not any(quiet_notices)
    assert state.muted is not None and state.muted.by == "lan"


def test_a_firing_alert_muted_at_birth_is_told_once_the_mute_ends() -> None:
    r = rule(m=1, n=1, resolve_after=1)
    state = initial(r.id, SUBJECT)
    until = T0 + timedelta(hours=1)
    state, _ = transition(state, Mute("lan", until), T0, r)
    state, out = transition(state, obs(1, True), T0 + timedelta(minutes=1), r)
    assert state.phase is Phase.FIRING and out == []
    state, out = transition(state, Tick(), until - timedelta(seconds=1), r)
    assert out == []
    state, out = transition(state, Tick(), until, r)
    assert [n.kind for n in out] == [NoticeKind.FIRING] and state.muted is None
    state, out = transition(state, obs(90, False), until + timedelta(minutes=30), r)
    assert [n.kind for n in out] == [NoticeKind.RESOLVED]


def test_no_recovery_notice_for_an_alert_nobody_heard_of() -> None:
    r = rule(m=1, n=1, resolve_after=1)
    state, _ = transition(initial(r.id, SUBJECT), Mute("lan", T0 + timedelta(hours=1)), T0, r)
    state, _ = transition(state, obs(1, True), T0 + timedelta(minutes=1), r)
    state, out = transition(state, obs(2, False), T0 + timedelta(minutes=2), r)
    assert state.phase is Phase.RESOLVED and out == []


def test_unmute_lifts_the_mute_at_once() -> None:
    r = rule(m=1, n=1)
    state, _ = transition(initial(r.id, SUBJECT), Mute("lan", T0 + timedelta(days=1)), T0, r)
    state, _ = transition(state, obs(1, True), T0 + timedelta(minutes=1), r)
    state, out = transition(state, Unmute("lan"), T0 + timedelta(minutes=2), r)
    assert [n.kind for n in out] == [NoticeKind.FIRING] and state.muted is None


def test_a_mute_must_end_in_the_future() -> None:
    r = rule()
    with pytest.raises(BadMute, match="is not after now"):
        transition(initial(r.id, SUBJECT), Mute("lan", T0), T0, r)


def _fire(r: BelowDeclared) -> tuple[AlertState, datetime]:
    state = initial(r.id, SUBJECT)
    for i in range(r.m):
        state, out = transition(state, obs(i, True), T0 + timedelta(minutes=i), r)
    assert state.phase is Phase.FIRING and [n.kind for n in out] == [NoticeKind.FIRING]
    return state, T0 + timedelta(minutes=r.m - 1)


def test_reminders_exactly_at_the_interval_on_a_fine_clock() -> None:
    r = rule(m=1, n=1, remind_every_h=2)
    state, fired = _fire(r)
    reminded = []
    for minute in range(1, 7 * 60 + 1):
        now = fired + timedelta(minutes=minute)
        state, out = transition(state, Tick(), now, r)
        reminded += [(now, n.reminder) for n in out]
        assert all(n.kind is NoticeKind.REMINDER for n in out)
    assert reminded == [(fired + timedelta(hours=h), h // 2) for h in (2, 4, 6)]


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.integers(1, 600), min_size=1, max_size=40), every=st.integers(1, 180))
def test_reminders_at_most_one_per_due_time_and_never_drift(gaps: list[int], every: int) -> None:
    """With evaluations at arbitrary times, a reminder goes out at the first evaluation at or
    after each due time fired + j·interval (one, however many were missed), and never between."""
    r = rule(m=1, n=1, remind_every_h=every / 60)
    state, fired = _fire(r)
    interval = timedelta(minutes=every)
    previous = fired
    now = fired
    for gap in gaps:
        now += timedelta(minutes=gap)
        state, out = transition(state, Tick(), now, r)
        due_between = (now - fired) // interval > (previous - fired) // interval
        assert len(out) == (1 if due_between else 0)
        previous = now
    assert state.next_reminder_at is not None
    assert (state.next_reminder_at - fired) % interval == timedelta(0)


def test_acknowledge_stops_reminders_not_the_recovery_notice() -> None:
    r = rule(m=1, n=1, resolve_after=1, remind_every_h=1)
    state, fired = _fire(r)
    state, out = transition(state, Acknowledge("Viettel NOC", "đang xử lý"), fired, r)
    assert out == [] and state.acked is not None and state.acked.by == "Viettel NOC"
    state, out = transition(state, Tick(), fired + timedelta(hours=5), r)
    assert out == []
    state, out = transition(state, obs(400, False), fired + timedelta(hours=6), r)
    assert [n.kind for n in out] == [NoticeKind.RESOLVED] and state.acked is None


def test_only_a_firing_alert_can_be_acknowledged() -> None:
    r = rule()
    with pytest.raises(NotFiring, match=r"low .*is ok, not firing"):
        transition(initial(r.id, SUBJECT), Acknowledge("lan"), T0, r)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        Observation(datetime(2026, 1, 1), True)  # naive on purpose
    with pytest.raises(ValueError, match="no timezone"):
        transition(initial("low", SUBJECT), Tick(), datetime(2026, 1, 1), rule())


def _script(seq: Sequence[bool]) -> list[tuple[Event, datetime]]:
    """Observations a minute apart, a tick between each, a mute and an acknowledgement."""
    events: list[tuple[Event, datetime]] = []
    for i, bad in enumerate(seq):
        at = T0 + timedelta(minutes=10 * i)
        events.append((obs(10 * i, bad), at))
        events.append((Tick(), at + timedelta(minutes=5)))
        if i == 7:
            events.append((Mute("lan", at + timedelta(minutes=25)), at + timedelta(minutes=6)))
    return events


def _run(
    state: AlertState, events: Sequence[tuple[Event, datetime]], r: BelowDeclared
) -> tuple[AlertState, list[Notification]]:
    sent: list[Notification] = []
    for event, at in events:
        state, out = transition(state, event, at, r)
        sent += out
    return state, sent


@settings(max_examples=150, deadline=None)
@given(seq=st.lists(st.booleans(), min_size=1, max_size=30), data=st.data())
def test_a_restart_from_stored_state_neither_loses_nor_repeats(
    seq: list[bool], data: st.DataObject
) -> None:
    """Stopping anywhere, storing the state as JSON and going on from the stored copy gives the
    same notices (same ids) and the same final state as an uninterrupted run."""
    r = rule(m=2, n=3, resolve_after=2, remind_every_h=0.1)
    events = _script(seq)
    cut = data.draw(st.integers(0, len(events)))
    whole_state, whole_sent = _run(initial(r.id, SUBJECT), events, r)
    first_state, first_sent = _run(initial(r.id, SUBJECT), events[:cut], r)
    stored = state_to_json(first_state)
    restored = state_from_json(stored)
    assert restored == first_state
    last_state, last_sent = _run(restored, events[cut:], r)
    assert first_sent + last_sent == whole_sent
    assert last_state == whole_state


def test_a_stored_firing_alert_stays_firing_and_silent() -> None:
    r = rule(m=1, n=1, remind_every_h=24)
    state, fired = _fire(r)
    restored = state_from_json(state_to_json(state))
    assert restored.phase is Phase.FIRING and restored.announced
    again, out = transition(restored, obs(5, True), fired + timedelta(minutes=5), r)
    assert out == [] and again.phase is Phase.FIRING
