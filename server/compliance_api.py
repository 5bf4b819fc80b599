"""Compliance over HTTP: ``GET /api/v1/compliance`` (JSON), the office's page ``GET /compliance``
and the methodology they cite, ``GET /docs/methodology``.

Read-only office data without secrets, so like the overview page at ``/`` it needs no token. The
handlers only parse the query and call ``compliance.engine.evaluate``; the JSON and the page both
come from ``compliance.report_json``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from server.appkeys import REGISTRY, SETTINGS, STORE
from server.compliance.engine import ComplianceReport, evaluate
from server.compliance.page import render_page
from server.compliance.plan import Plan, load_plan
from server.compliance.report_json import report_to_json
from server.compliance.stats import Period, month_of, parse_period
from server.errors import BadRequest, NotFound
from server.settings import Settings

PLAN = web.AppKey("compliance_plan", Plan)
QUERY_KEYS = ("period", "commune", "hamlet", "isp")
#: docs/methodology.md in a source checkout (an installed server may not carry it).
METHODOLOGY_FILE = Path(__file__).resolve().parents[1] / "docs" / "methodology.md"


def default_period(now: datetime) -> Period:
    """The last complete Vietnam-time month: the current one is still gathering samples."""
    return month_of(month_of(now).start - timedelta(microseconds=1))


def _query(request: web.Request, now: datetime) -> tuple[Period, dict[str, str | None]]:
    unknown = sorted(set(request.query) - set(QUERY_KEYS))
    if unknown:
        raise BadRequest(
            f"unknown query parameter(s) {', '.join(map(repr, unknown))};"
            f" use {', '.join(QUERY_KEYS)}"
        )
    for key in QUERY_KEYS:
        if len(request.query.getall(key, [])) > 1:
            raise BadRequest(f"query parameter {key!r} is given more than once")
    text = request.query.get("period", "").strip()
    period = parse_period(text) if text else default_period(now)
    filters = {k: request.query.get(k, "").strip() or None for k in QUERY_KEYS[1:]}
    return period, filters


async def _report(request: web.Request) -> ComplianceReport:
    now = datetime.now(UTC)
    period, filters = _query(request, now)
    app = request.app
    return await evaluate(
        app[STORE], app[REGISTRY], app[SETTINGS], app[PLAN], period, now=now, **filters
    )


async def compliance_json(request: web.Request) -> web.Response:
    """Every indicator per commune, hamlet and line, each figure with n, aggregation, window,
    rule id and source."""
    return web.json_response(report_to_json(await _report(request)))


async def compliance_page(request: web.Request) -> web.Response:
    report = report_to_json(await _report(request))
    html = render_page(report, illustrative=request.app[SETTINGS].demo)
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def methodology(request: web.Request) -> web.Response:
    """docs/methodology.md as plain text (Markdown), the rulebook the page and exports cite."""
    try:
        text = METHODOLOGY_FILE.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFound(
            f"{METHODOLOGY_FILE} is not on this server; read docs/methodology.md in the"
            " hamletnet repository"
        ) from exc
    return web.Response(text=text, content_type="text/markdown", charset="utf-8")


def add_compliance_routes(app: web.Application, settings: Settings) -> None:
    """Load the plan (a bad one stops the server with a ``ConfigError`` naming the key) and
    serve the compliance API, page and methodology."""
    app[PLAN] = load_plan(settings.plan_path)
    app.router.add_get("/api/v1/compliance", compliance_json)
    app.router.add_get("/compliance", compliance_page)
    app.router.add_get("/docs/methodology", methodology)


def compliance_path(report_ref: dict[str, str], error_ref: dict[str, str]) -> dict[str, Any]:
    """The OpenAPI path item of ``GET /api/v1/compliance``."""
    param = {"in": "query", "required": False, "schema": {"type": "string"}}
    return {
        "get": {
            "summary": "Compliance with the commune plan, per commune, hamlet and line",
            "description": "Every figure carries n, aggregation, window, rule id and source"
            " (docs/methodology.md, served at /docs/methodology). No token: read-only office"
            " data, like the overview page.",
            "security": [],
            "parameters": [
                {
                    "name": "period",
                    **param,
                    "description": "2026-11, 2026-Q4, 2026, 2026-11-05 or FROM..TO (Vietnam"
                    " time); default: the last complete month.",
                },
                {"name": "commune", **param, "description": "A configured commune code."},
                {"name": "hamlet", **param, "description": "A configured hamlet code."},
                {"name": "isp", **param, "description": "Only this ISP's lines."},
            ],
            "responses": {
                "200": {
                    "description": "The report",
                    "content": {"application/json": {"schema": report_ref}},
                },
                "400": {
                    "description": "A period that does not parse, an unknown commune, hamlet,"
                    " ISP or query parameter; the detail names it.",
                    "content": {"application/json": {"schema": error_ref}},
                },
                "503": {
                    "description": "Storage unavailable.",
                    "content": {"application/json": {"schema": error_ref}},
                },
            },
        }
    }
