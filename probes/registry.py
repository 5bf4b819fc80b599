"""Which function measures each test kind: one entry point per kind, one explicit table.

Every entry takes a ``ProbeSpec`` and returns results (one per target). The caller (the agent,
or ``hamletnet-probe measure``) enforces the timeout and turns a failure into a failed result
(blackbox_exporter's ``prober.go``/``handler.go`` split).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from probes.latency.tcp_connect import measure_tcp_connect
from probes.models import Kind, ResultBase


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


def split_host_port(target: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); ValueError names the target otherwise."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {target!r} must be HOST:PORT (or [IPv6]:PORT)")
    return host.strip("[]"), int(port)


async def _latency_tcp(spec: ProbeSpec) -> list[ResultBase]:
    results: list[ResultBase] = []
    for target in spec.targets:
        host, port = split_host_port(target)
        results.append(await measure_tcp_connect(spec.probe_id, host, port))
    return results


PROBES: dict[Kind, ProbeEntry] = {
    Kind.LATENCY: ProbeEntry(engine="tcp", run=_latency_tcp),
}
