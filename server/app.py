"""The aiohttp application: ``create_app(settings)`` is used by ``run``, the demo and the tests.

Middlewares, outermost first: errors (the one place exceptions become statuses and JSON), then
authentication with its limits (failed attempts per source address, requests per probe), then the
per-request time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server import __version__
from server.admin import (
    add_admin_routes,
    create_probe,
    get_probe,
    list_hamlets,
    list_probes,
    update_probe,
)
from server.alerts.config import AlertsConfig, load_alerts
from server.alerts.delivery import Deliverer
from server.alerts.service import AlertService
from server.alerts.store import FILE_NAME, AlertStore
from server.appkeys import (
    ALERTS,
    AUTH_FAILURES,
    LIMITER,
    METRICS,
    PROBE,
    PROBE_LOCKS,
    REGISTRY,
    SAMPLE_APPENDER,
    SETTINGS,
    STORE,
    WRITE_HEALTH,
)
from server.compliance.cached_samples import CacheAppender
from server.compliance_api import add_compliance_routes
from server.enrol import post_register
from server.errors import (
    AIOHTTP_CODES,
    DiskFull,
    Forbidden,
    RateLimited,
    RequestTimeout,
    ServerError,
    StorageUnavailable,
    Unauthorized,
    WritesFailing,
    error_response,
)
from server.health import WriteHealth, disk_problem, disk_space
from server.ingest import post_heartbeat, post_results
from server.metrics import Metrics
from server.openapi import build_openapi
from server.publish_api import add_publish_routes
from server.ratelimit import RateLimiter, source_key
from server.registry import LAST_SEEN_FLUSH_S, Registry
from server.schemas import HealthReply
from server.settings import Settings
from server.storage import month_cache
from server.storage.base import ResultStore
from server.storage.month_cache import MonthCache
from server.target.app import create_target_app
from server.ui import index_page

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROBE_PATHS = ("/api/v1/results", "/api/v1/heartbeat", "/api/v1/register")
ADMIN_PREFIX = "/api/v1/admin/"
#: Where the ingest server also serves the measurement target (``server/target``).
TARGET_PREFIX = "/target/"
STORE_RETRY_S = 5.0


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    try:
        response = await handler(request)
    except RateLimited as exc:
        retry = str(max(1, round(exc.retry_after_s + 0.5)))
        response = error_response(exc.status, exc.code, exc.detail, **{"Retry-After": retry})
    except ServerError as exc:
        if isinstance(exc, StorageUnavailable):
            request.app[METRICS].storage_errors.inc()
            log.warning("storage unavailable on %s: %s", route, exc.detail)
        response = error_response(exc.status, exc.code, exc.detail)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = AIOHTTP_CODES.get(exc.status, "http_error")
        response = error_response(exc.status, code, exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, route)
        response = error_response(500, "internal", "unexpected server error; see the server log")
    metrics = request.app[METRICS]
    metrics.requests.labels(route=route, status=str(response.status)).inc()
    metrics.latency.labels(route=route).observe(time.perf_counter() - started)
    return response


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    return token.strip()


async def _authenticate(request: web.Request) -> None:
    """Check the bearer token of a probe or admin request; the probe's record goes in the
    request. Raises ``Unauthorized`` when the token is missing or unknown."""
    path = request.path
    if path.startswith(ADMIN_PREFIX):
        token = _bearer(request)
        admin = request.app[SETTINGS].admin_token
        if admin is not None and hmac.compare_digest(
            token.encode(), admin.get_secret_value().encode()
        ):
            return
        if await request.app[REGISTRY].authenticate(token) is not None:
            raise Forbidden("a probe token cannot use the admin API")
        if admin is None:
            raise Forbidden("the admin API is disabled: set admin_token in the configuration")
        raise Unauthorized("unknown admin token")
    token = _bearer(request)
    probe = await request.app[REGISTRY].authenticate(token)
    if probe is None:
        raise Unauthorized("unknown probe token; register the probe to get one")
    if not probe.enabled:
        raise Forbidden(f"probe {probe.probe_id!r} is disabled")
    wait = request.app[LIMITER].acquire(probe.probe_id)
    if wait > 0:
        raise RateLimited(f"probe {probe.probe_id!r} is over its request rate", wait)
    request[PROBE] = probe


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if not (path.startswith(ADMIN_PREFIX) or path in PROBE_PATHS):
        return await handler(request)
    if request.app[SETTINGS].limits.auth_failure_burst == 0:
        await _authenticate(request)
        return await handler(request)
    # An address over its failures is refused before its token is even looked at: checking it
    # first would tell a guesser which guess was right, however many it sent.
    failures = request.app[AUTH_FAILURES]
    source = source_key(request.remote)
    wait = failures.wait_s(source)
    if wait > 0:
        raise RateLimited("too many failed authentications from this address; retry later", wait)
    try:
        await _authenticate(request)
    except Unauthorized:
        failures.acquire(source)
        if failures.wait_s(source) > 0:
            log.warning("authentication failures from %s over the limit: answering 429", source)
        raise
    return await handler(request)


@web.middleware
async def timeout_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    limit = request.app[SETTINGS].limits.request_timeout_s
    try:
        async with asyncio.timeout(limit):
            return await handler(request)
    except TimeoutError as exc:
        raise RequestTimeout(f"request took longer than {limit} s; nothing was stored") from exc


async def healthz(request: web.Request) -> web.Response:
    """200 only when the store answers, its last writes did not fail and data_dir has room."""
    app = request.app
    store = app[STORE]
    await store.check()
    data_dir = app[SETTINGS].data_dir
    try:
        space = await asyncio.to_thread(disk_space, data_dir)
    except OSError as exc:
        raise DiskFull(f"cannot read the free space of {data_dir}: {exc}") from exc
    problem = disk_problem(data_dir, space, app[SETTINGS].limits.min_free_disk_mb)
    if problem is not None:
        raise DiskFull(problem)
    failures = app[WRITE_HEALTH].failures
    if failures:
        raise WritesFailing(
            "; ".join(f"the last write to the {w} failed: {d}" for w, d in failures.items())
        )
    return web.json_response(HealthReply(status="ok", storage=store.name).model_dump())


async def metrics_endpoint(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    probes = await request.app[REGISTRY].probes()
    metrics.probes_enabled.set(sum(1 for p in probes if p.enabled))
    return web.Response(
        body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def openapi_endpoint(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(__version__))


def make_store(settings: Settings) -> ResultStore:
    """The configured result store: InfluxDB when configured, else embedded SQLite."""
    from server.storage.influx import InfluxStore
    from server.storage.sqlite import SqliteStore

    influx = settings.influxdb
    if influx is None:
        return SqliteStore(settings.data_dir / "results.sqlite3")
    return InfluxStore(
        influx.url,
        influx.database,
        retention_policy=influx.retention_policy,
        username=influx.username,
        password=influx.password.get_secret_value() if influx.password else None,
        token=influx.token.get_secret_value() if influx.token else None,
        measurements=influx.measurements,
        timeout_s=influx.timeout_s,
        create_database=influx.create_database,
        ledger_path=settings.data_dir / "influx-ledger.sqlite3",
        max_result_age=settings.limits.max_result_age,
    )


async def _registry_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    registry = Registry(settings.data_dir / "registry.sqlite3")
    await registry.open()
    await registry.sync_hamlets(settings.hamlets, settings.communes)
    app[REGISTRY] = registry

    async def flush_forever() -> None:
        while True:
            await asyncio.sleep(LAST_SEEN_FLUSH_S)
            try:
                with app[WRITE_HEALTH].writing("registry"):
                    await registry.flush_last_seen()
            except StorageUnavailable as exc:
                log.warning("could not record last-seen times: %s", exc.detail)

    flusher = asyncio.create_task(flush_forever(), name="last-seen-flush")
    yield
    flusher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flusher
    await registry.close()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE]

    async def start_until_up() -> None:
        # The server answers 503 until the store is up, instead of refusing to start: a
        # database restarting after a power cut must not take the ingest endpoint down with it.
        while True:
            try:
                await store.start()
                log.info("result store %s is up", store.name)
                return
            except StorageUnavailable as exc:
                log.warning(
                    "result store not ready (%s); retrying in %s s", exc.detail, STORE_RETRY_S
                )
                await asyncio.sleep(STORE_RETRY_S)

    try:
        await store.start()
        starter: asyncio.Task[None] | None = None
    except StorageUnavailable as exc:
        log.warning("result store not ready at start-up: %s", exc.detail)
        starter = asyncio.create_task(start_until_up(), name="store-start")
    yield
    if starter is not None:
        starter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starter
    await store.close()


def _alerts_ctx(config: AlertsConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """The alert service and its outbox worker, for the app's lifetime (``alerts_file`` set)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = AlertStore(app[SETTINGS].data_dir / FILE_NAME)
        await store.open()
        deliverer = Deliverer(store, config.routing)
        service = AlertService(config, app[SETTINGS], app[REGISTRY], app[STORE], store, deliverer)
        app[ALERTS] = service
        tasks = [
            asyncio.create_task(deliverer.run(), name="alerts-outbox"),
            asyncio.create_task(service.run(), name="alerts-evaluate"),
        ]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await deliverer.close()
        await store.close()

    return ctx


async def _sample_cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """The compliance sample cache's appender and its worker, for the app's lifetime."""
    cache = MonthCache(app[SETTINGS].data_dir / month_cache.FILE_NAME)
    await cache.open()
    appender = CacheAppender(cache)
    app[SAMPLE_APPENDER] = appender
    task = asyncio.create_task(appender.run(), name="sample-cache-append")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await cache.close()


def create_app(settings: Settings, store: ResultStore | None = None) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, auth_middleware, timeout_middleware],
        client_max_size=settings.limits.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[STORE] = store if store is not None else make_store(settings)
    app[METRICS] = Metrics()
    app[WRITE_HEALTH] = WriteHealth()
    app[LIMITER] = RateLimiter(settings.limits.requests_per_s, settings.limits.burst)
    app[AUTH_FAILURES] = RateLimiter(
        settings.limits.auth_failures_per_min / 60, settings.limits.auth_failure_burst
    )
    app[PROBE_LOCKS] = {}
    app.cleanup_ctx.extend([_registry_ctx, _store_ctx, _sample_cache_ctx])
    if settings.alerts_file is not None:
        # Read now, so a bad alerts file stops the start with its key named.
        app.cleanup_ctx.append(_alerts_ctx(load_alerts(settings.alerts_file)))
    app.router.add_get("/", index_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/api/v1/openapi.json", openapi_endpoint)
    app.router.add_post("/api/v1/results", post_results)
    app.router.add_post("/api/v1/heartbeat", post_heartbeat)
    app.router.add_post("/api/v1/register", post_register)
    app.router.add_get("/api/v1/admin/probes", list_probes)
    app.router.add_post("/api/v1/admin/probes", create_probe)
    app.router.add_get("/api/v1/admin/probes/{probe_id}", get_probe)
    app.router.add_patch("/api/v1/admin/probes/{probe_id}", update_probe)
    app.router.add_get("/api/v1/admin/hamlets", list_hamlets)
    add_admin_routes(app.router)
    add_compliance_routes(app, settings)
    add_publish_routes(app)
    if settings.serve_target:
        # The bandwidth measurement target (usually alone: ``hamletnet-server target``).
        capacity = settings.target
        app.add_subapp(TARGET_PREFIX, create_target_app(
            max_tests=capacity.max_concurrent_tests,
            max_aggregate_mbps=capacity.max_aggregate_mbps,
        ))  # fmt: skip
    return app
