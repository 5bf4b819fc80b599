"""Admin endpoints behind the admin token: register and disable probes, list probes and hamlets,
the operators' declared lines, and the figures and surveys the office enters by hand.

Every change of a declared line, hand entry and survey records who made it (``actor`` in the body
or the ``X-Hamletnet-Actor`` header) and when.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from probes.models import explain
from server.alerts.service import AlertService, state_view, transition_view
from server.alerts.state import Acknowledge, Mute
from server.appkeys import ALERTS, REGISTRY, SETTINGS, STORE
from server.compliance.plan import Plan, load_plan
from server.compliance.stats import VIETNAM
from server.errors import BadRequest, NotFound, ServerError, Unprocessable
from server.ingest import read_body, read_json
from server.registry import (
    LINE_FIELDS,
    UNCHANGED,
    HandEntryRecord,
    LineChange,
    ProbeRecord,
    Registry,
    SurveyRecord,
    check_text,
)
from server.schemas import (
    ACTOR_HEADER,
    CsvImportReply,
    HamletView,
    HandEntryCreate,
    HandEntryView,
    LineChangeView,
    ProbeCreate,
    ProbeCreated,
    ProbeUpdate,
    ProbeView,
    RowOutcome,
    SurveyCreate,
    SurveyView,
)

#: Columns of a hand-entry CSV file; ``commune``, ``hamlet``, ``value`` and ``achieved`` may be
#: empty cells (see ``HandEntryCreate``).
CSV_COLUMNS = (
    "indicator_id", "commune", "hamlet", "value", "achieved", "as_of", "source_document",
)  # fmt: skip
CSV_REQUIRED = ("indicator_id", "as_of", "source_document")


def probe_view(record: ProbeRecord) -> ProbeView:
    return ProbeView(
        probe_id=record.probe_id,
        hamlet=record.hamlet,
        isp=record.isp,
        access=record.access,
        enabled=record.enabled,
        created_at=record.created_at,
        last_seen_at=record.last_seen_at,
        has_key=record.public_key is not None,
        declared_down_mbps=record.declared_down_mbps,
        declared_up_mbps=record.declared_up_mbps,
        declared_min_down_mbps=record.declared_min_down_mbps,
        plan_name=record.plan_name,
        data_budget_bytes=record.data_budget_bytes,
        declared_by=record.declared_by,
        declared_at=record.declared_at,
    )


def _parse(model: type[BaseModel], body: Any) -> Any:
    try:
        return model.model_validate(body, strict=False)
    except ValidationError as exc:
        raise Unprocessable(explain(exc)) from exc


async def list_probes(request: web.Request) -> web.Response:
    records = await request.app[REGISTRY].probes()
    return web.json_response([probe_view(r).model_dump(mode="json") for r in records])


async def create_probe(request: web.Request) -> web.Response:
    spec: ProbeCreate = _parse(ProbeCreate, await read_json(request))
    record, token = await request.app[REGISTRY].add_probe(
        hamlet=spec.hamlet,
        isp=spec.isp,
        access=spec.access,
        probe_id=spec.probe_id,
        public_key=spec.public_key,
    )
    created = ProbeCreated(**probe_view(record).model_dump(), token=token)
    return web.json_response(created.model_dump(mode="json"), status=201)


async def get_probe(request: web.Request) -> web.Response:
    record = await request.app[REGISTRY].get(request.match_info["probe_id"])
    return web.json_response(probe_view(record).model_dump(mode="json"))


async def update_probe(request: web.Request) -> web.Response:
    spec: ProbeUpdate = _parse(ProbeUpdate, await read_json(request))
    registry = request.app[REGISTRY]
    probe_id = request.match_info["probe_id"]
    record = await registry.get(probe_id)
    line = {
        key: getattr(spec, key) if key in spec.model_fields_set else UNCHANGED
        for key in LINE_FIELDS
    }
    if any(value is not UNCHANGED for value in line.values()):
        actor = _actor(request, spec.actor)
        record = await registry.set_line(probe_id, **line, actor=actor)
    if spec.reset_key:
        record = await registry.set_public_key(probe_id, None)
    if spec.enabled is not None:
        record = await registry.set_disabled(probe_id, not spec.enabled)
    return web.json_response(probe_view(record).model_dump(mode="json"))


def _change_view(change: LineChange) -> LineChangeView:
    return LineChangeView(
        probe_id=change.probe_id,
        changed_by=change.changed_by,
        changed_at=change.changed_at,
        old=change.old,
        new=change.new,
    )


async def list_line_changes(request: web.Request) -> web.Response:
    """Changes of declared lines, oldest first; of one probe with ``{probe_id}`` or ``?probe=``."""
    registry = request.app[REGISTRY]
    probe_id = request.match_info.get("probe_id") or request.query.get("probe")
    if probe_id is not None:
        await registry.get(probe_id)  # 404 for an unknown probe
    changes = await registry.line_changes(probe_id)
    return web.json_response([_change_view(c).model_dump(mode="json") for c in changes])


def _actor(request: web.Request, given: str | None) -> str:
    """Who makes a change: the body's ``actor``, else the ``X-Hamletnet-Actor`` header."""
    actor = given or request.headers.get(ACTOR_HEADER, "").strip()
    if not actor:
        raise Unprocessable(
            f"actor: required: say who makes the change (field 'actor' or header {ACTOR_HEADER})"
        )
    return actor


def _plan(request: web.Request) -> Plan:
    return load_plan(request.app[SETTINGS].plan_path)


def _hand_entry(
    spec: HandEntryCreate, plan: Plan, hamlet_communes: dict[str, str], actor: str
) -> HandEntryRecord:
    """The record to store for ``spec``, after the checks that need the plan and the hamlets:
    an indicator the office reports by hand, a value in its unit, a date not in the future."""
    by_hand = [
        i.id
        for i in plan.indicators
        if i.judged_by.method == "hand" or getattr(i.judged_by, "rule", None) == "ipv6-usage"
    ]
    if spec.indicator_id not in by_hand:
        raise Unprocessable(
            f"indicator_id: {spec.indicator_id!r} is not an indicator reported by hand in the plan;"
            f" those are: {', '.join(by_hand)}"
        )
    indicator = plan.indicator(spec.indicator_id)
    unit = indicator.target.unit if indicator.target is not None else None
    if spec.value is not None and unit == "%" and not 0 <= spec.value <= 100:
        raise Unprocessable(f"value: {spec.value:g} is not a percentage (0-100)")
    today = datetime.now(VIETNAM).date()
    if spec.as_of > today:
        raise Unprocessable(f"as_of: {spec.as_of.isoformat()} is in the future")
    commune = spec.commune
    if commune is None and spec.hamlet is not None:
        commune = hamlet_communes.get(spec.hamlet)
    communes = sorted(set(hamlet_communes.values()))
    if commune is None:
        if len(communes) != 1:
            raise Unprocessable(
                f"commune: required when several communes are configured ({', '.join(communes)})"
            )
        commune = communes[0]
    return HandEntryRecord(
        indicator_id=spec.indicator_id,
        commune=commune,
        hamlet=spec.hamlet,
        value=spec.value,
        achieved=spec.achieved,
        as_of=spec.as_of,
        source_document=spec.source_document,
        entered_by=actor,
        entered_at=datetime.now(UTC),
    )


def _entry_view(entry: HandEntryRecord) -> HandEntryView:
    return HandEntryView(
        indicator_id=entry.indicator_id,
        commune=entry.commune,
        hamlet=entry.hamlet,
        value=entry.value,
        achieved=entry.achieved,
        as_of=entry.as_of,
        source_document=entry.source_document,
        entered_by=entry.entered_by,
        entered_at=entry.entered_at,
    )


async def _hamlet_communes(registry: Registry) -> dict[str, str]:
    return {h.code: h.commune for h in await registry.hamlets()}


async def create_hand_entry(request: web.Request) -> web.Response:
    spec: HandEntryCreate = _parse(HandEntryCreate, await read_json(request))
    registry = request.app[REGISTRY]
    entry = _hand_entry(
        spec, _plan(request), await _hamlet_communes(registry), _actor(request, spec.actor)
    )
    await registry.add_hand_entry(entry)
    return web.json_response(_entry_view(entry).model_dump(mode="json"), status=201)


async def list_hand_entries(request: web.Request) -> web.Response:
    entries = await request.app[REGISTRY].hand_entries(
        indicator_id=request.query.get("indicator_id"), commune=request.query.get("commune")
    )
    return web.json_response([_entry_view(e).model_dump(mode="json") for e in entries])


def read_csv_rows(raw: bytes) -> tuple[list[tuple[int, dict[str, str]]], str]:
    """The data rows of a hand-entry CSV file with their line numbers, and its delimiter.

    UTF-8, with or without the byte-order mark Excel writes; comma-separated, or semicolon-
    separated as Excel writes it where the decimal separator is a comma (Vietnamese locale).
    ``BadRequest`` names what is wrong with the file as a whole; rows are judged by the caller.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the CSV file is not UTF-8 (byte {exc.start}): save it as 'CSV UTF-8'"
        ) from None
    header_line = text.split("\n", 1)[0]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [c for c in CSV_REQUIRED if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if missing or unknown:
        raise BadRequest(
            "CSV header: "
            + "; ".join(
                part
                for part in (
                    f"missing column(s) {', '.join(missing)}" if missing else "",
                    f"unknown column(s) {', '.join(unknown)}" if unknown else "",
                )
                if part
            )
            + f"; the columns are {','.join(CSV_COLUMNS)}"
        )
    reader.fieldnames = header
    rows = []
    for row in reader:
        rows.append((reader.line_num, row))
    return rows, delimiter


def _csv_spec(row: dict[str, Any], delimiter: str) -> HandEntryCreate:
    extra = row.pop(None, None)  # type: ignore[call-overload]
    if extra:
        raise Unprocessable(f"{len(extra)} cell(s) more than the header has")
    cells = {k: (v or "").strip() for k, v in row.items()}
    body: dict[str, Any] = {k: v for k, v in cells.items() if v != ""}
    if "value" in body and delimiter == ";":
        body["value"] = body["value"].replace(",", ".")  # 42,5 from a Vietnamese Excel
    if "achieved" in body:
        body["achieved"] = body["achieved"].lower()
    spec: HandEntryCreate = _parse(HandEntryCreate, body)
    return spec


async def import_hand_entry_csv(
    registry: Registry, plan: Plan, raw: bytes, actor: str
) -> CsvImportReply:
    """Store each row of a hand-entry CSV file on its own: one outcome per row, and a bad row
    never keeps the good ones out (used by the API and by ``hamletnet-server hand-entry``)."""
    actor = check_text("actor", actor)
    rows, delimiter = read_csv_rows(raw)
    hamlets = await _hamlet_communes(registry)
    outcomes: list[RowOutcome] = []
    for line, row in rows:
        try:
            spec = _csv_spec(row, delimiter)
            await registry.add_hand_entry(_hand_entry(spec, plan, hamlets, actor))
        except ServerError as exc:
            if exc.status >= 500:
                raise  # storage down: the rows after it would fail too; nothing is half-said
            outcomes.append(RowOutcome(line=line, outcome="rejected", reason=exc.detail))
        else:
            outcomes.append(RowOutcome(line=line, outcome="accepted"))
    accepted = sum(1 for o in outcomes if o.outcome == "accepted")
    return CsvImportReply(accepted=accepted, rejected=len(outcomes) - accepted, rows=outcomes)


async def import_hand_entries(request: web.Request) -> web.Response:
    """``POST /api/v1/admin/hand-entries.csv``: see ``import_hand_entry_csv``."""
    actor = _actor(request, request.query.get("actor"))
    raw = await read_body(request)
    reply = await import_hand_entry_csv(request.app[REGISTRY], _plan(request), raw, actor)
    return web.json_response(reply.model_dump(mode="json"))


def _survey_view(survey: SurveyRecord) -> SurveyView:
    return SurveyView(
        hamlet=survey.hamlet,
        service=survey.service,
        present=survey.present,
        surveyed_at=survey.surveyed_at,
        surveyed_by=survey.surveyed_by,
        source_document=survey.source_document,
        entered_at=survey.entered_at,
        entered_by=survey.entered_by,
    )


async def create_survey(request: web.Request) -> web.Response:
    spec: SurveyCreate = _parse(SurveyCreate, await read_json(request))
    if spec.surveyed_at > datetime.now(VIETNAM).date():
        raise Unprocessable(f"surveyed_at: {spec.surveyed_at.isoformat()} is in the future")
    survey = SurveyRecord(
        hamlet=spec.hamlet,
        service=spec.service,
        present=spec.present,
        surveyed_at=spec.surveyed_at,
        surveyed_by=spec.surveyed_by,
        source_document=spec.source_document,
        entered_at=datetime.now(UTC),
        entered_by=_actor(request, spec.actor),
    )
    await request.app[REGISTRY].add_survey(survey)
    return web.json_response(_survey_view(survey).model_dump(mode="json"), status=201)


async def list_surveys(request: web.Request) -> web.Response:
    surveys = await request.app[REGISTRY].surveys(hamlet=request.query.get("hamlet"))
    return web.json_response([_survey_view(s).model_dump(mode="json") for s in surveys])


# -- Alerts (server/alerts; helper "alerts3") -----------------------------------------------------


class AlertAck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(default=None, min_length=1, max_length=128)
    note: str = Field(default="", max_length=500)


class AlertMute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(default=None, min_length=1, max_length=128)
    until: AwareDatetime
    reason: str = Field(default="", max_length=500)


def _alerts(request: web.Request) -> AlertService:
    service = request.app.get(ALERTS)
    if service is None:
        raise NotFound("alerts are not configured: set alerts_file (docs/alerts.md)")
    return service


async def list_alerts(request: web.Request) -> web.Response:
    """Active alerts (pending, firing) and past phase changes, newest first; states only, never
    a channel URL."""
    service = _alerts(request)
    active = [state_view(s) for s in await service.active()]
    past = [transition_view(t) for t in await service.past()]
    return web.json_response({"active": active, "past": past})


async def ack_alert(request: web.Request) -> web.Response:
    spec: AlertAck = _parse(AlertAck, await read_json(request))
    event = Acknowledge(by=_actor(request, spec.actor), note=spec.note)
    info = request.match_info
    state = await _alerts(request).act(info["rule"], info["subject"], event)
    return web.json_response(state_view(state))


async def mute_alert(request: web.Request) -> web.Response:
    spec: AlertMute = _parse(AlertMute, await read_json(request))
    event = Mute(by=_actor(request, spec.actor), until=spec.until, reason=spec.reason)
    info = request.match_info
    state = await _alerts(request).act(info["rule"], info["subject"], event)
    return web.json_response(state_view(state))


# -- End of alerts ---------------------------------------------------------------------------------


def _query_day(request: web.Request, name: str) -> date:
    """A day of the export's window: a Vietnam date, or a time with its offset (an alert's
    evidence link names its window in RFC 3339 UTC), taken as its day in Vietnam."""
    text = request.query.get(name)
    if not text:
        raise BadRequest(f"{name}: required, a Vietnam date like 2026-11-30")
    try:
        if len(text) == len("2026-11-30"):
            return date.fromisoformat(text)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name}: {text!r} is not a date like 2026-11-30") from None
    if at.utcoffset() is None:
        raise BadRequest(f"{name}: {text!r} has no UTC offset; write a date or e.g. ...Z")
    return at.astimezone(VIETNAM).date()


async def evidence_export(request: web.Request) -> web.StreamResponse:
    """The evidence export (docs/evidence.md) as a zip, built in a temporary directory that is
    removed once the zip has been sent."""
    from server.evidence.export import export_name, run_export, zip_export

    hamlet = request.query.get("hamlet")
    if not hamlet:
        raise BadRequest("hamlet: required, a hamlet code")
    isp = request.query.get("isp") or None
    start, end = _query_day(request, "from"), _query_day(request, "to")
    name = export_name(hamlet, isp, start, end)
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="hamletnet-evidence-"))
    try:
        await run_export(
            request.app[STORE], request.app[REGISTRY], request.app[SETTINGS], _plan(request),
            out_dir=work / name, now=datetime.now(UTC), hamlet=hamlet, isp=isp, start=start,
            end=end, formats=request.query.get("format", "csv,xlsx,pdf"),
        )  # fmt: skip
        archive = work / f"{name}.zip"
        await asyncio.to_thread(zip_export, work / name, archive, name)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="{name}.zip"',
            }
        )
        response.content_length = archive.stat().st_size
        await response.prepare(request)
        with archive.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, 1 << 16):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


def add_admin_routes(router: web.UrlDispatcher) -> None:
    """The admin routes for declared lines, hand entries and surveys (under the admin token)."""
    router.add_get("/api/v1/admin/line-changes", list_line_changes)
    router.add_get("/api/v1/admin/probes/{probe_id}/line-changes", list_line_changes)
    router.add_get("/api/v1/admin/hand-entries", list_hand_entries)
    router.add_post("/api/v1/admin/hand-entries", create_hand_entry)
    router.add_post("/api/v1/admin/hand-entries.csv", import_hand_entries)
    router.add_get("/api/v1/admin/surveys", list_surveys)
    router.add_post("/api/v1/admin/surveys", create_survey)
    router.add_get("/api/v1/admin/alerts", list_alerts)
    router.add_post("/api/v1/admin/alerts/{rule}/{subject}/ack", ack_alert)
    router.add_post("/api/v1/admin/alerts/{rule}/{subject}/mute", mute_alert)
    router.add_get("/api/v1/admin/evidence", evidence_export)


async def list_hamlets(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    probes = await registry.probes()
    views = [
        HamletView(
            code=h.code,
            name=h.name,
            population=h.population,
            households=h.households,
            probes=sum(1 for p in probes if p.hamlet == h.code),
            commune=h.commune,
            adults=h.adults,
            lat=h.lat,
            lon=h.lon,
            isps=list(h.isps),
        )
        for h in await registry.hamlets()
    ]
    return web.json_response([v.model_dump(mode="json") for v in views])
