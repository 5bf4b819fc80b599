"""The target's data path: random bytes out with sendfile(2), uploads discarded in the kernel.

Nothing is allocated per chunk. Downloads send from one in-memory file of random bytes
(``memfd``) with ``loop.sendfile``, which is os.sendfile on a plain TCP socket (zero-copy; the
page cache is the only copy). Uploads are read with ``recv_into(..., MSG_TRUNC)``, which makes
Linux drop TCP payload without copying it to user space (tcp(7)); aiohttp's own body reader, which
makes a bytes object per chunk, is only the fallback for chunked bodies and TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator

from aiohttp import web

from probes.bandwidth import params
from server.appkeys import SLOTS
from server.target.payload import Payload

#: One sendfile call moves at most this much; each call must finish within CHUNK_TIMEOUT_S, so a
#: client slower than ≈ 280 kbit/s is treated as stalled, bytes.
CHUNK_BYTES = 1024 * 1024
CHUNK_TIMEOUT_S = 30.0
#: A single download or upload stream ends after this long whatever its size, seconds.
MAX_TRANSFER_S = 180.0
#: Upload receive buffer: MSG_TRUNC means the kernel never writes into it, bytes.
DISCARD_BUFFER_BYTES = 1024 * 1024
READS_PER_WAKEUP = 16


def _lease(request: web.Request) -> str | None:
    return request.query.get(params.LEASE_PARAM) or request.headers.get(params.LEASE_HEADER)


@contextlib.contextmanager
def tracked(request: web.Request) -> Iterator[None]:
    """Tell the slot coordinator a transfer runs (it may disturb someone else's slot)."""
    slots = request.app[SLOTS]
    token = slots.transfer_started(_lease(request), request.remote or "")
    try:
        yield
    finally:
        slots.transfer_ended(token)


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


async def discard_body(request: web.Request) -> int:
    """Read the request body and drop it; returns its length in bytes (less if the client left).

    With a Content-Length on a plain TCP socket the socket is taken over: aiohttp stops reading,
    and a duplicate descriptor (asyncio refuses one a transport owns) is drained with MSG_TRUNC.
    The connection is closed after the reply, since aiohttp's parser never saw the body.
    """
    length = request.content_length
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if (
        length is None
        or transport is None
        or sock is None
        or sock.family not in (socket.AF_INET, socket.AF_INET6)
        or transport.get_extra_info("sslcontext") is not None
    ):
        total = 0
        with contextlib.suppress(ConnectionError):  # the client ended the test
            async for chunk in request.content.iter_any():
                total += len(chunk)
        return total
    got = len(request.content.read_nowait())  # body bytes that arrived with the head
    if got >= length:
        return got
    transport.pause_reading()
    with socket.socket(fileno=os.dup(sock.fileno())) as raw:
        got += await _drain(raw, length - got)
    # aiohttp's parser never saw the body: mark it read, or aiohttp lingers up to 10 s for it.
    request.content.feed_eof()
    return got


async def _drain(raw: socket.socket, remaining: int) -> int:
    loop = asyncio.get_running_loop()
    buffer = bytearray(DISCARD_BUFFER_BYTES)
    done = loop.create_future()
    got = 0
    last_progress = time.monotonic()

    def on_readable() -> None:
        nonlocal got, last_progress
        try:
            # A bounded number of reads per wake-up keeps one fast upload from starving the loop.
            for _ in range(READS_PER_WAKEUP):
                n = raw.recv_into(buffer, min(len(buffer), remaining - got), socket.MSG_TRUNC)
                got += n
                if n == 0 or got >= remaining:
                    break
            else:
                last_progress = time.monotonic()
                return
        except BlockingIOError:
            last_progress = time.monotonic()
            return
        except OSError:
            pass  # reset by the client: the test is over
        if not done.done():
            done.set_result(None)

    started = time.monotonic()
    loop.add_reader(raw.fileno(), on_readable)
    try:
        while not done.done():
            await asyncio.wait([done], timeout=params.IO_TIMEOUT_S)
            now = time.monotonic()
            if now - last_progress > params.IO_TIMEOUT_S or now - started > MAX_TRANSFER_S:
                break
    finally:
        loop.remove_reader(raw.fileno())
        with contextlib.suppress(asyncio.CancelledError):
            if not done.done():
                done.cancel()
    return got
