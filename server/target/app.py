"""The measurement target as an aiohttp application: ``create_target_app()``.

Run alone (``hamletnet-server target --listen ADDR:PORT``) or mounted under ``/target/`` of the
ingest server. Endpoints (paths in ``probes/bandwidth/params.py``):

- ``GET /download?bytes=N`` N random bytes; ``POST /upload`` discards its body;
- ``GET /latency`` an empty reply, for HTTP round trips;
- ``POST /slot`` / ``DELETE /slot/{lease_id}`` the coordinator (``coordinator.py``): up to
  ``max_tests`` tests at once within an aggregate-rate budget, beyond them 503 with Retry-After;
- the Speedtest Mini and LibreSpeed backend protocols (``compat.py``).

Transfers may carry ``?lease=ID`` (or the ``X-Hamletnet-Lease`` header) to tie them to a slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from pydantic import ValidationError

from probes.bandwidth import params
from probes.bandwidth.slot import SlotBusy, SlotGranted, SlotReleased, SlotRequest
from server.appkeys import PAYLOAD, SLOTS
from server.target import compat
from server.target.coordinator import Busy, SlotCoordinator
from server.target.payload import Payload
from server.target.transfer import discard_body, send_random, tracked

INDEX = f"""hamletnet measurement target

GET  {params.DOWNLOAD_PATH}?bytes=N     N random bytes
POST {params.UPLOAD_PATH}               body discarded
GET  {params.LATENCY_PATH}              empty reply
POST {params.SLOT_PATH}                 {{"duration_s": D}} -> a lease, or busy + Retry-After
DELETE {params.SLOT_PATH}/LEASE_ID      -> {{"ran_alone": true|false}}
Speedtest Mini: speedtest/latency.txt, speedtest/random350x350.jpg, speedtest/upload.php
LibreSpeed: garbage.php, empty.php, getIP.php (also under backend/)

upload_extension: "php"
"""


def _byte_count(request: web.Request, name: str, default: int, unit: int = 1) -> int:
    raw = request.query.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}={raw!r} is not an integer") from None
    if not 0 <= value * unit <= params.ENDLESS_BYTES:
        raise web.HTTPBadRequest(text=f"{name}={raw} is outside 0..{params.ENDLESS_BYTES // unit}")
    return value * unit


async def index(request: web.Request) -> web.Response:
    return web.Response(text=INDEX)


async def download(request: web.Request) -> web.StreamResponse:
    count = _byte_count(request, "bytes", params.ENDLESS_BYTES)
    response = web.StreamResponse(
        headers={"Content-Type": "application/octet-stream", "Cache-Control": "no-store"}
    )
    with tracked(request, "download") as moved:
        moved.byte_count = await send_random(request, response, request.app[PAYLOAD], count)
    return response


async def upload(request: web.Request) -> web.Response:
    with tracked(request, "upload") as moved:
        body = await discard_body(request)
        moved.byte_count = body.byte_count
    response = web.json_response({"bytes": body.byte_count}, headers={"Cache-Control": "no-store"})
    if not body.reusable:
        response.force_close()
    return response


async def latency(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


async def request_slot(request: web.Request) -> web.Response:
    try:
        wanted = SlotRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        raise web.HTTPBadRequest(text=f"slot request: {exc.errors(include_url=False)}") from None
    outcome = request.app[SLOTS].request(request.remote or "", wanted.duration_s)
    if isinstance(outcome, Busy):
        retry = SlotBusy(retry_after_s=round(outcome.retry_after_s, 3))
        return web.json_response(
            retry.model_dump(), status=503,
            headers={"Retry-After": str(max(1, round(outcome.retry_after_s + 0.5)))},
        )  # fmt: skip
    granted = SlotGranted(lease_id=outcome.lease_id, duration_s=outcome.duration_s)
    return web.json_response(granted.model_dump())


async def release_slot(request: web.Request) -> web.Response:
    ran_alone = request.app[SLOTS].release(request.match_info["lease_id"])
    if ran_alone is None:
        raise web.HTTPNotFound(text="no such lease (released already, or expired long ago)")
    return web.json_response(SlotReleased(ran_alone=ran_alone).model_dump())


async def _payload_ctx(app: web.Application) -> AsyncIterator[None]:
    app[PAYLOAD] = Payload.create()
    yield
    app[PAYLOAD].close()


def create_target_app(
    max_slot_s: float = params.MAX_SLOT_S,
    *,
    max_tests: int = 1,
    max_aggregate_mbps: float | None = None,
) -> web.Application:
    """The target admitting ``max_tests`` concurrent tests whose expected rates fit in
    ``max_aggregate_mbps`` (settings ``target.*``; ``coordinator.py``)."""
    app = web.Application()
    app[SLOTS] = SlotCoordinator(
        max_slot_s=max_slot_s, max_tests=max_tests, max_aggregate_mbps=max_aggregate_mbps
    )
    app.cleanup_ctx.append(_payload_ctx)
    app.on_response_prepare.append(compat.cors_headers)
    app.router.add_get("/", index)
    app.router.add_get(params.DOWNLOAD_PATH, download)
    app.router.add_post(params.UPLOAD_PATH, upload)
    app.router.add_get(params.LATENCY_PATH, latency)
    app.router.add_post(params.SLOT_PATH, request_slot)
    app.router.add_delete(params.SLOT_PATH + "/{lease_id}", release_slot)
    compat.add_routes(app)
    return app
