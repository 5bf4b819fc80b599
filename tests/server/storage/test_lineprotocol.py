"""Line protocol: pure properties, and a property round trip through a real InfluxDB."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from probes.models import (
    RESULT_ADAPTER,
    Access,
    FailureKind,
    Family,
    Kind,
    LatencyResult,
    unbounded_limits,
)
from server.storage import InfluxStore, ProbeIdentity, StoredResult, WriteOutcome
from server.storage.lineprotocol import (
    FieldType,
    check_tag_value,
    field_types,
    result_to_line,
    row_to_result,
)
from tests.influxd import Influxd
from tests.server.storage.examples import IDENTITY, NOW, every_kind, make

# --- pure -------------------------------------------------------------------------------------


@pytest.mark.parametrize("item", every_kind(), ids=lambda item: item.kind.value)
def test_same_item_gives_the_identical_line(item: StoredResult) -> None:
    copy = StoredResult(
        identity=dataclasses.replace(item.identity),
        result=RESULT_ADAPTER.validate_json(
            item.result.model_dump_json(), context={"limits": unbounded_limits()}
        ),
    )
    assert result_to_line(item, "m") == result_to_line(item, "m") == result_to_line(copy, "m")


def test_line_layout() -> None:
    item = make(Kind.BANDWIDTH)
    line = result_to_line(item, "bandwidth")
    series, fields, timestamp = _split_line(line)
    assert series == (
        "bandwidth,access=fiber,engine=http,hamlet=thon-a,isp=VNPT,probe=probe-01,"
        "target=http://speedtest.vnpt.vn:8080/"
    )
    us = (NOW - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert timestamp == str(us * 1000)
    assert fields["result_id"] == f'"{item.result.result_id}"'
    assert fields["status"] == '"ok"'
    assert fields["family"] == '"ipv4"'
    assert fields["schema_version"] == "1i"
    assert fields["cpu_limited"] == "false"
    assert fields["download_samples_mbps"] == '"[88.1,93.7,95.0,92.25]"'
    assert not {"kind", "probe_id", "measured_at", "engine", "target"} & fields.keys()
    assert "failure_kind" not in fields  # None is left out, never written as 0 or ""


def test_float_typed_fields_are_always_floats_and_int_typed_always_integers() -> None:
    item = make(Kind.BANDWIDTH, upload_mbps=40, download_bytes=0, streams=1, cpu_percent=0)
    _, fields, _ = _split_line(result_to_line(item, "bandwidth"))
    for name, kind in field_types(type(item.result)).items():
        if name not in fields:
            continue
        if kind is FieldType.FLOAT:
            # No 'i' suffix: a float, even when whole ("40" is how line protocol writes 40.0).
            assert re.fullmatch(r"-?[0-9.e+-]+", fields[name]), (name, fields[name])
        elif kind is FieldType.INTEGER:
            assert re.fullmatch(r"-?[0-9]+i", fields[name]), (name, fields[name])
    assert fields["upload_mbps"] == "40"
    assert fields["cpu_percent"] == "0"
    assert fields["download_bytes"] == "0i"


def test_empty_identity_tags_are_left_out() -> None:
    identity = ProbeIdentity(probe_id="probe-01", hamlet="", isp="", access=Access.LTE)
    item = make(Kind.CELLULAR, identity=identity)
    series, _, _ = _split_line(result_to_line(item, "cellular"))
    assert series == "cellular,access=4g,engine=mmcli,probe=probe-01"


@pytest.mark.parametrize(
    ("tag", "value", "message"),
    [
        ("hamlet", "Thôn A\nThôn B", "contains a newline"),
        ("isp", "VNPT\r", "contains a carriage return"),
        ("hamlet", "host\tport", "contains a tab"),
        ("isp", "C:\\", "backslash at the end"),
        ("hamlet", "a\\ b", "before a space, comma or '='"),
        ("isp", "a\\,b", "before a space, comma or '='"),
        ("hamlet", "a\\=b", "before a space, comma or '='"),
    ],
)
def test_tag_values_line_protocol_cannot_carry_are_refused(
    tag: str, value: str, message: str
) -> None:
    identity = IDENTITY
    fields: dict[str, Any] = {}
    if tag == "target":
        fields["target"] = value
    elif tag == "hamlet":
        identity = dataclasses.replace(IDENTITY, hamlet=value)
    else:
        identity = dataclasses.replace(IDENTITY, isp=value)
    item = make(Kind.LATENCY, identity=identity, **fields)
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        result_to_line(item, "latency")
    assert f"tag {tag}=" in str(caught.value)


def test_identity_must_match_the_result_probe() -> None:
    item = make(Kind.DNS)
    wrong = StoredResult(identity=dataclasses.replace(IDENTITY, probe_id="x"), result=item.result)
    with pytest.raises(ValueError, match="stored for probe 'x'"):
        result_to_line(wrong, "dns")


def test_row_to_result_reads_influx_json_values() -> None:
    """InfluxDB's JSON gives whole floats as integers; lists and dicts arrive as JSON text."""
    result_id = uuid.uuid4()
    stored = row_to_result(
        "latency",
        {"probe": "p1", "hamlet": "h", "isp": "i", "access": "5g", "engine": "icmp"},
        {
            "result_id": str(result_id),
            "schema_version": 1,
            "status": "ok",
            "sent": 3,
            "received": 3,
            "rtt_max_ms": 12,
            "rtts_ms": "[10.5,11.0,12.0]",
            "jitter_ms": None,
            "unknown_column": "ignored",
        },
        1_700_000_000_123_456_000,
    )
    assert stored.identity == ProbeIdentity("p1", "h", "i", Access.NR)
    assert stored.result.result_id == result_id
    assert stored.result.measured_at == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert isinstance(stored.result, LatencyResult)
    assert stored.result.rtt_max_ms == 12.0 and isinstance(stored.result.rtt_max_ms, float)
    assert stored.result.rtts_ms == [10.5, 11.0, 12.0]
    assert stored.result.jitter_ms is None and stored.result.target is None


def _split_line(line: str) -> tuple[str, dict[str, str], str]:
    """Series key, raw field values and timestamp of one line."""
    series, rest = re.split(r"(?<!\\) ", line, maxsplit=1)
    field_set, timestamp = rest.rsplit(" ", 1)
    fields = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,]*)', field_set))
    return series, fields, timestamp


# --- property round trip through a real influxd ------------------------------------------------

# Biased towards what line protocol and InfluxQL escape, plus any other Unicode.
_TRICKY = st.sampled_from([" ", ",", "=", '"', "'", "\\", "\n", "\r", "\t", "#", "\x00", "Đ"])
_ANY_CHAR = st.characters(codec="utf-8")
texts = st.text(st.one_of(_TRICKY, _ANY_CHAR), min_size=1, max_size=24)
short_texts = texts  # ShortText: 1..256
long_texts = st.text(st.one_of(_TRICKY, _ANY_CHAR), min_size=1, max_size=200)
identifiers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True)
floats = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
float_lists = st.lists(floats, max_size=12)
big_ints = st.integers(min_value=0, max_value=2**62)


def _bounded(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)


_OPTIONAL: dict[Kind, dict[str, st.SearchStrategy[Any]]] = {
    Kind.BANDWIDTH: {
        "family": st.sampled_from(Family),
        "streams": st.integers(1, 64),
        "download_mbps": floats,
        "upload_mbps": floats,
        "download_bytes": big_ints,
        "download_samples_mbps": float_lists,
        "upload_samples_mbps": float_lists,
        "cpu_percent": _bounded(0, 6400),
        "cpu_limited": st.booleans(),
        "mss_bytes": st.integers(0, 65535),
        "min_rtt_ms": floats,
    },
    Kind.LATENCY: {
        "method": st.sampled_from(["icmp", "tcp", "http"]),
        "loss_pct": _bounded(0, 100),
        "rtt_median_ms": floats,
        "jitter_ms": floats,
        "rtts_ms": float_lists,
    },
    Kind.DNS: {
        "resolver": short_texts,
        "qname": short_texts,
        "qtype": st.sampled_from(["A", "AAAA"]),
        "rcode": st.text(max_size=16),  # may be empty
        "resolve_ms": floats,
        "answers": st.integers(0, 1000),
    },
    Kind.IPV6: {
        "global_address": st.booleans(),
        "nat64_detected": st.booleans(),
        "dual_stack_family": st.sampled_from(Family),
        "score_strict": st.integers(0, 10),
        "reasons": st.dictionaries(identifiers, short_texts, max_size=4),
    },
    Kind.CELLULAR: {
        "technology": st.text(max_size=32),
        "operator": short_texts,
        "rsrp_dbm": _bounded(-200, 0),
        "rsrq_db": _bounded(-50, 10),
        "snr_db": _bounded(-50, 60),
        "signal_quality_pct": _bounded(0, 100),
    },
    Kind.HEARTBEAT: {
        "agent_version": st.text(max_size=64),
        "uptime_s": floats,
        "cpu_temp_c": _bounded(-60, 150),
        "disk_free_bytes": big_ints,
        "last_errors": st.dictionaries(identifiers, long_texts, max_size=3),
    },
}


#: What the model accepts as a target: no control characters, no backslash.
targets = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\\"),
    min_size=1,
    max_size=256,
)


@st.composite
def stored_results(draw: st.DrawFn) -> StoredResult:
    kind = draw(st.sampled_from(Kind))
    payload: dict[str, Any] = {
        "kind": kind.value,
        "result_id": str(uuid.uuid4()),
        "probe_id": f"p-{uuid.uuid4().hex}",  # fresh per example: examples never see each other
        "measured_at": draw(
            st.datetimes(
                min_value=datetime(1900, 1, 1),
                max_value=datetime(2200, 1, 1),
                timezones=st.just(UTC),
            )
        ),
        "engine": draw(identifiers),
    }
    payload |= draw(
        st.fixed_dictionaries(
            {},
            optional={
                "duration_ms": floats,
                "target": targets,
                "signature": st.text(max_size=256),
                **_OPTIONAL[kind],
            },
        )
    )
    if draw(st.booleans()):
        payload |= {
            "status": "failed",
            "failure_kind": draw(st.sampled_from(FailureKind)),
            "error": draw(long_texts),
        }
    if kind is Kind.LATENCY:
        sent = draw(st.integers(0, 100_000))
        payload |= {"sent": sent, "received": draw(st.integers(0, sent))}
    result = RESULT_ADAPTER.validate_python(payload, context={"limits": unbounded_limits()})
    identity = ProbeIdentity(
        probe_id=result.probe_id,
        hamlet=draw(texts),
        isp=draw(texts),
        access=draw(st.sampled_from(Access)),
    )
    return StoredResult(identity=identity, result=result)


def _representable(value: str) -> bool:
    """What InfluxDB 1.x can carry in a tag value, as ``check_tag_value`` documents it."""
    return not (
        any(c in value for c in "\n\r\t")
        or value.endswith("\\")
        or any(f"\\{c}" in value for c in " ,=")
    )


@pytest.fixture(scope="module")
def property_db(influxd: Influxd) -> tuple[Influxd, str]:
    """One database for every example (module scope: hypothesis reruns the test body)."""
    return influxd, influxd.new_database_name()


async def _write_and_read(url: str, database: str, item: StoredResult) -> list[StoredResult]:
    store = InfluxStore(url, database, timeout_s=5)
    await store.start()
    try:
        assert await store.write([item]) == [WriteOutcome.ACCEPTED]
        return await store.query(kind=item.kind, probe_id=item.identity.probe_id)
    finally:
        await store.close()


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(item=stored_results())
def test_any_result_round_trips_through_influxdb(
    property_db: tuple[Influxd, str], item: StoredResult
) -> None:
    influxd, database = property_db
    tags = {
        "hamlet": item.identity.hamlet,
        "isp": item.identity.isp,
        "target": item.result.target or "",
    }
    if not all(_representable(value) for value in tags.values()):
        event("a tag value InfluxDB cannot carry: refused")
        with pytest.raises(ValueError, match=r"tag (hamlet|isp|target)="):
            result_to_line(item, item.kind.value)
        return
    event("written and read back")
    for key, value in tags.items():
        check_tag_value(key, value)
    assert asyncio.run(_write_and_read(influxd.url, database, item)) == [item]


@pytest.mark.parametrize("target", ["host\tport", "C:\\", "a\\=b", "line\nbreak"])
def test_the_model_refuses_targets_a_tag_cannot_carry(target: str) -> None:
    with pytest.raises(ValueError, match="target"):
        make(Kind.LATENCY, target=target)


def _line_by_point(item: StoredResult, measurement: str) -> str:
    """The same point built with influxdb-client's ``Point``: the oracle for our own builder."""
    from influxdb_client import Point, WritePrecision

    from server.storage.lineprotocol import datetime_to_ns

    result = item.result
    point = Point(measurement).time(datetime_to_ns(result.measured_at), WritePrecision.NS)
    for key, tag in {
        "probe": item.identity.probe_id, "hamlet": item.identity.hamlet,
        "isp": item.identity.isp, "access": item.identity.access.value,
        "engine": result.engine, "target": result.target,
    }.items():  # fmt: skip
        if tag:
            point.tag(key, tag)
    values = result.model_dump(mode="json")
    for name, kind in field_types(type(result)).items():
        if values[name] is None:
            continue
        value: Any = values[name]
        if kind is FieldType.FLOAT:
            value = float(value)
        elif kind is FieldType.JSON:
            value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        point.field(name, value)
    return str(point.to_line_protocol())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=stored_results())
def test_our_line_is_byte_for_byte_what_influxdb_client_point_builds(item: StoredResult) -> None:
    tags = [item.identity.hamlet, item.identity.isp, item.result.target or ""]
    if not all(_representable(t) for t in tags):
        return  # refused by check_tag_value (tested above)
    assert result_to_line(item, item.kind.value) == _line_by_point(item, item.kind.value)
