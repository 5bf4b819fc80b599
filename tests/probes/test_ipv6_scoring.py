"""The test-ipv6.com-style score against every row of methodology.md §5, and the two verdicts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.ipv6.scoring import (
    SCORES,
    Observations,
    Outcome,
    ReadinessInputs,
    Symptom,
    ipv6_only_ready,
    ipv6_ready,
    scores,
    symptoms,
)
from probes.models import Family

O, S, B, T = Outcome.OK, Outcome.SLOW, Outcome.BAD, Outcome.TIMEOUT  # noqa: E741
DUAL = {"ipv4_name": O, "ipv6_name": O, "dual_stack": O, "dual_stack_family": Family.IPV6}

# (methodology §5 row, observations, symptom that row names, (transition, strict))
TABLE = [
    ("dual-stack, IPv6 preferred", DUAL, Symptom.DUAL_STACK, (10, 10)),
    ("dual-stack, IPv4 preferred", {**DUAL, "dual_stack_family": Family.IPV4},
     Symptom.DUAL_STACK, (10, 10)),
    ("dual-stack slow", {**DUAL, "dual_stack": S}, Symptom.DUAL_STACK_SLOW, (7, 7)),
    ("IPv4-only", {"ipv4_name": O, "ipv6_name": B, "dual_stack": O}, Symptom.IPV4_ONLY, (10, 0)),
    ("IPv4-only, dual-stack slow", {"ipv4_name": O, "ipv6_name": B, "dual_stack": S},
     Symptom.IPV4_ONLY_DS_SLOW, (5, 0)),
    ("IPv4-only, dual-stack timing out", {"ipv4_name": O, "ipv6_name": B, "dual_stack": T},
     Symptom.IPV4_ONLY_DS_TIMEOUT, (5, 0)),
    ("IPv6-only", {"ipv4_name": B, "ipv6_name": O, "dual_stack": O}, Symptom.IPV6_ONLY, (0, 10)),
    ("IPv6 slow", {**DUAL, "ipv6_name": S}, Symptom.IPV6_SLOW, (10, 5)),
    ("IPv6 timeout", {"ipv4_name": O, "ipv6_name": T, "dual_stack": O},
     Symptom.IPV6_TIMEOUT, (10, 0)),
    ("no IPv6 DNS", {"ipv4_name": O, "ipv6_name": B, "dual_stack": O, "ipv6_literal": O},
     Symptom.IPV6_NO_DNS, (10, 0)),
    ("DNS server lacks IPv6", {**DUAL, "ipv6_only_dns": B}, Symptom.RESOLVER_LACKS_IPV6, (10, 9)),
    ("broken IPv6", {"ipv4_name": O, "ipv6_name": T, "dual_stack": T},
     Symptom.BROKEN_IPV6, (0, 0)),
    ("IPv6 MTU problem", {**DUAL, "ipv6_large": T}, Symptom.IPV6_MTU, (1, 1)),
    ("6to4", {**DUAL, "tunnel": "6to4"}, Symptom.TUNNEL_6TO4, (7, 7)),
    ("Teredo", {**DUAL, "tunnel": "teredo"}, Symptom.TUNNEL_TEREDO, (7, 7)),
    ("IPv4 slow", {**DUAL, "ipv4_name": S}, Symptom.IPV4_SLOW, (5, 10)),
    ("no direct IPv4", {**DUAL, "ipv4_literal": B}, Symptom.NO_DIRECT_IPV4, (9, 10)),
]  # fmt: skip


@pytest.mark.parametrize(("row", "obs", "symptom", "expected"), TABLE, ids=[r[0] for r in TABLE])
def test_every_row_of_the_methodology_table(
    row: str, obs: dict[str, object], symptom: Symptom, expected: tuple[int, int]
) -> None:
    found = symptoms(Observations(**obs))  # type: ignore[arg-type]
    assert symptom in found, (row, found)
    assert SCORES[symptom] == expected, row
    assert scores(found) == expected, (row, found)


def test_the_table_points_are_methodologys() -> None:
    # methodology.md §5, row by row (test-ipv6.com's scores.js).
    assert {s: SCORES[s] for s in SCORES} == {
        Symptom.DUAL_STACK: (10, 10), Symptom.DUAL_STACK_SLOW: (7, 7),
        Symptom.IPV4_ONLY: (10, 0), Symptom.IPV4_ONLY_DS_SLOW: (5, 0),
        Symptom.IPV4_ONLY_DS_TIMEOUT: (5, 0), Symptom.IPV6_ONLY: (0, 10),
        Symptom.IPV6_SLOW: (10, 5), Symptom.IPV6_TIMEOUT: (10, 0), Symptom.IPV6_NO_DNS: (10, 0),
        Symptom.RESOLVER_LACKS_IPV6: (10, 9), Symptom.BROKEN_IPV6: (0, 0),
        Symptom.NO_CONNECTIVITY: (0, 0), Symptom.IPV6_MTU: (1, 1), Symptom.TUNNEL_6TO4: (7, 7),
        Symptom.TUNNEL_TEREDO: (7, 7), Symptom.IPV4_SLOW: (5, 10), Symptom.NO_DIRECT_IPV4: (9, 10),
    }  # fmt: skip


def test_each_score_is_the_minimum_over_the_symptoms() -> None:
    # An IPv6-only line with a PMTUD black hole: IPv6-only (0/10) and MTU (1/1) -> 0/1.
    found = symptoms(Observations(ipv4_name=B, ipv6_name=O, dual_stack=O, ipv6_large=T))
    assert found == [Symptom.IPV6_ONLY, Symptom.IPV6_MTU]
    assert scores(found) == (0, 1)


def test_the_lab_topologies_as_pure_outcomes() -> None:
    # What tests/lab/test_ipv6_lab.py measures for real, here as plain data.
    nat64 = Observations(ipv4_name=O, ipv6_name=O, dual_stack=O, ipv4_literal=B, ipv6_literal=O,
                         ipv6_large=O, ipv6_only_dns=O)  # fmt: skip
    assert symptoms(nat64) == [Symptom.DUAL_STACK, Symptom.NO_DIRECT_IPV4]
    assert scores(symptoms(nat64)) == (9, 10)
    v4 = Observations(ipv4_name=O, ipv6_name=B, dual_stack=O, ipv4_literal=O, ipv6_literal=B,
                      ipv6_large=B, ipv6_only_dns=B)  # fmt: skip
    assert symptoms(v4) == [Symptom.IPV4_ONLY, Symptom.RESOLVER_LACKS_IPV6]
    assert scores(symptoms(v4)) == (10, 0)


def test_nothing_measured_means_no_score() -> None:
    assert symptoms(Observations()) == []
    assert scores([]) == (None, None)
    assert scores([Symptom.INCONSISTENT]) == (None, None)


def test_nothing_loads_is_no_connectivity() -> None:
    found = symptoms(Observations(ipv4_name=T, ipv6_name=B, dual_stack=T))
    assert found == [Symptom.NO_CONNECTIVITY]
    assert scores(found) == (0, 0)


outcomes = st.sampled_from(list(Outcome))


@given(
    st.builds(
        Observations, ipv4_name=outcomes, ipv6_name=outcomes, dual_stack=outcomes,
        dual_stack_family=st.none() | st.sampled_from(list(Family)), ipv4_literal=outcomes,
        ipv6_literal=outcomes, ipv6_large=outcomes, ipv6_only_dns=outcomes,
        tunnel=st.sampled_from([None, "6to4", "teredo"]),
    )
)  # fmt: skip
def test_scores_are_bounded_minima(obs: Observations) -> None:
    found = symptoms(obs)
    transition, strict = scores(found)
    scored = [SCORES[s] for s in found if s in SCORES]
    if not scored:
        assert (transition, strict) == (None, None)
    else:
        assert transition == min(p[0] for p in scored)
        assert strict == min(p[1] for p in scored)
        assert 0 <= transition <= 10 and 0 <= strict <= 10
    assert len(found) == len(set(found))


READY = ReadinessInputs(
    ra_seen=True, global_address=True, default_route=True, ipv6_only_site_loads=True,
    dual_stack_family=Family.IPV6, dual_stack_loaded=True, large_packets_ok=True,
    resolver_reaches_ipv6_only=True, nat64_detected=True, ipv4_only_reachable_via_nat64=True,
    score_strict=10,
)  # fmt: skip


def test_a_fully_ready_line_is_ready_for_both() -> None:
    assert ipv6_ready(READY).ready is True
    assert ipv6_only_ready(READY).ready is True
    assert ipv6_only_ready(READY).explain() is None


@pytest.mark.parametrize(
    ("change", "criterion"),
    [
        ({"ra_seen": False}, "ra_seen"),
        ({"global_address": False}, "global_address"),
        ({"default_route": False}, "default_route"),
        ({"ipv6_only_site_loads": False}, "ipv6_only_site_loads"),
        ({"dual_stack_family": Family.IPV4}, "dual_stack_used_ipv6"),
        ({"dual_stack_family": None, "dual_stack_loaded": False}, "dual_stack_used_ipv6"),
        ({"large_packets_ok": False}, "large_packets_ok"),
        ({"resolver_reaches_ipv6_only": False}, "resolver_reaches_ipv6_only"),
    ],
)
def test_each_ipv6_ready_criterion_is_needed(change: dict[str, object], criterion: str) -> None:
    inputs = ReadinessInputs(**{**_fields(READY), **change})  # type: ignore[arg-type]
    for verdict in (ipv6_ready(inputs), ipv6_only_ready(inputs)):
        assert verdict.ready is False
        assert verdict.unmet == (criterion,)
        assert verdict.explain() == f"not met: {criterion}"


@pytest.mark.parametrize(
    ("change", "criterion"),
    [
        ({"nat64_detected": False}, "nat64_detected"),
        ({"ipv4_only_reachable_via_nat64": False}, "ipv4_only_reachable_via_nat64"),
        ({"score_strict": 9}, "score_strict_10"),
    ],
)
def test_ipv6_only_ready_needs_nat64_too(change: dict[str, object], criterion: str) -> None:
    inputs = ReadinessInputs(**{**_fields(READY), **change})  # type: ignore[arg-type]
    assert ipv6_ready(inputs).ready is True
    assert ipv6_only_ready(inputs).unmet == (criterion,)


def test_an_unmeasured_criterion_leaves_the_verdict_open() -> None:
    inputs = ReadinessInputs(**{**_fields(READY), "ra_seen": None})  # type: ignore[arg-type]
    verdict = ipv6_ready(inputs)
    assert verdict.ready is None and verdict.unknown == ("ra_seen",)
    assert verdict.explain() == "not measured: ra_seen"


def _fields(inputs: ReadinessInputs) -> dict[str, object]:
    return {name: getattr(inputs, name) for name in ReadinessInputs.__slots__}  # type: ignore[attr-defined]
