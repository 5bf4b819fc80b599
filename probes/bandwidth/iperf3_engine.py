"""The ``iperf3`` engine: the reference tool, against an iperf3 server (``iperf3 -s``).

Runs ``iperf3 -J`` once per direction (``-R`` for download) with the same streams and duration
as the http engine, a fixed ``--omit`` warm-up, and 100 ms intervals; the figure is the
receiver's (``end.sum_received``), the CPU figure is iperf3's own measure of itself
(``end.cpu_utilization_percent.host_total``, per cent of one core). ``parse`` is a pure function
over iperf3's JSON, tested on captured output of the iperf3 version in use.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from probes.bandwidth import cpu, params
from probes.bandwidth.errors import BandwidthError
from probes.bandwidth.link import link_speed_mbps
from probes.models import FailureKind, Family
from probes.spec import Measurement, Span

DEFAULT_PORT = 5201


class Iperf3Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    streams: int = Field(default=params.DEFAULT_STREAMS, ge=1, le=64)
    duration_s: int = Field(default=int(params.DEFAULT_DURATION_S), ge=1, le=120)
    omit_s: int = Field(default=1, ge=0, le=30)
    sample_interval_ms: float = Field(default=params.SAMPLE_INTERVAL_MS, ge=100, le=1000)
    direction: Literal["both", "download", "upload"] = "both"
    line_rate_mbps: float | None = Field(default=None, gt=0)


@dataclass(frozen=True, slots=True)
class Iperf3Run:
    """One direction as iperf3 saw it; rates in Mb/s, RTTs in ms."""

    reverse: bool
    streams: int
    family: Family | None
    remote_host: str | None
    mbps: float
    bytes: int
    seconds: float
    omit_s: float
    samples_mbps: list[float]
    cpu_percent: float | None
    mss_bytes: int | None
    retransmits: int | None
    min_rtt_ms: float | None


class Iperf3Failed(ValueError):
    """iperf3 reported an error instead of a test (its own words in the message)."""


def parse(doc: dict[str, Any]) -> Iperf3Run:
    """iperf3 3.x ``-J`` output (one client run) -> Iperf3Run. The samples include the omitted
    (warm-up) intervals first, as the http engine's do; the end sums, and so ``mbps``, exclude
    them."""
    if doc.get("error"):
        raise Iperf3Failed(str(doc["error"]))
    start, end = doc["start"], doc["end"]
    test = start["test_start"]
    received = end["sum_received"]
    connected = start.get("connected") or [{}]
    remote = connected[0].get("remote_host")
    sender_rtts = [
        s["sender"]["min_rtt"] for s in end.get("streams", [])
        if s.get("sender", {}).get("sender") and s["sender"].get("min_rtt")
    ]  # fmt: skip
    sum_sent = end.get("sum_sent", {})
    return Iperf3Run(
        reverse=bool(test["reverse"]),
        streams=int(test["num_streams"]),
        family=None if remote is None else Family.IPV6 if ":" in remote else Family.IPV4,
        remote_host=remote,
        mbps=received["bits_per_second"] / 1e6,
        bytes=int(received["bytes"]),
        seconds=float(received["seconds"]),
        omit_s=float(test.get("omit", 0)),
        samples_mbps=[i["sum"]["bits_per_second"] / 1e6 for i in doc.get("intervals", [])],
        cpu_percent=end.get("cpu_utilization_percent", {}).get("host_total"),
        mss_bytes=start.get("tcp_mss_default"),
        retransmits=sum_sent.get("retransmits") if sum_sent.get("sender") else None,
        min_rtt_ms=min(sender_rtts) / 1000 if sender_rtts else None,
    )


def split_target(target: str) -> tuple[str, int]:
    """'HOST', 'HOST:PORT', '[v6]:PORT' or a bare IPv6 address -> (host, port)."""
    target = target.removeprefix("iperf3://")
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest.lstrip(":") or DEFAULT_PORT)
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        return host, int(port)
    return target, DEFAULT_PORT


async def _run_iperf3(argv: list[str], timeout_s: float) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    try:
        doc = json.loads(out)
    except ValueError:
        raise BandwidthError(
            FailureKind.PROTOCOL, f"iperf3 printed no JSON (exit {proc.returncode}): {err[:200]!r}"
        ) from None
    if not isinstance(doc, dict):
        raise BandwidthError(FailureKind.PROTOCOL, "iperf3's JSON is not an object")
    return doc


async def measure(target: str, options: dict[str, Any]) -> Measurement:
    try:
        opts = Iperf3Options.model_validate(options)
    except ValidationError as exc:
        raise BandwidthError(FailureKind.INTERNAL, f"iperf3 engine options: {exc}") from None
    binary = shutil.which("iperf3")
    if binary is None:
        raise BandwidthError(
            FailureKind.TOOL_MISSING, "iperf3 is not installed: apt install iperf3"
        )
    try:
        host, port = split_target(target)
    except ValueError:
        raise BandwidthError(
            FailureKind.INTERNAL, f"iperf3 target {target!r} is not HOST[:PORT]"
        ) from None
    measured_at = datetime.now(UTC)
    started = time.perf_counter()
    runs: dict[str, Iperf3Run] = {}
    directions = ["download", "upload"] if opts.direction == "both" else [opts.direction]
    for direction in directions:
        argv = [
            binary, "-c", host, "-p", str(port), "-P", str(opts.streams), "-t",
            str(opts.duration_s), "-O", str(opts.omit_s), "-i", str(opts.sample_interval_ms / 1000),
            "-J", *(["-R"] if direction == "download" else []),
        ]  # fmt: skip
        limit_s = opts.duration_s + opts.omit_s + 2 * params.CONNECT_TIMEOUT_S
        doc = await _run_iperf3(argv, limit_s)
        try:
            runs[direction] = parse(doc)
        except Iperf3Failed as exc:
            # iperf3 gives its reason only as text: no finer kind without parsing words.
            raise BandwidthError(
                FailureKind.UNREACHABLE, f"iperf3 against {host}:{port}: {exc}"
            ) from None
    down, up = runs.get("download"), runs.get("upload")
    any_run = down or up
    assert any_run is not None
    cpus = [r.cpu_percent for r in runs.values() if r.cpu_percent is not None]
    link = await asyncio.to_thread(link_speed_mbps, any_run.remote_host or host)
    return Measurement(
        engine="iperf3",
        target=f"{host}:{port}",
        span=Span(measured_at, (time.perf_counter() - started) * 1000),
        fields=dict(
            family=any_run.family,
            streams=opts.streams,
            download_mbps=down.mbps if down else None,
            upload_mbps=up.mbps if up else None,
            download_bytes=down.bytes if down else None,
            upload_bytes=up.bytes if up else None,
            download_duration_ms=down.seconds * 1000 if down else None,
            upload_duration_ms=up.seconds * 1000 if up else None,
            download_samples_mbps=down.samples_mbps if down else None,
            upload_samples_mbps=up.samples_mbps if up else None,
            download_warmup_ms=down.omit_s * 1000 if down else None,
            upload_warmup_ms=up.omit_s * 1000 if up else None,
            sample_interval_ms=opts.sample_interval_ms,
            cpu_percent=max(cpus) if cpus else None,
            cpu_limited=cpu.cpu_limited(max(cpus)) if cpus else None,
            link_speed_mbps=link,
            line_rate_mbps=opts.line_rate_mbps,
            mss_bytes=any_run.mss_bytes,
            min_rtt_ms=up.min_rtt_ms if up else None,
        ),
    )
