"""Results measured before the kernel's clock is synchronised: held in the spool, re-stamped
from the boot-time clock once it is, in measuring order, signed, and marked; across an agent
restart too, but not across a reboot. The kernel's answer and the boot clock are injected; the
spool, the signing and the agent are real."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from collector.agent import Agent
from collector.spool import AsyncSpool
from probes.models import Kind, parse_result, unbounded_limits
from probes.signing import verify
from tests.collector.inprocess import make_agent, probe_config


class FakeKernel:
    """What adjtimex and CLOCK_BOOTTIME would say: set by the test."""

    def __init__(self, synced: bool | None, boot_s: float) -> None:
        self.synced = synced
        self.boot_s = boot_s

    def agent(self, config: Any, spool: AsyncSpool, http: aiohttp.ClientSession) -> Agent:
        return make_agent(
            config, "http://127.0.0.1:9", spool, http,
            clock_synced=lambda: self.synced, boottime=lambda: self.boot_s,
        )  # fmt: skip


async def _queued(spool: AsyncSpool) -> list[Any]:
    return [
        parse_result(json.loads(i.payload), unbounded_limits()) for i in await spool.oldest(100)
    ]


async def test_results_before_the_first_sync_are_held_then_restamped_in_order(
    tmp_path: Path,
) -> None:
    kernel = FakeKernel(synced=False, boot_s=40.0)
    config = probe_config(tmp_path / "state")
    async with AsyncSpool(tmp_path / "spool.sqlite3") as spool, aiohttp.ClientSession() as http:
        agent = kernel.agent(config, spool, http)
        await agent.run_kind(Kind.HEARTBEAT)
        kernel.boot_s = 70.0
        await agent.run_kind(Kind.HEARTBEAT)
        stats = await spool.stats()
        assert (stats.depth, stats.held) == (0, 2), "nothing may leave with a wrong clock"
        held_at = [i.measured_at for i in await spool.held()]

        # NTP syncs; 200 s of boot time after the first heartbeat, the next test runs.
        kernel.synced, kernel.boot_s = True, 240.0
        before = datetime.now(UTC)
        await agent.run_kind(Kind.HEARTBEAT)
        after = datetime.now(UTC)
        first, second, third = await _queued(spool)
        assert (await spool.stats()).held == 0
        public = agent.key.public_key()

    for result in (first, second, third):
        verify(result, public)  # signed with the final stamp
    assert (first.clock_synced, first.clock_restamped) == (False, True)
    assert (second.clock_synced, second.clock_restamped) == (False, True)
    assert (third.clock_synced, third.clock_restamped) == (True, None)
    # Re-stamped from boot time: 200 s and 170 s before the synced moment, not their wall stamps.
    assert before - timedelta(seconds=200.01) <= first.measured_at <= after - timedelta(seconds=200)
    assert (
        before - timedelta(seconds=170.01) <= second.measured_at <= after - timedelta(seconds=170)
    )
    assert first.measured_at != held_at[0]
    assert agent.state.results_kept == 3 and agent.state.results_held == 2


async def test_held_results_survive_an_agent_restart_and_are_restamped_by_the_next(
    tmp_path: Path,
) -> None:
    kernel = FakeKernel(synced=False, boot_s=40.0)
    config = probe_config(tmp_path / "state")
    path = tmp_path / "spool.sqlite3"
    async with AsyncSpool(path) as spool, aiohttp.ClientSession() as http:
        await kernel.agent(config, spool, http).run_kind(Kind.HEARTBEAT)
        (held,) = await spool.held()
    kernel.synced, kernel.boot_s = True, 100.0  # same boot, a new agent process
    async with AsyncSpool(path) as spool, aiohttp.ClientSession() as http:
        agent = kernel.agent(config, spool, http)
        now = agent.anchor()
        await agent._release_held(now)
        (result,) = await _queued(spool)
    assert result.clock_restamped is True
    assert 40.0 <= held.boot_s < 41.0  # the boot time of its measured_at
    assert result.measured_at == now.wall - timedelta(seconds=100.0 - held.boot_s)


async def test_held_across_a_reboot_they_go_out_with_their_own_stamp(tmp_path: Path) -> None:
    kernel = FakeKernel(synced=False, boot_s=40.0)
    config = probe_config(tmp_path / "state")
    path = tmp_path / "spool.sqlite3"
    async with AsyncSpool(path) as spool, aiohttp.ClientSession() as http:
        await kernel.agent(config, spool, http).run_kind(Kind.HEARTBEAT)
        (held,) = await spool.held()
    kernel.synced, kernel.boot_s = True, 30.0  # rebooted: the boot clock began again
    async with AsyncSpool(path) as spool, aiohttp.ClientSession() as http:
        agent = kernel.agent(config, spool, http)
        agent._boot_id = "the-next-boot"
        await agent._release_held(agent.anchor())
        (result,) = await _queued(spool)
    assert (result.clock_synced, result.clock_restamped) == (False, False)
    assert result.measured_at == held.measured_at


async def test_a_clock_that_never_syncs_does_not_hold_results_for_ever(tmp_path: Path) -> None:
    kernel = FakeKernel(synced=False, boot_s=40.0)
    config = probe_config(tmp_path / "state")
    async with AsyncSpool(tmp_path / "spool.sqlite3") as spool, aiohttp.ClientSession() as http:
        agent = kernel.agent(config, spool, http)
        await agent.run_kind(Kind.HEARTBEAT)
        kernel.boot_s = config.clock.max_hold_s + 1  # the boot is older than the hold window
        await agent.run_kind(Kind.HEARTBEAT)  # the held one let go, this one sent at once
        results = await _queued(spool)
        assert (await spool.stats()).held == 0
    assert [(r.clock_synced, r.clock_restamped) for r in results] == [(False, False), (False, None)]
    assert "not synchronised" in agent.state.last_errors["clock"]
