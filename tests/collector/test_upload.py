"""What the agent does with each kind of server reply (``classify``), and its back-off."""

from __future__ import annotations

import random

import pytest

from collector.upload import Backoff, Next, classify, decode_reply

IDS = ["id-0", "id-1", "id-2"]


def test_per_item_outcomes_ack_and_quarantine() -> None:
    body = {
        "items": [
            {"index": 0, "outcome": "accepted"},
            {"index": 1, "outcome": "rejected", "reason": "signature does not match"},
            {"index": 2, "outcome": "duplicate"},
        ]
    }
    decision = classify(200, body, IDS)
    assert decision.next is Next.CONTINUE
    assert decision.ack == ("id-0", "id-2")
    assert decision.quarantine == (("id-1", "signature does not match"),)


def test_items_the_reply_does_not_mention_stay_and_an_empty_reply_backs_off() -> None:
    partial = classify(200, {"items": [{"index": 2, "outcome": "accepted"}]}, IDS)
    assert partial.ack == ("id-2",) and partial.next is Next.CONTINUE
    empty = classify(200, {"items": [{"index": 7, "outcome": "accepted"}]}, IDS)
    assert empty.next is Next.BACKOFF and not empty.ack


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_refused_batch_is_halved_then_the_culprit_quarantined(status: int) -> None:
    assert classify(status, {"detail": "x"}, IDS).next is Next.SHRINK
    alone = classify(status, {"detail": "bad item"}, ["id-9"])
    assert alone.next is Next.CONTINUE
    assert alone.quarantine[0][0] == "id-9" and "bad item" in alone.quarantine[0][1]


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(None, None, None), (500, None, None), (503, "7", 7.0), (429, "3", 3.0), (429, "soon", None)],
)
def test_server_or_link_trouble_backs_off_keeping_everything(
    status: int | None, retry_after: str | None, expected: float | None
) -> None:
    decision = classify(status, None, IDS, retry_after)
    assert decision.next is Next.BACKOFF
    assert not decision.ack and not decision.quarantine
    assert decision.retry_after_s == expected


@pytest.mark.parametrize("status", [401, 403, 404])
def test_refused_credentials_hold_everything(status: int) -> None:
    decision = classify(status, {"detail": "probe disabled"}, IDS)
    assert decision.next is Next.HOLD and not decision.ack and not decision.quarantine
    assert "probe disabled" in decision.message


def test_backoff_grows_exponentially_within_bounds_and_resets() -> None:
    backoff = Backoff(min_s=1.0, max_s=60.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    assert all(1.0 <= d <= 60.0 for d in delays)
    ceilings = [min(60.0, 2.0**n) for n in range(12)]
    assert all(d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[8:]) > 10  # it does grow
    backoff.reset()
    assert backoff.next_delay() == 1.0  # first ceiling is min_s itself


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe\xfd", b'{"items": "\xe9t\xe9"}', b"<html>502</html>", b""]
)
def test_any_reply_bytes_decode_and_an_unreadable_2xx_backs_off(raw: bytes) -> None:
    body = decode_reply(raw)
    assert isinstance(body, str)
    decision = classify(200, body, IDS)
    assert decision.next is Next.BACKOFF and not decision.ack and not decision.quarantine
