"""Which function measures each test kind: one entry point per kind, one explicit table.

Every entry takes a ``ProbeSpec`` and returns measurements (one per target; dns one per
resolver, name and type; cellular one snapshot). The caller (the agent, or ``hamletnet-probe
measure``) enforces the timeout, turns an exception into a failed result and puts the envelope
on every result with ``probes.envelope`` (blackbox_exporter's ``prober.go``/``handler.go``
split).
"""

from __future__ import annotations

import importlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from probes.latency.address import split_host_port
from probes.models import Kind
from probes.spec import Measurement, ProbeFn, ProbeSpec


@dataclass(frozen=True, slots=True)
class ProbeEntry:
    engine: str
    run: ProbeFn
    needs_targets: bool = True


__all__ = [
    "PROBES",
    "ProbeEntry",
    "engine_for",
    "latency_engine_for",
    "split_host_port",
]

#: Each kind's default engine, kept here so that listing the table (the agent's configuration
#: check does) imports no probe module: a kind's module, and the packages it needs (dnspython),
#: are imported when its first test runs, so the idle agent holds none of them (issue 16 item
#: 5). tests/test_newuser.py and tests/collector/test_imports.py check they agree.
BANDWIDTH_ENGINE = "http"
CELLULAR_ENGINE = "mmcli"
DNS_ENGINE = "dnspython"
IPV6_ENGINE = "readiness"
#: What to install when an engine's package is missing.
PROBE_EXTRA_HINT = "install the agent with the [probe] extra: pip install 'hamletnet[probe]'"

#: Latency engines by name, each the module whose ``measure`` runs it; targets: icmp an address
#: or host name, tcp HOST:PORT, http a URL.
LATENCY_ENGINES: dict[str, str] = {
    "icmp": "probes.latency.icmp",
    "tcp": "probes.latency.tcp_connect",
    "http": "probes.latency.http_rtt",
}


def _missing(kind: str, exc: ModuleNotFoundError) -> ModuleNotFoundError:
    module = (exc.name or "").partition(".")[0]
    return ModuleNotFoundError(
        f"{kind} tests need the Python module {module!r}, which is not installed: "
        + PROBE_EXTRA_HINT,
        name=exc.name,
    )


def _target_form(target: str) -> str:
    """The latency engine a target's form asks for: a URL http, HOST:PORT tcp, a host icmp."""
    if "://" in target:
        return "http"
    try:
        ipaddress.ip_address(target.strip("[]"))
        return "icmp"  # a bare IPv6 address also ends in ":digits", yet has no port
    except ValueError:
        pass
    try:
        split_host_port(target)
    except ValueError:
        return "icmp"
    return "tcp"


def latency_engine_for(targets: Sequence[str]) -> str:
    """The engine when none is given: the one every target's form asks for (icmp without
    targets); ValueError when the targets ask for different ones."""
    forms = {target: _target_form(target) for target in targets}
    engines = sorted(set(forms.values()))
    if len(engines) > 1:
        listed = ", ".join(f"{t!r} ({e})" for t, e in forms.items())
        raise ValueError(
            f"latency targets need different engines: {listed}; give the engine, or one"
            " schedule per engine"
        )
    return engines[0] if engines else "icmp"


def engine_for(kind: Kind, engine: str | None, targets: Sequence[str]) -> str:
    """The engine a run of ``kind`` uses: the one given, else for latency the one its targets'
    form asks for (``latency_engine_for``), else the kind's default. The caller labels a failed
    run with it, so a result names the engine that was in fact chosen."""
    if engine:
        return engine
    if kind is Kind.LATENCY:
        return latency_engine_for(targets)
    return PROBES[kind].engine


async def _latency(spec: ProbeSpec) -> list[Measurement]:
    from probes.latency.options import parse_options

    name = engine_for(Kind.LATENCY, spec.engine, spec.targets)
    module = LATENCY_ENGINES.get(name)
    if module is None:
        choices = ", ".join(LATENCY_ENGINES)
        raise ValueError(f"latency engine {name!r} is unknown: use one of {choices}")
    for target in spec.targets:
        form = _target_form(target)
        if name == "icmp" and form != "icmp":
            # icmp would try to resolve "HOST:PORT" or a URL as a host name and blame DNS.
            raise ValueError(
                f"latency target {target!r} is {'a URL' if form == 'http' else 'HOST:PORT'}:"
                f" icmp takes a host name or address; use engine {form} for it"
            )
    options = parse_options(spec.options)
    measured: list[Measurement] = await importlib.import_module(module).measure(
        spec.targets, options
    )
    return measured


async def _bandwidth(spec: ProbeSpec) -> list[Measurement]:
    from probes import bandwidth

    return await bandwidth.run(spec)


async def _cellular(spec: ProbeSpec) -> list[Measurement]:
    from probes import cellular

    return await cellular.run(spec)


# dns and ipv6 import an optional package (dnspython): imported when a test runs, so that
# listing this table works without them and a missing one is named with its fix.
async def _dns(spec: ProbeSpec) -> list[Measurement]:
    try:
        from probes import dns
    except ModuleNotFoundError as exc:
        raise _missing("dns", exc) from exc
    return await dns.run(spec)


async def _ipv6(spec: ProbeSpec) -> list[Measurement]:
    try:
        from probes.ipv6 import readiness
    except ModuleNotFoundError as exc:
        raise _missing("ipv6", exc) from exc
    return await readiness.run(spec)


PROBES: dict[Kind, ProbeEntry] = {
    Kind.BANDWIDTH: ProbeEntry(engine=BANDWIDTH_ENGINE, run=_bandwidth),
    Kind.LATENCY: ProbeEntry(engine="icmp", run=_latency),
    Kind.DNS: ProbeEntry(engine=DNS_ENGINE, run=_dns),
    Kind.CELLULAR: ProbeEntry(engine=CELLULAR_ENGINE, run=_cellular, needs_targets=False),
    Kind.IPV6: ProbeEntry(engine=IPV6_ENGINE, run=_ipv6),
}
