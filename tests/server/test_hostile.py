"""The ingest server under hostile input, over real sockets on loopback, with real storage.

Each test stands for one case of issue 15 §4: deeply nested JSON, slow request headers, token
guessing, a full disk, and malformed HTTP below the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from server.app import create_app
from server.connection import GuardedAppRunner
from server.json_bounds import bounded_loads
from server.settings import Settings
from tests.server.conftest import (
    ADMIN_TOKEN,
    add_probe,
    auth,
    bandwidth,
    heartbeat,
    make_settings,
    signed,
)
from tests.server.test_api import stored

# -- deeply nested JSON -----------------------------------------------------------------------

#: About 2 KB: deep enough for ``json.loads`` to hit Python's recursion limit.
DEEP = 990


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_a_too_deep_item_is_rejected_and_the_valid_ones_are_stored(
    client: TestClient, probe: dict[str, Any], settings: Settings
) -> None:
    good = [signed(bandwidth(probe["probe_id"]), probe["key"]) for _ in range(2)]
    body = '{"results": [%s, %s, %s]}' % (  # noqa: UP031 (the raw bytes are the point)
        json.dumps(good[0]), _nested(DEEP), json.dumps(good[1]),
    )  # fmt: skip
    resp = await client.post("/api/v1/results", data=body, headers=auth(probe["token"]))
    assert resp.status == 200, await resp.text()
    reply = await resp.json()
    assert [i["outcome"] for i in reply["items"]] == ["accepted", "rejected", "accepted"]
    assert "nested deeper than" in reply["items"][1]["reason"]
    rows = await stored(settings)
    assert sorted(str(r.result.result_id) for r in rows) == sorted(g["result_id"] for g in good)


async def test_a_too_deep_body_that_is_no_batch_is_400_json(
    client: TestClient, probe: dict[str, Any]
) -> None:
    for path in ("/api/v1/results", "/api/v1/heartbeat", "/api/v1/register"):
        resp = await client.post(path, data=_nested(DEEP), headers=auth(probe["token"]))
        assert resp.status in (400, 422), (path, await resp.text())
        body = await resp.json()
        assert body["error"] in ("bad_request", "invalid"), body
    deep_object = '{"a":' * DEEP + "1" + "}" * DEEP
    resp = await client.post("/api/v1/heartbeat", data=deep_object, headers=auth(probe["token"]))
    assert resp.status == 400 and "nested deeper than" in (await resp.json())["detail"]


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{},"\\ab\n'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


@given(_json_values)
def test_bounded_loads_decodes_what_json_loads_decodes(value: Any) -> None:
    text = json.dumps(value)
    decoded = bounded_loads(text)
    assert decoded.value == value and not decoded.cut


@given(st.lists(st.tuples(_json_values, st.integers(min_value=0, max_value=12)), max_size=6))
def test_bounded_loads_cuts_exactly_the_items_nested_too_deep(items: list[Any]) -> None:
    max_depth = 8
    wrapped = [_wrap(value, levels) for value, levels in items]
    decoded = bounded_loads(json.dumps({"results": wrapped}), max_depth=max_depth)
    # The envelope takes two levels: {"results": [ITEM]}.
    expected_cut = {i for i, item in enumerate(wrapped) if 2 + _depth(item) > max_depth}
    assert decoded.too_deep == expected_cut
    assert decoded.cut == bool(expected_cut)
    for index, item in enumerate(wrapped):
        kept = decoded.value["results"][index]
        assert kept is None if index in expected_cut else kept == item


def _wrap(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs, mounted for this test (needs root) and unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True,
            capture_output=True,
        )  # fmt: skip
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {exc}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def _fill(path: Path) -> None:
    """Write ``path`` until the disk refuses another byte."""
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:
            while True:
                f.write(b"\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


@pytest.mark.lab
@pytest.mark.parametrize(
    ("min_free_disk_mb", "error"),
    [
        (0.25, "disk_full"),  # seen from the free space of data_dir
        (0, "writes_failing"),  # free-space check off: seen from the failed write alone
    ],
)
async def test_healthz_reports_a_full_disk_and_recovers_when_space_returns(
    aiohttp_client: Any, small_disk: Path, min_free_disk_mb: float, error: str
) -> None:
    settings = make_settings(small_disk / "data", limits={"min_free_disk_mb": min_free_disk_mb})
    client = await aiohttp_client(create_app(settings))
    probe = await add_probe(client)
    assert (await client.get("/healthz")).status == 200

    filler = small_disk / "filler"
    _fill(filler)
    item = signed(bandwidth(probe["probe_id"]), probe["key"])
    resp = await client.post(
        "/api/v1/results", json={"results": [item]}, headers=auth(probe["token"])
    )
    assert resp.status == 503, await resp.text()  # not accepted: the probe keeps it and retries
    health = await client.get("/healthz")
    assert health.status == 503, await health.text()
    body = await health.json()
    assert body["error"] == error and str(settings.data_dir) in body["detail"]

    os.unlink(filler)
    resp = await client.post(
        "/api/v1/results", json={"results": [item]}, headers=auth(probe["token"])
    )
    assert resp.status == 200 and (await resp.json())["accepted"] == 1
    assert (await client.get("/healthz")).status == 200


# -- guessing tokens --------------------------------------------------------------------------


async def _heartbeat(client: TestClient, probe: dict[str, Any], token: str) -> int:
    resp = await client.post(
        "/api/v1/heartbeat",
        json=signed(heartbeat(probe["probe_id"]), probe["key"]),
        headers=auth(token),
    )
    return resp.status


async def test_failed_authentication_is_limited_per_source_address(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    # Three failures at once, then one more every 100 s: the test never waits for a refill.
    limits = {"auth_failure_burst": 3, "auth_failures_per_min": 0.6}
    client = await aiohttp_client(create_app(make_settings(tmp_path, limits=limits)))
    probe = await add_probe(client)
    statuses = [await _heartbeat(client, probe, "hn_guess") for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    resp = await client.get("/api/v1/admin/probes", headers=auth("wrong-admin-token-0123456"))
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"] == "rate_limited"
    # A blocked address is refused before its token is looked at, so it learns nothing from
    # guessing: even the right token waits.
    assert await _heartbeat(client, probe, probe["token"]) == 429

    # Another address (127.0.0.2 is loopback too) is not held back, and has its own count.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        url = client.make_url("/api/v1/heartbeat")
        body = signed(heartbeat(probe["probe_id"]), probe["key"])
        async with other.post(url, json=body, headers=auth(probe["token"])) as resp:
            assert resp.status == 200, await resp.text()
        async with other.post(url, json=body, headers=auth("hn_guess")) as resp:
            assert resp.status == 401
        admin = client.make_url("/api/v1/admin/probes")
        async with other.get(admin, headers=auth(ADMIN_TOKEN)) as resp:
            assert resp.status == 200


async def test_failed_authentication_limit_can_be_turned_off(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    limits = {"auth_failure_burst": 0}
    client = await aiohttp_client(create_app(make_settings(tmp_path, limits=limits)))
    probe = await add_probe(client)
    statuses = {await _heartbeat(client, probe, "hn_guess") for _ in range(30)}
    assert statuses == {401}
    assert await _heartbeat(client, probe, probe["token"]) == 200


# -- below the application: slow headers, malformed HTTP ---------------------------------------

#: How long a test waits for the server to close a connection before calling it wedged: far
#: past the configured header timeout, so a slow machine cannot fail the test.
CLOSE_BOUND_S = 30.0


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[int]:
    """The app served as ``hamletnet-server run`` serves it, on a free loopback port."""
    runner = GuardedAppRunner(create_app(settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _closed_by_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Trickle header bytes, one every 0.1 s, until the server closes; what it answered (a
    reset, when the server closes with our latest bytes unread, may destroy its answer)."""

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.1)

    trickler = asyncio.create_task(trickle())
    try:
        return await asyncio.wait_for(reader.read(), CLOSE_BOUND_S)
    except ConnectionResetError:
        return b""
    finally:
        trickler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trickler
        writer.close()


async def test_slow_headers_are_closed_while_normal_clients_are_served(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, limits={"header_timeout_s": 0.5})
    async with serving(settings) as port, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}"
        first_requests = []
        for _ in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            first_requests.append(asyncio.create_task(_closed_by_server(reader, writer)))
        # A keep-alive connection whose second request trickles is held to the same deadline.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        second_request = asyncio.create_task(_closed_by_server(reader, writer))
        # A connection that sends nothing at all is closed too.
        silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", port)

        for _ in range(3):  # meanwhile a well-behaved client is served
            async with http.get(f"{url}/healthz") as resp:
                assert resp.status == 200

        # Each returns once the server has closed it (it raises if it is still open).
        for answer in await asyncio.gather(*first_requests):
            assert answer[:12] in (b"", b"HTTP/1.1 408"), answer
        answer = await second_request  # the rest of the first response, then the 408
        assert answer.count(b"HTTP/1.1 ") == (b"HTTP/1.1 408" in answer), answer
        answer = await asyncio.wait_for(silent_reader.read(), CLOSE_BOUND_S)
        silent_writer.close()
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        reply = json.loads(answer.partition(b"\r\n\r\n")[2])
        assert reply["error"] == "header_timeout" and "0.5 s" in reply["detail"]
        async with http.get(f"{url}/metrics") as resp:
            assert "hamletnet_header_timeouts_total 52.0" in await resp.text()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"NOT AN HTTP REQUEST\r\n\r\n", id="bad-request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", id="bad-header"),
        pytest.param(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", id="long-header"),
        pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", id="long-line"),
        pytest.param(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", id="bad-length"),
        pytest.param(b"GET / HTTP/1.1\r\nAuthorization: Bearer hn_s\x01\r\n\r\n", id="bad-value"),
    ],
)
async def test_malformed_http_is_answered_in_json(
    tmp_path: Path, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(make_settings(tmp_path)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        answer = await asyncio.wait_for(reader.read(), CLOSE_BOUND_S)
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *headers = head.decode("latin-1").split("\r\n")
    assert status_line.split(" ")[1] in ("400", "431"), answer
    assert "content-type: application/json; charset=utf-8" in (h.lower() for h in headers)
    reply = json.loads(body)
    assert set(reply) == {"error", "detail"} and reply["error"] == "bad_request", reply
    assert reply["detail"]
    # The request is echoed to its sender only: it may carry a token.
    assert "hn_s" not in caplog.text and "Traceback" not in caplog.text


async def test_the_run_command_closes_slow_headers_and_stops_on_sigterm(tmp_path: Path) -> None:
    """``hamletnet-server run``, the real entry point, serves through the guarded runner."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {
        **os.environ,
        "HAMLETNET_DATA_DIR": str(tmp_path / "data"),
        "HAMLETNET_LISTEN_PORT": str(port),
        "HAMLETNET_LIMITS__HEADER_TIMEOUT_S": "0.5",
    }
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "run", env=env, stderr=subprocess.PIPE
    )
    try:
        for _ in range(200):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the server did not start listening")
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert (await _closed_by_server(reader, writer))[:12] in (b"", b"HTTP/1.1 408")
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), CLOSE_BOUND_S) == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
