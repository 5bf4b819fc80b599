"""ICMP echo RTT over IPv4 and IPv6 from one long-lived socket per address family.

The socket is an unprivileged datagram "ping" socket (``SOCK_DGRAM``/``IPPROTO_ICMP``) where
``net.ipv4.ping_group_range`` admits our group, as on Raspberry Pi OS, else a raw socket (root or
``CAP_NET_RAW``). Every target runs its series concurrently over the same socket; a reply finds its
series by the nonce at the start of the payload. RTT = kernel receive timestamp (``SO_TIMESTAMPNS``)
minus the wall-clock time read just before ``sendto`` (``probes.kernel_timestamps``), so the event
loop never enters it; where the kernel refuses the option, the monotonic clock right after the
read stands in (``timestamp_source`` says which). Sequence 0 of each series is a warm-up, sent and
answered (or timed out) before the counted probes 1..count, and discarded: it pays for ARP/ND,
route and neighbour caches and a cellular radio's wake-up (RRC idle to connected), which would
otherwise inflate the first RTT.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from probes import kernel_timestamps
from probes.latency import icmp_packet
from probes.latency.address import resolve
from probes.latency.options import LatencyOptions
from probes.latency.summary import latency_measurement
from probes.models import FailureKind, Family, TimestampSource
from probes.spec import Measurement

log = logging.getLogger(__name__)

# raw(7) and RFC 3542 §3.2; not exported by Python's socket module.
SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1

WARMUP_SEQ = 0

SocketKind = Literal["auto", "dgram", "raw"]

_PERMISSION_FIX = (
    "let the agent's group use ping sockets (sysctl net.ipv4.ping_group_range='0 2147483647')"
    " or grant it CAP_NET_RAW"
)


@dataclass(eq=False)
class _Series:
    """One target's probes: send times by sequence number, RTTs as replies come in."""

    address: str
    ident: int
    nonce: bytes
    wait_s: float
    sent: dict[int, tuple[int, int]] = field(default_factory=dict)  # seq -> (wall ns, mono ns)
    rtts: dict[int, float] = field(default_factory=dict)
    sources: dict[int, TimestampSource] = field(default_factory=dict)
    send_errors: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class IcmpSocket:
    """One ICMP socket of one family, shared by every series of a test."""

    def __init__(self, family: Family, kind: SocketKind = "auto") -> None:
        self.family = family
        self.sock, self.raw = _open(family, kind)
        self._series: dict[bytes, _Series] = {}
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._on_readable)

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    # -- receiving: called by the event loop; the kernel stamped each packet on arrival ---------
    def _on_readable(self) -> None:
        while True:
            try:
                data, ancdata, _, addr = self.sock.recvmsg(65535, kernel_timestamps.ANCILLARY_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error queued on the socket; the probe just times out
                log.debug("icmp socket: %s", exc)
                continue
            received_mono = time.perf_counter_ns()
            echo = icmp_packet.parse_echo(
                data, self.family, ip_header=self.raw and self.family is Family.IPV4
            )
            if echo is None or not icmp_packet.is_reply(echo):
                continue
            series = self._series.get(echo.nonce)
            if series is None or not _same_address(addr[0], series.address):
                continue
            if self.raw and echo.ident != series.ident:
                continue  # datagram sockets rewrite the identifier; raw ones keep ours
            sent = series.sent.get(echo.seq)
            if sent is None or echo.seq in series.rtts:
                continue  # not ours, or a duplicate
            rtt = kernel_timestamps.rtt(
                sent[0], kernel_timestamps.timestamp_ns(ancdata), sent[1], received_mono
            )
            if rtt.ms <= series.wait_s * 1000:
                series.rtts[echo.seq], series.sources[echo.seq] = rtt
                series.changed.set()

    # -- sending -------------------------------------------------------------------------------
    def _send(self, series: _Series, seq: int, payload_bytes: int) -> None:
        packet = icmp_packet.build_echo(
            self.family, series.ident, seq, icmp_packet.payload_for(series.nonce, payload_bytes)
        )
        wall, mono = time.time_ns(), time.perf_counter_ns()
        try:
            self.sock.sendto(packet, (series.address, 0))
        except OSError as exc:  # no route, neighbour unreachable, buffer full: this probe is lost
            series.send_errors.append(f"{type(exc).__name__}: {exc}")
            return
        series.sent[seq] = (wall, mono)

    async def series(
        self, address: str, options: LatencyOptions
    ) -> tuple[list[float | None], TimestampSource | None]:
        """RTTs of probes 1..count to ``address`` in ms, None where no reply came in time, and
        the source of their receive times."""
        series = _Series(
            address=address,
            ident=int.from_bytes(os.urandom(2), "big"),
            nonce=os.urandom(icmp_packet.NONCE_BYTES),
            wait_s=options.wait_s,
        )
        self._series[series.nonce] = series
        try:
            self._send(series, WARMUP_SEQ, options.payload_bytes)
            await _wait_for(series, {WARMUP_SEQ}, time.monotonic() + options.wait_s)
            start = time.monotonic()
            for seq in range(1, options.count + 1):
                due = start + (seq - 1) * options.interval_s
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                self._send(series, seq, options.payload_bytes)
            expected = set(range(1, options.count + 1)) & series.sent.keys()
            await _wait_for(series, expected, time.monotonic() + options.wait_s)
        finally:
            del self._series[series.nonce]
        if not series.sent.keys() - {WARMUP_SEQ} and series.send_errors:
            raise OSError(f"cannot send to {address}: {series.send_errors[-1]}")
        counted = range(1, options.count + 1)
        source = kernel_timestamps.series_source(
            series.sources[seq] for seq in counted if seq in series.sources
        )
        return [series.rtts.get(seq) for seq in counted], source


async def _wait_for(series: _Series, seqs: set[int], deadline: float) -> None:
    while not seqs <= series.rtts.keys():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        series.changed.clear()
        try:
            async with asyncio.timeout(remaining):
                await series.changed.wait()
        except TimeoutError:
            return


def _open(family: Family, kind: SocketKind) -> tuple[socket.socket, bool]:
    af = socket.AF_INET if family is Family.IPV4 else socket.AF_INET6
    proto = socket.IPPROTO_ICMP if family is Family.IPV4 else socket.IPPROTO_ICMPV6
    sock: socket.socket | None = None
    raw = False
    if kind in ("auto", "dgram"):
        try:
            sock = socket.socket(af, socket.SOCK_DGRAM, proto)
        except PermissionError as exc:
            if kind == "dgram":
                raise PermissionError(
                    f"no unprivileged ICMP socket ({exc.strerror}): {_PERMISSION_FIX}"
                ) from exc
    if sock is None:
        try:
            sock = socket.socket(af, socket.SOCK_RAW, proto)
        except PermissionError as exc:
            raise PermissionError(
                f"neither an ICMP datagram nor a raw socket ({exc.strerror}): {_PERMISSION_FIX}"
            ) from exc
        raw = True
        # Only echo replies wake us up, not every ICMP message the host receives.
        if family is Family.IPV4:
            sock.setsockopt(SOL_RAW, ICMP_FILTER, icmp_packet.icmp_filter_v4())
        else:
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, icmp_packet.icmp6_filter())
    sock.setblocking(False)
    kernel_timestamps.enable(sock)
    return sock, raw


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return False


async def measure(targets: Sequence[str], options: LatencyOptions) -> list[Measurement]:
    """One result per target (an address or a host name), all series at once over shared sockets."""
    sockets: dict[Family, IcmpSocket] = {}
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_measure_one(t, options, sockets)) for t in targets]
    except ExceptionGroup as group:  # a bad target or a bug: report the first, as a plain error
        raise group.exceptions[0] from None
    finally:
        for sock in sockets.values():
            sock.close()
    return [task.result() for task in tasks]


async def _measure_one(
    target: str, options: LatencyOptions, sockets: dict[Family, IcmpSocket]
) -> Measurement:
    measured_at, started = datetime.now(UTC), time.perf_counter_ns()
    family: Family | None = options.family
    resolve_ms: float | None = None
    try:
        address, family, resolve_ms = await resolve(target, options.family)
        if family not in sockets:
            sockets[family] = IcmpSocket(family, options.socket)
        series, source = await sockets[family].series(address, options)
    except socket.gaierror as exc:
        failure = (FailureKind.DNS, f"cannot resolve {target!r}: {exc.strerror}")
    except PermissionError as exc:
        failure = (FailureKind.PERMISSION, str(exc))
    except OSError as exc:
        failure = (FailureKind.UNREACHABLE, str(exc))
    else:
        return latency_measurement(
            method="icmp", target=target, family=family, series=series,
            measured_at=measured_at, started_ns=started, resolve_ms=resolve_ms,
            timestamp_source=source,
        )  # fmt: skip
    return latency_measurement(
        method="icmp", target=target, family=family, series=[],
        measured_at=measured_at, started_ns=started, failure=failure, resolve_ms=resolve_ms,
    )  # fmt: skip
