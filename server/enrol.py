"""``POST /api/v1/register``: a probe, with its token, records the public key it signs with.

The key is set once; changing it needs an admin reset, so a leaked token cannot be used to
swap in an attacker's key and forge signed evidence.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from probes.models import explain
from probes.signing import SignatureError, load_public_key
from server.admin import probe_view
from server.appkeys import PROBE, REGISTRY
from server.errors import Unprocessable
from server.ingest import read_json
from server.schemas import KeyRegistration


async def post_register(request: web.Request) -> web.Response:
    probe = request[PROBE]
    try:
        spec = KeyRegistration.model_validate(await read_json(request))
        load_public_key(spec.public_key)
    except ValidationError as exc:
        raise Unprocessable(explain(exc)) from exc
    except SignatureError as exc:
        raise Unprocessable(f"public_key: {exc}") from exc
    record = await request.app[REGISTRY].set_public_key(probe.probe_id, spec.public_key)
    request.app[REGISTRY].touch(probe.probe_id)
    return web.json_response(probe_view(record).model_dump(mode="json"))
