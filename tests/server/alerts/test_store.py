"""The alert store: state and outbox survive a restart, and a notice is queued once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.alerts.config import BelowDeclared
from server.alerts.state import (
    AlertState,
    Notification,
    Observation,
    Phase,
    Subject,
    initial,
    transition,
)
from server.alerts.store import AlertStore, Outgoing

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
SUBJECT = Subject(hamlet="thon-a", isp="VNPT", probe="p1")
RULE = BelowDeclared(
    id="low",
    kind="below_declared",
    title_vi="Tốc độ thấp",
    text_vi="Dưới 80 % tốc độ công bố.",
    fraction=0.8,
    m=2,
    n=3,
    resolve_after=1,
)
CHANNELS = ("office/0", "isp/VNPT/0")


def obs(i: int, bad: bool) -> Observation:
    return Observation(T0 + timedelta(minutes=i), bad, 100.0 if bad else 900.0, 800.0, "Mb/s")


def outgoing(notices: list[Notification]) -> list[Outgoing]:
    return [Outgoing(n, f"title {n.id}", "nội dung", CHANNELS) for n in notices]


async def step(store: AlertStore, state: AlertState, o: Observation) -> tuple[AlertState, int]:
    after, notices = transition(state, o, o.at, RULE)
    queued = await store.commit(state, after, outgoing(notices), o.at)
    return after, queued


@pytest.fixture
async def store(tmp_path: Path) -> AlertStore:
    s = AlertStore(tmp_path / "alerts.sqlite3")
    await s.open()
    yield s  # type: ignore[misc]
    await s.close()


async def test_restart_keeps_a_firing_alert_and_queues_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    store = AlertStore(path)
    await store.open()
    state = initial(RULE.id, SUBJECT)
    state, queued = await step(store, state, obs(0, True))
    assert (state.phase, queued) == (Phase.PENDING, 0)
    before_fire = state
    state, queued = await step(store, state, obs(1, True))
    assert (state.phase, queued) == (Phase.FIRING, 2)
    await store.close()

    # The server restarts.
    store = AlertStore(path)
    await store.open()
    restored = await store.state(RULE.id, SUBJECT)
    assert restored == state
    assert [s.phase for s in await store.states(phases=[Phase.FIRING])] == [Phase.FIRING]
    # A crash after the commit but before anyone knew: the same observation replayed from the
    # state before it gives the same notice id, and the outbox keeps the one it has.
    replayed, queued = await step(store, before_fire, obs(1, True))
    assert replayed.phase is Phase.FIRING
    assert queued == 0
    # The restored alert goes on firing without a second firing notice.
    assert restored is not None
    state, queued = await step(store, restored, obs(2, True))
    assert (state.phase, queued) == (Phase.FIRING, 0)
    rows = await store.deliveries()
    assert sorted(d.channel for d in rows) == sorted(CHANNELS)
    assert {d.notice_id for d in rows} == {"low/hamlet=thon-a,isp=VNPT,probe=p1/1/firing/0"}
    # History: ok → pending → firing, newest first.
    history = await store.transitions()
    assert [(t.from_phase, t.to_phase) for t in history] == [
        (Phase.PENDING, Phase.FIRING),
        (Phase.OK, Phase.PENDING),
    ]
    # Resolving queues the recovery notice, once.
    state, queued = await step(store, state, obs(3, False))
    assert (state.phase, queued) == (Phase.RESOLVED, 2)
    await store.close()


async def test_outbox_due_failed_and_delivered(store: AlertStore) -> None:
    state = initial(RULE.id, SUBJECT)
    state, _ = await step(store, state, obs(0, True))
    state, _ = await step(store, state, obs(1, True))
    now = obs(1, True).at
    due = await store.due(now)
    assert [d.channel for d in due] == sorted(CHANNELS) or len(due) == 2
    first = due[0]
    assert first.title.startswith("title low/") and first.body == "nội dung"
    await store.mark_failed(first.notice_id, first.channel, "HTTP 500", now + timedelta(minutes=1))
    await store.mark_delivered(due[1].notice_id, due[1].channel, now)
    assert await store.due(now) == []
    assert await store.next_due_at() == now + timedelta(minutes=1)
    again = await store.due(now + timedelta(minutes=1))
    assert [(d.channel, d.attempts, d.last_error) for d in again] == [
        (first.channel, 1, "HTTP 500")
    ]
    assert (
        await store.due(now + timedelta(minutes=1), exclude=[(first.notice_id, first.channel)])
        == []
    )
    await store.mark_given_up(first.notice_id, first.channel, "channel removed", now)
    assert await store.next_due_at() is None
