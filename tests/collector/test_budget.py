"""The data budget: Vietnam-time months, test volumes, even pacing, budget changes, the ledger file.

Every expectation is computed by hand in the comment beside it. The line is a 4G line measuring
40 Mb/s both ways: a test of 10 s after a 2 s warm-up moves 40e6 / 8 × 12 s = 60 MB each way,
120 MB in all; hourly, that is 744 × 120 MB = 89.3 GB in a 31-day month, against a 10 GB budget.
"""

from __future__ import annotations

import itertools
import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.budget import (
    BudgetError,
    DataBudget,
    DataBudgetDirective,
    DataBudgetSettings,
    Ledger,
    decide,
    directive_from_reply,
    expected_bytes,
    heartbeat_fields,
    month_bounds,
    month_label,
    new_ledger,
    recorded,
    reply_speaks_of_budget,
    volume_bytes,
    with_budget,
)
from probes.envelope import build_result
from probes.models import BandwidthResult, SkipReason, Status, ValidationLimits
from probes.spec import Span

GB = 10**9
TEST_BYTES = 120_000_000
SETTINGS = DataBudgetSettings(monthly_bytes=10 * GB)
#: December 2026 in Vietnam time: 00:00 on 1 Dec (ICT) is 17:00 UTC on 30 Nov; 744 hours.
DEC_START = datetime(2026, 11, 30, 17, tzinfo=UTC)
JAN_START = datetime(2026, 12, 31, 17, tzinfo=UTC)
HOUR = timedelta(hours=1)


def forty_mbps_test(at: datetime) -> BandwidthResult:
    # Validated as of ``at``: December 2026 is this file's calendar, whatever today is.
    return BandwidthResult.model_validate(
        {
            "result_id": uuid.uuid4(), "probe_id": "p4g", "measured_at": at, "engine": "http",
            "download_mbps": 40.0, "upload_mbps": 40.0,
            "download_bytes": 50_000_000, "upload_bytes": 50_000_000,
            "download_duration_ms": 10_000.0, "upload_duration_ms": 10_000.0,
            "download_warmup_ms": 2_000.0, "upload_warmup_ms": 2_000.0,
        },
        context={"limits": ValidationLimits(now=at)},
    )  # fmt: skip


def december_ledger(budget: int | None = 10 * GB) -> Ledger:
    """Start of December, with November's last five tests of 120 MB as the recent volumes."""
    return Ledger("2026-12", 0, budget, DEC_START, 0, (TEST_BYTES,) * 5)


def hourly(
    ledger: Ledger, hours: range, changes: dict[int, int | None] | None = None
) -> tuple[Ledger, list[int]]:
    """Run the budget over hourly tests at DEC_START + h; the hours that ran, and the ledger."""
    ran = []
    for h in hours:
        at = DEC_START + h * HOUR
        if changes and h in changes:
            ledger = with_budget(ledger, changes[h], at)
        decision = decide(ledger, at, SETTINGS)
        if decision.run:
            ran.append(h)
            assert ledger.budget_bytes is None or decision.used_bytes + TEST_BYTES <= (
                ledger.budget_bytes
            )
            ledger = recorded(ledger, volume_bytes(forty_mbps_test(at)), at, keep=5)
    return ledger, ran


# -- Months and volumes -------------------------------------------------------------------------


def test_the_month_turns_at_midnight_vietnam_time() -> None:
    assert month_bounds(JAN_START - timedelta(seconds=1)) == (DEC_START, JAN_START)
    assert month_label(JAN_START - timedelta(microseconds=1)) == "2026-12"
    assert month_bounds(JAN_START) == (JAN_START, datetime(2027, 1, 31, 17, tzinfo=UTC))
    assert month_label(JAN_START) == "2027-01"
    assert (JAN_START - DEC_START) / HOUR == 744


def test_a_test_volume_counts_its_warm_up_at_the_measured_rate() -> None:
    # 50 MB measured over 10 s, so 2 s of warm-up at that rate is 10 MB more, each way.
    assert volume_bytes(forty_mbps_test(DEC_START)) == 120_000_000
    bare = forty_mbps_test(DEC_START).model_copy(
        update={"download_warmup_ms": None, "upload_bytes": None}
    )
    assert volume_bytes(bare) == 50_000_000
    assert expected_bytes([100, 101], 7) == 101  # mean 100.5, rounded up
    assert expected_bytes([], 7) == 7


# -- Pacing -----------------------------------------------------------------------------------


def test_hourly_40_mbps_tests_fit_10_gb_evenly() -> None:
    ledger, ran = hourly(december_ledger(), range(744))
    # The k-th test (from 0) may run once k × 120 MB ≤ 10 GB × h / 744, i.e. h ≥ 8.928 k, and
    # while (k + 1) × 120 MB ≤ 10 GB, i.e. k ≤ 82: 83 tests, at hours ceil(8.928 k).
    assert ran == [math.ceil(8.928 * k - 1e-9) for k in range(83)]
    assert ran[:4] == [0, 9, 18, 27] and ran[-1] == 733
    assert len(ran) == 83 and 744 - len(ran) == 661  # 661 hourly tests skipped
    assert ledger.used_bytes == 83 * TEST_BYTES == 9_960_000_000


def test_a_skipped_test_is_a_result_with_the_month_usage() -> None:
    ledger = recorded(december_ledger(), TEST_BYTES, DEC_START, keep=5)
    at = DEC_START + 5 * HOUR  # 5 h × 10 GB / 744 h = 67.2 MB allowed by now; 120 MB used
    decision = decide(ledger, at, SETTINGS)
    assert not decision.run and decision.status is Status.SKIPPED
    assert decision.allowance_bytes == 10 * GB * 5 // 744 == 67_204_301
    result = build_result(
        BandwidthResult, "p4g", engine="http", target="http://t",
        span=Span(datetime.now(UTC), 0.0),
        status=decision.status, fields=decision.result_fields(),
    )  # fmt: skip
    assert result.skip_reason is SkipReason.DATA_BUDGET
    assert (result.data_budget_bytes, result.data_used_bytes, result.data_expected_bytes) == (
        10 * GB, TEST_BYTES, TEST_BYTES,
    )  # fmt: skip


def test_the_month_boundary_resets_the_usage_at_midnight_vietnam_time() -> None:
    ledger, _ = hourly(december_ledger(), range(744))
    last_minute = JAN_START - timedelta(seconds=1)  # 23:59:59 on 31 Dec, Vietnam time
    assert not decide(ledger, last_minute, SETTINGS).run  # 9.96 GB + 120 MB > 10 GB
    assert heartbeat_fields(ledger, last_minute) == {
        "data_budget_bytes": 10 * GB, "data_used_bytes": 9_960_000_000,
    }  # fmt: skip
    january = decide(ledger, JAN_START, SETTINGS)
    assert january.run and january.used_bytes == 0 and january.expected_bytes == TEST_BYTES
    assert heartbeat_fields(ledger, JAN_START)["data_used_bytes"] == 0
    after = recorded(ledger, TEST_BYTES, JAN_START, keep=5)
    assert (after.month, after.used_bytes, after.paced_from) == ("2027-01", TEST_BYTES, JAN_START)


def test_a_budget_raised_in_mid_month_spreads_what_is_left_over_what_is_left() -> None:
    # Up to 00:00 on 16 Dec (hour 360) the tests ran at hours ceil(8.928 k) ≤ 359: k = 0..40,
    # 41 tests, 4.92 GB. Raised to 20 GB then: 15.08 GB left for 384 h, so the j-th test after
    # the change may run once j × 120 MB × 384 ≤ 15.08 GB × h', h' ≥ 3.0557 j, while
    # 4.92 GB + (j + 1) × 120 MB ≤ 20 GB, j ≤ 124: 125 more tests, 19.92 GB in the month.
    ledger, ran = hourly(december_ledger(), range(744), changes={360: 20 * GB})
    before = [h for h in ran if h < 360]
    after = [h - 360 for h in ran if h >= 360]
    assert len(before) == 41 and before[-1] == 358
    assert after[:4] == [0, 4, 7, 10]
    assert after == [math.ceil(j * 120e6 * 384 / 15.08e9 - 1e-9) for j in range(125)]
    assert ledger.used_bytes == (41 + 125) * TEST_BYTES == 19_920_000_000
    # No burst: pacing from the month's start at 20 GB would allow 9.68 GB by hour 360, and
    # 40 hourly tests in a row to catch up.
    assert min(b - a for a, b in itertools.pairwise(after)) == 3


def test_a_budget_lowered_below_the_usage_stops_tests_until_the_month_ends() -> None:
    ledger, ran = hourly(december_ledger(), range(744), changes={360: 4 * GB})
    assert max(ran) == 358 and ledger.used_bytes == 41 * TEST_BYTES  # 4.92 GB > 4 GB
    assert decide(ledger, JAN_START, SETTINGS).run  # January starts afresh, at 4 GB
    assert ledger.budget_bytes == 4 * GB


def test_an_unmetered_line_always_runs_and_reports_usage() -> None:
    ledger, ran = hourly(december_ledger(budget=None), range(24))
    assert ran == list(range(24))
    decision = decide(ledger, DEC_START + 24 * HOUR, SETTINGS)
    assert decision.run and decision.result_fields() == {}
    assert heartbeat_fields(ledger, DEC_START + 24 * HOUR) == {
        "data_budget_bytes": None, "data_used_bytes": 24 * TEST_BYTES,
    }  # fmt: skip


def test_the_first_test_of_a_line_is_estimated_from_the_settings() -> None:
    ledger = new_ledger(DEC_START, 10 * GB)
    assert decide(ledger, DEC_START, SETTINGS).expected_bytes == 120_000_000
    small = DataBudgetSettings(monthly_bytes=10 * GB, first_test_bytes=5)
    assert decide(ledger, DEC_START, small).expected_bytes == 5


# -- From the server, and across restarts ---------------------------------------------------------


def test_reply_directives() -> None:
    assert directive_from_reply({"accepted": 1}) is None
    assert directive_from_reply(None) is None
    assert directive_from_reply({"accepted": 1, "data_budget": None}) is None
    assert directive_from_reply({"data_budget": {"monthly_bytes": 5 * GB}}) == (
        DataBudgetDirective(monthly_bytes=5 * GB)
    )
    unmetered = directive_from_reply({"data_budget": {"monthly_bytes": None}})
    assert unmetered is not None and unmetered.monthly_bytes is None
    with pytest.raises(BudgetError, match=r"data_budget .*not usable"):
        directive_from_reply({"data_budget": {"monthly_bytes": -1}})
    with pytest.raises(BudgetError, match="data_budget"):
        directive_from_reply({"data_budget": {"bytes": 5}})


async def test_the_ledger_survives_a_restart_and_the_server_budget_wins(tmp_path: Path) -> None:
    path = tmp_path / "state" / "data_budget.json"
    budget = await DataBudget.open(SETTINGS, path, DEC_START)
    assert budget.ledger == new_ledger(DEC_START, 10 * GB)
    await budget.record([forty_mbps_test(DEC_START)], DEC_START)
    mid = DEC_START + 360 * HOUR
    await budget.apply(DataBudgetDirective(monthly_bytes=20 * GB), mid)
    assert path.stat().st_mode & 0o777 == 0o600

    again = await DataBudget.open(SETTINGS, path, mid + HOUR)  # the config still says 10 GB
    assert again.ledger.budget_bytes == 20 * GB
    assert again.ledger.used_bytes == TEST_BYTES and again.ledger.recent_bytes == (TEST_BYTES,)
    assert (again.ledger.paced_from, again.ledger.used_at_pace_start) == (mid, TEST_BYTES)
    assert again.heartbeat_fields(mid + HOUR) == {
        "data_budget_bytes": 20 * GB, "data_used_bytes": TEST_BYTES,
    }  # fmt: skip

    # Without a server budget, a changed configuration re-paces from the restart.
    path2 = tmp_path / "other.json"
    await DataBudget.open(SETTINGS, path2, DEC_START)
    five = await DataBudget.open(DataBudgetSettings(monthly_bytes=5 * GB), path2, mid)
    assert (five.ledger.budget_bytes, five.ledger.paced_from) == (5 * GB, mid)


async def test_a_damaged_ledger_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "data_budget.json"
    path.write_text('{"month": "2026-12"}')
    with pytest.raises(BudgetError, match=r"data_budget\.json is not a data-budget ledger"):
        await DataBudget.open(SETTINGS, path, DEC_START)


def test_a_reply_without_the_key_says_nothing_and_null_says_no_office_budget() -> None:
    assert not reply_speaks_of_budget({"accepted": 1})  # a server from before budgets
    assert not reply_speaks_of_budget("not json")
    assert reply_speaks_of_budget({"accepted": 1, "data_budget": None})


async def test_the_office_clearing_its_budget_puts_the_configuration_back(tmp_path: Path) -> None:
    budget = await DataBudget.open(SETTINGS, tmp_path / "b.json", DEC_START)  # config: 10 GB
    await budget.apply(DataBudgetDirective(monthly_bytes=None), DEC_START + HOUR)  # unmetered
    assert budget.ledger.budget_bytes is None
    await budget.apply(None, DEC_START + 2 * HOUR)  # no budget from the office
    assert budget.ledger.budget_bytes == 10 * GB and budget.ledger.directive is None
    assert budget.ledger.paced_from == DEC_START + 2 * HOUR


async def test_a_damaged_ledger_is_kept_aside_and_the_month_starts_again(tmp_path: Path) -> None:
    path = tmp_path / "data_budget.json"
    path.write_text('{"month": "2026-12"}')
    budget, problem = await DataBudget.open_or_restart(SETTINGS, path, DEC_START)
    assert problem is not None and "not a data-budget ledger" in problem
    assert "kept as data_budget.json.broken" in problem
    assert (tmp_path / "data_budget.json.broken").read_text() == '{"month": "2026-12"}'
    assert budget.ledger == new_ledger(DEC_START, 10 * GB)
    assert (await DataBudget.open(SETTINGS, path, DEC_START)).ledger == budget.ledger
    # A ledger that cannot be written at all lives in memory.
    blocked = tmp_path / "file" / "data_budget.json"
    (tmp_path / "file").write_text("a file, not a directory")
    budget, problem = await DataBudget.open_or_restart(SETTINGS, blocked, DEC_START)
    assert problem is not None and "Not a directory" in problem
    assert budget.ledger == new_ledger(DEC_START, 10 * GB)
