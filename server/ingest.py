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
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from probes.models import (
    HeartbeatResult,
    Kind,
    Result,
    ValidationLimits,
    explain,
    parse_batch,
    parse_result,
)
from probes.signing import SignatureError, load_public_key, verify
from server.appkeys import (
    ALERTS,
    METRICS,
    PROBE,
    PROBE_LOCKS,
    REGISTRY,
    SAMPLE_APPENDER,
    SETTINGS,
    STORE,
    WRITE_HEALTH,
)
from server.errors import BadRequest, Forbidden, PayloadTooLarge, Unprocessable
from server.json_bounds import MAX_JSON_DEPTH, Decoded, bounded_loads, nests_deeper_than
from server.registry import ProbeRecord
from server.schemas import BatchReply, DataBudgetWord, HeartbeatReply, ItemOutcome, ItemReply
from server.storage.base import Refused, StoredResult, WriteOutcome

log = logging.getLogger(__name__)


async def read_body(request: web.Request) -> bytes:
    """The request body; 413 past the body limit."""
    limit = request.app[SETTINGS].limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes exceeds {limit} bytes")
    return await request.read()  # aiohttp enforces client_max_size while reading


def _decode_bounded(raw: bytes) -> Decoded:
    """``raw`` decoded as JSON with its too-deep items cut out; 400 when it is not JSON."""
    try:
        return bounded_loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc


def decode_json(raw: bytes) -> Any:
    """``raw`` decoded as JSON; 400 when it is not JSON or nests too deep."""
    try:
        text = raw.decode("utf-8")
        if nests_deeper_than(text):
            raise BadRequest(f"body is nested deeper than {MAX_JSON_DEPTH} levels")
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; 413 past the body limit, 400 when it is not JSON."""
    return decode_json(await read_body(request))


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


def data_budget_word(probe: ProbeRecord) -> DataBudgetWord | None:
    """What a reply tells the probe of its line's data budget: the office's, or None when it
    set none (the probe's configuration stands)."""
    if probe.data_budget_bytes is None:
        return None
    return DataBudgetWord(monthly_bytes=probe.data_budget_bytes)


def _readable_id(raw: Any) -> str | None:
    if isinstance(raw, dict):
        rid = raw.get("result_id")
        if isinstance(rid, str) and len(rid) <= 64:
            return rid
    return None


@dataclass(frozen=True, slots=True)
class _Rejected:
    """An item that is not a valid result: why, and what can be read of it."""

    reason: str
    result_id: str | None
    kind: str  # the metrics label: the item's kind if it names one, else "unknown"


def _kind_label(raw: Any) -> str:
    kind = raw.get("kind") if isinstance(raw, dict) else None
    return str(kind) if kind in Kind.__members__.values() else "unknown"


def _parse_items(raw: bytes, limits: ValidationLimits, max_items: int) -> list[Result | _Rejected]:
    """Each item of a batch body as its result or the reason it is rejected; 400, 422 or 413 for
    a body that is not a batch at all.

    A batch of valid items, the usual case, is validated in one pass (``parse_batch``); only a
    batch with something wrong in it is decoded and judged item by item.
    """
    results = parse_batch(raw, limits, max_items)
    if results is not None:
        return list(results)
    decoded = _decode_bounded(raw)
    body = decoded.value
    if (
        not isinstance(body, dict)
        or set(body) != {"results"}
        or not isinstance(body["results"], list)
    ):
        raise Unprocessable('body must be an object {"results": [ ... ]} and nothing else')
    items: list[Any] = body["results"]
    if len(items) > max_items:
        raise PayloadTooLarge(
            f"batch of {len(items)} results exceeds {max_items}; send smaller batches"
        )
    judged: list[Result | _Rejected] = []
    for index, item in enumerate(items):
        if index in decoded.too_deep:
            reason = f"item is nested deeper than {MAX_JSON_DEPTH} levels"
            judged.append(_Rejected(reason, None, "unknown"))
            continue
        try:
            judged.append(parse_result(item, limits))
        except ValueError as exc:
            judged.append(_Rejected(explain(exc), _readable_id(item), _kind_label(item)))
    return judged


def _signature_failures(results: list[Result], key: Ed25519PublicKey) -> list[str | None]:
    """For each result, why its signature does not verify, or ``None`` when it does."""
    failures: list[str | None] = []
    for result in results:
        try:
            verify(result, key)
        except SignatureError as exc:
            failures.append(str(exc))
        else:
            failures.append(None)
    return failures


async def post_results(request: web.Request) -> web.Response:
    probe: ProbeRecord = request[PROBE]
    app = request.app
    settings = app[SETTINGS]
    limits = ValidationLimits.current(settings.limits.max_result_age)
    raw = await read_body(request)
    # Off the event loop: a hostile body (1 MB of brackets) takes about a second to take apart.
    judged = await asyncio.to_thread(_parse_items, raw, limits, settings.limits.max_batch_items)
    key = signing_key(probe)

    replies: list[ItemReply | None] = [None] * len(judged)
    kinds: list[str] = []
    candidates: list[tuple[int, Result]] = []
    for index, item in enumerate(judged):
        if isinstance(item, _Rejected):
            kinds.append(item.kind)
            replies[index] = ItemReply(
                index=index, result_id=item.result_id, outcome=ItemOutcome.REJECTED,
                reason=item.reason,
            )  # fmt: skip
            continue
        kinds.append(item.kind.value)
        if item.probe_id != probe.probe_id:
            replies[index] = ItemReply(
                index=index,
                result_id=str(item.result_id),
                outcome=ItemOutcome.REJECTED,
                reason=f"probe_id {item.probe_id!r} is not this token's probe"
                f" {probe.probe_id!r}: a probe can write only as itself",
            )
            continue
        candidates.append((index, item))

    valid: list[tuple[int, StoredResult]] = []
    accepted: list[Result] = []
    stored_accepted: list[StoredResult] = []
    if candidates:
        # Ed25519 verification releases the GIL: in a worker thread it runs beside the event
        # loop instead of holding it for the whole batch (about 65 µs per result).
        failures = await asyncio.to_thread(
            _signature_failures, [result for _, result in candidates], key
        )
        for (index, result), failure in zip(candidates, failures, strict=True):
            if failure is not None:
                replies[index] = ItemReply(
                    index=index, result_id=str(result.result_id), outcome=ItemOutcome.REJECTED,
                    reason=failure,
                )  # fmt: skip
                continue
            valid.append((index, StoredResult(probe.identity, result)))

    if valid:
        async with _lock(request, probe.probe_id):
            with app[WRITE_HEALTH].writing("result store"):
                outcomes = await app[STORE].write([item for _, item in valid])
        for (index, stored), outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, Refused):  # the store's reason: the probe quarantines it
                replies[index] = ItemReply(
                    index=index, result_id=str(stored.result.result_id),
                    outcome=ItemOutcome.REJECTED, reason=outcome.reason,
                )  # fmt: skip
                continue
            if outcome is WriteOutcome.ACCEPTED:
                accepted.append(stored.result)
                stored_accepted.append(stored)
            replies[index] = ItemReply(
                index=index, result_id=str(stored.result.result_id), outcome=ItemOutcome(outcome)
            )
    app[REGISTRY].touch(probe.probe_id)
    alerts = app.get(ALERTS)
    if alerts is not None:
        # Only after the store has them; never waits (a full queue drops, the schedule goes on).
        alerts.offer(probe.probe_id, accepted)
    appender = app.get(SAMPLE_APPENDER)
    if appender is not None:
        # Only what the store accepted, after it has it; queued, never waited for.
        appender.offer(stored_accepted)

    done = [r for r in replies if r is not None]
    counts = Counter(r.outcome for r in done)
    metrics = app[METRICS]
    outcomes_by_kind = Counter(zip(kinds, [r.outcome for r in done], strict=True))
    for (kind, item_outcome), n in outcomes_by_kind.items():
        metrics.results.labels(kind=kind, outcome=item_outcome.value).inc(n)
    if counts[ItemOutcome.REJECTED]:
        log.info(
            "probe %s: %d of %d results rejected",
            probe.probe_id, counts[ItemOutcome.REJECTED], len(judged),
        )  # fmt: skip
    batch_reply = BatchReply(
        accepted=counts[ItemOutcome.ACCEPTED],
        duplicate=counts[ItemOutcome.DUPLICATE],
        rejected=counts[ItemOutcome.REJECTED],
        items=done,
        data_budget=data_budget_word(probe),
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
        with app[WRITE_HEALTH].writing("result store"):
            (outcome,) = await app[STORE].write([StoredResult(probe.identity, result)])
    app[REGISTRY].touch(probe.probe_id)
    if isinstance(outcome, Refused):
        app[METRICS].results.labels(kind=Kind.HEARTBEAT.value, outcome="rejected").inc()
        raise Unprocessable(outcome.reason)
    app[METRICS].results.labels(kind=Kind.HEARTBEAT.value, outcome=outcome.value).inc()
    reply = HeartbeatReply(
        outcome="accepted" if outcome is WriteOutcome.ACCEPTED else "duplicate",
        server_time=datetime.now(UTC),
        data_budget=data_budget_word(probe),
    )
    return web.json_response(reply.model_dump(mode="json"))
