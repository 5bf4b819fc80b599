"""The cross-traffic check's arithmetic and decisions, with injected counters, CPU and clock.

The counters and CPU times here are made by hand (a line carrying so many bytes per second from
one instant to another); their formats are the kernel's, and ``test_reads_this_machine`` reads
the real files. The lab test (``tests/lab/test_crosstraffic_lab.py``) puts real traffic through
a real interface.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from collector.crosstraffic import (
    Counters,
    CountersUnreadable,
    CpuTimes,
    CrossTrafficSettings,
    Decision,
    Verdict,
    Window,
    bytes_moved,
    check_line,
    cpu_percent,
    judge,
    parse_proc_stat,
    read_counters,
    read_cpu_times,
)
from probes.envelope import build_result
from probes.models import BandwidthResult, CrossTraffic, SkipReason, Status
from probes.spec import Span

#: The first lines of this machine's /proc/stat (Linux 6.18, 2 CPUs), captured 2026-12-01.
PROC_STAT_CAPTURED = """\
cpu  1093508 961 192643 867551 26931 0 42315 15991 0 0
cpu0 447147 450 84366 553791 5773 0 20222 8139 0 0
cpu1 646360 510 108276 313760 21157 0 22093 7852 0 0
"""

INLINE = CrossTrafficSettings(inline=True, interface="br0")


class Line:
    """A fake clock and a line whose traffic is ``rate(t)`` bytes/s; the CPU is ``cpu(t)`` %.

    Counters are the integral of the rate, sampled at the fake clock; ``sleep`` advances it.
    """

    def __init__(
        self,
        rate: Callable[[float], float],
        cpu: Callable[[float], float] = lambda _t: 5.0,
        step_s: float = 0.5,
        late_s: float = 0.0,
    ) -> None:
        self.now = 1000.0  # a monotonic clock does not start at zero
        self.start = self.now
        self.rate, self.cpu_at, self.step_s, self.late_s = rate, cpu, step_s, late_s
        self.bytes = 0.0
        self.busy_ticks = 0.0
        self.ticks = 0.0
        self.sleeps: list[float] = []
        self.interfaces_read: list[str] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        end = self.now + seconds + self.late_s
        while self.now < end - 1e-9:
            dt = min(self.step_s, end - self.now)
            t = self.now - self.start
            self.bytes += self.rate(t) * dt
            self.ticks += 100 * dt  # USER_HZ = 100
            self.busy_ticks += self.cpu_at(t) * dt
            self.now += dt

    def clock(self) -> float:
        return self.now

    def counters(self, interface: str) -> Counters:
        self.interfaces_read.append(interface)
        # Two thirds down, one third up, the split does not matter: the rule adds them.
        return Counters(rx_bytes=int(self.bytes * 2 / 3), tx_bytes=int(self.bytes / 3))

    def cpu(self) -> CpuTimes:
        return CpuTimes(busy=round(self.busy_ticks), total=round(self.ticks))

    async def check(self, settings: CrossTrafficSettings = INLINE) -> Decision:
        return await check_line(
            settings, counters=self.counters, cpu=self.cpu, clock=self.clock, sleep=self.sleep
        )


# -- Readings -------------------------------------------------------------------------------------


def test_proc_stat_cpu_line_parsed_without_counting_guest_twice() -> None:
    times = parse_proc_stat(PROC_STAT_CAPTURED)
    # total = user..steal = 1093508+961+192643+867551+26931+0+42315+15991; idle+iowait = 894482
    assert times == CpuTimes(busy=2239900 - 894482, total=2239900)
    with_guest = PROC_STAT_CAPTURED.replace("15991 0 0", "15991 5000 7000", 1)
    assert parse_proc_stat(with_guest) == times  # guest time is already in user and nice


def test_proc_stat_without_a_cpu_line_is_refused() -> None:
    with pytest.raises(CountersUnreadable, match="no aggregate 'cpu' line"):
        parse_proc_stat("intr 1 2 3\n")
    with pytest.raises(CountersUnreadable, match="under 4 fields"):
        parse_proc_stat("cpu 1 2\n")


def test_cpu_percent_between_two_readings() -> None:
    assert cpu_percent(CpuTimes(100, 1000), CpuTimes(160, 1200)) == pytest.approx(30.0)
    assert cpu_percent(CpuTimes(100, 1000), CpuTimes(100, 1000)) is None  # no tick passed


def test_bytes_moved_adds_both_directions_and_undoes_a_32_bit_wrap() -> None:
    assert bytes_moved(Counters(1000, 500), Counters(61000, 20500)) == 80_000
    # A 32-bit kernel's rx counter passed 2**32 - 1 and wrapped: 100 bytes before, 50 after.
    wrapped = bytes_moved(Counters(2**32 - 100, 0), Counters(50, 0))
    assert wrapped == 150
    # A 64-bit counter going back is a reset (the interface was re-created): unknown.
    assert bytes_moved(Counters(2**40, 0), Counters(10, 0)) is None


def test_reads_this_machine(tmp_path: Path) -> None:
    """The real sysfs and procfs formats, read by the module's own readers."""
    lo = read_counters("lo")
    assert lo.rx_bytes >= 0 and lo.tx_bytes >= 0
    assert 0 < read_cpu_times().busy < read_cpu_times().total
    with pytest.raises(CountersUnreadable, match=r"'nosuch0'.*cross_traffic\.interface"):
        read_counters("nosuch0")
    stats = tmp_path / "eth9" / "statistics"
    stats.mkdir(parents=True)
    (stats / "rx_bytes").write_text("12\n")
    (stats / "tx_bytes").write_text("garbage\n")
    with pytest.raises(CountersUnreadable, match="eth9"):
        read_counters("eth9", root=tmp_path)


# -- The pure decision ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "cpu", "windows", "verdict"),
    [
        (24_999.0, 29.9, 1, Verdict.RUN),  # below both
        (25_000.0, 5.0, 1, Verdict.RETRY),  # "below the threshold": at it is busy
        (10.0, 30.0, 1, Verdict.RUN),  # skipped "at CPU > 30 %": 30 % itself is not busy
        (10.0, 30.1, 1, Verdict.RETRY),
        (10.0, None, 1, Verdict.RUN),  # CPU not measured: judged on traffic alone
        (None, 5.0, 1, Verdict.RETRY),  # counters reset in the window: not shown quiet
        (30_000.0, 5.0, 5, Verdict.RETRY),  # a sixth window still ends by 30 s
        (30_000.0, 5.0, 6, Verdict.DEFER),
        (10.0, 5.0, 6, Verdict.RUN),  # the sixth window was quiet
    ],
)
def test_judge(rate: float | None, cpu: float | None, windows: int, verdict: Verdict) -> None:
    assert judge(Window(rate, cpu), INLINE, windows).verdict is verdict


# -- The loop, on a fake line --------------------------------------------------------------------


async def test_a_quiet_line_runs_after_one_window() -> None:
    line = Line(rate=lambda _t: 2_000.0)
    decision = await line.check()
    assert decision.verdict is Verdict.RUN
    assert line.sleeps == [5.0] and decision.windows == 1
    assert decision.bytes_per_s == pytest.approx(2_000, abs=1)
    assert decision.cpu_percent == pytest.approx(5.0)
    assert set(line.interfaces_read) == {"br0"}
    assert decision.result_fields() == {
        "cross_traffic": CrossTraffic.QUIET,
        "cross_traffic_bytes_per_s": pytest.approx(2_000, abs=1),
        "cross_traffic_threshold_bytes_per_s": 25_000.0,
        "cross_traffic_interface": "br0",
        "pretest_cpu_percent": 5.0,
    }


async def test_a_busy_line_is_retried_for_30_s_then_deferred_with_what_was_seen() -> None:
    # A video call, about 1 Mb/s; each sleep ends 50 ms late, as a busy event loop's do.
    line = Line(rate=lambda _t: 120_000.0, late_s=0.05)
    decision = await line.check()
    assert decision.verdict is Verdict.DEFER
    assert line.sleeps == [5.0] * 6 and line.now - line.start == pytest.approx(30.3)
    assert decision.windows == 6
    assert decision.bytes_per_s == pytest.approx(120_000, abs=1)
    fields = decision.result_fields()
    assert fields["cross_traffic"] is CrossTraffic.BUSY
    assert fields["skip_reason"] is SkipReason.CROSS_TRAFFIC
    assert fields["cross_traffic_threshold_bytes_per_s"] == 25_000
    assert fields["cross_traffic_interface"] == "br0"
    assert decision.status is Status.DEFERRED
    assert "120000 B/s on br0 (threshold 25000 B/s)" in decision.describe()


async def test_traffic_that_stops_lets_the_test_run_in_the_first_quiet_window() -> None:
    # Busy until 12 s: windows 0-5, 5-10 and 10-15 (2 s of it busy: 48,000 B/s) are busy.
    line = Line(rate=lambda t: 120_000.0 if t < 12 else 500.0)
    decision = await line.check()
    assert decision.verdict is Verdict.RUN
    assert decision.windows == 4 and line.now - line.start == pytest.approx(20.0)
    assert decision.bytes_per_s == pytest.approx(500, abs=1)


async def test_a_busy_cpu_defers_on_a_quiet_line() -> None:
    line = Line(rate=lambda _t: 100.0, cpu=lambda _t: 55.0)
    decision = await line.check()
    assert decision.verdict is Verdict.DEFER
    fields = decision.result_fields()
    assert fields["skip_reason"] is SkipReason.CPU_BUSY
    assert fields["cross_traffic"] is CrossTraffic.QUIET
    assert fields["pretest_cpu_percent"] == pytest.approx(55.0)


async def test_shorter_wait_from_settings() -> None:
    settings = CrossTrafficSettings(inline=True, interface="wwan0", window_s=2, give_up_after_s=6)
    line = Line(rate=lambda _t: 90_000.0)
    decision = await line.check(settings)
    assert decision.verdict is Verdict.DEFER and line.sleeps == [2.0, 2.0, 2.0]
    assert decision.interface == "wwan0"


def unreadable_cpu() -> CpuTimes:
    raise CountersUnreadable("cannot read /proc/stat: [Errno 2] No such file or directory")


def unreadable_counters(interface: str) -> Counters:
    raise CountersUnreadable(f"cannot read the byte counters of interface {interface!r}")


async def test_not_inline_watches_the_cpu_and_runs_marked_unknown() -> None:
    line = Line(rate=lambda _t: 1e9)  # the household's traffic, which this probe cannot see
    decision = await line.check(CrossTrafficSettings())
    assert decision.verdict is Verdict.UNKNOWN and decision.status is Status.OK
    assert line.sleeps == [5.0] and decision.windows == 1
    assert line.interfaces_read == []
    assert decision.result_fields() == {
        "cross_traffic": CrossTraffic.UNKNOWN,
        "cross_traffic_interface": None,
        "pretest_cpu_percent": 5.0,
    }
    assert "not inline" in decision.describe()


async def test_not_inline_with_a_busy_cpu_is_retried_for_30_s_then_deferred() -> None:
    line = Line(rate=lambda _t: 0.0, cpu=lambda _t: 55.0, late_s=0.05)
    decision = await line.check(CrossTrafficSettings())
    assert decision.verdict is Verdict.DEFER and decision.status is Status.DEFERRED
    assert line.sleeps == [5.0] * 6 and decision.windows == 6
    assert decision.note is not None and "not inline" in decision.note
    assert decision.result_fields() == {
        "cross_traffic": CrossTraffic.UNKNOWN,
        "cross_traffic_interface": None,
        "pretest_cpu_percent": pytest.approx(55.0, abs=0.2),  # whole ticks: 54.9
        "skip_reason": SkipReason.CPU_BUSY,
    }
    said = decision.describe()
    assert "CPU 55 % (limit 30 %)" in said and "not inline" in said and "B/s" not in said


async def test_not_inline_runs_in_the_first_window_the_cpu_is_not_busy() -> None:
    line = Line(rate=lambda _t: 0.0, cpu=lambda t: 80.0 if t < 12 else 10.0)
    decision = await line.check(CrossTrafficSettings())
    assert decision.verdict is Verdict.UNKNOWN
    assert decision.windows == 4 and decision.cpu_percent == pytest.approx(10.0)


async def test_not_inline_without_proc_stat_runs_at_once_marked_unknown() -> None:
    line = Line(rate=lambda _t: 0.0)
    decision = await check_line(
        CrossTrafficSettings(), cpu=unreadable_cpu, clock=line.clock, sleep=line.sleep
    )
    assert decision.verdict is Verdict.UNKNOWN and line.sleeps == []
    assert decision.result_fields()["pretest_cpu_percent"] is None


async def test_an_interface_that_cannot_be_read_is_unknown_naming_it() -> None:
    line = Line(rate=lambda _t: 0.0, cpu=lambda _t: 55.0)
    settings = CrossTrafficSettings(inline=True, interface="nosuch0")
    decision = await check_line(settings, cpu=line.cpu, clock=line.clock, sleep=line.sleep)
    # Its CPU is still watched: busy through the wait, the test is deferred, traffic unknown.
    assert decision.verdict is Verdict.DEFER and decision.windows == 6
    assert decision.note is not None and "'nosuch0'" in decision.note
    fields = decision.result_fields()
    assert fields["cross_traffic"] is CrossTraffic.UNKNOWN
    assert fields["cross_traffic_interface"] == "nosuch0"
    assert fields["skip_reason"] is SkipReason.CPU_BUSY
    assert "cross_traffic_bytes_per_s" not in fields


async def test_counters_lost_during_the_wait_leave_the_cpu_to_decide() -> None:
    line = Line(rate=lambda _t: 120_000.0, cpu=lambda t: 80.0 if t < 7 else 10.0)
    reads = 0

    def counters(interface: str) -> Counters:
        nonlocal reads
        reads += 1
        if reads > 1:  # the interface went away after the first reading
            return unreadable_counters(interface)
        return line.counters(interface)

    decision = await check_line(
        INLINE, counters=counters, cpu=line.cpu, clock=line.clock, sleep=line.sleep
    )
    assert decision.verdict is Verdict.UNKNOWN and decision.windows == 3
    assert decision.note is not None and "'br0'" in decision.note
    assert reads == 2  # not read again once unreadable


def test_settings_inline_needs_an_interface() -> None:
    with pytest.raises(ValidationError, match="inline: true needs 'interface'"):
        CrossTrafficSettings(inline=True)
    with pytest.raises(ValidationError, match="interface"):
        CrossTrafficSettings(inline=True, interface="not/a/name")
    with pytest.raises(ValidationError, match="extra"):
        CrossTrafficSettings.model_validate({"inline": False, "treshold_bytes_per_s": 1})


# -- Into results ---------------------------------------------------------------------------------

SPAN = Span(datetime.now(UTC), 30_000.0)


async def test_decisions_become_valid_bandwidth_results() -> None:
    deferred = await Line(rate=lambda _t: 120_000.0).check()
    result = build_result(
        BandwidthResult, "p1", engine="http", target="http://t", span=SPAN,
        status=deferred.status, fields=deferred.result_fields(),
    )  # fmt: skip
    assert result.status is Status.DEFERRED and result.skip_reason is SkipReason.CROSS_TRAFFIC
    assert result.cross_traffic is CrossTraffic.BUSY and result.download_mbps is None

    unknown = await Line(rate=lambda _t: 0).check(CrossTrafficSettings())
    ok = build_result(
        BandwidthResult, "p1", engine="http", target="http://t", span=SPAN,
        fields={**unknown.result_fields(), "download_mbps": 40.0},
    )  # fmt: skip
    assert ok.status is Status.OK and ok.cross_traffic is CrossTraffic.UNKNOWN

    cpu_busy = await Line(rate=lambda _t: 0, cpu=lambda _t: 90.0).check(CrossTrafficSettings())
    deferred_unknown = build_result(
        BandwidthResult, "p1", engine="http", target="http://t", span=SPAN,
        status=cpu_busy.status, fields=cpu_busy.result_fields(),
    )  # fmt: skip
    assert deferred_unknown.status is Status.DEFERRED
    assert deferred_unknown.skip_reason is SkipReason.CPU_BUSY
    assert deferred_unknown.cross_traffic is CrossTraffic.UNKNOWN
    assert deferred_unknown.pretest_cpu_percent == pytest.approx(90.0)
