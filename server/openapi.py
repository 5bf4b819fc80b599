"""The OpenAPI 3.1 document, built from the same pydantic models the handlers use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from probes.models import Result
from server.admin import CSV_COLUMNS, AlertAck, AlertMute
from server.compliance.report_json import FIGURE_SCHEMA, REPORT_SCHEMA
from server.compliance_api import compliance_path
from server.publish_api import publish_path
from server.schemas import (
    ACTOR_HEADER,
    BatchReply,
    CsvImportReply,
    ErrorReply,
    HamletView,
    HandEntryCreate,
    HandEntryView,
    HealthReply,
    HeartbeatReply,
    KeyRegistration,
    LineChangeView,
    ProbeCreate,
    ProbeCreated,
    ProbeUpdate,
    ProbeView,
    ResultBatch,
    SurveyCreate,
    SurveyView,
)

_REF = "#/components/schemas/{model}"
_MODELS: list[type[BaseModel]] = [
    BatchReply, ErrorReply, HamletView, HealthReply, HeartbeatReply, KeyRegistration, ProbeCreate,
    ProbeCreated,
    ProbeUpdate, ProbeView, ResultBatch, LineChangeView, HandEntryCreate, HandEntryView,
    CsvImportReply, SurveyCreate, SurveyView,
]  # fmt: skip
#: The ``X-Hamletnet-Actor`` header: who makes a change, when the body does not say (``actor``).
_ACTOR_PARAM = {
    "name": ACTOR_HEADER,
    "in": "header",
    "required": False,
    "description": "Who makes the change, if the body has no 'actor'; recorded with the time.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
}


def _array(model: type[BaseModel]) -> dict[str, Any]:
    return _json({"type": "array", "items": _ref(model)})


def _admin_compliance_paths(
    admin_auth: list[dict[str, list[str]]], probe_id_param: dict[str, Any]
) -> dict[str, Any]:
    """Declared-line history, hand-entered figures and surveys (admin token)."""
    list_errors = _errors(400, 401, 403, 404, 429, 503)
    write_errors = _errors(400, 401, 403, 404, 413, 422, 429, 503)
    line_changes = {
        "summary": "Changes of operators' declared lines: who, when, before and after",
        "security": admin_auth,
        "responses": {"200": {"description": "Oldest first", "content": _array(LineChangeView)},
                      **list_errors},
    }  # fmt: skip
    return {
        "/api/v1/admin/line-changes": {
            "get": {
                **line_changes,
                "parameters": [
                    {
                        "name": "probe",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 64},
                    },
                ],
            },
        },
        "/api/v1/admin/probes/{probe_id}/line-changes": {
            "parameters": [probe_id_param],
            "get": line_changes,
        },
        "/api/v1/admin/hand-entries": {
            "get": {
                "summary": "Figures entered by hand, with who, when and source document",
                "security": admin_auth,
                "parameters": [
                    {
                        "name": "indicator_id",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 64},
                    },
                    {
                        "name": "commune",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 64},
                    },
                ],
                "responses": {
                    "200": {"description": "Oldest first", "content": _array(HandEntryView)},
                    **list_errors,
                },
            },
            "post": {
                "summary": "Enter a figure for an indicator the plan has reported by hand",
                "description": "The indicator must be judged by hand in the plan (or be the"
                " national IPv6 usage figure); a percentage is 0-100; as_of is not in the future."
                " Who: 'actor' or the X-Hamletnet-Actor header.",
                "security": admin_auth,
                "parameters": [_ACTOR_PARAM],
                "requestBody": {"required": True, "content": _json(_ref(HandEntryCreate))},
                "responses": {
                    "201": {"description": "Stored", "content": _json(_ref(HandEntryView))},
                    **write_errors,
                },
            },
        },
        "/api/v1/admin/hand-entries.csv": {
            "post": {
                "summary": "Import figures entered by hand from a CSV file, one outcome per row",
                "description": "UTF-8 (a byte-order mark, as Excel's 'CSV UTF-8' writes, is"
                " accepted), comma- or semicolon-separated (then 38,5 is read as 38.5). Header: "
                + ",".join(CSV_COLUMNS)
                + " (indicator_id, as_of and source_document required). A bad row is"
                " reported by its line number and never keeps the good rows out. Who: the"
                " 'actor' query parameter or the X-Hamletnet-Actor header.",
                "security": admin_auth,
                "parameters": [
                    {
                        "name": "actor",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                    },
                    _ACTOR_PARAM,
                ],
                "requestBody": {
                    "required": True,
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                },
                "responses": {
                    "200": {
                        "description": "Per-row outcomes",
                        "content": _json(_ref(CsvImportReply)),
                    },
                    **write_errors,
                },
            }
        },
        "/api/v1/admin/surveys": {
            "get": {
                "summary": "Field surveys of the services present in hamlets",
                "security": admin_auth,
                "parameters": [
                    {
                        "name": "hamlet",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 64},
                    },
                ],
                "responses": {
                    "200": {"description": "Oldest first", "content": _array(SurveyView)},
                    **list_errors,
                },
            },
            "post": {
                "summary": "Enter a survey: whether fibre, mobile broadband or 5G is present",
                "security": admin_auth,
                "parameters": [_ACTOR_PARAM],
                "requestBody": {"required": True, "content": _json(_ref(SurveyCreate))},
                "responses": {
                    "201": {"description": "Stored", "content": _json(_ref(SurveyView))},
                    **write_errors,
                },
            },
        },
    }


def _admin_alert_paths(admin_auth: list[dict[str, list[str]]]) -> dict[str, Any]:
    """Alerts (docs/alerts.md): list, acknowledge, mute; 404 when alerts are not configured."""
    path_params = [
        {"name": "rule", "in": "path", "required": True, "schema": {"type": "string"}},
        {
            "name": "subject",
            "in": "path",
            "required": True,
            "description": "The alert's subject key as listed, e.g. hamlet=thon-a,isp=VNPT,probe=p1"
            " (percent-encoded).",
            "schema": {"type": "string"},
        },
        _ACTOR_PARAM,
    ]
    alert = {"type": "object", "description": "One alert's state (no channel URLs)."}

    def action(summary: str, model: type[BaseModel]) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "security": admin_auth,
                "parameters": path_params,
                "requestBody": {"required": True, "content": _json(model.model_json_schema())},
                "responses": {
                    "200": {"description": "The alert's state after it", "content": _json(alert)},
                    **_errors(400, 401, 403, 404, 409, 422, 429, 503),
                },
            }
        }

    listing = {
        "type": "object",
        "properties": {
            "active": {"type": "array", "items": alert},
            "past": {"type": "array", "items": {"type": "object"}},
        },
    }
    return {
        "/api/v1/admin/alerts": {
            "get": {
                "summary": "Active alerts (pending, firing) and past phase changes, newest first",
                "security": admin_auth,
                "responses": {
                    "200": {"description": "Alerts", "content": _json(listing)},
                    **_errors(401, 403, 404, 429, 503),
                },
            }
        },
        "/api/v1/admin/alerts/{rule}/{subject}/ack": action(
            "Acknowledge a firing alert: no more reminders this episode (409 unless firing)",
            AlertAck,
        ),
        "/api/v1/admin/alerts/{rule}/{subject}/mute": action(
            "Mute an alert until a time (400 unless in the future): no notices meanwhile",
            AlertMute,
        ),
    }


def _evidence_path(admin_auth: list[dict[str, list[str]]]) -> dict[str, Any]:
    """The evidence export as a zip (docs/evidence.md)."""

    def query(name: str, required: bool, schema: dict[str, Any], about: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": required,
            "schema": schema,
            "description": about,
        }

    day = {"type": "string", "format": "date"}
    return {
        "get": {
            "summary": "A signed evidence export of a hamlet's results, as a zip",
            "description": "Raw signed results, keys, CSV/XLSX, the compliance summary and its"
            " context, methodology, charts, a minisign-signed manifest chained to the previous"
            " export, and a signed PDF; check it offline with 'hamletnet-server export verify'.",
            "security": admin_auth,
            "parameters": [
                query("hamlet", True, {"type": "string", "minLength": 1}, "Hamlet code."),
                query("isp", False, {"type": "string", "minLength": 1}, "Only this ISP's lines."),
                query("from", True, day, "First day, Vietnam time."),
                query("to", True, day, "Last day, included."),
                query(
                    "format",
                    False,
                    {"type": "string", "default": "csv,xlsx,pdf"},
                    "Any of csv, xlsx, pdf, comma-separated.",
                ),
            ],
            "responses": {
                "200": {
                    "description": "The export's files under one folder",
                    "content": {
                        "application/zip": {"schema": {"type": "string", "format": "binary"}}
                    },
                },
                **_errors(400, 401, 403, 429, 503),
            },
        }
    }


def _ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "The body is not JSON.",
        401: "Missing or unknown token.",
        403: "The token may not do this (disabled probe, or a probe token on the admin API).",
        404: "No such thing.",
        409: "It exists already.",
        413: "Body or batch over the limit.",
        422: "The body is JSON but not of the expected shape.",
        429: "Too many requests from this probe, or too many failed authentications from this"
        " address; see Retry-After.",
        503: "Storage unavailable, disk full or request timed out; nothing was stored. Retry"
        " later.",
    }
    return {str(s): {"description": text[s], "content": _json(_ref(ErrorReply))} for s in statuses}


def build_openapi(version: str) -> dict[str, Any]:
    _, defs = models_json_schema([(m, "validation") for m in _MODELS], ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    result_schema = TypeAdapter(Result).json_schema(ref_template=_REF)
    schemas.update(result_schema.pop("$defs", {}))
    schemas["Result"] = result_schema
    schemas["ComplianceReport"], schemas["ComplianceFigure"] = REPORT_SCHEMA, FIGURE_SCHEMA
    heartbeat_ref = _ref("HeartbeatResult")
    probe_auth: list[dict[str, list[str]]] = [{"probeToken": []}]
    admin_auth: list[dict[str, list[str]]] = [{"adminToken": []}]
    write_errors = _errors(400, 401, 403, 413, 422, 429, 503)
    probe_id_param = {
        "name": "probe_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$", "maxLength": 64},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hamletnet ingest API",
            "version": version,
            "description": "Probes post results; admins manage probes. Results follow the"
            " `Result` schema (one of the kinds, discriminated by `kind`).",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "probeToken": {"type": "http", "scheme": "bearer", "description": "Per probe."},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "Admin."},
            },
        },
        "paths": {
            "/api/v1/results": {
                "post": {
                    "summary": "Upload a batch of results from one probe",
                    "description": "Each item is validated against `Result` on its own; the reply"
                    " gives every item's outcome. Sending the same result_id again is reported"
                    " `duplicate` and stored once. The reply carries the probe's data budget"
                    " as the office set it (null: none set; the probe's configuration stands).",
                    "security": probe_auth,
                    "requestBody": {"required": True, "content": _json(_ref(ResultBatch))},
                    "responses": {
                        "200": {
                            "description": "Per-item outcomes",
                            "content": _json(_ref(BatchReply)),
                        },
                        **write_errors,
                    },
                }
            },
            "/api/v1/heartbeat": {
                "post": {
                    "summary": "Report the probe agent's health",
                    "security": probe_auth,
                    "requestBody": {"required": True, "content": _json(heartbeat_ref)},
                    "responses": {
                        "200": {"description": "Stored", "content": _json(_ref(HeartbeatReply))},
                        **write_errors,
                    },
                }
            },
            "/api/v1/register": {
                "post": {
                    "summary": "Record the probe's Ed25519 public key (once; an admin resets it)",
                    "security": probe_auth,
                    "requestBody": {"required": True, "content": _json(_ref(KeyRegistration))},
                    "responses": {
                        "200": {"description": "Registered", "content": _json(_ref(ProbeView))},
                        **_errors(400, 401, 403, 409, 413, 422, 429, 503),
                    },
                }
            },
            "/api/v1/admin/probes": {
                "get": {
                    "summary": "List probes with last-seen",
                    "security": admin_auth,
                    "responses": {
                        "200": {
                            "description": "Probes",
                            "content": _json({"type": "array", "items": _ref(ProbeView)}),
                        },
                        **_errors(401, 403, 429, 503),
                    },
                },
                "post": {
                    "summary": "Register a probe; its token is in the reply, and only there",
                    "security": admin_auth,
                    "requestBody": {"required": True, "content": _json(_ref(ProbeCreate))},
                    "responses": {
                        "201": {"description": "Created", "content": _json(_ref(ProbeCreated))},
                        **_errors(400, 401, 403, 404, 409, 413, 422, 429, 503),
                    },
                },
            },
            "/api/v1/admin/probes/{probe_id}": {
                "parameters": [probe_id_param],
                "get": {
                    "summary": "One probe",
                    "security": admin_auth,
                    "responses": {
                        "200": {"description": "The probe", "content": _json(_ref(ProbeView))},
                        **_errors(401, 403, 404, 429, 503),
                    },
                },
                "patch": {
                    "summary": "Enable or disable a probe, reset its key, set its declared line",
                    "description": "Declared speeds (Mb/s, > 0; minimum <= download), plan"
                    " name and monthly data budget (bytes, sent to the probe in its replies)"
                    " need 'actor' or the X-Hamletnet-Actor header; each change is kept"
                    " in /api/v1/admin/line-changes. null clears a value, a missing key keeps it.",
                    "security": admin_auth,
                    "parameters": [_ACTOR_PARAM],
                    "requestBody": {"required": True, "content": _json(_ref(ProbeUpdate))},
                    "responses": {
                        "200": {"description": "Updated", "content": _json(_ref(ProbeView))},
                        **_errors(400, 401, 403, 404, 413, 422, 429, 503),
                    },
                },
            },
            "/api/v1/admin/hamlets": {
                "get": {
                    "summary": "List hamlets with their probe counts",
                    "security": admin_auth,
                    "responses": {
                        "200": {
                            "description": "Hamlets",
                            "content": _json({"type": "array", "items": _ref(HamletView)}),
                        },
                        **_errors(401, 403, 429, 503),
                    },
                }
            },
            "/api/v1/compliance": compliance_path(_ref("ComplianceReport"), _ref(ErrorReply)),
            **_admin_compliance_paths(admin_auth, probe_id_param),
            "/api/v1/admin/compliance/publish": publish_path(admin_auth, _ref(ErrorReply)),
            **_admin_alert_paths(admin_auth),
            "/api/v1/admin/evidence": _evidence_path(admin_auth),
            "/healthz": {
                "get": {
                    "summary": "Liveness and storage check",
                    "security": [],
                    "responses": {
                        "200": {"description": "Healthy", "content": _json(_ref(HealthReply))},
                        **_errors(503),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
    }
