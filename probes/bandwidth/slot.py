"""The slot protocol between a probe and the measurement target: wire models and the client.

``POST /slot {"duration_s": D}`` answers 200 ``SlotGranted`` or 503 ``SlotBusy`` with a
``Retry-After`` header (RFC 9110 §15.6.4: the service is unavailable for now, retry later);
``DELETE /slot/{lease_id}`` answers ``SlotReleased`` saying whether the test ran alone. The
coordinator itself lives on the target (``server/target/coordinator.py``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from probes.bandwidth import params

log = logging.getLogger(__name__)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlotRequest(_Wire):
    duration_s: float = Field(gt=0, le=params.MAX_SLOT_S)


class SlotGranted(_Wire):
    status: Literal["granted"] = "granted"
    lease_id: str = Field(min_length=1, max_length=64)
    duration_s: float = Field(ge=0)


class SlotBusy(_Wire):
    status: Literal["busy"] = "busy"
    retry_after_s: float = Field(ge=0)


class SlotReleased(_Wire):
    ran_alone: bool


class TargetBusy(Exception):
    """The target stayed busy longer than the probe was willing to wait."""

    def __init__(self, waited_s: float, retry_after_s: float) -> None:
        super().__init__(
            f"the target was busy for {waited_s:.0f} s and asks to retry after"
            f" {retry_after_s:.0f} s more; the test is deferred to the next schedule"
        )
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Lease:
    lease_id: str
    duration_s: float


async def acquire(
    session: aiohttp.ClientSession, base_url: str, duration_s: float, wait_s: float
) -> Lease | None:
    """A lease on the target, waiting (with jitter, so waiting probes do not return in step)
    while it is busy, at most ``wait_s``; None when the target has no coordinator (404).
    Raises TargetBusy when the wait would exceed ``wait_s``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    body = SlotRequest(duration_s=min(duration_s, params.MAX_SLOT_S)).model_dump()
    timeout = aiohttp.ClientTimeout(total=params.CONNECT_TIMEOUT_S * 2)
    while True:
        async with session.post(base_url + params.SLOT_PATH, json=body, timeout=timeout) as reply:
            if reply.status == 404:
                return None
            if reply.status == 200:
                granted = SlotGranted.model_validate(await reply.json())
                return Lease(granted.lease_id, granted.duration_s)
            if reply.status != 503:
                reply.raise_for_status()
            busy = SlotBusy.model_validate(await reply.json())
        pause = busy.retry_after_s + random.uniform(0.1, 1.0)
        waited = loop.time() - started
        if waited + pause > wait_s:
            raise TargetBusy(waited, busy.retry_after_s)
        log.info("target %s busy; retrying in %.1f s", base_url, pause)
        await asyncio.sleep(pause)


async def release(session: aiohttp.ClientSession, base_url: str, lease: Lease) -> bool | None:
    """Whether the test ran alone; None when the target no longer knows the lease or cannot be
    asked (the test's own outcome, or failure, matters more than this answer)."""
    timeout = aiohttp.ClientTimeout(total=params.CONNECT_TIMEOUT_S * 2)
    url = f"{base_url}{params.SLOT_PATH}/{lease.lease_id}"
    try:
        async with session.delete(url, timeout=timeout) as reply:
            if reply.status != 200:
                log.warning("releasing slot at %s: HTTP %s", base_url, reply.status)
                return None
            return SlotReleased.model_validate(await reply.json()).ran_alone
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("releasing slot at %s failed: %s", base_url, exc)
        return None
