"""The agent never stops delivering: a reply it cannot read, or an error nobody foresaw, must not
end the upload task while tests go on filling the spool."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from collector.agent import Agent
from collector.config import ProbeConfig
from collector.spool import AsyncSpool
from probes.models import ResultBase
from tests.collector.inprocess import (
    IngestStandIn,
    make_agent,
    probe_config,
    read_status,
    wait_for,
)

Server = Callable[..., Awaitable[TestServer]]


class InjectedFault(Exception):
    """An exception type no code of the agent catches by name."""


class FaultySpool(AsyncSpool):
    """The real spool, whose ``ack`` raises ``InjectedFault`` the first ``times`` calls: after
    the server has accepted a batch, before the spool forgets it."""

    def __init__(self, path: Path, times: int) -> None:
        super().__init__(path)
        self.times = times

    async def ack(self, result_ids: Iterable[str], *, now: datetime | None = None) -> int:
        if self.times > 0:
            self.times -= 1
            raise InjectedFault("injected while acknowledging")
        return await super().ack(result_ids, now=now)


@dataclass(frozen=True)
class Running:
    agent: Agent
    task: asyncio.Task[None]
    stop_event: asyncio.Event

    async def stop(self) -> None:
        """Ask the agent to stop and wait until its run has ended."""
        self.stop_event.set()
        await self.task


@asynccontextmanager
async def running_agent(
    aiohttp_server: Server, ingest: IngestStandIn, config: ProbeConfig, spool: AsyncSpool
) -> AsyncIterator[Running]:
    """An agent running against ``ingest`` with ``spool`` open; on leaving, the agent is
    stopped (if the body did not) and the spool closed."""
    server = await aiohttp_server(ingest.app())
    await spool.open()
    try:
        async with aiohttp.ClientSession() as http:
            agent = make_agent(config, str(server.make_url("")), spool, http)
            stop = asyncio.Event()
            run = Running(agent, asyncio.create_task(agent.run(stop)), stop)
            try:
                yield run
            finally:
                await run.stop()
    finally:
        await spool.close()


async def _run_until_delivered(
    tmp_path: Path, aiohttp_server: Server, ingest: IngestStandIn, spool: AsyncSpool
) -> dict[str, Any]:
    config = probe_config(tmp_path / "state")
    async with running_agent(aiohttp_server, ingest, config, spool) as run:
        await wait_for(
            lambda: len(ingest.received) >= 8 or run.task.done(), 20,
            "eight results at the server",
        )  # fmt: skip
        await run.stop()
        agent = run.agent
        assert agent.state.results_kept >= 8
        # Nothing lost: every result the agent kept reached the server, and none is waiting.
        assert (await spool.stats()).depth == 0
        assert len(ingest.received) == agent.state.results_kept
        return read_status(config)


async def test_a_reply_that_is_not_utf8_does_not_end_the_uploads(
    tmp_path: Path, aiohttp_server: Server
) -> None:
    def garbage(n: int) -> web.Response | None:
        if n >= 3:
            return None
        return web.Response(
            body=b'{"items": "\xff\xfe\xfd latin-1 \xe9t\xe9"}',
            content_type="application/json", charset="utf-8",
        )  # fmt: skip

    ingest = IngestStandIn(garbage)
    await _run_until_delivered(
        tmp_path, aiohttp_server, ingest, AsyncSpool(tmp_path / "spool.sqlite3")
    )
    assert ingest.uploads > 3


async def test_an_unforeseen_exception_restarts_the_upload_task_and_is_counted(
    tmp_path: Path, aiohttp_server: Server
) -> None:
    ingest = IngestStandIn()
    status = await _run_until_delivered(
        tmp_path, aiohttp_server, ingest, FaultySpool(tmp_path / "spool.sqlite3", times=2)
    )
    assert status["task_restarts"] == {"upload": 2}
    assert "InjectedFault" in status["last_errors"]["task.upload"]
    # The first batch was sent three times (two acknowledgements failed), answered "duplicate"
    # by the server the second and third time.
    assert max(ingest.received.values()) == 3
    # The office hears of it through the heartbeat.
    heartbeats = [r for r in ingest.results.values() if r["kind"] == "heartbeat"]
    assert any(
        "InjectedFault" in (r.get("last_errors") or {}).get("task.upload", "") for r in heartbeats
    )


class SlowAddSpool(AsyncSpool):
    """The real spool, whose commit of the ``nth`` result takes ``delay_s`` in its worker thread:
    long enough for a SIGTERM to arrive while the result is being committed."""

    def __init__(self, path: Path, nth: int, delay_s: float) -> None:
        super().__init__(path)
        self.nth, self.delay_s = nth, delay_s
        self.adds = 0
        self.committing = threading.Event()

    async def add(self, result: ResultBase, *, now: datetime | None = None) -> bool:
        self.adds += 1
        if self.adds != self.nth:
            return await super().add(result, now=now)

        def slow_add() -> bool:
            self.committing.set()
            time.sleep(self.delay_s)
            return self.spool.add(result, now=now)

        return await self._run(slow_add)


async def test_a_result_being_spooled_at_shutdown_is_counted_and_delivered(
    tmp_path: Path, aiohttp_server: Server
) -> None:
    """Stopping while a test's result is being committed to the spool (a worker thread the
    cancel cannot stop) must not leave a result delivered that the agent never counted: every
    result the server received is one the status reports as kept."""
    ingest = IngestStandIn()
    config = probe_config(tmp_path / "state")
    spool = SlowAddSpool(config.state_dir / "spool.sqlite3", nth=3, delay_s=0.5)
    async with running_agent(aiohttp_server, ingest, config, spool) as run:
        await wait_for(spool.committing.is_set, 20, "the third result being committed")
        await run.stop()
        agent = run.agent
        stats = await spool.stats()
    assert spool.adds >= 3
    assert len(ingest.received) + stats.depth == agent.state.results_kept
    assert read_status(config)["results_kept"] == agent.state.results_kept
