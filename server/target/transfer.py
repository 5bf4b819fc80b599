"""The target's data path: random bytes out with sendfile(2), uploads discarded in the kernel.

Nothing is allocated per chunk. Downloads send from one in-memory file of random bytes
(``memfd``) with ``loop.sendfile``, which is os.sendfile on a plain TCP socket (zero-copy; the
page cache is the only copy). Uploads are read with ``recv_into(..., MSG_TRUNC)``, which makes
Linux drop TCP payload without copying it to user space (tcp(7)); aiohttp's own body reader, which
makes a bytes object per chunk, is only the fallback for chunked or encoded bodies and TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import StreamReader, web

from probes.bandwidth import params
from server.appkeys import SLOTS
from server.target.coordinator import Direction
from server.target.payload import Payload

#: One sendfile call moves at most this much; each call must finish within CHUNK_TIMEOUT_S, so a
#: client slower than ≈ 280 kbit/s is treated as stalled, bytes.
CHUNK_BYTES = 1024 * 1024
CHUNK_TIMEOUT_S = 30.0
#: A single download or upload stream ends after this long whatever its size, seconds.
MAX_TRANSFER_S = 180.0
#: An upload body that moves no byte for this long has ended, seconds.
BODY_IDLE_TIMEOUT_S = params.IO_TIMEOUT_S
#: At a known client's early end (``discard_body``'s ``early_end``), how long to wait for more
#: before answering: far above a gap between the segments of one write on a LAN, far below
#: BODY_IDLE_TIMEOUT_S, which the client would otherwise sit through on every such upload, seconds.
EARLY_END_GRACE_S = 0.2
#: Upload receive buffer: MSG_TRUNC means the kernel never writes into it, bytes.
DISCARD_BUFFER_BYTES = 1024 * 1024
READS_PER_WAKEUP = 16


def _lease(request: web.Request) -> str | None:
    return request.query.get(params.LEASE_PARAM) or request.headers.get(params.LEASE_HEADER)


@dataclass(slots=True)
class Moved:
    """What a tracked transfer moved, set by its handler, bytes."""

    byte_count: int = 0


@contextlib.contextmanager
def tracked(request: web.Request, direction: Direction = "download") -> Iterator[Moved]:
    """Tell the slot coordinator a transfer runs (it may disturb someone else's slot, and it
    keeps its own lease alive) and, at its end, how many bytes it moved."""
    slots = request.app[SLOTS]
    token = slots.transfer_started(_lease(request), request.remote or "", direction)
    moved = Moved()
    try:
        yield moved
    finally:
        slots.transfer_ended(token, moved.byte_count)


async def send_random(
    request: web.Request, response: web.StreamResponse, payload: Payload, count: int
) -> int:
    """Prepare ``response`` with Content-Length ``count`` and send that many random bytes; returns
    the bytes handed to the kernel (fewer when the client left early, which ends a test)."""
    response.content_length = count
    response.force_close()
    await response.prepare(request)
    transport = request.transport
    if transport is None:
        return 0
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + MAX_TRANSFER_S
    sent = 0
    try:
        while sent < count and time.monotonic() < deadline:
            offset = sent % payload.size
            size = min(CHUNK_BYTES, count - sent, payload.size - offset)
            async with asyncio.timeout(CHUNK_TIMEOUT_S):
                sent += await loop.sendfile(transport, payload.file, offset, size)
    except (ConnectionError, TimeoutError, OSError):
        transport.abort()  # the client ended the test, or stalled
    return sent


@dataclass(frozen=True, slots=True)
class Discarded:
    """What an upload's body came to."""

    byte_count: int
    #: aiohttp's parser saw the whole body, so the connection can carry another request; when
    #: False the reply must close it (the body went past the parser, or ended short).
    reusable: bool


def idle_limit_s(received: int, early_end: int | None) -> float:
    """How long a body may pause after ``received`` bytes before it counts as over, seconds:
    the short grace at a known client's early end (``compat.speedtest_cli_sends``), else
    ``BODY_IDLE_TIMEOUT_S``."""
    return EARLY_END_GRACE_S if received == early_end else BODY_IDLE_TIMEOUT_S


async def discard_body(request: web.Request, early_end: int | None = None) -> Discarded:
    """Read the request body and drop it, counting its bytes (payload bytes for a chunked body).

    The body ends at its framing's end, or earlier when the client closes or resets, or sends
    nothing for ``idle_limit_s``: the count is then what arrived. ``early_end`` is a byte count at
    which a known client stops short of its Content-Length and waits for the reply.

    With a Content-Length on a plain TCP socket the socket is taken over: first the body bytes
    aiohttp already holds are taken from it, then aiohttp stops reading and a duplicate
    descriptor (asyncio refuses one a transport owns) is drained with MSG_TRUNC. aiohttp's parser
    never sees those bytes, so the connection must close after the reply.
    """
    length = request.content_length
    sock = _socket_to_take_over(request)
    if length is None or sock is None or request.transport is None:
        return await _read_through_aiohttp(request, early_end)
    try:
        got = _take_buffered(request.content)
    except (ConnectionError, web.RequestPayloadError):
        return Discarded(0, reusable=False)  # the client left before the handler ran
    if got >= length:
        return Discarded(got, reusable=True)
    request.transport.pause_reading()
    with socket.socket(fileno=os.dup(sock.fileno())) as raw:
        got = await _drain(raw, got, length, early_end)
    # aiohttp's parser never saw the body: mark it read, or aiohttp lingers up to 10 s for it.
    request.content.feed_eof()
    return Discarded(got, reusable=False)


def _socket_to_take_over(request: web.Request) -> socket.socket | None:
    """The request's TCP socket when its body may bypass aiohttp: plain TCP (not TLS, where the
    kernel holds ciphertext) and no Content-Encoding (aiohttp would count decoded bytes)."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if (
        transport is None
        or sock is None
        or sock.family not in (socket.AF_INET, socket.AF_INET6)
        or transport.get_extra_info("sslcontext") is not None
        or request.headers.get("Content-Encoding", "identity").lower() != "identity"
    ):
        return None
    return sock


def _take_buffered(content: StreamReader) -> int:
    """Empty aiohttp's body buffer; returns how many bytes it held.

    Each read can let aiohttp's parser feed the buffer again (bytes it held back while the buffer
    was full), so read until it comes back empty. aiohttp may resume the transport's reading on
    the way; no read happens before the caller's next await, and the caller pauses it first.
    """
    total = 0
    while chunk := content.read_nowait():
        total += len(chunk)
    return total


async def _read_through_aiohttp(request: web.Request, early_end: int | None) -> Discarded:
    """The body through aiohttp's own reader: chunked bodies, TLS, encoded bodies."""
    content = request.content
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_TRANSFER_S
    total = 0
    try:
        while True:
            wait_s = min(idle_limit_s(total, early_end), deadline - loop.time())
            async with asyncio.timeout(max(wait_s, 0)):
                chunk = await content.readany()
            if not chunk:
                return Discarded(total, reusable=True)
            total += len(chunk)
    except TimeoutError:
        pass  # the client stopped sending before its body's end
    except (ConnectionError, web.RequestPayloadError):
        pass  # the client left, or its framing broke: the test is over
    if request.transport is not None:
        request.transport.pause_reading()  # nothing more may reach the parser's finished reader
    content.feed_eof()
    return Discarded(total, reusable=False)


async def _drain(raw: socket.socket, got: int, length: int, early_end: int | None) -> int:
    """Drop what arrives on ``raw`` until the body's ``length`` (``got`` counted already);
    returns the new count."""
    loop = asyncio.get_running_loop()
    buffer = bytearray(DISCARD_BUFFER_BYTES)
    readable = asyncio.Event()
    deadline = loop.time() + MAX_TRANSFER_S
    loop.add_reader(raw.fileno(), readable.set)
    try:
        while got < length:
            try:
                # A bounded number of reads per wake-up keeps one fast upload from starving the
                # loop; the selector is level-triggered, so what is left wakes us again at once.
                for _ in range(READS_PER_WAKEUP):
                    n = raw.recv_into(buffer, min(len(buffer), length - got), socket.MSG_TRUNC)
                    got += n
                    if n == 0 or got >= length:
                        return got  # the client closed, or the body is complete
            except BlockingIOError:
                pass
            except OSError:
                return got  # reset by the client: the test is over
            readable.clear()
            wait_s = min(idle_limit_s(got, early_end), deadline - loop.time())
            try:
                async with asyncio.timeout(max(wait_s, 0)):
                    await readable.wait()
            except TimeoutError:
                return got  # the client stopped sending before its body's end
    finally:
        loop.remove_reader(raw.fileno())
    return got
