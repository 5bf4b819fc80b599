"""The target speaks two public speed-test protocols, so existing clients can measure against it.

- **Speedtest Mini** (legacy Ookla servers; what speedtest-cli speaks, sivel/speedtest-cli
  ``speedtest.py`` 2.1): ``speedtest/latency.txt`` answers ``test=test``; downloads are
  ``speedtest/random{N}x{N}.jpg`` at Ookla's sizes; uploads are POSTs to
  ``speedtest/upload.php`` answered ``size=BYTES`` (at once when the body stops where
  speedtest-cli's stops, ``speedtest_cli_sends``, not after an idle timeout); the page at the
  root names the upload extension (``upload_extension: "php"``), which is how ``--mini`` finds it.
  ``speedtest-config.php`` serves the configuration XML that speedtest-cli otherwise fetches from
  www.speedtest.net (thread counts, test lengths, upload sizes), with speedtest.net's values, so
  hamletnet's ``speedtest`` engine runs against this target with no Internet at all.
- **LibreSpeed backend** (librespeed/speedtest ``backend/``): ``garbage.php?ckSize=N`` sends N
  MiB of random bytes (default 4, at most 1024); ``empty.php`` takes a GET or a POST body and
  answers empty; ``getIP.php`` answers ``{"processedString": IP, "rawIspInfo": ""}``. Each is also
  served under ``backend/``, the path the LibreSpeed page and most server lists use. CORS headers
  go on every reply, as the backend sends them with ``?cors``, so a page elsewhere can test here.
"""

from __future__ import annotations

import re

from aiohttp import web

from probes.bandwidth import params
from server.appkeys import PAYLOAD
from server.target.transfer import Discarded, discard_body, send_random, tracked

_IMAGE = re.compile(r"random(\d+)x(\d+)\.jpg")
#: speedtest-cli's upload body: this prefix, then this alphabet repeated (speedtest.py 2.1.3).
_SPEEDTEST_CLI_PREFIX = b"content1="
_SPEEDTEST_CLI_ALPHABET = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
}

SPEEDTEST_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<settings>
<client ip="{ip}" lat="0" lon="0" isp="hamletnet target" isprating="0" rating="0" ispdlavg="0"
 ispulavg="0" loggedin="0" country="VN"/>
<server-config threadcount="4" ignoreids="" notonmap="" forcepingid="" preferredserverid=""/>
<download testlength="{length}" initialtest="250K" mintestsize="250K" threadsperurl="4"/>
<upload testlength="{length}" ratio="5" initialtest="0" mintestsize="32K" threads="2"
 maxchunksize="512K" maxchunkcount="50" threadsperurl="4"/>
</settings>
"""


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Access-Control-Allow-Origin", "*")
    response.headers.setdefault("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
    response.headers.setdefault("Access-Control-Allow-Headers", "Content-Encoding, Content-Type")


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def speedtest_config(request: web.Request) -> web.Response:
    xml = SPEEDTEST_CONFIG.format(ip=request.remote or "", length=params.SPEEDTEST_TEST_LENGTH_S)
    return web.Response(text=xml, content_type="text/xml", headers=_NO_CACHE)


async def speedtest_latency(request: web.Request) -> web.Response:
    return web.Response(text="test=test", headers=_NO_CACHE)


async def speedtest_image(request: web.Request) -> web.StreamResponse:
    match = _IMAGE.fullmatch(request.match_info["name"])
    if match is None or match[1] != match[2]:
        raise web.HTTPNotFound(text="speedtest images are random{N}x{N}.jpg")
    side = int(match[1])
    # Ookla's own sizes where known, else about what a JPEG of that side weighs (≈ 2 B/pixel).
    count = params.SPEEDTEST_IMAGE_BYTES.get(side, min(side * side * 2, 64 * 1024 * 1024))
    response = web.StreamResponse(headers={"Content-Type": "image/jpeg", **_NO_CACHE})
    with tracked(request):
        await send_random(request, response, request.app[PAYLOAD], count)
    return response


def speedtest_cli_sends(declared: int) -> int:
    """The body bytes speedtest-cli 2.x really sends under a Content-Length of ``declared``.

    Its ``HTTPUploaderData.pre_allocate`` builds ``"content1="`` plus a 36-character alphabet
    repeated ``round(declared / 36)`` times, cut to ``declared - 9`` characters: when the
    repetition falls short, so does the body. Of speedtest.net's upload sizes only 65,536 does
    (65,529 bytes sent), and speedtest-cli then waits for the reply with 7 bytes owed.
    """
    if declared < len(_SPEEDTEST_CLI_PREFIX):
        return declared
    repeated = len(_SPEEDTEST_CLI_ALPHABET) * round(declared / len(_SPEEDTEST_CLI_ALPHABET))
    return len(_SPEEDTEST_CLI_PREFIX) + min(declared - len(_SPEEDTEST_CLI_PREFIX), repeated)


async def speedtest_upload(request: web.Request) -> web.Response:
    declared = request.content_length
    sends = speedtest_cli_sends(declared) if declared is not None else None
    early_end = sends if sends != declared else None
    with tracked(request, "upload"):
        body = Discarded(0, reusable=True)
        if request.body_exists:
            body = await discard_body(request, early_end)
    response = web.Response(text=f"size={body.byte_count}", headers=_NO_CACHE)
    if not body.reusable:
        response.force_close()
    return response


async def librespeed_garbage(request: web.Request) -> web.StreamResponse:
    raw = request.query.get("ckSize", str(params.LIBRESPEED_DEFAULT_CHUNKS))
    try:
        chunks = min(max(int(raw), 0), params.LIBRESPEED_MAX_CHUNKS)
    except ValueError:
        chunks = params.LIBRESPEED_DEFAULT_CHUNKS
    response = web.StreamResponse(
        headers={
            "Content-Description": "File Transfer",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": "attachment; filename=random.dat",
            "Content-Transfer-Encoding": "binary",
            **_NO_CACHE,
        }
    )
    with tracked(request):
        await send_random(
            request, response, request.app[PAYLOAD], chunks * params.LIBRESPEED_CHUNK_BYTES
        )
    return response


async def librespeed_empty(request: web.Request) -> web.Response:
    with tracked(request, "upload"):
        body = Discarded(0, reusable=True)
        if request.body_exists:
            body = await discard_body(request)
    response = web.Response(headers=_NO_CACHE)
    if not body.reusable:
        response.force_close()
    return response


async def librespeed_ip(request: web.Request) -> web.Response:
    return web.json_response(
        {"processedString": request.remote or "", "rawIspInfo": ""}, headers=_NO_CACHE
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/speedtest-config.php", speedtest_config)
    app.router.add_get("/speedtest/latency.txt", speedtest_latency)
    for method in ("GET", "POST"):
        app.router.add_route(method, "/speedtest/upload.php", speedtest_upload)
    app.router.add_get("/speedtest/{name}", speedtest_image)
    for prefix in ("", "/backend"):
        for method in ("GET", "POST"):
            app.router.add_route(method, f"{prefix}/garbage.php", librespeed_garbage)
            app.router.add_route(method, f"{prefix}/empty.php", librespeed_empty)
        app.router.add_get(f"{prefix}/getIP.php", librespeed_ip)
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
