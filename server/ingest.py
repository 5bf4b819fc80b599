"""Probe-facing endpoints: result batches and heartbeats.

A batch is validated item by item: a malformed item is rejected with its reason and never takes
the valid ones down with it. Identity comes from the token (the registry), never from the
payload: an item naming another probe is rejected. Nothing is reported ``accepted`` before the
store has it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from probes.models import HeartbeatResult, Kind, ValidationLimits, explain, parse_result
from probes.signing import SignatureError, load_public_key, verify
from server.appkeys import METRICS, PROBE, PROBE_LOCKS, REGISTRY, SETTINGS, STORE
from server.errors import BadRequest, Forbidden, PayloadTooLarge, Unprocessable
from server.registry import ProbeRecord
from server.schemas import BatchReply, HeartbeatReply, ItemOutcome, ItemReply
from server.storage.base import StoredResult, WriteOutcome

log = logging.getLogger(__name__)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; 413 past the body limit, 400 when it is not JSON."""
    limit = request.app[SETTINGS].limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes exceeds {limit} bytes")
    raw = await request.read()  # aiohttp enforces client_max_size while reading
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc


def _lock(request: web.Request, probe_id: str) -> asyncio.Lock:
    locks = request.app[PROBE_LOCKS]
    lock = locks.get(probe_id)
    if lock is None:
        lock = locks[probe_id] = asyncio.Lock()
    return lock


@functools.lru_cache(maxsize=4096)
def _cached_key(text: str) -> Ed25519PublicKey:
    return load_public_key(text)


def signing_key(probe: ProbeRecord) -> Ed25519PublicKey:
    """The key every result of this probe must be signed with (403 until it registered one)."""
    if probe.public_key is None:
        raise Forbidden(
            f"probe {probe.probe_id!r} has not registered its signing key:"
            " run 'hamletnet-probe register' on it; nothing was stored"
        )
    return _cached_key(probe.public_key)


def _readable_id(raw: Any) -> str | None:
    if isinstance(raw, dict):
        rid = raw.get("result_id")
        if isinstance(rid, str) and len(rid) <= 64:
            return rid
    return None


async def post_results(request: web.Request) -> web.Response:
    probe: ProbeRecord = request[PROBE]
    app = request.app
    settings = app[SETTINGS]
    body = await read_json(request)
    if (
        not isinstance(body, dict)
        or set(body) != {"results"}
        or not isinstance(body["results"], list)
    ):
        raise Unprocessable('body must be an object {"results": [ ... ]} and nothing else')
    items: list[Any] = body["results"]
    if len(items) > settings.limits.max_batch_items:
        raise PayloadTooLarge(
            f"batch of {len(items)} results exceeds {settings.limits.max_batch_items};"
            " send smaller batches"
        )

    key = signing_key(probe)
    limits = ValidationLimits.current(settings.limits.max_result_age)
    replies: list[ItemReply | None] = [None] * len(items)
    valid: list[tuple[int, StoredResult]] = []
    for index, raw in enumerate(items):
        rid = _readable_id(raw)
        try:
            result = parse_result(raw, limits)
        except ValueError as exc:
            replies[index] = ItemReply(
                index=index, result_id=rid, outcome=ItemOutcome.REJECTED, reason=explain(exc)
            )
            continue
        if result.probe_id != probe.probe_id:
            replies[index] = ItemReply(
                index=index,
                result_id=rid,
                outcome=ItemOutcome.REJECTED,
                reason=f"probe_id {result.probe_id!r} is not this token's probe"
                f" {probe.probe_id!r}: a probe can write only as itself",
            )
            continue
        try:
            verify(result, key)
        except SignatureError as exc:
            replies[index] = ItemReply(
                index=index, result_id=rid, outcome=ItemOutcome.REJECTED, reason=str(exc)
            )
            continue
        valid.append((index, StoredResult(probe.identity, result)))

    if valid:
        async with _lock(request, probe.probe_id):
            outcomes = await app[STORE].write([item for _, item in valid])
        for (index, item), outcome in zip(valid, outcomes, strict=True):
            replies[index] = ItemReply(
                index=index, result_id=str(item.result.result_id), outcome=ItemOutcome(outcome)
            )
    app[REGISTRY].touch(probe.probe_id)

    done = [r for r in replies if r is not None]
    counts = {o: 0 for o in ItemOutcome}
    metrics = app[METRICS]
    for item_reply, raw in zip(done, items, strict=True):
        counts[item_reply.outcome] += 1
        kind = raw.get("kind") if isinstance(raw, dict) else None
        metrics.results.labels(
            kind=kind if kind in Kind.__members__.values() else "unknown",
            outcome=item_reply.outcome.value,
        ).inc()
    if counts[ItemOutcome.REJECTED]:
        log.info(
            "probe %s: %d of %d results rejected",
            probe.probe_id, counts[ItemOutcome.REJECTED], len(items),
        )  # fmt: skip
    batch_reply = BatchReply(
        accepted=counts[ItemOutcome.ACCEPTED],
        duplicate=counts[ItemOutcome.DUPLICATE],
        rejected=counts[ItemOutcome.REJECTED],
        items=done,
    )
    return web.json_response(batch_reply.model_dump(mode="json"))


async def post_heartbeat(request: web.Request) -> web.Response:
    probe: ProbeRecord = request[PROBE]
    app = request.app
    key = signing_key(probe)
    body = await read_json(request)
    if isinstance(body, dict):
        body.setdefault("kind", Kind.HEARTBEAT.value)
    try:
        result = parse_result(body, ValidationLimits.current(app[SETTINGS].limits.max_result_age))
    except ValueError as exc:
        raise Unprocessable(explain(exc)) from exc
    if not isinstance(result, HeartbeatResult):
        raise Unprocessable(f"a heartbeat must have kind 'heartbeat', not {result.kind!r}")
    if result.probe_id != probe.probe_id:
        raise Forbidden(
            f"probe_id {result.probe_id!r} is not this token's probe {probe.probe_id!r}"
        )
    try:
        verify(result, key)
    except SignatureError as exc:
        raise Unprocessable(str(exc)) from exc
    async with _lock(request, probe.probe_id):
        (outcome,) = await app[STORE].write([StoredResult(probe.identity, result)])
    app[REGISTRY].touch(probe.probe_id)
    app[METRICS].results.labels(kind=Kind.HEARTBEAT.value, outcome=outcome.value).inc()
    reply = HeartbeatReply(
        outcome="accepted" if outcome is WriteOutcome.ACCEPTED else "duplicate",
        server_time=datetime.now(UTC),
    )
    return web.json_response(reply.model_dump(mode="json"))
