"""Which function measures each test kind: one entry point per kind, one explicit table.

Every entry takes a ``ProbeSpec`` and returns results (one per target; dns one per resolver,
name and type; cellular one snapshot). The caller (the agent, or ``hamletnet-probe measure``)
enforces the timeout and turns a failure into a failed result (blackbox_exporter's
``prober.go``/``handler.go`` split).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from probes import bandwidth, cellular, dns
from probes.ipv6 import readiness as ipv6_readiness
from probes.latency import http_rtt, icmp, tcp_connect
from probes.latency.address import split_host_port
from probes.latency.options import LatencyOptions, parse_options
from probes.models import Kind, LatencyResult, ResultBase


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """What to measure: the caller's schedule or command line, handed to the probe function."""

    probe_id: str
    targets: Sequence[str] = field(default_factory=tuple)
    timeout_s: float = 60.0
    #: Which engine of the kind to use (e.g. bandwidth: "http", "speedtest", "iperf3"); None is
    #: the kind's default.
    engine: str | None = None
    #: Engine-specific settings from the configuration (streams, duration_s, ...).
    options: Mapping[str, Any] = field(default_factory=dict)


ProbeFn = Callable[[ProbeSpec], Awaitable[list[ResultBase]]]


@dataclass(frozen=True, slots=True)
class ProbeEntry:
    engine: str
    run: ProbeFn
    needs_targets: bool = True


__all__ = ["PROBES", "ProbeEntry", "ProbeSpec", "split_host_port"]

LatencyEngine = Callable[[str, Sequence[str], LatencyOptions], Awaitable[list[LatencyResult]]]

#: Latency engines; targets: icmp an address or host name, tcp HOST:PORT, http a URL.
LATENCY_ENGINES: dict[str, LatencyEngine] = {
    "icmp": icmp.measure,
    "tcp": tcp_connect.measure,
    "http": http_rtt.measure,
}


async def _latency(spec: ProbeSpec) -> list[ResultBase]:
    name = spec.engine or "icmp"
    engine = LATENCY_ENGINES.get(name)
    if engine is None:
        choices = ", ".join(LATENCY_ENGINES)
        raise ValueError(f"latency engine {name!r} is unknown: use one of {choices}")
    return list(await engine(spec.probe_id, spec.targets, parse_options(spec.options)))


async def _dns(spec: ProbeSpec) -> list[ResultBase]:
    return list(await dns.measure(spec.probe_id, spec.targets, spec.options))


async def _cellular(spec: ProbeSpec) -> list[ResultBase]:
    options = cellular.parse_options(spec.options)
    modem = spec.targets[0] if spec.targets else None
    return [
        await cellular.snapshot(
            spec.probe_id, modem=modem, mmcli=options.mmcli, signal_rate_s=options.signal_rate_s
        )
    ]


async def _bandwidth(spec: ProbeSpec) -> list[ResultBase]:
    """One test per target, one after another (tests of one probe never overlap)."""
    return [
        await bandwidth.measure(spec.probe_id, target, spec.engine, dict(spec.options))
        for target in spec.targets
    ]


PROBES: dict[Kind, ProbeEntry] = {
    Kind.BANDWIDTH: ProbeEntry(engine=bandwidth.DEFAULT_ENGINE, run=_bandwidth),
    Kind.LATENCY: ProbeEntry(engine="icmp", run=_latency),
    Kind.DNS: ProbeEntry(engine=dns.ENGINE, run=_dns),
    Kind.CELLULAR: ProbeEntry(engine=cellular.ENGINE, run=_cellular, needs_targets=False),
    Kind.IPV6: ProbeEntry(engine=ipv6_readiness.ENGINE, run=ipv6_readiness.run),
}
