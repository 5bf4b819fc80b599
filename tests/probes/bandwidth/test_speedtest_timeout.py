"""A speedtest-cli test cut by its caller's timeout stops for real: no byte moves to or from the
target after the timeout returns, so the next test does not measure its leftovers.

The real target app on loopback, behind a byte-counting TCP relay written here (it only counts
and forwards; it stands for nothing else)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from probes import bandwidth
from server.target.app import create_target_app

Server = Callable[..., Awaitable[TestServer]]


class CountingRelay:
    """Forwards every connection to the target and counts the bytes and open connections."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.bytes = 0
        self.open = 0
        self._pumps: set[asyncio.Task[None]] = set()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                # Held to about 50 Mb/s per direction and connection, so that speedtest-cli cannot
                # finish its whole run on loopback before the caller's timeout cuts it.
                await asyncio.sleep(0.01)
                writer.write(data)
                await writer.drain()
                if writer.is_closing():
                    break
                self.bytes += len(data)  # delivered to the other side, not only read
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            pumps = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            self._pumps.update(pumps)
            await asyncio.gather(*pumps)
        finally:
            self.open -= 1

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()
            for task in self._pumps:
                task.cancel()
            await asyncio.gather(*self._pumps, return_exceptions=True)


async def test_speedtest_cut_by_a_timeout_moves_no_more_bytes(aiohttp_server: Server) -> None:
    target = await aiohttp_server(create_target_app())
    relay = CountingRelay(target.port)
    async with relay.serving() as url:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(4):  # the agent's schedule timeout, as it cuts a test
                await bandwidth.measure("p1", url, "speedtest", {"duration_s": 20})
        at_timeout = relay.bytes
        assert at_timeout > 1_000_000, "the test was cut while transferring"
        # What was already in flight when the child was killed may still land (a chunk or two
        # of 64 KiB); a transfer left running would keep moving ~6 MB/s through the relay.
        await asyncio.sleep(0.5)
        settled = relay.bytes
        assert settled - at_timeout <= 1_048_576, f"{settled - at_timeout} bytes after the timeout"
        await asyncio.sleep(2)  # time for a transfer left running to show itself
        assert relay.bytes == settled, f"{relay.bytes - settled} bytes moved after it settled"
        assert relay.open == 0, f"{relay.open} connections still open after the timeout"


def test_the_child_process_reply_is_read_into_figures_or_a_failure() -> None:
    from probes.bandwidth.errors import BandwidthError
    from probes.bandwidth.speedtest_engine import parse_worker_output
    from probes.models import FailureKind

    figures = {
        "download_bps": 9.4e8, "upload_bps": None, "download_bytes": 123, "upload_bytes": None,
        "download_s": 10.2, "upload_s": None, "ping_ms": 1.5, "threads": 8, "cpu_percent": 71.0,
        "server_url": "http://127.0.0.1:8080/upload.php",
    }  # fmt: skip
    ok = parse_worker_output(0, json.dumps({"figures": figures}).encode(), b"")
    assert ok.download_bps == 9.4e8 and ok.threads == 8
    failure = json.dumps({"failure_kind": "unreachable", "error": "no Speedtest Mini at x"})
    with pytest.raises(BandwidthError) as refused:
        parse_worker_output(0, failure.encode(), b"")
    assert refused.value.failure_kind is FailureKind.UNREACHABLE
    with pytest.raises(BandwidthError) as died:
        parse_worker_output(-9, b"", b"Traceback ...\nMemoryError\n")
    assert died.value.failure_kind is FailureKind.INTERNAL and "MemoryError" in str(died.value)
