"""hamletnet's own bandwidth engine: N parallel TCP streams against a hamletnet target.

Per direction (download, then upload): N connections (3 by default, SamKnows) carry one endless
HTTP transfer each; the kernel's per-socket byte counters (TCP_INFO bytes_received, or
bytes_acked for upload) are read every 100 ms; the warm-up ends by the rule in
``throughput.warmup_end`` and the figure is the bytes of the next ``duration_s`` (10 s) ÷ their
time (methodology.md adopt item 2; QCVN 34 §2.1.2.1's bytes ÷ time). The warm-up is recorded,
its samples kept, and left out of the figure.

Cheap per byte, so a Raspberry Pi can fill a gigabit: each stream is one thread in a tight
system-call loop. Download discards with ``recv_into(buf, n, MSG_TRUNC)``: Linux drops TCP payload
without copying it to user space (tcp(7)), so there is no per-byte work at all in Python. Upload
sends with ``os.sendfile`` from an in-memory file of random bytes: zero-copy from page cache.
Threads release the GIL in every system call, so N streams overlap.

Cheap per second too, so a slow line's test costs little more than iperf3's: what runs on a fixed
clock whatever the rate (the TCP_INFO readings, the loaded-latency pings) runs in two plain
threads that sleep between ticks, and the event loop sleeps through the transfer (each wake-up of
the loop costs several times a thread's; ``bench/agent.py --lab``). The upload payload is made
only for an upload.

Around the transfers: a slot on the target (``slot.py``), idle latency (median of 5 TCP-connect
RTTs) before, loaded latency (TCP-connect RTT every 200 ms, median, after the warm-up) during each
direction, the process's CPU use over each measured window, and diagnosis from TCP_INFO.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from probes.bandwidth import cpu, params, slot, tcpinfo, throughput
from probes.bandwidth.errors import BandwidthError
from probes.bandwidth.link import link_speed_mbps
from probes.models import FailureKind, Family
from probes.spec import Measurement, Span
from probes.stats import median

Direction = Literal["download", "upload"]
#: A socket address as getaddrinfo gives it: (host, port) or (host, port, flowinfo, scope_id).
Address = tuple[str, int] | tuple[str, int, int, int]


class HttpOptions(BaseModel):
    """``--option`` / schedule ``options`` of the http engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    streams: int = Field(default=params.DEFAULT_STREAMS, ge=1, le=64)
    duration_s: float = Field(default=params.DEFAULT_DURATION_S, ge=1, le=120)
    warmup_max_s: float = Field(default=params.WARMUP_MAX_S, ge=0, le=30)
    sample_interval_ms: float = Field(default=params.SAMPLE_INTERVAL_MS, ge=20, le=1000)
    direction: Literal["both", "download", "upload"] = "both"
    slot: bool = True
    slot_wait_s: float = Field(default=params.DEFAULT_SLOT_WAIT_S, ge=0, le=3600)
    line_rate_mbps: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _samples_fit_the_result(self) -> HttpOptions:
        samples = (self.warmup_max_s + self.duration_s) * 1000 / self.sample_interval_ms
        if samples > 1900:
            raise ValueError(
                f"warmup_max_s + duration_s = {self.warmup_max_s + self.duration_s} s at"
                f" {self.sample_interval_ms} ms gives {samples:.0f} samples; at most 1900 fit"
            )
        return self


def parse_options(options: object) -> HttpOptions:
    try:
        return HttpOptions.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise BandwidthError(FailureKind.INTERNAL, f"http engine options: {problems}") from None


@dataclass(frozen=True, slots=True)
class Target:
    """``http://HOST:PORT[/base]`` of a hamletnet measurement target."""

    url: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise BandwidthError(
                FailureKind.PROTOCOL,
                f"target {url!r} must be http://HOST:PORT of a hamletnet target (the data path"
                " is plain HTTP: random bytes need no secrecy, and TLS would cost the Pi its"
                " zero-copy path)",
            )
        return cls(url.rstrip("/"), parts.hostname, parts.port or 80, parts.path.rstrip("/"))

    def request_head(self, method: str, path: str, extra: str = "") -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (
            f"{method} {self.base_path}{path} HTTP/1.1\r\nHost: {host}:{self.port}\r\n"
            f"User-Agent: hamletnet-probe\r\nCache-Control: no-store\r\n{extra}\r\n"
        ).encode("ascii")


@dataclass
class _Stream:
    """One TCP connection moving bytes one way, in its own thread."""

    address: Address
    family: socket.AddressFamily
    direction: Direction
    payload_fd: int | None  # the upload payload (``_upload_payload``); None for a download
    payload_size: int
    sock: socket.socket | None = None
    error: BaseException | None = None
    _stopping: bool = False
    _thread: threading.Thread | None = None

    def connect(self, head: bytes) -> None:
        """Blocking: connect, send the request head and, for a download, read the reply head."""
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        self.sock = sock
        sock.settimeout(params.CONNECT_TIMEOUT_S)
        sock.connect(self.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head)
        if self.direction == "download":
            _read_reply_head(sock)
        # Blocking from here on, with kernel-side stall timeouts (no poll() before each call).
        sock.settimeout(None)
        timeval = struct.pack("@ll", int(params.IO_TIMEOUT_S), 0)  # struct timeval, native longs
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        if self.direction == "download":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, params.RECV_LOWAT_BYTES)

    def start(self) -> None:
        target = self._receive if self.direction == "download" else self._send
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True,
                                        name=f"hamletnet-{self.direction}")  # fmt: skip
        self._thread.start()

    def _run(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except OSError as exc:
            if not self._stopping:
                self.error = exc

    def _receive(self) -> None:
        assert self.sock is not None
        buffer = bytearray(params.RECV_BUFFER_BYTES)
        size, recv_into, trunc = len(buffer), self.sock.recv_into, socket.MSG_TRUNC
        while not self._stopping:
            if recv_into(buffer, size, trunc) == 0:
                if not self._stopping:
                    self.error = ConnectionResetError("the target ended the download early")
                return

    def _send(self) -> None:
        assert self.sock is not None and self.payload_fd is not None
        out, source, size = self.sock.fileno(), self.payload_fd, self.payload_size
        chunk, sendfile, offset = params.SENDFILE_CHUNK_BYTES, os.sendfile, 0
        while not self._stopping:
            sent = sendfile(out, source, offset, min(chunk, size - offset))
            offset = (offset + sent) % size

    def counted_bytes(self) -> int:
        """Bytes delivered so far: received by our TCP, or acknowledged by the target's."""
        assert self.sock is not None
        info = tcpinfo.read(self.sock)
        return info.bytes_received if self.direction == "download" else info.bytes_acked

    def stop(self) -> None:
        """End the transfer: ``shutdown`` wakes the stream's thread. An upload's socket is also
        set to abort when it is closed (``SO_LINGER`` 0: a reset, what it still holds never
        sent), so no bytes outside the measured window cross the line after the test: a
        metered line would pay for them, and no figure or data budget counts them."""
        self._stopping = True
        if self.sock is not None:
            try:
                if self.direction == "upload":
                    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT_ON_CLOSE)
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=params.IO_TIMEOUT_S + 1)
        if self.sock is not None:
            self.sock.close()


#: ``struct linger`` {on, 0 s}: close() resets the connection and drops unsent data (socket(7)).
_ABORT_ON_CLOSE = struct.pack("ii", 1, 0)


def _read_reply_head(sock: socket.socket) -> None:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise BandwidthError(FailureKind.PROTOCOL, "the target closed before replying")
        head += chunk
        if len(head) > params.MAX_HEAD_BYTES:
            raise BandwidthError(FailureKind.PROTOCOL, "the target's reply head is too long")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or parts[1] != "200":
        raise BandwidthError(
            FailureKind.PROTOCOL,
            f"the target answered {status_line!r} to a download: is it a hamletnet target?",
        )


@dataclass
class DirectionResult:
    throughput: throughput.Throughput
    cpu_percent: float | None
    loaded_latency_ms: float | None
    infos: list[tcpinfo.TcpInfo]


@dataclass
class _Pinger:
    """TCP-connect RTTs to the target every ``interval_s`` during a transfer, from a thread of
    its own that sleeps between them (``run``), until ``stop`` is set."""

    address: Address
    family: socket.AddressFamily
    stop: threading.Event
    rtts: list[tuple[float, float]] = field(default_factory=list)

    def run(self, interval_s: float, started: float) -> None:
        while True:
            rtt = connect_rtt_ms(self.address, self.family)
            if rtt is not None:
                self.rtts.append((time.perf_counter() - started, rtt))
            if self.stop.wait(interval_s):
                return


def connect_rtt_ms(address: Address, family: socket.AddressFamily) -> float | None:
    """One TCP handshake's time (SYN to SYN-ACK seen), ms; None when it did not complete within
    ``CONNECT_TIMEOUT_S``. Blocking: call it from a thread."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(params.CONNECT_TIMEOUT_S)
            started = time.perf_counter_ns()
            sock.connect(address)
            return (time.perf_counter_ns() - started) / 1e6
    except OSError:  # TimeoutError included; or no socket to be had (EMFILE)
        return None


def _idle_rtts_ms(address: Address, family: socket.AddressFamily) -> list[float | None]:
    return [connect_rtt_ms(address, family) for _ in range(params.IDLE_LATENCY_COUNT)]


def _upload_payload() -> int:
    """An in-memory file (memfd) of ``UPLOAD_PAYLOAD_BYTES`` random bytes for the upload streams
    to ``sendfile`` from; the caller closes it."""
    fd = os.memfd_create("hamletnet-upload")
    try:
        payload = memoryview(os.urandom(params.UPLOAD_PAYLOAD_BYTES))
        while payload:
            payload = payload[os.write(fd, payload) :]
    except BaseException:
        os.close(fd)
        raise
    return fd


class HttpEngine:
    def __init__(self, target: Target, options: HttpOptions) -> None:
        self.target = target
        self.options = options

    async def _resolve(self) -> tuple[socket.AddressFamily, Address]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self.target.host, self.target.port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise BandwidthError(
                FailureKind.DNS, f"cannot resolve {self.target.host!r}: {exc}"
            ) from None
        family, _, _, _, address = infos[0]
        return family, address  # type: ignore[return-value]

    async def measure(self) -> Measurement:
        measured_at = datetime.now(UTC)
        started = time.perf_counter()
        family, address = await self._resolve()
        link_speed = await asyncio.to_thread(link_speed_mbps, address[0])
        uploads = "upload" in self._directions()
        payload_fd = await asyncio.to_thread(_upload_payload) if uploads else None
        try:
            async with aiohttp.ClientSession() as session:
                lease = None
                if self.options.slot:
                    lease = await slot.acquire(
                        session, self.target.url, self._slot_s(), self.options.slot_wait_s
                    )
                try:
                    idle = await asyncio.to_thread(_idle_rtts_ms, address, family)
                    idle_ms = [rtt for rtt in idle if rtt is not None]
                    if not idle_ms:
                        raise BandwidthError(
                            FailureKind.UNREACHABLE, f"no TCP connection to {self.target.url}"
                        )
                    results: dict[Direction, DirectionResult] = {}
                    for direction in self._directions():
                        results[direction] = await self._transfer(
                            direction, family, address, payload_fd, lease
                        )
                finally:
                    ran_alone = (
                        await slot.release(session, self.target.url, lease) if lease else None
                    )
        finally:
            if payload_fd is not None:
                os.close(payload_fd)
        return self._result(
            measured_at, time.perf_counter() - started, family, link_speed,
            median(idle_ms), results, ran_alone,
        )  # fmt: skip

    def _directions(self) -> list[Direction]:
        d = self.options.direction
        return ["download", "upload"] if d == "both" else [d]

    def _slot_s(self) -> float:
        per_direction = self.options.warmup_max_s + self.options.duration_s + 2
        return 5 + per_direction * len(self._directions())

    async def _transfer(
        self,
        direction: Direction,
        family: socket.AddressFamily,
        address: Address,
        payload_fd: int | None,
        lease: slot.Lease | None,
    ) -> DirectionResult:
        opts = self.options
        query = f"?{params.LEASE_PARAM}={lease.lease_id}" if lease else ""
        if direction == "download":
            head = self.target.request_head(
                "GET", f"{params.DOWNLOAD_PATH}{query}{'&' if query else '?'}bytes="
                f"{params.ENDLESS_BYTES}",
            )  # fmt: skip
        else:
            head = self.target.request_head(
                "POST", f"{params.UPLOAD_PATH}{query}",
                "Content-Type: application/octet-stream\r\n"
                f"Content-Length: {params.ENDLESS_BYTES}\r\n",
            )  # fmt: skip
        streams = [
            _Stream(address, family, direction, payload_fd, params.UPLOAD_PAYLOAD_BYTES)
            for _ in range(opts.streams)
        ]
        stop = threading.Event()  # ends the sampling and the pinging threads
        pinger = _Pinger(address, family, stop)
        try:
            try:
                await asyncio.gather(*(asyncio.to_thread(s.connect, head) for s in streams))
            except ConnectionRefusedError:
                raise BandwidthError(
                    FailureKind.REFUSED, f"{self.target.url} refused the {direction} streams"
                ) from None
            except TimeoutError:
                raise BandwidthError(
                    FailureKind.TIMEOUT, f"no connection to {self.target.url} within"
                    f" {params.CONNECT_TIMEOUT_S} s for the {direction} streams",
                ) from None  # fmt: skip
            for s in streams:
                s.start()
            t0 = time.perf_counter()
            pinging = threading.Thread(
                target=pinger.run, args=(params.LOADED_LATENCY_INTERVAL_S, t0), daemon=True,
                name="hamletnet-loaded-latency",
            )  # fmt: skip
            pinging.start()
            try:
                readings, warmup, cpu_start, cpu_end = await asyncio.to_thread(
                    self._sample, streams, t0, stop
                )
            finally:
                stop.set()
                await asyncio.to_thread(pinging.join, params.CONNECT_TIMEOUT_S + 1)
            infos = [tcpinfo.read(s.sock) for s in streams if s.sock is not None]
        finally:
            for s in streams:
                s.stop()
            for s in streams:
                await asyncio.to_thread(s.close)
        result = throughput.summarize(readings, warmup)
        warm_at = readings[warmup.index].at_s
        loaded = [rtt for at, rtt in pinger.rtts if at >= warm_at]
        return DirectionResult(result, cpu.cpu_percent(cpu_start, cpu_end), median(loaded), infos)

    def _sample(
        self, streams: list[_Stream], t0: float, stop: threading.Event
    ) -> tuple[list[throughput.Reading], throughput.Warmup, cpu.CpuMark, cpu.CpuMark]:
        """The readings of one direction, one per sample interval (blocking: in a thread of its
        own, which sleeps on ``stop`` between them and ends when it is set)."""
        opts = self.options
        interval = opts.sample_interval_ms / 1000

        def total() -> int:
            return sum(s.counted_bytes() for s in streams)

        readings = [throughput.Reading(0.0, total())]
        warmup: throughput.Warmup | None = None
        cpu_start = cpu.mark()
        tick = 1
        while True:
            if stop.wait(max(0.0, t0 + tick * interval - time.perf_counter())):
                raise BandwidthError(FailureKind.INTERNAL, "the test was stopped while sampling")
            tick += 1
            readings.append(throughput.Reading(time.perf_counter() - t0, total()))
            failed = next((s.error for s in streams if s.error is not None), None)
            if failed is not None:
                raise BandwidthError(
                    FailureKind.TIMEOUT if isinstance(failed, BlockingIOError | TimeoutError)
                    else FailureKind.UNREACHABLE,
                    f"a stream broke during the {streams[0].direction}: {failed}",
                )  # fmt: skip
            if warmup is None:
                warmup = throughput.warmup_end(readings, max_s=opts.warmup_max_s)
                if warmup is not None:
                    cpu_start = cpu.mark()
                continue
            if readings[-1].at_s - readings[warmup.index].at_s >= opts.duration_s - interval / 2:
                return readings, warmup, cpu_start, cpu.mark()

    def _result(
        self,
        measured_at: datetime,
        elapsed_s: float,
        family: socket.AddressFamily,
        link_speed: float | None,
        idle_ms: float | None,
        results: dict[Direction, DirectionResult],
        ran_alone: bool | None,
    ) -> Measurement:
        down, up = results.get("download"), results.get("upload")
        cpus = [r.cpu_percent for r in results.values() if r.cpu_percent is not None]
        cpu_max = max(cpus) if cpus else None
        rtts_us = [i.min_rtt_us for r in results.values() for i in r.infos if i.min_rtt_us]
        mss = up.infos[0].snd_mss if up and up.infos else (down.infos[0].rcv_mss if down else None)
        fields = dict(
            family=Family.IPV6 if family == socket.AF_INET6 else Family.IPV4,
            streams=self.options.streams,
            download_mbps=down.throughput.mbps if down else None,
            upload_mbps=up.throughput.mbps if up else None,
            download_bytes=down.throughput.bytes if down else None,
            upload_bytes=up.throughput.bytes if up else None,
            download_duration_ms=down.throughput.seconds * 1000 if down else None,
            upload_duration_ms=up.throughput.seconds * 1000 if up else None,
            download_samples_mbps=down.throughput.samples_mbps if down else None,
            upload_samples_mbps=up.throughput.samples_mbps if up else None,
            download_warmup_ms=down.throughput.warmup_s * 1000 if down else None,
            upload_warmup_ms=up.throughput.warmup_s * 1000 if up else None,
            sample_interval_ms=self.options.sample_interval_ms,
            idle_latency_ms=idle_ms,
            loaded_latency_down_ms=down.loaded_latency_ms if down else None,
            loaded_latency_up_ms=up.loaded_latency_ms if up else None,
            cpu_percent=cpu_max,
            cpu_limited=cpu.cpu_limited(cpu_max),
            host_limited=_host_limited(up.infos, up.throughput.seconds) if up else None,
            ran_alone=ran_alone,
            link_speed_mbps=link_speed,
            line_rate_mbps=self.options.line_rate_mbps,
            mss_bytes=mss,
            retrans_bytes=sum(i.bytes_retrans for i in up.infos) if up else None,
            min_rtt_ms=min(rtts_us) / 1000 if rtts_us else None,
        )  # fmt: skip
        span = Span(measured_at, elapsed_s * 1000)
        return Measurement(engine="http", target=self.target.url, span=span, fields=fields)


def _host_limited(infos: list[tcpinfo.TcpInfo], seconds: float) -> bool | None:
    """Upload only (our socket is the sender): RWndLimited + SndBufLimited over the streams'
    mean busy time, > 10 % means the ends, not the path, held the test back (methodology.md adopt
    item 2; ndt7's TCPInfo fields). The counters cover the whole connection, warm-up included."""
    busy = [i.busy_time_us for i in infos if i.busy_time_us]
    if not busy or seconds <= 0:
        return None
    limited = sum(i.rwnd_limited_us + i.sndbuf_limited_us for i in infos)
    return limited / sum(busy) > params.HOST_LIMITED_FRACTION
