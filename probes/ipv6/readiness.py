"""The IPv6 readiness probe: run every check at once, then score and judge them.

Each check fills one field of ``Readiness`` (the fields of ``Ipv6Result``) and, when it fails, a
reason under the same key.
The checks are I/O (``hostconfig``, ``icmpv6``, ``http_check``, ``dns_lookup``); what they mean
is decided by pure functions (``scoring``, ``nat64``, ``ra``), so this module only wires them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network, ip_address
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from probes.envelope import stamp
from probes.ipv6 import dns_lookup, hostconfig, icmpv6, nat64
from probes.ipv6.http_check import Fetch, fetch, resolve, split_url
from probes.ipv6.options import Ipv6Options, resolve_options
from probes.ipv6.params import CHECK_TIMEOUT_S, IPV4ONLY_ARPA
from probes.ipv6.scoring import (
    Observations,
    Outcome,
    ReadinessInputs,
    ipv6_only_ready,
    ipv6_ready,
    scores,
    symptoms,
    works,
)
from probes.models import Family, Ipv6Result
from probes.spec import Measurement, ProbeSpec, Stopwatch

ENGINE = "readiness"
_REASON_MAX = 256  # models.ShortText
_RA_PREFIXES_MAX = 16  # the model's bound of ra_prefixes


@dataclass(slots=True)
class Readiness:
    """What the checks found: the fields of ``Ipv6Result``, filled in as the checks are judged
    (None: not run, or nothing to say), with a reason per failed check under its field's name."""

    global_address: bool | None = None
    default_route: bool | None = None
    ra_seen: bool | None = None
    ra_prefixes: list[str] | None = None
    ra_managed: bool | None = None
    ra_other_config: bool | None = None
    ra_router_lifetime_s: int | None = None
    aaaa_resolves: bool | None = None
    icmpv6_echo: bool | None = None
    http_over_ipv6: bool | None = None
    dual_stack_family: Family | None = None
    ipv4_site_loads: bool | None = None
    ipv6_capable: bool | None = None
    ipv6_preferred: bool | None = None
    large_packets_ok: bool | None = None
    resolver_reaches_ipv6_only: bool | None = None
    nat64_detected: bool | None = None
    nat64_prefix: str | None = None
    nat64_prefix_source: Literal["ra_pref64", "dns64"] | None = None
    ipv4_only_reachable_via_nat64: bool | None = None
    probe_tests_over_ipv6_pct: float | None = None
    symptoms: list[str] | None = None
    score_transition: int | None = None
    score_strict: int | None = None
    ipv6_ready: bool | None = None
    ipv6_only_ready: bool | None = None
    reasons: dict[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The ``Ipv6Result`` fields: reasons cut to the model's bound, none at all as None."""
        found = dataclasses.asdict(self)
        found["reasons"] = {k: v[:_REASON_MAX] for k, v in self.reasons.items()} or None
        return found


async def run(spec: ProbeSpec) -> list[Measurement]:
    """Registry entry point: one measurement for the spec's first target (the hamletnet host)."""
    if not spec.targets:
        raise ValueError("ipv6 needs --target: the hamletnet target host (hamletnet.example.vn)")
    options = dict(spec.options)
    # Fetches run concurrently, but a literal test resolves then fetches and the echo targets
    # go one by one: a third of the caller's budget per check keeps the whole run inside it.
    options.setdefault("check_timeout_s", min(CHECK_TIMEOUT_S, spec.timeout_s / 3))
    return [await measure(spec.targets[0], options)]


async def measure_ipv6(probe_id: str, target: str, options: Mapping[str, Any]) -> Ipv6Result:
    """``measure`` as a result (the demo's entry; the agent runs ``run`` through the registry
    and stamps the result itself)."""
    watch = Stopwatch()
    measurement = await measure(target, options)
    return stamp(Ipv6Result, probe_id, measurement, watch.span())


@dataclass(frozen=True, slots=True)
class _Literal:
    fetch: Fetch | None
    why_skipped: str | None = None


async def measure(target: str, options: Mapping[str, Any]) -> Measurement:
    """Every check against the targets that ``options`` names (defaults under ``target``)."""
    opts = resolve_options(target, options)
    assert opts.dual_stack_url and opts.ipv4_only_url and opts.ipv6_only_url  # filled in
    assert opts.large_response_url and opts.ipv6_only_dns_name

    def get(
        url: str, family: socket.AddressFamily = socket.AF_UNSPEC, min_bytes: int = 0
    ) -> Coroutine[Any, Any, Fetch]:
        return fetch(
            url,
            family=family,
            timeout_s=opts.check_timeout_s,
            slow_s=opts.slow_s,
            happy_eyeballs_delay_s=opts.happy_eyeballs_delay_s,
            min_body_bytes=min_bytes,
        )

    async with asyncio.TaskGroup() as tg:
        ra_task = tg.create_task(_router_discovery(opts))
        a = tg.create_task(get(opts.ipv4_only_url))
        aaaa = tg.create_task(get(opts.ipv6_only_url))
        ds = tg.create_task(get(opts.dual_stack_url))
        ds6 = tg.create_task(get(opts.dual_stack_url, socket.AF_INET6))
        large = tg.create_task(
            get(opts.large_response_url, socket.AF_INET6, opts.large_response_min_bytes)
        )
        v4_via_v6 = tg.create_task(get(opts.ipv4_only_url, socket.AF_INET6))
        v6ns = tg.create_task(_resolves(opts.ipv6_only_dns_name, opts))
        v4_literal = tg.create_task(
            _literal(opts.ipv4_literal_url, opts.ipv4_only_url, socket.AF_INET, opts)
        )
        v6_literal = tg.create_task(
            _literal(opts.ipv6_literal_url, opts.ipv6_only_url, socket.AF_INET6, opts)
        )
        ds_host = split_url(opts.dual_stack_url)[0]
        aaaa_dns = tg.create_task(dns_lookup.aaaa(ds_host, opts.resolver, opts.check_timeout_s))
        wka = tg.create_task(dns_lookup.aaaa(IPV4ONLY_ARPA, opts.resolver, opts.check_timeout_s))
        echoes = tg.create_task(_echo_all(opts))

    result = Readiness()
    reasons = result.reasons

    # Host configuration.
    addresses = hostconfig.read_addresses()
    globals_ = hostconfig.global_addresses(addresses)
    result.global_address = bool(globals_)
    if not globals_:
        others = ", ".join(f"{r.address}%{r.ifname}" for r in addresses if r.ifname != "lo")
        reasons["global_address"] = "no usable global IPv6 address" + (
            f" (only {others})" if others else " (IPv6 is off)"
        )
    routes = hostconfig.read_default_routes()
    result.default_route = bool(routes)
    if not routes:
        reasons["default_route"] = "no IPv6 default route (no router advertised one)"

    # Router Advertisement.
    ra_seen, ra_reason, solicitation = ra_task.result()
    result.ra_seen = ra_seen
    _reason(reasons, "ra_seen", ra_reason)
    pref64: list[IPv6Network] = []
    if solicitation is not None and solicitation.advert is not None:
        advert = solicitation.advert
        result.ra_prefixes = [str(p.prefix) for p in advert.prefixes][:_RA_PREFIXES_MAX]
        result.ra_managed = advert.managed
        result.ra_other_config = advert.other_config
        result.ra_router_lifetime_s = advert.router_lifetime_s
        pref64 = [p.prefix for p in advert.pref64 if p.lifetime_s > 0]

    # DNS returns AAAA.
    aaaa_lookup = aaaa_dns.result()
    result.aaaa_resolves = bool(aaaa_lookup.addresses)
    if not aaaa_lookup.addresses:
        reasons["aaaa_resolves"] = aaaa_lookup.error or f"no AAAA record for {ds_host}"

    # ICMPv6 echo.
    echo_ok, echo_reason = echoes.result()
    result.icmpv6_echo = echo_ok
    _reason(reasons, "icmpv6_echo", echo_reason)

    # HTTP over IPv6, Happy Eyeballs outcome, large packets.
    ds6_f, ds_f, a_f, aaaa_f = ds6.result(), ds.result(), a.result(), aaaa.result()
    large_f = large.result()
    result.http_over_ipv6 = works(ds6_f.outcome)
    _fetch_reason(reasons, "http_over_ipv6", ds6_f)
    result.dual_stack_family = ds_f.family if works(ds_f.outcome) else None
    _fetch_reason(reasons, "dual_stack_family", ds_f)
    result.ipv4_site_loads = works(a_f.outcome)
    _fetch_reason(reasons, "ipv4_site_loads", a_f)
    result.ipv6_capable = works(aaaa_f.outcome)
    _fetch_reason(reasons, "ipv6_capable", aaaa_f)
    result.ipv6_preferred = ds_f.family is Family.IPV6 if works(ds_f.outcome) else None
    result.large_packets_ok = large_f.outcome is Outcome.OK
    if large_f.outcome is Outcome.SLOW:
        reasons["large_packets_ok"] = (
            f"{large_f.body_bytes} bytes took {large_f.elapsed_ms:.0f} ms: path MTU discovery"
            " recovered only slowly"
        )
    _fetch_reason(reasons, "large_packets_ok", large_f)

    # Resolver reaches IPv6-only DNS servers.
    v6ns_outcome, v6ns_reason = v6ns.result()
    result.resolver_reaches_ipv6_only = works(v6ns_outcome)
    _reason(reasons, "resolver_reaches_ipv6_only", v6ns_reason)

    # NAT64: RA PREF64 first (RFC 9872), then ipv4only.arpa (RFC 7050).
    wka_lookup = wka.result()
    discovery = nat64.discover_prefixes(wka_lookup.addresses)
    source: Literal["ra_pref64", "dns64"] | None = None
    prefixes: list[IPv6Network] = []
    if pref64:
        prefixes, source = pref64, "ra_pref64"
    elif discovery.prefixes:
        prefixes, source = list(discovery.prefixes), "dns64"
    result.nat64_detected = bool(prefixes)
    if prefixes:
        result.nat64_prefix = str(prefixes[0])
        result.nat64_prefix_source = source
    else:
        dns_why = wka_lookup.error or discovery.problem
        reasons["nat64_detected"] = f"no PREF64 in an RA; {IPV4ONLY_ARPA}: {dns_why}"
    via = v4_via_v6.result()
    reached = works(via.outcome)
    if reached and prefixes and via.peer and not nat64.in_prefix(IPv6Address(via.peer), prefixes):
        reached = False
        reasons["ipv4_only_reachable_via_nat64"] = (
            f"{via.url} answered over IPv6 from {via.peer}, outside the NAT64 prefix: the name is"
            " not IPv4-only"
        )
    result.ipv4_only_reachable_via_nat64 = reached
    _fetch_reason(reasons, "ipv4_only_reachable_via_nat64", via)

    # The probe's own share of fetches over IPv6 (family left to the OS).
    free = [f for f in (a_f, aaaa_f, ds_f) if works(f.outcome) and f.family is not None]
    if free:
        share = 100.0 * sum(f.family is Family.IPV6 for f in free) / len(free)
        result.probe_tests_over_ipv6_pct = round(share, 1)

    # Score and verdicts.
    lit4, lit6 = v4_literal.result(), v6_literal.result()
    obs = Observations(
        ipv4_name=a_f.outcome,
        ipv6_name=aaaa_f.outcome,
        dual_stack=ds_f.outcome,
        dual_stack_family=ds_f.family,
        ipv4_literal=lit4.fetch.outcome if lit4.fetch else Outcome.SKIPPED,
        ipv6_literal=lit6.fetch.outcome if lit6.fetch else Outcome.SKIPPED,
        ipv6_large=large_f.outcome,
        ipv6_only_dns=v6ns_outcome,
        tunnel=hostconfig.tunnel_kind(globals_),
    )
    found = symptoms(obs)
    transition, strict = scores(found)
    result.symptoms = [s.value for s in found]
    result.score_transition, result.score_strict = transition, strict
    inputs = ReadinessInputs(
        ra_seen=ra_seen,
        global_address=bool(globals_),
        default_route=bool(routes),
        ipv6_only_site_loads=works(aaaa_f.outcome),
        dual_stack_family=ds_f.family if works(ds_f.outcome) else None,
        dual_stack_loaded=works(ds_f.outcome),
        large_packets_ok=large_f.outcome is Outcome.OK,
        resolver_reaches_ipv6_only=works(v6ns_outcome),
        nat64_detected=bool(prefixes),
        ipv4_only_reachable_via_nat64=reached,
        score_strict=strict,
    )
    ready, only_ready = ipv6_ready(inputs), ipv6_only_ready(inputs)
    result.ipv6_ready = ready.ready
    _reason(reasons, "ipv6_ready", ready.explain())
    result.ipv6_only_ready = only_ready.ready
    _reason(reasons, "ipv6_only_ready", only_ready.explain())
    return Measurement(engine=ENGINE, target=target, fields=result.fields())


def _reason(reasons: dict[str, str], key: str, why: str | None) -> None:
    if why:
        reasons[key] = why


def _fetch_reason(reasons: dict[str, str], key: str, f: Fetch) -> None:
    if key not in reasons and f.error:
        reasons[key] = f"{f.url}: {f.error}"


async def _router_discovery(
    opts: Ipv6Options,
) -> tuple[bool | None, str | None, icmpv6.Solicitation | None]:
    if not opts.router_discovery:
        return None, "router discovery not run (router_discovery: false)", None
    try:
        found = await asyncio.to_thread(icmpv6.solicit_router, opts.ra_wait_s)
    except PermissionError:
        return None, "router discovery needs a raw ICMPv6 socket: grant CAP_NET_RAW", None
    if found.advert is not None:
        return True, None, found
    why = f"no Router Advertisement within {opts.ra_wait_s:g} s of soliciting on " + (
        ", ".join(found.sent_on) or "no interface"
    )
    if found.ignored:
        why += f"; ignored: {found.ignored[0]}"
    return False, why, found


async def _resolves(name: str, opts: Ipv6Options) -> tuple[Outcome, str | None]:
    """Whether the system resolver resolves ``name`` (test-ipv6's v6ns, as a lookup)."""
    started = time.perf_counter_ns()
    addresses, why = await resolve(name, socket.AF_UNSPEC, opts.check_timeout_s)
    elapsed_s = (time.perf_counter_ns() - started) / 1e9
    if addresses:
        return (Outcome.SLOW if elapsed_s > opts.slow_s else Outcome.OK), None
    timed_out = elapsed_s >= opts.check_timeout_s
    return (Outcome.TIMEOUT if timed_out else Outcome.BAD), why


async def _literal(
    given: str | None, name_url: str, family: socket.AddressFamily, opts: Ipv6Options
) -> _Literal:
    """test-ipv6's ipv4/ipv6 literal test: the given URL, or ``name_url`` with its host replaced
    by its first address of ``family`` (skipped when the name gives none)."""
    url = given
    if url is None:
        host = split_url(name_url)[0]
        addresses, why = await resolve(host, family, opts.check_timeout_s)
        if not addresses:
            return _Literal(None, why)
        parts = urlsplit(name_url)
        literal = addresses[0] if family == socket.AF_INET else f"[{addresses[0]}]"
        netloc = literal + (f":{parts.port}" if parts.port else "")
        url = urlunsplit(parts._replace(netloc=netloc))
    return _Literal(
        await fetch(
            url,
            family=family,
            timeout_s=opts.check_timeout_s,
            slow_s=opts.slow_s,
            happy_eyeballs_delay_s=opts.happy_eyeballs_delay_s,
        )
    )


async def _echo_all(opts: Ipv6Options) -> tuple[bool | None, str | None]:
    """Every ICMPv6 target answers at least one echo request."""
    assert opts.ipv6_only_url and opts.dual_stack_url
    targets = opts.icmpv6_targets or [
        split_url(opts.ipv6_only_url)[0],
        split_url(opts.dual_stack_url)[0],
    ]
    problems: list[str] = []
    answered = 0
    for target in dict.fromkeys(targets):
        if _is_ipv6(target):
            address = target
        else:
            addresses, why = await resolve(target, socket.AF_INET6, opts.check_timeout_s)
            if not addresses:
                problems.append(why or f"{target}: no IPv6 address")
                continue
            address = addresses[0]
        result = await icmpv6.echo(
            address, count=opts.echo_count, timeout_s=min(2.0, opts.check_timeout_s)
        )
        if result.received:
            answered += 1
        else:
            problems.append(f"{target} ({address}): {result.error}")
    if problems:
        return False, "; ".join(problems)
    return (True if answered else None), None


def _is_ipv6(text: str) -> bool:
    try:
        return ip_address(text).version == 6
    except ValueError:
        return False
