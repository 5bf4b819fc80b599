"""The measurement target on a real loopback socket: pytest-aiohttp's server fixture, or the same
app on its own loop in a thread for blocking clients."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.target.app import create_target_app


@pytest.fixture
async def target(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    return await aiohttp_server(create_target_app())


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


class ThreadedTarget:
    """The real target app served by aiohttp on its own event loop in a thread, so blocking
    clients (raw sockets, speedtest-cli's threads, hypothesis examples) can talk to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)

    async def _start(self) -> None:
        self._runner = web.AppRunner(create_target_app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def threaded_target() -> Iterator[ThreadedTarget]:
    server = ThreadedTarget()
    server.start()
    yield server
    server.stop()
