"""The target's endpoints, its Speedtest Mini and LibreSpeed compatibility, on a real socket."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from probes.bandwidth import params
from server.appkeys import SLOTS
from server.target.app import create_target_app

Client = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def client(aiohttp_client: Client) -> TestClient[Any, Any]:
    return await aiohttp_client(create_target_app())


async def test_download_sends_exactly_the_bytes_asked_and_they_look_random(
    client: TestClient[Any, Any],
) -> None:
    reply = await client.get("/download", params={"bytes": str(20 * 1024 * 1024 + 7)})
    assert reply.status == 200
    assert reply.headers["Content-Length"] == str(20 * 1024 * 1024 + 7)
    body = await reply.read()
    assert len(body) == 20 * 1024 * 1024 + 7
    assert len(set(body[:4096])) > 200  # random bytes, not a constant that compresses away
    assert body[: params.PAYLOAD_FILE_BYTES // 2] != body[params.PAYLOAD_FILE_BYTES // 2 :][:4]


@pytest.mark.parametrize("bad", ["-1", "x", str(params.ENDLESS_BYTES + 1)])
async def test_download_refuses_odd_sizes(client: TestClient[Any, Any], bad: str) -> None:
    reply = await client.get("/download", params={"bytes": bad})
    assert reply.status == 400
    assert "bytes=" in await reply.text()


async def test_upload_counts_and_discards_the_body(client: TestClient[Any, Any]) -> None:
    body = b"\x00\x01" * (9 * 1024 * 1024)
    reply = await client.post("/upload", data=body,
                              headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert reply.status == 200
    assert await reply.json() == {"bytes": len(body)}


async def test_upload_of_a_chunked_body_takes_the_fallback_path(
    client: TestClient[Any, Any],
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"z" * 100_000

    reply = await client.post("/upload", data=chunks())
    assert await reply.json() == {"bytes": 500_000}


async def test_an_upload_cut_short_is_not_an_error(target: TestServer) -> None:
    with socket.create_connection((target.host, target.port)) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n")
        sock.sendall(b"x" * 2_000_000)
    # The server is still fine afterwards.
    async with aiohttp.ClientSession() as session:
        async with session.get(target.make_url("/latency")) as reply:
            assert reply.status == 204


async def test_latency_is_an_empty_reply(client: TestClient[Any, Any]) -> None:
    reply = await client.get("/latency")
    assert reply.status == 204
    assert await reply.read() == b""


class SteppedClock:
    """The coordinator's monotonic clock, moved only by the test: no assertion on elapsed time."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


async def test_slot_grant_busy_and_release(aiohttp_client: Client) -> None:
    app = create_target_app()
    clock = SteppedClock(1000.0)
    app[SLOTS].clock = clock
    client = await aiohttp_client(app)
    first = await client.post("/slot", json={"duration_s": 20})
    assert first.status == 200
    granted = await first.json()
    assert granted["status"] == "granted" and granted["duration_s"] == 20
    clock.now_s += 7.25  # the lease expires at 1020.0: 12.75 s left
    busy = await client.post("/slot", json={"duration_s": 20})
    assert busy.status == 503
    assert busy.headers["Retry-After"] == "13"  # whole seconds, rounded up from 12.75
    assert await busy.json() == {"status": "busy", "retry_after_s": 12.75}
    lease = granted["lease_id"]
    own = await client.get("/download", params={"bytes": "1000", "lease": lease})
    assert len(await own.read()) == 1000
    released = await client.delete(f"/slot/{lease}")
    assert await released.json() == {"ran_alone": True}
    again = await client.delete(f"/slot/{lease}")
    assert again.status == 404


@pytest.mark.parametrize("body", [{}, {"duration_s": -1}, {"duration_s": 5, "x": 1}])
async def test_slot_requests_are_validated(client: TestClient[Any, Any], body: Any) -> None:
    reply = await client.post("/slot", json=body)
    assert reply.status == 400
    assert "duration_s" in await reply.text() or "extra" in await reply.text()


async def test_speedtest_mini_protocol(client: TestClient[Any, Any]) -> None:
    index = await client.get("/")
    assert 'upload_extension: "php"' in await index.text()
    latency = await client.get("/speedtest/latency.txt", params={"x": "1"})
    assert await latency.text() == "test=test"
    image = await client.get("/speedtest/random350x350.jpg")
    assert len(await image.read()) == params.SPEEDTEST_IMAGE_BYTES[350]
    upload = await client.post("/speedtest/upload.php", data=b"content1=" + b"A" * 524_279)
    assert await upload.text() == "size=524288"
    probe = await client.get("/speedtest/upload.php")
    assert await probe.text() == "size=0"
    config = await client.get("/speedtest-config.php")
    assert "<download testlength=" in await config.text()
    odd = await client.get("/speedtest/random350x500.jpg")
    assert odd.status == 404


async def test_librespeed_backend_protocol(client: TestClient[Any, Any]) -> None:
    for prefix in ("", "/backend"):
        garbage = await client.get(f"{prefix}/garbage.php", params={"ckSize": "3"})
        assert garbage.headers["Content-Disposition"] == "attachment; filename=random.dat"
        assert len(await garbage.read()) == 3 * 1024 * 1024
        empty = await client.post(f"{prefix}/empty.php", data=b"q" * 1_000_000)
        assert empty.status == 200 and await empty.read() == b""
        ping = await client.get(f"{prefix}/empty.php")
        assert ping.status == 200
        ip = await client.get(f"{prefix}/getIP.php", params={"isp": "true"})
        assert await ip.json() == {"processedString": "127.0.0.1", "rawIspInfo": ""}
    default = await client.get("/garbage.php")
    assert len(await default.read()) == 4 * 1024 * 1024
    preflight = await client.options("/backend/empty.php")
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Content-Encoding" in preflight.headers["Access-Control-Allow-Headers"]
