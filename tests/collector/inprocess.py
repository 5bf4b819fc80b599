"""The agent in this test's own event loop, against an ingest server that a test can make misbehave.

``IngestStandIn`` is hand-written: it stands for ``POST /api/v1/results`` of the real server
(``server/app.py``) as far as the agent sees it: the same reply shape, ``{"items": [{"index": i,
"outcome": "accepted" | "duplicate"}]}``, keyed by ``result_id``; it does not verify signatures.
It runs as a real aiohttp server on loopback, so every reply goes through real sockets and the
agent's real ``aiohttp`` client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.agent import Agent
from collector.config import ProbeConfig
from collector.identity import Credentials
from collector.spool import AsyncSpool

PROBE_ID = "thon-a-vnpt-fiber"

#: A reply's body: what the stand-in answers to the n-th upload (0-based), or None for the
#: ordinary per-item reply.
Fault = Callable[[int], web.Response | None]


class IngestStandIn:
    """Records every result id it was sent, and how many times."""

    def __init__(self, fault: Fault | None = None) -> None:
        self.fault = fault
        self.uploads = 0
        self.received: Counter[str] = Counter()
        self.results: dict[str, dict[str, Any]] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/results", self._results)
        app.router.add_post("/api/v1/heartbeat", self._heartbeat)
        return app

    async def _results(self, request: web.Request) -> web.Response:
        n, self.uploads = self.uploads, self.uploads + 1
        body = await request.json()
        if self.fault is not None and (reply := self.fault(n)) is not None:
            return reply
        items = []
        for index, result in enumerate(body["results"]):
            result_id = result["result_id"]
            seen = result_id in self.received
            self.received[result_id] += 1
            self.results[result_id] = result
            items.append({"index": index, "outcome": "duplicate" if seen else "accepted"})
        return web.json_response({"items": items})

    async def _heartbeat(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "stored"})


def probe_config(state_dir: Path, **schedules: Any) -> ProbeConfig:
    return ProbeConfig(
        state_dir=state_dir,
        schedules=schedules or {"heartbeat": {"every_s": 0.2, "timeout_s": 5}},
        upload={"every_s": 0.2, "backoff_min_s": 0.05, "backoff_max_s": 0.2, "timeout_s": 5},
    )


def credentials(url: str) -> Credentials:
    return Credentials(
        server_url=url, probe_id=PROBE_ID, token="t" * 32, hamlet="thon-a", isp="VNPT",
        access="fiber",
    )  # fmt: skip


async def spooled_ids(spool: AsyncSpool) -> set[str]:
    return {i.result_id for i in await spool.oldest(1000)}


async def wait_for(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {within_s} s waiting for {what}")


def make_agent(
    config: ProbeConfig, url: str, spool: AsyncSpool, http: aiohttp.ClientSession, **kw: Any
) -> Agent:
    """An agent whose kernel clock reads "synchronised" unless ``clock_synced`` says otherwise
    (this test machine's own kernel may say either)."""
    kw.setdefault("clock_synced", lambda: True)
    return Agent(config, credentials(url), Ed25519PrivateKey.generate(), spool, http, **kw)


def read_status(config: ProbeConfig) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(config.status_path.read_text())
    return data
