"""Schemathesis against the OpenAPI document, on the real server over a real loopback socket.

Every documented operation is called with generated (valid and invalid) requests; each reply must
be free of 5xx, use a documented status and content type, and match the documented body schema.
The aiohttp app is neither ASGI nor WSGI, so it runs in a thread with its own event loop.

Each operation is one pytest case driving ``APIOperation.as_strategy`` with Hypothesis: the
document is loaded from the running server, which ``schema.parametrize()`` cannot wait for at
collection time, and the lazy ``schemathesis.pytest.from_fixture`` of schemathesis 4.32 breaks on
pytest 9 (it sets ``Function._nodeid``, which pytest 9 no longer has).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from probes.signing import new_private_key, public_key_text
from server import __version__
from server.app import ADMIN_PREFIX, PROBE_PATHS, create_app
from server.openapi import build_openapi
from server.settings import Settings
from tests.server.conftest import ADMIN_TOKEN, auth, bandwidth, make_settings, signed

pytestmark = pytest.mark.slow

#: A hamlet ``make_settings`` configures (the first of ``conftest.HAMLETS``).
HAMLET = "thon-a"
#: Examples per operation: enough to walk every documented status, small enough for CI.
MAX_EXAMPLES = 40
START_TIMEOUT_S = 10.0

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class ServerThread:
    """``create_app(settings)`` served by ``AppRunner`` + ``TCPSite`` on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="api-server")
        self._runner: web.AppRunner | None = None
        self.url = ""

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self.url = future.result(timeout=START_TIMEOUT_S)

    async def _serve(self) -> str:
        self._runner = web.AppRunner(create_app(self._settings), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            cleanup = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            cleanup.result(timeout=START_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=START_TIMEOUT_S)
        self._loop.close()


def _register_probe(http: requests.Session, base_url: str, *, register_key: bool) -> dict[str, Any]:
    """A new probe (the admin API's reply, plus ``key``: its private key), like ``add_probe``."""
    reply = http.post(
        f"{base_url}/api/v1/admin/probes",
        json={"hamlet": HAMLET, "isp": "VNPT", "access": "fiber"},
        headers=auth(ADMIN_TOKEN),
        timeout=10,
    )
    assert reply.status_code == 201, reply.text
    created: dict[str, Any] = reply.json()
    created["key"] = new_private_key()
    if register_key:
        reg = http.post(
            f"{base_url}/api/v1/register",
            json={"public_key": public_key_text(created["key"])},
            headers=auth(created["token"]),
            timeout=10,
        )
        assert reg.status_code == 200, reg.text
    return created


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    # A high rate limit: 429 is documented, but it must not crowd out everything else.
    running = ServerThread(
        make_settings(
            data_dir,
            limits={"requests_per_s": 100_000, "burst": 100_000, "auth_failure_burst": 100_000},
        )
    )
    running.start()
    yield running
    running.stop()


@dataclass(frozen=True)
class Probes:
    #: Posts the results and heartbeats, signed with its registered key.
    writer: dict[str, Any]
    #: Registers keys; the admin calls may look it up, disable it, reset its key.
    spare: dict[str, Any]


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: loopback only
    yield session
    session.close()


@pytest.fixture(scope="module")
def probes(server: ServerThread, http: requests.Session) -> Probes:
    return Probes(
        writer=_register_probe(http, server.url, register_key=True),
        spare=_register_probe(http, server.url, register_key=False),
    )


@pytest.fixture(scope="module")
def api_schema(server: ServerThread) -> Any:
    """The document as the server serves it, loaded from its URL."""
    loaded = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json")
    loaded.config.update(base_url=server.url)
    return loaded


def _operations() -> list[str]:
    """``METHOD /path`` of every documented operation (the same function serves the document)."""
    paths = build_openapi(__version__)["paths"]
    return [
        f"{method.upper()} {path}"
        for path, ops in paths.items()
        for method in ops
        if method != "parameters"
    ]


def _token_for(path: str, probes: Probes) -> str | None:
    if path.startswith(ADMIN_PREFIX):
        return ADMIN_TOKEN
    if path == "/api/v1/register":
        return str(probes.spare["token"])
    if path in PROBE_PATHS:
        return str(probes.writer["token"])
    return None


def _use_known_values(case: schemathesis.Case, probes: Probes) -> None:
    """Put values the server knows into a valid case, so it gets past lookups to the real work.

    Generated probe ids, hamlet codes, times, keys and signatures almost never name a registered
    probe, a configured hamlet or a time inside the accepted window, nor verify, which would
    leave the 200/201 paths and the store untouched. Invalid (negative) cases stay as generated.
    """
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    body = case.body
    writer = probes.writer
    if case.path == "/api/v1/heartbeat" and isinstance(body, dict):
        body["probe_id"] = writer["probe_id"]
        body["measured_at"] = datetime.now(UTC).isoformat()
        # "ok" must come without failure_kind and error (a rule JSON Schema does not express).
        for key in ("status", "failure_kind", "error"):
            body.pop(key, None)
        body.setdefault("kind", "heartbeat")  # what the server assumes; signed() needs it
        case.body = signed(body, writer["key"])
    elif case.path == "/api/v1/results" and isinstance(body, dict):
        # One valid item among the generated ones: the batch is judged item by item.
        valid = signed(bandwidth(writer["probe_id"]), writer["key"])
        results = body["results"]
        if isinstance(results, list):
            body["results"] = [*results, valid]
    elif case.path == "/api/v1/register" and isinstance(body, dict):
        body["public_key"] = public_key_text(new_private_key())
    elif case.path == "/api/v1/admin/probes" and case.method == "POST" and isinstance(body, dict):
        body["hamlet"] = HAMLET
    elif case.path_parameters and "probe_id" in case.path_parameters:
        # The spare probe: PATCH may disable it, and the writer must stay enabled.
        case.path_parameters["probe_id"] = probes.spare["probe_id"]


@pytest.mark.parametrize("label", _operations())
def test_operation_conforms_to_the_openapi_document(
    label: str, api_schema: Any, probes: Probes, http: requests.Session
) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is in build_openapi but not in the served document"
    token = _token_for(operation.path, probes)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, headers=headers),
        operation.as_strategy(GenerationMode.NEGATIVE, headers=headers),
    )

    @given(case=cases, known=st.booleans())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def call(case: schemathesis.Case, known: bool) -> None:
        if known:
            _use_known_values(case, probes)
        case.call_and_validate(session=http, checks=CHECKS, timeout=10)

    call()
