"""The probe table: latency engines by name, option errors by name, kinds without targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from probes.models import CellularResult, Kind, LatencyResult
from probes.registry import PROBES
from probes.spec import ProbeSpec
from tests.probes.stamping import as_result, as_results


async def test_latency_defaults_to_icmp_and_measures_over_loopback() -> None:
    spec = ProbeSpec("p1", ["127.0.0.1", "::1", "localhost"],
                     options={"count": 3, "interval_s": 0.01})  # fmt: skip
    results = as_results(LatencyResult, await PROBES[Kind.LATENCY].run(spec))
    assert [(r.engine, r.target, r.status, r.sent) for r in results] == [
        ("icmp", "127.0.0.1", "ok", 3), ("icmp", "::1", "ok", 3), ("icmp", "localhost", "ok", 3),
    ]  # fmt: skip
    v4, v6, named = results
    assert v4.family == "ipv4" and v6.family == "ipv6"
    assert v4.resolve_ms is None and named.resolve_ms is not None  # only a name is looked up


async def test_unknown_engine_and_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="engine 'udp' is unknown: use one of icmp, tcp, http"):
        await PROBES[Kind.LATENCY].run(ProbeSpec("p1", ["127.0.0.1"], engine="udp"))
    with pytest.raises(ValueError, match="latency options: count"):
        await PROBES[Kind.LATENCY].run(ProbeSpec("p1", ["127.0.0.1"], options={"count": 0}))
    with pytest.raises(ValueError, match="latency options: colour"):
        await PROBES[Kind.LATENCY].run(ProbeSpec("p1", ["127.0.0.1"], options={"colour": 1}))


async def test_cellular_needs_no_target(tmp_path: Path) -> None:
    entry = PROBES[Kind.CELLULAR]
    assert not entry.needs_targets and PROBES[Kind.DNS].needs_targets
    (found,) = await entry.run(ProbeSpec("p1", options={"mmcli": str(tmp_path / "mmcli")}))
    result = as_result(CellularResult, found)
    assert (result.kind, result.failure_kind) == ("cellular", "tool_missing")
