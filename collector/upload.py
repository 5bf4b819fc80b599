"""Delivers spooled results to the server: oldest first, in batches, until the spool is empty.

What to do with each reply is decided in one pure function, ``classify`` (telegraf's
``outputs/influxdb/http.go`` does the same, but drops where we quarantine): acknowledged items
leave the spool, rejected items are set aside with their reason, and everything else stays for
the next try after an exponential, jittered back-off.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import aiohttp

from collector.connection_errors import describe
from collector.spool import AsyncSpool, SpooledItem
from probes.models import ResultBase

log = logging.getLogger(__name__)

RESULTS_PATH = "/api/v1/results"
HEARTBEAT_PATH = "/api/v1/heartbeat"

#: Told every reply the server sends with 200 (its body as decoded), for what the server says
#: besides the items' outcomes (the line's data budget); it must not raise.
ReplyListener = Callable[[Any], Awaitable[None]]


class Next(StrEnum):
    """What the uploader does after a reply."""

    CONTINUE = "continue"  # the batch is settled; send the next one now
    SHRINK = "shrink"  # the server refused the batch as a whole: send smaller ones
    BACKOFF = "backoff"  # server or link trouble: wait, then resend the same items
    HOLD = "hold"  # our credentials are refused: wait long, keep everything, tell the operator


@dataclass(frozen=True, slots=True)
class Decision:
    next: Next
    ack: tuple[str, ...] = ()
    quarantine: tuple[tuple[str, str], ...] = ()
    retry_after_s: float | None = None
    message: str = ""


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def classify(
    status: int | None,
    body: Any,
    sent_ids: Sequence[str],
    retry_after: str | None = None,
) -> Decision:
    """Decide what a reply (or ``status=None`` for no reply at all) means for the sent batch.

    - 200: each item's outcome: accepted/duplicate are acknowledged, rejected are quarantined with
      the server's reason; an item the reply does not mention stays for the next try.
    - 413, 400, 422: the batch as a whole was refused; halve it until the one item at fault is
      alone, and quarantine that one with the server's words (never retried forever).
    - 429 and 5xx, no reply, or a 2xx reply that cannot be read: back off and resend.
    - 401, 403, 404 and other 4xx: hold everything and back off long; someone must act
      (register the probe, enable it, fix server_url).
    """
    detail = body.get("detail") if isinstance(body, dict) else None
    if status is None:
        return Decision(Next.BACKOFF, message="no reply from the server")
    if status == 200 and isinstance(body, dict) and isinstance(body.get("items"), list):
        ack: list[str] = []
        quarantine: list[tuple[str, str]] = []
        for item in body["items"]:
            index = item.get("index") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(sent_ids):
                continue
            outcome = item.get("outcome")
            if outcome in ("accepted", "duplicate"):
                ack.append(sent_ids[index])
            elif outcome == "rejected":
                quarantine.append((sent_ids[index], str(item.get("reason") or "rejected")))
        if not ack and not quarantine:
            return Decision(Next.BACKOFF, message="the reply settled none of the sent items")
        return Decision(Next.CONTINUE, tuple(ack), tuple(quarantine))
    if 200 <= status < 300:
        # Stored or not, we cannot tell: resend (the server answers "duplicate" for what it has).
        return Decision(Next.BACKOFF, message=f"unreadable {status} reply from the server")
    if status in (400, 413, 422):
        if len(sent_ids) == 1:
            reason = f"server refused it ({status}): {detail or body!r}"
            return Decision(Next.CONTINUE, quarantine=((sent_ids[0], reason),))
        return Decision(Next.SHRINK, message=f"server refused the batch ({status}): {detail}")
    if status == 429 or status >= 500:
        return Decision(
            Next.BACKOFF,
            retry_after_s=_retry_after(retry_after),
            message=f"server answered {status}: {detail}",
        )
    return Decision(
        Next.HOLD, message=f"server refused our credentials or URL ({status}): {detail}"
    )


@dataclass
class Backoff:
    """Exponential back-off with full jitter: the n-th wait is uniform in
    [min_s, min(max_s, min_s·2^n)], so many probes coming back after an outage do not
    reconnect in step (the "full jitter" scheme of Brooker, AWS Architecture Blog, 2015)."""

    min_s: float
    max_s: float
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.min_s * 2**self.attempts)
        self.attempts += 1
        return self.rng.uniform(self.min_s, max(self.min_s, ceiling))

    def reset(self) -> None:
        self.attempts = 0


@dataclass
class UploadReport:
    sent: int = 0
    acknowledged: int = 0
    quarantined: int = 0
    last_error: str | None = None
    last_success_at: datetime | None = None


def decode_reply(raw: bytes) -> Any:
    """The reply's JSON, or (any bytes at all: not JSON, not UTF-8) its first 200 characters as
    text for the log; never an exception, so no reply can end the upload task."""
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return raw[:200].decode("utf-8", errors="replace")


def batch_body(items: Sequence[SpooledItem]) -> bytes:
    """The request body, built from the spooled JSON as it is: no re-encoding, no re-signing."""
    return b'{"results":[' + b",".join(i.payload.encode("utf-8") for i in items) + b"]}"


class Uploader:
    """Drains the spool to ``server_url`` with ``token``; one instance per agent."""

    def __init__(
        self,
        spool: AsyncSpool,
        http: aiohttp.ClientSession,
        *,
        server_url: str,
        token: str,
        batch_size: int,
        max_batch_bytes: int,
        backoff: Backoff,
        ssl_context: ssl.SSLContext | bool = True,
        timeout_s: float = 30.0,
        on_reply: ReplyListener | None = None,
    ) -> None:
        self.spool = spool
        self.http = http
        self.url = server_url.rstrip("/") + RESULTS_PATH
        self.heartbeat_url = server_url.rstrip("/") + HEARTBEAT_PATH
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.backoff = backoff
        self.ssl = ssl_context
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.report = UploadReport()
        self.on_reply = on_reply

    async def _post(self, items: Sequence[SpooledItem]) -> tuple[int | None, Any, str | None]:
        try:
            async with self.http.post(
                self.url,
                data=batch_body(items),
                headers=self._headers,
                ssl=self.ssl,
                timeout=self.timeout,
            ) as resp:
                return resp.status, decode_reply(await resp.read()), resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.report.last_error = f"cannot reach the server: {describe(exc, self.url)}"
            return None, None, None

    async def send_heartbeat(self, result: ResultBase) -> bool:
        """Post one heartbeat directly, bypassing the spool (used when the spool cannot take
        it); best effort: True if the server stored it."""
        try:
            async with self.http.post(
                self.heartbeat_url,
                data=result.model_dump_json().encode(),
                headers=self._headers,
                ssl=self.ssl,
                timeout=self.timeout,
            ) as resp:
                if resp.status != 200:
                    return False
                body = decode_reply(await resp.read())
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        if self.on_reply is not None:
            await self.on_reply(body)
        return True

    async def drain(self) -> float | None:
        """Send batches until the spool is empty (returns None) or the server/link says wait
        (returns the seconds to wait before the next attempt)."""
        limit = self.batch_size
        while True:
            items = await self.spool.oldest(limit, max_bytes=self.max_batch_bytes)
            if not items:
                self.backoff.reset()
                return None
            ids = [i.result_id for i in items]
            status, body, retry_after = await self._post(items)
            self.report.sent += len(items)
            decision = classify(status, body, ids, retry_after)
            if status == 200 and self.on_reply is not None:
                await self.on_reply(body)
            if decision.ack:
                self.report.acknowledged += await self.spool.ack(decision.ack)
            if decision.quarantine:
                self.report.quarantined += await self.spool.quarantine(decision.quarantine)
                for result_id, reason in decision.quarantine:
                    log.warning("result %s rejected by the server: %s", result_id, reason)
            if decision.next is Next.CONTINUE:
                self.report.last_success_at = datetime.now(UTC)
                self.report.last_error = None
                self.backoff.reset()
                limit = self.batch_size
                continue
            if decision.next is Next.SHRINK:
                limit = max(1, len(items) // 2)
                continue
            self.report.last_error = decision.message or self.report.last_error
            delay = self.backoff.next_delay()
            if decision.next is Next.HOLD:
                delay = self.backoff.max_s
                log.error("upload held: %s", decision.message)
            if decision.retry_after_s is not None:
                delay = max(delay, decision.retry_after_s)
            log.info("upload paused %.1f s: %s", delay, self.report.last_error)
            return delay
