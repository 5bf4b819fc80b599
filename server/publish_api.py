"""Publishing compliance to the result store, where Grafana reads it: on demand,
``POST /api/v1/admin/compliance/publish?period=2026-11`` (admin token, like every admin route),
and on a schedule, the current and the previous Vietnam-time month every hour.

The handler and the schedule only call ``compliance.publish.publish``; it evaluates each month
with the engine and replaces that month's rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from aiohttp import web

from server.appkeys import REGISTRY, SETTINGS, STORE
from server.compliance.publish import ComplianceStore, publish
from server.compliance.stats import Period, month_of, parse_period
from server.compliance_api import PLAN
from server.errors import BadRequest, StorageUnavailable

log = logging.getLogger(__name__)

#: How often the schedule publishes, and how long after start it first does (not at once: a
#: restart should not compete with the probes' catch-up uploads). hamletnet's choice.
PUBLISH_EVERY = timedelta(hours=1)
FIRST_PUBLISH_AFTER = timedelta(minutes=5)
#: (first after, every) of the schedule in seconds, set before the app starts (tests shorten it).
PUBLISH_SCHEDULE = web.AppKey("publish_schedule", tuple[float, float])


def _this_and_last_month(now: datetime) -> Period:
    this = month_of(now)
    last = month_of(this.start - timedelta(microseconds=1))
    return Period(f"{last.label}..{this.label}", "range", last.start, this.end)


async def _publish(app: web.Application, period: Period, now: datetime) -> dict[str, int]:
    return await publish(app[STORE], app[REGISTRY], app[SETTINGS], app[PLAN], period, now=now)


async def publish_compliance(request: web.Request) -> web.Response:
    """Evaluate and replace the compliance rows of each month of ``period`` (default: the
    current month); the reply counts the rows written per month."""
    now = datetime.now(UTC)
    unknown = sorted(set(request.query) - {"period"})
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {', '.join(map(repr, unknown))}; use period")
    text = request.query.get("period", "").strip()
    period = parse_period(text) if text else month_of(now)
    if not isinstance(request.app[STORE], ComplianceStore):
        raise BadRequest(f"the store {request.app[STORE].name} cannot keep compliance rows")
    months = await _publish(request.app, period, now)
    return web.json_response({"period": period.label, "rows_by_month": months})


async def _schedule(app: web.Application) -> None:
    """Publish this and last month now and then; a failed round is logged and the next one
    runs as planned (a store that is down, or a bug in one month's data, never ends the
    schedule)."""
    first_after, every = app[PUBLISH_SCHEDULE]
    await asyncio.sleep(first_after)
    while True:
        now = datetime.now(UTC)
        try:
            months = await _publish(app, _this_and_last_month(now), now)
            log.info("published compliance rows: %s", months)
        except StorageUnavailable as exc:
            log.warning("could not publish compliance rows, will try again: %s", exc)
        except Exception:
            log.exception("publishing compliance rows failed, will try again")
        await asyncio.sleep(every)


async def _schedule_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_schedule(app), name="compliance-publish")
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def add_publish_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/admin/compliance/publish", publish_compliance)
    app[PUBLISH_SCHEDULE] = (FIRST_PUBLISH_AFTER.total_seconds(), PUBLISH_EVERY.total_seconds())
    app.cleanup_ctx.append(_schedule_ctx)


def publish_path(admin_auth: list[dict[str, list[str]]], error_ref: dict[str, str]) -> dict:
    """The OpenAPI path item of ``POST /api/v1/admin/compliance/publish``."""
    return {
        "post": {
            "summary": "Publish compliance verdicts to the result store (for Grafana)",
            "description": "Evaluates each month of the period and replaces its rows in the"
            " 'compliance' measurement (InfluxDB) or table (SQLite); re-running never"
            " duplicates. The server also does this every hour for this and last month.",
            "security": admin_auth,
            "parameters": [
                {
                    "name": "period",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "2026-11, 2026-Q4, 2026 or FROM..TO; default: this month.",
                }
            ],
            "responses": {
                "200": {
                    "description": "Rows written per month",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["period", "rows_by_month"],
                                "properties": {
                                    "period": {"type": "string"},
                                    "rows_by_month": {
                                        "type": "object",
                                        "additionalProperties": {"type": "integer"},
                                    },
                                },
                            }
                        }
                    },
                },
                "400": {
                    "description": "A period that does not parse, or a store without"
                    " compliance rows",
                    "content": {"application/json": {"schema": error_ref}},
                },
                "401": {"description": "Missing or unknown admin token"},
                "503": {
                    "description": "Storage unavailable.",
                    "content": {"application/json": {"schema": error_ref}},
                },
            },
        }
    }
