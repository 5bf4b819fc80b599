"""From check outcomes to a test-ipv6.com-style score and the two readiness verdicts: pure.

test-ipv6.com (falling-sky/source: ``templates/js/inc/symptoms.js`` turns its tests' outcomes into
symptom tokens, ``sym_primary.js`` holds the primary table, ``scores.js`` the points) gives two
scores out of 10: **transition** (ready to *go* IPv6) and **strict** (ready to *give up* IPv4),
each the **minimum** over the symptoms found. The symptom table here is the one in
``shared/methodology.md`` §5; each rule below names the test-ipv6 pattern it models, with the
tests as test-ipv6 names them: a (IPv4-only name), aaaa (IPv6-only name), ds (dual-stack name),
ipv4/ipv6 (address literals), v6mtu (large IPv6 response), v6ns (name whose DNS server is
IPv6-only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from probes.models import Family


class Outcome(StrEnum):
    """One test's outcome, as test-ipv6.com classifies it."""

    OK = "ok"
    SLOW = "slow"  # completed, but after the slow threshold (5 s)
    BAD = "bad"  # failed quickly (refused, unreachable, no such name)
    TIMEOUT = "timeout"  # abandoned at the time limit (15 s)
    SKIPPED = "skipped"  # not run (no target, no permission)


def works(outcome: Outcome) -> bool:
    return outcome in (Outcome.OK, Outcome.SLOW)


def failed(outcome: Outcome) -> bool:
    return outcome in (Outcome.BAD, Outcome.TIMEOUT)


Tunnel = Literal["6to4", "teredo"]


@dataclass(frozen=True, slots=True)
class Observations:
    """The outcomes the score is computed from; every one defaults to "not run"."""

    ipv4_name: Outcome = Outcome.SKIPPED  # a
    ipv6_name: Outcome = Outcome.SKIPPED  # aaaa
    dual_stack: Outcome = Outcome.SKIPPED  # ds
    dual_stack_family: Family | None = None  # which family ds used
    ipv4_literal: Outcome = Outcome.SKIPPED  # ipv4
    ipv6_literal: Outcome = Outcome.SKIPPED  # ipv6
    ipv6_large: Outcome = Outcome.SKIPPED  # v6mtu
    ipv6_only_dns: Outcome = Outcome.SKIPPED  # v6ns
    tunnel: Tunnel | None = None  # the global IPv6 address is 6to4 or Teredo


class Symptom(StrEnum):
    """The symptoms of methodology §5, with test-ipv6.com's token in the comment."""

    DUAL_STACK = "dual_stack"  # dualstack:ipv4_preferred / dualstack:ipv6_preferred
    DUAL_STACK_SLOW = "dual_stack_slow"  # dualstack:slow
    IPV4_ONLY = "ipv4_only"  # ipv4_only, ipv4_only:ds_good
    IPV4_ONLY_DS_SLOW = "ipv4_only_ds_slow"  # ipv4_only:ds_slow
    IPV4_ONLY_DS_TIMEOUT = "ipv4_only_ds_timeout"  # ipv4_only:ds_timeout
    IPV6_ONLY = "ipv6_only"  # ipv6_only
    IPV6_SLOW = "ipv6_slow"  # ipv6_slow
    IPV6_TIMEOUT = "ipv6_timeout"  # ipv6_timeout
    IPV6_NO_DNS = "ipv6_no_dns"  # ipv6:nodns
    RESOLVER_LACKS_IPV6 = "resolver_lacks_ipv6"  # v6ns:bad
    BROKEN_IPV6 = "broken_ipv6"  # broken_ipv6 (and primary "broken" with IPv4 working)
    NO_CONNECTIVITY = "no_connectivity"  # broken (nothing loads)
    IPV6_MTU = "ipv6_mtu"  # IPv6 MTU
    TUNNEL_6TO4 = "tunnel_6to4"  # 6to4
    TUNNEL_TEREDO = "tunnel_teredo"  # teredo
    IPV4_SLOW = "ipv4_slow"  # ipv4_slow
    NO_DIRECT_IPV4 = "no_direct_ipv4"  # No Direct IPv4
    INCONSISTENT = "inconsistent"  # confused:* — reported, not scored


#: (transition, strict) points per symptom: methodology.md §5, from test-ipv6.com's scores.js.
SCORES: Mapping[Symptom, tuple[int, int]] = {
    Symptom.DUAL_STACK: (10, 10),
    Symptom.DUAL_STACK_SLOW: (7, 7),
    Symptom.IPV4_ONLY: (10, 0),
    Symptom.IPV4_ONLY_DS_SLOW: (5, 0),
    Symptom.IPV4_ONLY_DS_TIMEOUT: (5, 0),
    Symptom.IPV6_ONLY: (0, 10),
    Symptom.IPV6_SLOW: (10, 5),
    Symptom.IPV6_TIMEOUT: (10, 0),
    Symptom.IPV6_NO_DNS: (10, 0),
    Symptom.RESOLVER_LACKS_IPV6: (10, 9),
    Symptom.BROKEN_IPV6: (0, 0),
    Symptom.NO_CONNECTIVITY: (0, 0),
    Symptom.IPV6_MTU: (1, 1),
    Symptom.TUNNEL_6TO4: (7, 7),
    Symptom.TUNNEL_TEREDO: (7, 7),
    Symptom.IPV4_SLOW: (5, 10),
    Symptom.NO_DIRECT_IPV4: (9, 10),
}


def symptoms(obs: Observations) -> list[Symptom]:
    """The symptoms the outcomes show, primary diagnosis first (test-ipv6's identify_symptoms)."""
    a, aaaa, ds = obs.ipv4_name, obs.ipv6_name, obs.dual_stack
    found: list[Symptom] = []
    if Outcome.SKIPPED not in (a, aaaa):
        found.extend(_primary(a, aaaa, ds))
    if a is Outcome.SLOW:
        found.append(Symptom.IPV4_SLOW)  # sbob, sobb...: ipv4_slow
    if aaaa is Outcome.SLOW:
        found.append(Symptom.IPV6_SLOW)  # osob, bsbo...: ipv6_slow
    if works(aaaa) and (failed(obs.ipv6_large) or obs.ipv6_large is Outcome.SLOW):
        found.append(Symptom.IPV6_MTU)  # aaaa ok and v6mtu bad/timeout/slow
    if works(ds) and failed(obs.ipv6_only_dns):
        found.append(Symptom.RESOLVER_LACKS_IPV6)  # ds4 or ds6 ok, v6ns not ok
    if aaaa is Outcome.BAD and works(obs.ipv6_literal) and obs.tunnel != "teredo":
        found.append(Symptom.IPV6_NO_DNS)  # aaaa bad, ipv6 literal ok
    if works(a) and failed(obs.ipv4_literal):
        # IPv4 names load but IPv4 addresses do not: they came through a NAT64. methodology §5
        # scores this "no direct IPv4" (9/10); test-ipv6's symptoms.js emits "NAT64" (7/10) here.
        found.append(Symptom.NO_DIRECT_IPV4)
    if obs.tunnel == "6to4":
        found.append(Symptom.TUNNEL_6TO4)
    elif obs.tunnel == "teredo":
        found.append(Symptom.TUNNEL_TEREDO)
    return found


def _primary(a: Outcome, aaaa: Outcome, ds: Outcome) -> list[Symptom]:
    """test-ipv6's sym_primary table, keyed on a, aaaa and ds, reduced to its diagnoses."""
    if works(a) and works(aaaa):
        if ds is Outcome.OK or ds is Outcome.SKIPPED:
            return [Symptom.DUAL_STACK]  # ooob / oobo
        if ds is Outcome.SLOW:
            return [Symptom.DUAL_STACK_SLOW]  # oosb
        return [Symptom.INCONSISTENT]  # oobb, oott: confused
    if works(a):
        extra = [Symptom.IPV6_TIMEOUT] if aaaa is Outcome.TIMEOUT else []
        if ds is Outcome.OK or ds is Outcome.SKIPPED:
            return [Symptom.IPV4_ONLY, *extra]  # obob; otob: ipv4_only:ds_good,ipv6_timeout
        if ds is Outcome.SLOW:
            return [Symptom.IPV4_ONLY_DS_SLOW, *extra]  # obsb; otsb
        if ds is Outcome.TIMEOUT and aaaa is Outcome.BAD:
            return [Symptom.IPV4_ONLY_DS_TIMEOUT]  # obtb
        return [Symptom.BROKEN_IPV6]  # obbb, obtt, otbb, otbt, ottb, ottt: broken
    if works(aaaa):
        if works(ds) or ds is Outcome.SKIPPED:
            return [Symptom.IPV6_ONLY]  # bobo, bsbo
        return [Symptom.INCONSISTENT]  # bobb, bobt: confused
    return [Symptom.NO_CONNECTIVITY]


def scores(found: list[Symptom]) -> tuple[int | None, int | None]:
    """(transition, strict): each the minimum over the scored symptoms; None when none is scored
    (test-ipv6 shows "?" then)."""
    points = [SCORES[s] for s in found if s in SCORES]
    if not points:
        return None, None
    return min(p[0] for p in points), min(p[1] for p in points)


# -- verdicts ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadinessInputs:
    """The check results the verdicts read; None means the check did not run."""

    ra_seen: bool | None = None
    global_address: bool | None = None
    default_route: bool | None = None
    ipv6_only_site_loads: bool | None = None
    dual_stack_family: Family | None = None
    dual_stack_loaded: bool | None = None
    large_packets_ok: bool | None = None
    resolver_reaches_ipv6_only: bool | None = None
    nat64_detected: bool | None = None
    ipv4_only_reachable_via_nat64: bool | None = None
    score_strict: int | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    ready: bool | None  # None: nothing failed, but some criterion was not measured
    unmet: tuple[str, ...] = ()  # criteria that failed
    unknown: tuple[str, ...] = ()  # criteria not measured

    def explain(self) -> str | None:
        if self.unmet:
            return "not met: " + ", ".join(self.unmet)
        if self.unknown:
            return "not measured: " + ", ".join(self.unknown)
        return None


def _judge(criteria: Mapping[str, bool | None]) -> Verdict:
    unmet = tuple(name for name, ok in criteria.items() if ok is False)
    unknown = tuple(name for name, ok in criteria.items() if ok is None)
    if unmet:
        return Verdict(False, unmet, unknown)
    return Verdict(None if unknown else True, (), unknown)


def _ipv6_ready_criteria(inputs: ReadinessInputs) -> dict[str, bool | None]:
    if inputs.dual_stack_family is not None:
        used_ipv6: bool | None = inputs.dual_stack_family is Family.IPV6
    else:
        used_ipv6 = None if inputs.dual_stack_loaded is None else False
    return {
        "ra_seen": inputs.ra_seen,
        "global_address": inputs.global_address,
        "default_route": inputs.default_route,
        "ipv6_only_site_loads": inputs.ipv6_only_site_loads,
        "dual_stack_used_ipv6": used_ipv6,
        "large_packets_ok": inputs.large_packets_ok,
        "resolver_reaches_ipv6_only": inputs.resolver_reaches_ipv6_only,
    }


def ipv6_ready(inputs: ReadinessInputs) -> Verdict:
    """Ready to use IPv6: an RA was seen, the host has a global address and a default route, an
    IPv6-only site loads (APNIC's "capable"), a dual-stack site is reached over IPv6 (APNIC's
    "preferred"), a 1600-byte IPv6 response arrives (no PMTUD black hole) and the resolver
    reaches IPv6-only DNS servers (test-ipv6's v6ns). The criteria are the issue's; the
    capable/preferred pair is APNIC's (methodology §2)."""
    return _judge(_ipv6_ready_criteria(inputs))


def ipv6_only_ready(inputs: ReadinessInputs) -> Verdict:
    """Ready to give up IPv4: everything ``ipv6_ready`` needs, plus a NAT64 prefix learned (RA
    PREF64 or RFC 7050 DNS64 discovery), an IPv4-only name reached over IPv6 through it, and a
    strict score of 10 (methodology "What hamletnet should adopt" item 9)."""
    criteria = _ipv6_ready_criteria(inputs)
    criteria["nat64_detected"] = inputs.nat64_detected
    criteria["ipv4_only_reachable_via_nat64"] = inputs.ipv4_only_reachable_via_nat64
    strict = inputs.score_strict
    criteria["score_strict_10"] = None if strict is None else strict == 10
    return _judge(criteria)
