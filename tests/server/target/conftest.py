"""The measurement target on a real loopback socket (pytest-aiohttp's server fixture)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from server.target.app import create_target_app


@pytest.fixture
async def target(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    return await aiohttp_server(create_target_app())


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")
