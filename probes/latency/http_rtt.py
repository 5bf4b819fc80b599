"""HTTP RTT: time to first byte of small GETs sent one after another on one kept-alive connection.

Phases, named as everywhere in hamletnet (blackbox_exporter's ``prober/http.go``): ``resolve_ms``
(name lookup), ``connect_ms`` (TCP handshake), ``tls_ms`` (TLS handshake, https only) and
``first_byte_ms`` (the first GET on the new connection, which is the warm-up and not in
``rtts_ms``). Each counted sample is request sent to first response byte, the way VNNIC i-Speed
times its "ping" (methodology.md §2): the wall clock is read just before the request's ``send``
and the first response segment carries the kernel's receive timestamp (``SO_TIMESTAMPNS`` works
on TCP sockets too), so the event loop stays out. The stamp is the last segment's that the first
``recvmsg`` returned; for the small object this engine is meant for, that is the first segment.
Where the kernel refuses the option, the monotonic clock right after that ``recvmsg`` stands in
(``timestamp_source`` says which, for the samples in ``rtts_ms``).

TLS runs over our own socket through ``ssl.SSLObject`` and memory buffers, so the timestamps are
those of the encrypted records as they arrived. A sample that times out is lost; the connection
is then replaced (untimed) before the next probe, as it is when the server closes it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from probes import kernel_timestamps
from probes.latency.address import resolve
from probes.latency.http_response import HttpFramingError, build_get, response_end
from probes.latency.options import LatencyOptions
from probes.latency.summary import latency_measurement
from probes.models import FailureKind, Family, TimestampSource
from probes.spec import Measurement


@dataclass(frozen=True, slots=True)
class HttpTarget:
    tls: bool
    host: str
    port: int
    path: str


def parse_url(url: str) -> HttpTarget:
    """``http(s)://host[:port]/path``; ValueError names the URL otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"target {url!r} must be an http:// or https:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"target {url!r}: {exc}") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return HttpTarget(tls=parts.scheme == "https", host=parts.hostname, port=port, path=path)


class _Connection:
    """A TCP (and TLS) connection whose reads carry kernel receive timestamps."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject | None) -> None:
        self.sock = sock
        self.tls = tls
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(
        cls, address: str, family: Family, target: HttpTarget, context: ssl.SSLContext | None
    ) -> tuple[_Connection, float, float | None]:
        """A connection, its TCP connect time and its TLS handshake time (ms)."""
        af = socket.AF_INET if family is Family.IPV4 else socket.AF_INET6
        sock = socket.socket(af, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            kernel_timestamps.enable(sock)
            loop = asyncio.get_running_loop()
            started = time.perf_counter_ns()
            await loop.sock_connect(sock, (address, target.port))
            connect_ms = (time.perf_counter_ns() - started) / 1e6
            conn = cls(sock, None)
            tls_ms = None
            if context is not None:
                started = time.perf_counter_ns()
                await conn._handshake(context, target.host)
                tls_ms = (time.perf_counter_ns() - started) / 1e6
        except BaseException:
            sock.close()
            raise
        return conn, connect_ms, tls_ms

    def close(self) -> None:
        self.sock.close()

    async def _handshake(self, context: ssl.SSLContext, host: str) -> None:
        self.tls = context.wrap_bio(self._in, self._out, server_hostname=host)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                data, _, _ = await self._recv_raw()
                if not data:
                    raise ConnectionResetError("server closed the connection during TLS") from None
                self._in.write(data)
        await self._flush()

    async def _flush(self) -> None:
        pending = self._out.read()
        if pending:
            await self._loop.sock_sendall(self.sock, pending)

    async def _recv_raw(self) -> tuple[bytes, int | None, int]:
        return await kernel_timestamps.recv_stamped(self.sock)

    async def exchange(self, request: bytes) -> tuple[kernel_timestamps.Rtt, bool]:
        """Send ``request``, read one whole response; its time to first byte and whether the
        connection stays usable."""
        if self.tls is not None:
            self.tls.write(request)
            request = self._out.read()
        sent_wall, sent_mono = time.time_ns(), time.perf_counter_ns()
        await self._loop.sock_sendall(self.sock, request)
        buf = b""
        ttfb: kernel_timestamps.Rtt | None = None
        while True:
            raw, rx_kernel, rx_mono = await self._recv_raw()
            if not raw:
                raise ConnectionResetError("server closed the connection before the response")
            data = self._decrypt(raw) if self.tls is not None else raw
            if data and ttfb is None:
                ttfb = kernel_timestamps.rtt(sent_wall, rx_kernel, sent_mono, rx_mono)
            buf += data
            framed = response_end(buf)
            if framed is not None and framed[0].status >= 200:
                head, end = framed
                assert ttfb is not None
                return ttfb, head.keep_alive and end == len(buf)
            if framed is not None:  # an interim 1xx response: the final one follows
                buf = buf[framed[1] :]

    def _decrypt(self, raw: bytes) -> bytes:
        assert self.tls is not None
        self._in.write(raw)
        out = b""
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                return out
            except ssl.SSLZeroReturnError:
                return out
            if not chunk:
                return out
            out += chunk


def _tls_context(options: LatencyOptions) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.ca_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def measure(targets: Sequence[str], options: LatencyOptions) -> list[Measurement]:
    """One result per URL target, the targets one after another."""
    parsed = [parse_url(t) for t in targets]  # refuse a bad URL before measuring anything
    return [
        await _measure_one(url, target, options)
        for url, target in zip(targets, parsed, strict=True)
    ]


async def _measure_one(url: str, target: HttpTarget, options: LatencyOptions) -> Measurement:
    measured_at, started = datetime.now(UTC), time.perf_counter_ns()
    family = options.family
    phases: dict[str, float | None] = {}
    failure: tuple[FailureKind, str] | None = None
    series: list[float | None] = []
    sources: list[TimestampSource] = []
    context = _tls_context(options) if target.tls else None
    request = build_get(target.host if target.port in (80, 443) else f"{target.host}:{target.port}",
                        target.path)  # fmt: skip
    conn: _Connection | None = None
    try:
        address, family, phases["resolve_ms"] = await resolve(target.host, options.family)
        async with asyncio.timeout(options.wait_s):
            conn, phases["connect_ms"], phases["tls_ms"] = await _Connection.open(
                address, family, target, context
            )
        async with asyncio.timeout(options.wait_s):
            first_byte, reusable = await conn.exchange(request)
        phases["first_byte_ms"] = first_byte.ms
        start = time.monotonic()
        for i in range(options.count):
            await asyncio.sleep(max(0.0, start + i * options.interval_s - time.monotonic()))
            try:
                if conn is None or not reusable:  # replaced outside the timed exchange
                    if conn is not None:
                        conn.close()
                    conn = None
                    async with asyncio.timeout(options.wait_s):
                        conn, _, _ = await _Connection.open(address, family, target, context)
                async with asyncio.timeout(options.wait_s):
                    rtt, reusable = await conn.exchange(request)
            except (TimeoutError, OSError):  # this probe is lost; the next one reconnects
                series.append(None)
                reusable = False
                continue
            series.append(rtt.ms)
            sources.append(rtt.source)
    except socket.gaierror as exc:
        failure = (FailureKind.DNS, f"cannot resolve {target.host!r}: {exc.strerror}")
    except ssl.SSLError as exc:
        failure = (FailureKind.TLS, f"TLS with {url}: {exc}")
    except HttpFramingError as exc:
        failure = (FailureKind.PROTOCOL, f"{url}: {exc}")
    except TimeoutError:
        failure = (FailureKind.TIMEOUT, f"{url}: no answer within {options.wait_s} s")
    except ConnectionRefusedError as exc:
        failure = (FailureKind.REFUSED, f"{url}: {exc}")
    except OSError as exc:
        failure = (FailureKind.UNREACHABLE, f"{url}: {type(exc).__name__} {exc}")
    finally:
        if conn is not None:
            conn.close()
    return latency_measurement(
        method="http", target=url, family=family, series=series,
        measured_at=measured_at, started_ns=started, failure=failure,
        timestamp_source=kernel_timestamps.series_source(sources), **phases,
    )  # fmt: skip
