"""``hamletnet-server target``, and the target mounted in the ingest server under ``/target/``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from server.app import create_app
from tests.server.conftest import make_settings


def test_a_bad_listen_address_exits_2_naming_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "target", "--listen", "localhost"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--listen" in out.stderr and "HOST:PORT" in out.stderr


async def test_the_ingest_server_serves_the_target(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], tmp_path: Path
) -> None:
    off = await aiohttp_client(create_app(make_settings(tmp_path / "off")))
    assert (await off.get("/target/download", params={"bytes": "1000"})).status == 404
    client = await aiohttp_client(create_app(make_settings(tmp_path, serve_target=True)))
    index = await client.get("/target/")
    assert 'upload_extension: "php"' in await index.text()
    download = await client.get("/target/download", params={"bytes": "100000"})
    assert len(await download.read()) == 100_000
    latency = await client.get("/target/speedtest/latency.txt")
    assert await latency.text() == "test=test"
