"""Guards below the application, on each connection: a deadline for a request's headers, and
JSON for the errors aiohttp answers before any handler runs (a request it cannot parse).

aiohttp reads headers without a deadline of its own: a client sending one byte now and then
holds its connection for as long as it likes, and a few hundred such clients hold the server
("slowloris"). Like nginx's ``client_header_timeout``, the clock starts when the connection is
accepted, and after a response with the first byte of the next request; it stops when the
headers are complete. Idle keep-alive connections stay aiohttp's ``keepalive_timeout``'s.

Every entry point serves the app through ``GuardedAppRunner``; tested with aiohttp 3.14.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from server.appkeys import METRICS, SETTINGS
from server.errors import AIOHTTP_CODES, error_response

log = logging.getLogger(__name__)

#: The longest detail copied from aiohttp's parser error into the reply.
MAX_DETAIL_CHARS = 300


def _timeout_reply(timeout_s: float) -> bytes:
    """The whole 408 response, written straight to the transport: no request exists to answer."""
    response = error_response(
        408, AIOHTTP_CODES[408], f"request headers not received within {timeout_s} s"
    )
    assert isinstance(response.body, bytes)
    head = (
        f"HTTP/1.1 408 Request Timeout\r\nContent-Type: {response.content_type};"
        f" charset={response.charset}\r\nContent-Length: {len(response.body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + response.body


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol with a header deadline and JSON protocol errors."""

    __slots__ = ("_awaiting_headers", "_header_timeout_s", "_header_timer", "_on_header_timeout")

    def __init__(
        self,
        manager: web.Server,
        *,
        header_timeout_s: float,
        on_header_timeout: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._on_header_timeout = on_header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_header_clock()

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count > parsed:  # a request's headers are complete
            self._stop_header_clock()
            self._awaiting_headers = False
        elif data and self._awaiting_headers and self._header_timer is None:
            self._start_header_clock()

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        result = await super().finish_response(request, resp, start_time)
        # The next bytes begin the next request, unless it has been read whole already.
        self._awaiting_headers = not self._messages
        return result

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def _start_header_clock(self) -> None:
        self._header_timer = asyncio.get_running_loop().call_later(
            self._header_timeout_s, self._headers_too_slow
        )

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport is None:
            return
        peer = self.transport.get_extra_info("peername")
        log.info("closing the connection from %s: headers not received in time", peer)
        self._on_header_timeout()
        self.transport.write(_timeout_reply(self._header_timeout_s))
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's reply to a request it could not parse or handle, in our JSON shape."""
        if request.writer.output_size > 0:
            # Part of a response is out: nothing more can be sent on this connection.
            raise ConnectionError("response already started; cannot send the error too")
        if status >= 500:
            self.log_exception("error handling request from %s", request.remote, exc_info=exc)
            code, detail = "internal", "unexpected server error; see the server log"
        else:
            # Bad requests are the internet's background noise; the request itself may hold a
            # token, so only its kind is logged.
            log.debug("bad request from %s: %s", request.remote, type(exc).__name__)
            code = AIOHTTP_CODES.get(status, "http_error")
            detail = (message or HTTPStatus(status).phrase)[:MAX_DETAIL_CHARS]
        response = error_response(status, code, detail)
        response.force_close()
        return response


class GuardedServer(web.Server):
    """aiohttp's low-level server, making ``GuardedRequestHandler`` connections."""

    def __init__(
        self,
        handler: Any,
        *,
        header_timeout_s: float,
        on_header_timeout: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._guards: dict[str, Any] = {
            "header_timeout_s": header_timeout_s, "on_header_timeout": on_header_timeout
        }  # fmt: skip
        consumed = ("request_factory", "handler_cancellation", "loop")
        self._handler_kwargs = {k: v for k, v in kwargs.items() if k not in consumed}

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(
            self, loop=asyncio.get_running_loop(), **self._guards, **self._handler_kwargs
        )


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` serving the app through ``GuardedServer`` (settings from the app)."""

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        settings = self.app[SETTINGS]
        metrics = self.app[METRICS]
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            header_timeout_s=settings.limits.header_timeout_s,
            on_header_timeout=metrics.header_timeouts.inc,
            # The keyword arguments aiohttp gathered for its handlers (runner's, app's).
            **plain._kwargs,
        )


def run_app(
    app: web.Application,
    *,
    host: str,
    port: int,
    print: Callable[[str], None] = print,
    **runner_kwargs: Any,
) -> None:
    """``web.run_app``'s life cycle (serve until SIGINT or SIGTERM, then clean up) through
    ``GuardedAppRunner``; a taken port raises ``OSError`` as there."""

    # web.run_app's own default: an idle keep-alive connection is closed after 75 s.
    runner_kwargs.setdefault("keepalive_timeout", 75.0)

    async def serve() -> None:
        runner = GuardedAppRunner(app, handle_signals=True, **runner_kwargs)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            print(f"======== Running on {site.name} ========")
            await asyncio.Event().wait()  # until a signal raises GracefulExit in the loop
        finally:
            await runner.cleanup()

    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        asyncio.run(serve())
