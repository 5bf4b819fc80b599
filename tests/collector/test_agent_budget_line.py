"""The agent's bandwidth tests under the line check and the data budget, end to end in one event
loop: the real agent, the real server app (``create_app``) on a real socket with its SQLite
store, a real measurement target on loopback.

The line's byte counters and the CPU times are read through injected readers (a busy line
cannot be made on loopback without the agent's own test traffic); the lab test
``tests/lab/test_crosstraffic_lab.py`` proves the real counters with real traffic.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.agent import Agent
from collector.budget import DataBudget, DataBudgetSettings, ledger_to_json, new_ledger
from collector.config import ProbeConfig
from collector.crosstraffic import Counters, CpuTimes, CrossTrafficSettings
from collector.identity import Credentials
from collector.spool import AsyncSpool
from probes.models import BandwidthResult, CrossTraffic, HeartbeatResult, Kind, SkipReason, Status
from server.app import create_app
from server.settings import Settings
from server.storage.sqlite import SqliteStore
from server.target.app import create_target_app
from tests.server.conftest import ADMIN_TOKEN, GuardedTestServer, add_probe, auth, make_settings

Server = Callable[..., Awaitable[TestServer]]
GB = 1_000_000_000
INTERFACE = "br-lan"  # a name only: the counters come from the readers below


def busy_counters(step_bytes: int = 1_000_000) -> Callable[[str], Counters]:
    """Each read ``step_bytes`` further on: far above 25,000 B/s over a window of 50 ms."""
    reads = itertools.count()

    def read(interface: str) -> Counters:
        assert interface == INTERFACE
        n = next(reads)
        return Counters(rx_bytes=n * step_bytes, tx_bytes=n * step_bytes // 10)

    return read


def quiet_counters(interface: str) -> Counters:
    return Counters(rx_bytes=5_000, tx_bytes=7_000)


def idle_cpu() -> Callable[[], CpuTimes]:
    """A machine whose CPU does nothing: 100 idle ticks between reads."""
    ticks = itertools.count(step=100)
    return lambda: CpuTimes(busy=0, total=next(ticks))


def busy_cpu() -> Callable[[], CpuTimes]:
    """A machine whose CPU is 60 % busy: 60 busy ticks in every 100 between reads."""
    ticks = itertools.count(step=100)

    def read() -> CpuTimes:
        total = next(ticks)
        return CpuTimes(busy=total * 60 // 100, total=total)

    return read


class Rig:
    """The server, a probe registered on it, and what the agent needs to be that probe."""

    def __init__(self, client: TestClient, settings: Settings, target_url: str) -> None:
        self.client = client
        self.settings = settings
        self.target_url = target_url
        self.probe: dict[str, Any] = {}

    @property
    def server_url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    def config(self, state_dir: Path, **sections: Any) -> ProbeConfig:
        return ProbeConfig(
            state_dir=state_dir,
            schedules={
                "heartbeat": {"every_s": 3600, "timeout_s": 5},
                "bandwidth": {
                    "every_s": 3600, "timeout_s": 30, "engine": "http",
                    "targets": [self.target_url],
                    "options": {"duration_s": 1, "warmup_max_s": 0.5, "streams": 1},
                },
            },
            upload={"every_s": 3600, "backoff_min_s": 0.05, "backoff_max_s": 0.2, "timeout_s": 5},
            cross_traffic={
                "inline": True, "interface": INTERFACE, "window_s": 0.05,
                "give_up_after_s": 0.1,
            },
            **sections,
        )  # fmt: skip

    def agent(self, config: ProbeConfig, spool: AsyncSpool, http: aiohttp.ClientSession,
              **readers: Any) -> Agent:  # fmt: skip
        creds = Credentials(
            server_url=self.server_url, probe_id=self.probe["probe_id"],
            token=self.probe["token"], hamlet="thon-a", isp="Viettel", access="4g",
        )  # fmt: skip
        return Agent(config, creds, self.probe["key"], spool, http, clock_synced=lambda: True,
                     **readers)  # fmt: skip

    async def stored(self, kind: Kind) -> list[Any]:
        store = SqliteStore(self.settings.data_dir / "results.sqlite3")
        await store.start()
        try:
            return [s.result for s in await store.query(kind=kind)]
        finally:
            await store.close()

    async def set_budget(self, monthly_bytes: int | None) -> None:
        resp = await self.client.patch(
            f"/api/v1/admin/probes/{self.probe['probe_id']}",
            json={"data_budget_bytes": monthly_bytes, "actor": "office"},
            headers=auth(ADMIN_TOKEN),
        )
        assert resp.status == 200, await resp.text()


@pytest.fixture
async def rig(aiohttp_client: Any, aiohttp_server: Server, tmp_path: Path) -> AsyncIterator[Rig]:
    settings = make_settings(tmp_path / "server")
    client = await aiohttp_client(GuardedTestServer(create_app(settings)))
    target = await aiohttp_server(create_target_app())
    rig = Rig(client, settings, f"http://127.0.0.1:{target.port}")
    rig.probe = await add_probe(client, "thon-a", "Viettel", "4g")
    yield rig


async def _run_and_upload(agent: Agent, *kinds: Kind) -> None:
    for kind in kinds:
        await agent.run_kind(kind)
    assert await agent.uploader.drain() is None, agent.uploader.report.last_error
    assert agent.uploader.report.quarantined == 0


async def test_a_busy_line_defers_the_test_with_the_level_threshold_and_interface(
    rig: Rig, tmp_path: Path
) -> None:
    config = rig.config(tmp_path / "state")
    async with AsyncSpool(config.spool_path) as spool, aiohttp.ClientSession() as http:
        agent = rig.agent(config, spool, http, read_counters=busy_counters(), read_cpu=idle_cpu())
        await _run_and_upload(agent, Kind.BANDWIDTH)
        assert "cross_traffic" in agent.state.last_errors
    (result,) = await rig.stored(Kind.BANDWIDTH)
    assert isinstance(result, BandwidthResult)
    assert result.status is Status.DEFERRED and result.skip_reason is SkipReason.CROSS_TRAFFIC
    assert result.cross_traffic is CrossTraffic.BUSY
    assert result.cross_traffic_bytes_per_s is not None
    assert result.cross_traffic_bytes_per_s > 25_000
    assert result.cross_traffic_threshold_bytes_per_s == 25_000
    assert result.cross_traffic_interface == INTERFACE
    assert result.pretest_cpu_percent == 0
    assert result.download_mbps is None and result.target == rig.target_url


async def test_a_probe_not_inline_defers_on_a_busy_cpu_and_says_the_traffic_is_unknown(
    rig: Rig, tmp_path: Path
) -> None:
    config = rig.config(tmp_path / "state")
    not_inline = CrossTrafficSettings(window_s=0.05, give_up_after_s=0.1)
    config = config.model_copy(update={"cross_traffic": not_inline})
    async with AsyncSpool(config.spool_path) as spool, aiohttp.ClientSession() as http:
        agent = rig.agent(config, spool, http, read_counters=busy_counters(), read_cpu=busy_cpu())
        await _run_and_upload(agent, Kind.BANDWIDTH)
        assert "CPU 60 %" in agent.state.last_errors["cross_traffic"]
    (result,) = await rig.stored(Kind.BANDWIDTH)
    assert isinstance(result, BandwidthResult)
    assert result.status is Status.DEFERRED and result.skip_reason is SkipReason.CPU_BUSY
    assert result.cross_traffic is CrossTraffic.UNKNOWN
    assert result.pretest_cpu_percent == 60
    assert result.cross_traffic_bytes_per_s is None
    assert result.download_mbps is None and result.target == rig.target_url


async def test_a_quiet_line_tests_and_the_month_counts_what_the_test_moved(
    rig: Rig, tmp_path: Path
) -> None:
    config = rig.config(tmp_path / "state", data_budget={"monthly_bytes": 100 * GB})
    async with AsyncSpool(config.spool_path) as spool, aiohttp.ClientSession() as http:
        agent = rig.agent(config, spool, http, read_counters=quiet_counters, read_cpu=idle_cpu())
        await _run_and_upload(agent, Kind.BANDWIDTH, Kind.HEARTBEAT)
        assert "cross_traffic" not in agent.state.last_errors
    (result,) = await rig.stored(Kind.BANDWIDTH)
    assert isinstance(result, BandwidthResult)
    assert result.status is Status.OK, result.error
    assert result.download_bytes and result.upload_bytes
    assert result.cross_traffic is CrossTraffic.QUIET and result.cross_traffic_bytes_per_s == 0
    assert (result.data_budget_bytes, result.data_used_bytes) == (100 * GB, 0)
    assert result.data_expected_bytes == DataBudgetSettings().first_test_bytes
    moved = result.download_bytes + result.upload_bytes
    (beat,) = await rig.stored(Kind.HEARTBEAT)
    assert isinstance(beat, HeartbeatResult) and beat.data_budget_bytes == 100 * GB
    # The warm-up moved bytes too, which download_bytes and upload_bytes leave out.
    assert beat.data_used_bytes is not None and beat.data_used_bytes > moved


async def test_a_spent_month_skips_the_test_and_the_heartbeat_carries_the_usage(
    rig: Rig, tmp_path: Path
) -> None:
    config = rig.config(tmp_path / "state", data_budget={"monthly_bytes": 10 * GB})
    config.state_dir.mkdir(parents=True)
    # What the agent's own ledger holds after tests that moved all but 1,000 bytes of the month's
    # budget (written with the agent's serialiser, not by hand).
    ledger = new_ledger(datetime.now(UTC), 10 * GB)
    config.data_budget_path.write_bytes(ledger_to_json(replace(ledger, used_bytes=10 * GB - 1000)))
    async with AsyncSpool(config.spool_path) as spool, aiohttp.ClientSession() as http:
        agent = rig.agent(config, spool, http, read_counters=busy_counters(), read_cpu=idle_cpu())
        await _run_and_upload(agent, Kind.BANDWIDTH, Kind.HEARTBEAT)
    (result,) = await rig.stored(Kind.BANDWIDTH)
    assert isinstance(result, BandwidthResult)
    assert result.status is Status.SKIPPED and result.skip_reason is SkipReason.DATA_BUDGET
    assert result.data_budget_bytes == 10 * GB and result.data_used_bytes == 10 * GB - 1000
    assert result.cross_traffic is None  # the line was never looked at: nothing to look for
    (beat,) = await rig.stored(Kind.HEARTBEAT)
    assert isinstance(beat, HeartbeatResult)
    assert (beat.data_budget_bytes, beat.data_used_bytes) == (10 * GB, 10 * GB - 1000)


async def test_a_budget_set_on_the_server_reaches_the_probe_and_changes_its_decisions(
    rig: Rig, tmp_path: Path
) -> None:
    config = rig.config(tmp_path / "state")  # no budget of its own: unmetered
    async with AsyncSpool(config.spool_path) as spool, aiohttp.ClientSession() as http:
        agent = rig.agent(config, spool, http, read_counters=busy_counters(), read_cpu=idle_cpu())
        budget = await agent.data_budget()
        await _run_and_upload(agent, Kind.HEARTBEAT)
        assert budget.decide(datetime.now(UTC)).run

        await rig.set_budget(1000)  # less than a test: the next one cannot fit
        await _run_and_upload(agent, Kind.HEARTBEAT)  # its reply carries the budget
        assert budget.ledger.budget_bytes == 1000
        await _run_and_upload(agent, Kind.BANDWIDTH)
        (result,) = await rig.stored(Kind.BANDWIDTH)
        assert result.status is Status.SKIPPED and result.data_budget_bytes == 1000
        # Kept across a restart: the ledger file holds the server's word.
        reopened = await DataBudget.open(
            config.data_budget, config.data_budget_path, datetime.now(UTC)
        )
        assert reopened.ledger.budget_bytes == 1000

        await rig.set_budget(None)  # cleared: the probe's configuration (unmetered) stands
        await _run_and_upload(agent, Kind.HEARTBEAT)
        assert budget.ledger.budget_bytes is None
        assert budget.decide(datetime.now(UTC)).run
