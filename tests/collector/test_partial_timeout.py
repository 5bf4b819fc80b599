"""A run over several targets that times out keeps what its finished targets measured, and
reports one failed result for each target it did not finish: real engines, real servers on
loopback, the last target hanging."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import dns.message
import dns.rrset
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from collector.spool import AsyncSpool
from probes.models import DnsResult, FailureKind, Kind, LatencyResult, Status
from tests.collector.inprocess import make_agent, probe_config

Server = Callable[..., Awaitable[TestServer]]
RUN_TIMEOUT_S = 2.0


async def _measure(tmp_path: Path, kind: Kind, schedule: dict[str, Any]) -> list[Any]:
    config = probe_config(tmp_path / "state", **{kind.value: schedule})
    async with AsyncSpool(tmp_path / "spool.sqlite3") as spool, aiohttp.ClientSession() as http:
        agent = make_agent(config, "http://127.0.0.1:9", spool, http)
        _, results = await agent._measure(kind)
    return results


async def test_latency_run_keeps_the_targets_measured_before_the_timeout(
    tmp_path: Path, aiohttp_server: Server
) -> None:
    async def fast(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/fast", fast)
    app.router.add_get("/hang", hang)
    server = await aiohttp_server(app)
    base = f"http://127.0.0.1:{server.port}"
    targets = [f"{base}/fast", f"{base}/fast?again", f"{base}/hang", f"{base}/fast?never"]
    results = await _measure(
        tmp_path,
        Kind.LATENCY,
        {
            "every_s": 60, "timeout_s": RUN_TIMEOUT_S, "engine": "http", "targets": targets,
            "options": {"count": 2, "interval_s": 0.05, "wait_s": 30},
        },
    )  # fmt: skip
    assert [r.target for r in results] == targets
    assert all(isinstance(r, LatencyResult) for r in results)
    first, second, hung, never = results
    assert first.status is Status.OK and first.received == 2, first.error
    assert second.status is Status.OK and second.received == 2, second.error
    assert hung.status is Status.FAILED and hung.failure_kind is FailureKind.TIMEOUT
    assert never.status is Status.FAILED and never.failure_kind is FailureKind.TIMEOUT
    assert never.error and "not started" in never.error


class _Resolver(asyncio.DatagramProtocol):
    """A DNS server on loopback that answers ``fast.example`` and never answers anything else
    (a resolver stuck on one name)."""

    transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        if query.question[0].name.to_text() != "fast.example.":
            return
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text("fast.example.", 60, "IN", "A", "192.0.2.1"))
        self.transport.sendto(reply.to_wire(), addr)


@pytest.fixture
async def resolver() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Resolver, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    yield f"127.0.0.1:{port}"
    transport.close()


async def test_dns_run_keeps_the_names_resolved_before_the_timeout(
    tmp_path: Path, resolver: str
) -> None:
    results = await _measure(
        tmp_path,
        Kind.DNS,
        {
            "every_s": 60, "timeout_s": RUN_TIMEOUT_S,
            "targets": ["fast.example", "slow.example"],
            "options": {"resolvers": [resolver], "qtypes": ["A"], "wait_s": 30, "tries": 1},
        },
    )  # fmt: skip
    assert [r.target for r in results] == ["fast.example", "slow.example"]
    fast, slow = results
    assert isinstance(fast, DnsResult) and fast.status is Status.OK, fast.error
    assert fast.answers == 1 and fast.resolve_ms is not None
    assert slow.status is Status.FAILED and slow.failure_kind is FailureKind.TIMEOUT


async def test_a_latency_run_that_hangs_is_labelled_with_the_engine_its_targets_chose(
    tmp_path: Path, aiohttp_server: Server
) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/hang", hang)
    server = await aiohttp_server(app)
    target = f"http://127.0.0.1:{server.port}/hang"  # a URL and no engine: http measures it
    (result,) = await _measure(
        tmp_path,
        Kind.LATENCY,
        {
            "every_s": 60, "timeout_s": RUN_TIMEOUT_S, "targets": [target],
            "options": {"count": 2, "interval_s": 0.05, "wait_s": 30},
        },
    )  # fmt: skip
    assert result.status is Status.FAILED and result.failure_kind is FailureKind.TIMEOUT
    assert result.engine == "http"


async def test_a_latency_run_that_fails_outright_is_labelled_with_the_engine_its_targets_chose(
    tmp_path: Path,
) -> None:
    # HOST:PORT and no engine: tcp would measure it; an invalid option stops the run before any
    # connection is made.
    (result,) = await _measure(
        tmp_path,
        Kind.LATENCY,
        {"every_s": 60, "timeout_s": RUN_TIMEOUT_S, "targets": ["127.0.0.1:9"],
         "options": {"count": 0}},
    )  # fmt: skip
    assert result.status is Status.FAILED and result.failure_kind is FailureKind.INTERNAL
    assert result.error and "count" in result.error
    assert result.engine == "tcp"
