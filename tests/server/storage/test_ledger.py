"""The ledger's pure planning step: which results are written where, which are answered at once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.storage.base import Refused, WriteOutcome
from server.storage.ledger import (
    SLOTS_PER_MICROSECOND,
    Entry,
    Known,
    Write,
    plan_writes,
    preferred_offset,
)

MICRO = 1_700_000_000_000_000_000  # a whole microsecond, in ns


def entry(rid: str, content: bytes = b"c", micro: int = MICRO, probe: str = "p") -> Entry:
    return Entry(rid, probe, "dns", micro, content)


def test_results_of_one_microsecond_get_their_own_nanosecond() -> None:
    steps = plan_writes([entry("a"), entry("b")], {}, {})
    assert all(isinstance(step, Write) and step.new for step in steps)
    times = [step.time_ns for step in steps if isinstance(step, Write)]
    assert len(set(times)) == 2
    assert all(MICRO <= t < MICRO + SLOTS_PER_MICROSECOND for t in times)
    assert times[0] == MICRO + preferred_offset("a")  # the same result, the same point


def test_a_taken_offset_moves_the_new_result_to_the_next_free_one() -> None:
    wanted = preferred_offset("a")
    (step,) = plan_writes([entry("a")], {}, {("dns", "p", MICRO): {wanted}})
    assert step == Write(MICRO + (wanted + 1) % SLOTS_PER_MICROSECOND, new=True)


def test_known_results_are_duplicates_or_refused_or_written_again() -> None:
    known = {
        "done": Known("p", MICRO + 5, b"c", written=True),
        "pending": Known("p", MICRO + 7, b"c", written=False),
        "seeded": Known("p", MICRO + 9, None, written=True),
    }
    steps = plan_writes(
        [entry("done"), entry("done", b"other"), entry("pending"), entry("seeded", b"x")], known, {}
    )
    assert steps[0] == WriteOutcome.DUPLICATE
    assert isinstance(steps[1], Refused) and "different content" in steps[1].reason
    assert steps[2] == Write(MICRO + 7, new=False)  # a crash left it pending: the same point
    assert steps[3] == WriteOutcome.DUPLICATE  # content unknown: cannot tell, so a duplicate


def test_more_results_in_one_microsecond_than_nanoseconds_are_refused() -> None:
    entries = [entry(f"r{i}") for i in range(SLOTS_PER_MICROSECOND + 1)]
    steps = plan_writes(entries, {}, {})
    assert sum(isinstance(step, Write) for step in steps) == SLOTS_PER_MICROSECOND
    assert isinstance(steps[-1], Refused) and "one microsecond" in steps[-1].reason


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.sampled_from([b"x", b"y"]), st.integers(0, 2)),
        max_size=30,
    ),
    st.sets(st.integers(0, SLOTS_PER_MICROSECOND - 1), max_size=50),
)
def test_no_two_results_ever_share_a_point(
    items: list[tuple[str, bytes, int]], taken: set[int]
) -> None:
    entries = [entry(rid, content, MICRO + 1000 * micro) for rid, content, micro in items]
    steps = plan_writes(entries, {}, {("dns", "p", MICRO): taken})
    pairs = list(zip(entries, steps, strict=True))
    points = [(e.result_id, s.time_ns) for e, s in pairs if isinstance(s, Write)]
    assert len({t for _, t in points}) == len(points)  # one point per written result
    assert len({rid for rid, _ in points}) == len(points)  # each result written once
    assert not {t - MICRO for _, t in points} & taken
    first: dict[str, bytes] = {}
    for e, step in pairs:
        if e.result_id in first:
            if first[e.result_id] == e.content:
                assert step == WriteOutcome.DUPLICATE
            else:
                assert isinstance(step, Refused)
        else:
            first[e.result_id] = e.content
            assert isinstance(step, Write)
