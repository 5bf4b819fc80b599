"""TCP-connect RTT: the SYN to SYN-ACK round trip of a fresh connection per probe.

The RTT is the kernel's own measurement of the handshake, ``tcpi_rtt`` from ``TCP_INFO`` right
after ``connect`` completes: on an active open the SYN-ACK gives the connection's first RTT
sample, in microseconds, timed inside the kernel (tcp(7); ``tcp_rtt_estimator`` seeds
``srtt`` with the first sample), so event-loop wake-ups stay out. Where that sample is missing (the
SYN was retransmitted, and Karn's rule forbids timing it) the user-space connect time from the
monotonic clock is used instead, as a user would have waited it. The host is resolved once per
test; the first connect is a warm-up and discarded, like the ICMP engine's.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from probes.envelope import stamp
from probes.latency.address import resolve, split_host_port
from probes.latency.options import LatencyOptions
from probes.latency.summary import latency_measurement
from probes.models import FailureKind, Family, LatencyResult
from probes.spec import Measurement, Stopwatch

#: ``struct tcp_info`` (linux/tcp.h): tcpi_rtt (us) at byte 68, tcpi_total_retrans at byte 100.
TCP_INFO_BYTES = 104
_RTT = struct.Struct("=I")
_RTT_OFFSET = 68
_TOTAL_RETRANS_OFFSET = 100


def handshake_rtt_ms(tcp_info: bytes, connect_ns: int) -> float:
    """The kernel's handshake RTT from ``TCP_INFO`` bytes, else the user-space connect time."""
    if len(tcp_info) >= TCP_INFO_BYTES:
        (rtt_us,) = _RTT.unpack_from(tcp_info, _RTT_OFFSET)
        (retrans,) = _RTT.unpack_from(tcp_info, _TOTAL_RETRANS_OFFSET)
        if rtt_us and not retrans:
            return float(rtt_us) / 1000
    return connect_ns / 1e6


async def connect_once(address: str, port: int, family: Family, wait_s: float) -> float:
    """One handshake's RTT in ms; raises ``TimeoutError`` or ``OSError`` when it fails."""
    af = socket.AF_INET if family is Family.IPV4 else socket.AF_INET6
    with socket.socket(af, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        started = time.perf_counter_ns()
        async with asyncio.timeout(wait_s):
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
        elapsed = time.perf_counter_ns() - started
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
        return handshake_rtt_ms(info, elapsed)


async def measure(targets: Sequence[str], options: LatencyOptions) -> list[Measurement]:
    """One result per ``HOST:PORT`` target, the targets one after another."""
    for target in targets:
        split_host_port(target)  # refuse a bad target before measuring anything
    return [await _measure_one(target, options) for target in targets]


async def _measure_one(target: str, options: LatencyOptions) -> Measurement:
    measured_at, started = datetime.now(UTC), time.perf_counter_ns()
    host, port = split_host_port(target)
    family = options.family
    resolve_ms: float | None = None
    series: list[float | None] = []
    errors: list[BaseException] = []
    try:
        address, family, resolve_ms = await resolve(host, options.family)
    except socket.gaierror as exc:
        return latency_measurement(
            method="tcp", target=target, family=family, series=series,
            measured_at=measured_at, started_ns=started,
            failure=(FailureKind.DNS, f"cannot resolve {host!r}: {exc.strerror}"),
        )  # fmt: skip
    start = time.monotonic()
    for i in range(options.count + 1):  # probe 0 is the warm-up
        if i:
            await asyncio.sleep(max(0.0, start + i * options.interval_s - time.monotonic()))
        try:
            rtt: float | None = await connect_once(address, port, family, options.wait_s)
        except (TimeoutError, OSError) as exc:
            rtt = None
            errors.append(exc)
        if i:
            series.append(rtt)
    failure: tuple[FailureKind, str] | None = None
    if errors and all(r is None for r in series):
        last = errors[-1]
        kind = (
            FailureKind.REFUSED if isinstance(last, ConnectionRefusedError)
            else FailureKind.TIMEOUT if isinstance(last, TimeoutError)
            else FailureKind.UNREACHABLE
        )  # fmt: skip
        failure = (kind, f"no TCP connection to {target}: {type(last).__name__} {last}".strip())
    return latency_measurement(
        method="tcp", target=target, family=family, series=series,
        measured_at=measured_at, started_ns=started, failure=failure, resolve_ms=resolve_ms,
    )  # fmt: skip


async def measure_tcp_connect(
    probe_id: str,
    host: str,
    port: int,
    *,
    count: int = 10,
    interval_s: float = 0.2,
    timeout_s: float = 2.0,
) -> LatencyResult:
    """``count`` connects to ``host:port`` as a result (the demo's entry; the agent runs
    ``measure`` through the registry and stamps the result itself)."""
    options = LatencyOptions(count=count, interval_s=interval_s, wait_s=timeout_s)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    watch = Stopwatch()
    measurement = await _measure_one(target, options)
    return stamp(LatencyResult, probe_id, measurement, watch.span())
