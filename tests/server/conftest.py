"""Fixtures for the API tests: the real app (``create_app``) on a real socket, real storage."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from probes.models import parse_result
from probes.signing import new_private_key, public_key_text, sign
from server.app import create_app
from server.connection import GuardedAppRunner
from server.settings import Settings, load_settings

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
HAMLETS = [
    {"code": "thon-a", "name": "Thôn Đồng Tâm", "households": 10},
    {"code": "thon-b", "name": "Thôn Nà Mò"},
]


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(
        None,
        data_dir=str(data_dir),
        admin_token=ADMIN_TOKEN,
        hamlets=HAMLETS,
        **overrides,
    )


def bandwidth(probe_id: str, **fields: Any) -> dict[str, Any]:
    """A valid bandwidth result payload as a probe sends it."""
    body: dict[str, Any] = {
        "kind": "bandwidth",
        "result_id": str(uuid.uuid4()),
        "probe_id": probe_id,
        "measured_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "engine": "http",
        "target": "http://target.example:8080",
        "family": "ipv4",
        "streams": 3,
        "download_mbps": 412.5,
        "upload_mbps": 98.25,
        "download_samples_mbps": [400.0, 415.5, 422.0],
    }
    body.update(fields)
    return body


def heartbeat(probe_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "heartbeat",
        "result_id": str(uuid.uuid4()),
        "probe_id": probe_id,
        "measured_at": datetime.now(UTC).isoformat(),
        "engine": "agent",
        "agent_version": "0.1.0",
        "uptime_s": 12.5,
        "spool_depth": 0,
    }
    body.update(fields)
    return body


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ClientFactory = Callable[..., Any]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


class GuardedTestServer(TestServer):
    """aiohttp's test server, serving through the runner ``hamletnet-server run`` uses."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GuardedAppRunner(self.app, **kwargs)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient:
    return await aiohttp_client(GuardedTestServer(create_app(settings)))


def signed(item: Any, key: Ed25519PrivateKey) -> Any:
    """The item signed with ``key`` as the probe agent would, if it is a valid result; an
    invalid payload is returned as it is (the agent could not have built it)."""
    try:
        result = parse_result(item)
    except ValueError:
        return item
    return sign(result, key).model_dump(mode="json")


async def add_probe(
    client: TestClient,
    hamlet: str = "thon-a",
    isp: str = "VNPT",
    access: str = "fiber",
    *,
    register_key: bool = True,
) -> dict[str, Any]:
    """Register a probe through the admin API and, like ``hamletnet-probe register``, its key.

    The returned dict is the admin API's reply plus ``key``, the probe's private key.
    """
    resp = await client.post(
        "/api/v1/admin/probes",
        json={"hamlet": hamlet, "isp": isp, "access": access},
        headers=auth(ADMIN_TOKEN),
    )
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    created["key"] = new_private_key()
    if register_key:
        reg = await client.post(
            "/api/v1/register",
            json={"public_key": public_key_text(created["key"])},
            headers=auth(created["token"]),
        )
        assert reg.status == 200, await reg.text()
    return created


@pytest.fixture
async def probe(client: TestClient) -> AsyncIterator[dict[str, Any]]:
    yield await add_probe(client)
