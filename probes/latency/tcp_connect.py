"""TCP-connect RTT: the time from SYN to the completed handshake, measured from user space.

Each sample opens a new connection and closes it at once; the time includes one round trip plus
the local and remote kernels' SYN handling, which is why TCP-connect RTT sits a little above ICMP
echo on the same path. Durations come from the monotonic clock.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from probes.models import FailureKind, Family, LatencyResult, Status
from probes.stats import jitter_masd, mean, median


async def _connect_once(host: str, port: int, timeout_s: float) -> float | None:
    started = time.perf_counter_ns()
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except (TimeoutError, OSError):
        return None
    elapsed_ms = (time.perf_counter_ns() - started) / 1e6
    writer.close()
    await writer.wait_closed()
    return elapsed_ms


async def measure_tcp_connect(
    probe_id: str,
    host: str,
    port: int,
    *,
    count: int = 10,
    interval_s: float = 0.2,
    timeout_s: float = 2.0,
) -> LatencyResult:
    """``count`` connects to ``host:port``; lost samples count as loss and carry no RTT."""
    measured_at = datetime.now(UTC)
    started = time.perf_counter_ns()
    rtts: list[float] = []
    for i in range(count):
        if i:
            await asyncio.sleep(interval_s)
        rtt = await _connect_once(host, port, timeout_s)
        if rtt is not None:
            rtts.append(rtt)
    failed = not rtts
    return LatencyResult(
        result_id=uuid.uuid4(),
        probe_id=probe_id,
        measured_at=measured_at,
        duration_ms=(time.perf_counter_ns() - started) / 1e6,
        engine="tcp",
        method="tcp",
        target=f"{host}:{port}",
        family=Family.IPV6 if ":" in host else Family.IPV4,
        sent=count,
        received=len(rtts),
        loss_pct=100.0 * (count - len(rtts)) / count if count else None,
        rtt_min_ms=min(rtts, default=None),
        rtt_median_ms=median(rtts),
        rtt_mean_ms=mean(rtts),
        rtt_max_ms=max(rtts, default=None),
        jitter_ms=jitter_masd(rtts),
        rtts_ms=rtts,
        status=Status.FAILED if failed else Status.OK,
        failure_kind=FailureKind.UNREACHABLE if failed else None,
        error=f"no TCP connection to {host}:{port} in {count} tries" if failed else None,
    )
