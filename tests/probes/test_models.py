"""The shared result schema: strict validation, clear reasons, lossless JSON round trips."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.models import (
    MODEL_BY_KIND,
    SCHEMA_VERSION,
    Kind,
    SchemaVersionError,
    ValidationLimits,
    explain,
    parse_result,
)

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
LIMITS = ValidationLimits(now=NOW, max_age=timedelta(days=30))


def payload(kind: str = "bandwidth", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": kind,
        "result_id": str(uuid.uuid4()),
        "probe_id": "thon-a-vnpt-fiber",
        "measured_at": (NOW - timedelta(minutes=3)).isoformat(),
        "engine": "http",
    }
    body.update(fields)
    return body


EXAMPLES = {
    "bandwidth": payload(
        download_mbps=941.2, upload_mbps=512, streams=3, family="ipv4",
        download_samples_mbps=[900.5, 950, 973.25], cpu_limited=False, download_bytes=10**9,
    ),
    "latency": payload(
        "latency", engine="icmp", method="icmp", sent=5, received=4, loss_pct=20.0,
        rtts_ms=[1.5, 1.25, 2.0, 1.75], rtt_median_ms=1.625,
    ),
    "dns": payload("dns", engine="dnspython", resolver="1.1.1.1", qname="vnnic.vn",
                   qtype="AAAA", resolve_ms=12.5, rcode="NOERROR", answers=2),
    "ipv6": payload("ipv6", engine="ipv6", global_address=True, ra_seen=False, score_transition=10,
                    score_strict=0, reasons={"ra_seen": "no Router Advertisement in 5 s"}),
    "cellular": payload("cellular", engine="mmcli", technology="5gnr", operator="Viettel",
                        rsrp_dbm=-95.0, rsrq_db=-11.5, snr_db=13.0),
    "heartbeat": payload("heartbeat", engine="agent", uptime_s=3600.5, cpu_temp_c=51.2,
                         last_errors={"bandwidth": "timeout after 30 s"}),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_every_kind_round_trips_through_json(kind: str) -> None:
    result = parse_result(EXAMPLES[kind], LIMITS)
    assert type(result) is MODEL_BY_KIND[Kind(kind)]
    again = parse_result(json.loads(result.model_dump_json()), LIMITS)
    assert again == result
    assert result.schema_version == SCHEMA_VERSION
    assert result.measured_at.tzinfo is not None and result.measured_at.utcoffset() == timedelta(0)


def test_a_failed_test_is_a_result_with_its_reason() -> None:
    result = parse_result(
        payload(status="failed", failure_kind="timeout", error="no answer in 30 s"), LIMITS
    )
    assert result.status == "failed" and result.download_mbps is None  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="needs both 'failure_kind' and 'error'"):
        parse_result(payload(status="failed", error="x"), LIMITS)
    with pytest.raises(ValueError, match="must not carry"):
        parse_result(payload(error="x", failure_kind="timeout"), LIMITS)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"download_mbps": -0.5}, "download_mbps", "greater than or equal to 0"),
        ({"download_mbps": "100"}, "download_mbps", "valid number"),
        ({"streams": True}, "streams", "valid integer"),
        ({"download_mbps": math.inf}, "download_mbps", "finite number"),
        ({"download_mbps": math.nan}, "download_mbps", "finite number"),
        ({"duration_ms": -1}, "duration_ms", "greater than or equal to 0"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"probe_id": "thôn a"}, "probe_id", "should match pattern"),
        ({"target": "x" * 257}, "target", "at most 256 characters"),
        ({"measured_at": "2026-11-25T03:00:00"}, "measured_at", "timezone info"),
        ({"measured_at": (NOW + timedelta(minutes=6)).isoformat()}, "measured_at", "ahead of"),
        ({"measured_at": (NOW - timedelta(days=31)).isoformat()}, "measured_at", "older than"),
        ({"result_id": "not-a-uuid"}, "result_id", "valid UUID"),
    ],
)
def test_invalid_fields_are_refused_by_name(
    fields: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        parse_result(payload(**fields), LIMITS)
    text = explain(caught.value)
    assert text.startswith(field + ":") and message in text


def test_clock_window_edges() -> None:
    parse_result(payload(measured_at=(NOW + timedelta(minutes=4)).isoformat()), LIMITS)
    parse_result(payload(measured_at=(NOW - timedelta(days=29)).isoformat()), LIMITS)
    # Other offsets are normalised to UTC.
    result = parse_result(payload(measured_at="2026-11-25T09:55:00+07:00"), LIMITS)
    assert result.measured_at == datetime(2026, 11, 25, 2, 55, tzinfo=UTC)


def test_received_cannot_exceed_sent() -> None:
    with pytest.raises(ValueError, match=r"received \(3\) exceeds sent \(2\)"):
        parse_result(payload("latency", sent=2, received=3), LIMITS)


def test_schema_versions() -> None:
    with pytest.raises(SchemaVersionError, match="newer than this server"):
        parse_result(payload(schema_version=SCHEMA_VERSION + 1), LIMITS)
    with pytest.raises(SchemaVersionError, match="positive integer"):
        parse_result(payload(schema_version="1"), LIMITS)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([*EXAMPLES, "nope"]),
    mutations=st.dictionaries(
        st.sampled_from(["result_id", "probe_id", "measured_at", "engine", "download_mbps",
                         "rtts_ms", "sent", "received", "status", "reasons", "x"]),
        json_values,
        max_size=3,
    ),
)  # fmt: skip
def test_arbitrary_payloads_fail_only_with_a_value_error(
    kind: str, mutations: dict[str, Any]
) -> None:
    body = dict(EXAMPLES.get(kind, payload(kind)))
    body.update(mutations)
    try:
        result = parse_result(body, LIMITS)
    except ValueError as exc:
        assert explain(exc)
    else:
        assert parse_result(json.loads(result.model_dump_json()), LIMITS) == result


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(
        st.tuples(
            st.sampled_from(sorted(EXAMPLES)),
            st.dictionaries(
                st.sampled_from(["download_mbps", "sent", "received", "engine", "schema_version",
                                 "status", "x"]),
                json_values,
                max_size=2,
            ),
        ),
        max_size=5,
    )
)  # fmt: skip
def test_the_one_pass_batch_path_agrees_with_item_by_item(
    items: list[tuple[str, dict[str, Any]]],
) -> None:
    """Whatever ``parse_batch`` accepts, ``parse_result`` accepts item by item, identically; when
    any item is bad, ``parse_batch`` declines and the server judges items one by one."""
    from probes.models import parse_batch

    bodies = [dict(EXAMPLES[kind], **mutation) for kind, mutation in items]
    one_pass = parse_batch(json.dumps({"results": bodies}), LIMITS, max_items=1000)
    singles = []
    for body in bodies:
        try:
            singles.append(parse_result(json.loads(json.dumps(body)), LIMITS))
        except ValueError:
            singles.append(None)
    if one_pass is None:
        assert None in singles
    else:
        assert one_pass == singles
