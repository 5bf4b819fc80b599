"""Typed keys for everything the app and its requests carry (aiohttp ``AppKey``)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from server.alerts.service import AlertService
from server.compliance.cached_samples import CacheAppender
from server.health import WriteHealth
from server.metrics import Metrics
from server.ratelimit import RateLimiter
from server.registry import ProbeRecord, Registry
from server.settings import Settings
from server.storage.base import ResultStore
from server.target.coordinator import SlotCoordinator
from server.target.payload import Payload

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", Registry)
STORE = web.AppKey("store", ResultStore)
LIMITER = web.AppKey("limiter", RateLimiter)
#: Failed authentications per source address (``ratelimit.source_key``).
AUTH_FAILURES = web.AppKey("auth_failures", RateLimiter)
METRICS = web.AppKey("metrics", Metrics)
#: Whether the last writes to the result store and the registry failed (for /healthz).
WRITE_HEALTH = web.AppKey("write_health", WriteHealth)
PROBE_LOCKS = web.AppKey("probe_locks", dict[str, asyncio.Lock])
#: The measurement target (server/target): its random payload and its slot coordinator.
PAYLOAD = web.AppKey("payload", Payload)
SLOTS = web.AppKey("slots", SlotCoordinator)
#: Alerts (server/alerts), present only when ``alerts_file`` is set.
ALERTS = web.AppKey("alerts", AlertService)
#: Appends accepted bandwidth results to the compliance sample cache (``cached_samples``).
SAMPLE_APPENDER = web.AppKey("sample_appender", CacheAppender)

#: Request-scoped: the authenticated probe (set by the auth middleware).
PROBE = web.RequestKey("probe", ProbeRecord)
