"""``hamletnet-probe status`` reads the status.json a real agent wrote and says, in plain words,
what waits for the clock and which tasks ended and were restarted."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from collector.cli import main
from collector.spool import AsyncSpool
from probes.models import Kind
from tests.collector.inprocess import make_agent, probe_config, read_status


async def test_status_shows_results_held_for_the_clock_and_task_restarts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = probe_config(tmp_path / "state")
    config.state_dir.mkdir()
    async with AsyncSpool(tmp_path / "spool.sqlite3") as spool, aiohttp.ClientSession() as http:
        # The kernel says the clock is not synchronised, 40 s after boot: results are held.
        agent = make_agent(
            config, "http://127.0.0.1:9", spool, http, clock_synced=lambda: False,
            boottime=lambda: 40.0,
        )  # fmt: skip
        await agent.run_kind(Kind.HEARTBEAT)
        await agent.run_kind(Kind.HEARTBEAT)
        # No latency schedule in this configuration: the run ends with an exception, counted.
        await agent.run_kind(Kind.LATENCY)
        await agent.write_status()
    status = read_status(config)
    assert status["spool"]["held"] == 2 and status["task_restarts"] == {"test.latency": 1}

    assert main(["--state-dir", str(config.state_dir), "status"]) == 0
    out = capsys.readouterr().out
    assert "2 held until the clock is synchronised" in out
    assert "task restarts: test.latency 1" in out


async def test_status_of_a_healthy_agent_says_nothing_held_and_no_restarts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = probe_config(tmp_path / "state")
    config.state_dir.mkdir()
    async with AsyncSpool(tmp_path / "spool.sqlite3") as spool, aiohttp.ClientSession() as http:
        agent = make_agent(config, "http://127.0.0.1:9", spool, http)
        await agent.run_kind(Kind.HEARTBEAT)
    assert main(["--state-dir", str(config.state_dir), "status"]) == 0
    out = capsys.readouterr().out
    assert "0 held until the clock is synchronised" in out
    assert "task restarts: none" in out
