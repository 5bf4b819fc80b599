"""Concurrent admission on the real target app over loopback: N tests run at once, the N+1-th is
told 503 with Retry-After, and a slot comes back when a test ends or its client vanishes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from probes.bandwidth import params
from server.appkeys import SLOTS
from server.target.app import create_target_app
from server.target.coordinator import LEASE_IDLE_S

Server = Callable[..., Awaitable[TestServer]]


class SteppedClock:
    """The coordinator's monotonic clock, moved only by the test: no assertion on elapsed time."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@dataclass
class Session:
    """One probe's test: its own HTTP session, a lease, and an endless download under it."""

    http: aiohttp.ClientSession
    base: str
    lease_id: str = ""
    download: aiohttp.ClientResponse | None = None

    async def ask(self, duration_s: float) -> aiohttp.ClientResponse:
        reply = await self.http.post(f"{self.base}/slot", json={"duration_s": duration_s})
        await reply.read()
        if reply.status == 200:
            self.lease_id = (await reply.json())["lease_id"]
        return reply

    async def start_download(self) -> None:
        self.download = await self.http.get(
            f"{self.base}/download",
            params={"bytes": str(params.ENDLESS_BYTES), "lease": self.lease_id},
        )
        assert self.download.status == 200
        await self.download.content.readexactly(1024 * 1024)  # bytes are flowing

    async def end(self) -> None:
        """The test's normal end: stop reading, release the lease."""
        assert self.download is not None
        self.download.close()
        async with self.http.delete(f"{self.base}/slot/{self.lease_id}") as reply:
            assert reply.status == 200

    async def vanish(self) -> None:
        """The probe dies mid-test: its connections drop, no release."""
        assert self.download is not None
        self.download.close()
        await self.http.close()


async def settle(app: web.Application, transfers: int) -> None:
    """Wait until the target has seen the transfers end (bounded; not a timing assertion)."""
    for _ in range(6000):
        if app[SLOTS].active_transfers == transfers:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{app[SLOTS].active_transfers} transfers still open, not {transfers}")


async def open_sessions(server: TestServer, count: int) -> list[Session]:
    base = str(server.make_url("")).rstrip("/")
    return [Session(aiohttp.ClientSession(), base) for _ in range(count)]


@pytest.mark.parametrize("tests", [1, 3])
async def test_n_tests_run_at_once_and_the_next_is_told_when_to_retry(
    aiohttp_server: Server, tests: int
) -> None:
    app = create_target_app(max_tests=tests)
    clock = SteppedClock(1000.0)
    app[SLOTS].clock = clock
    server = await aiohttp_server(app)
    sessions = await open_sessions(server, tests + 2)
    try:
        running = sessions[:tests]
        for index, session in enumerate(running):
            reply = await session.ask(30.0 + index)  # the first ends first, at 1030
            assert reply.status == 200
            await session.start_download()
        clock.now_s += 4.5
        refused = await sessions[tests].ask(30.0)
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "26"  # 25.5 s until the first lease ends
        assert await refused.json() == {"status": "busy", "retry_after_s": 25.5}
        assert app[SLOTS].active_transfers == tests  # refused before any byte moved

        await running[0].end()  # a test ends: its slot is free at once
        assert (await sessions[tests].ask(30.0)).status == 200
        await sessions[tests].start_download()
        assert (await sessions[tests + 1].ask(30.0)).status == 503
        await settle(app, tests)

        await running[-1].vanish() if tests > 1 else await sessions[tests].vanish()
        await settle(app, tests - 1)
        clock.now_s += LEASE_IDLE_S - 0.5
        assert (await sessions[tests + 1].ask(30.0)).status == 503  # a pause, not yet gone
        clock.now_s += 1.0
        assert (await sessions[tests + 1].ask(30.0)).status == 200  # no leaked slot
    finally:
        for session in sessions:
            if session.download is not None:
                session.download.close()
            await session.http.close()


async def test_a_vanished_probe_does_not_hold_the_only_slot_until_its_lease_ends(
    aiohttp_server: Server,
) -> None:
    """The default target (one test at a time): a probe that dies mid-download without
    releasing frees the slot once its transfers stayed away LEASE_IDLE_S, not after 60 s."""
    app = create_target_app()
    clock = SteppedClock(1000.0)
    app[SLOTS].clock = clock
    server = await aiohttp_server(app)
    dying, waiting = await open_sessions(server, 2)
    try:
        assert (await dying.ask(60.0)).status == 200
        await dying.start_download()
        await dying.vanish()
        await settle(app, 0)
        clock.now_s += 11.0
        reply = await waiting.ask(60.0)
        assert reply.status == 200, reply.headers.get("Retry-After")
    finally:
        await dying.http.close()
        await waiting.http.close()
