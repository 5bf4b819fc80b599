"""Admin endpoints behind the admin token: register and disable probes, list probes and hamlets."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from probes.models import explain
from server.appkeys import REGISTRY
from server.errors import Unprocessable
from server.ingest import read_json
from server.registry import ProbeRecord
from server.schemas import HamletView, ProbeCreate, ProbeCreated, ProbeUpdate, ProbeView


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
    )


def _parse(model: type[ProbeCreate] | type[ProbeUpdate], body: Any) -> Any:
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
    if spec.reset_key:
        record = await registry.set_public_key(probe_id, None)
    if spec.enabled is not None:
        record = await registry.set_disabled(probe_id, not spec.enabled)
    return web.json_response(probe_view(record).model_dump(mode="json"))


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
        )
        for h in await registry.hamlets()
    ]
    return web.json_response([v.model_dump(mode="json") for v in views])
