"""Signatures survive the wire and catch any change: the canonical form (docs/canonical-form.md)
as both sides build it, whatever JSON library wrote the result on the way."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, create_model

from probes.models import MODEL_BY_KIND, DnsResult, Kind, ResultBase, parse_result
from probes.signing import (
    DOMAIN,
    FORM_VERSION,
    CanonicalFormError,
    SignatureError,
    canonical_bytes,
    canonical_object,
    canonical_time,
    jcs_text,
    legacy_v1_bytes,
    load_public_key,
    new_private_key,
    public_key_text,
    sign,
    verify,
)
from tests.probes.test_models import EXAMPLES, LIMITS, NOW
from tests.probes.vectors.make_vectors import legacy_v1_bytes_as_released

KEY = new_private_key()
PUBLIC = load_public_key(public_key_text(KEY))

# Every finite non-negative double: subnormals (5e-324), 1e-7, whole values, up to 1.8e308.
finite = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
short_text = st.text(min_size=1, max_size=40)
tag_text = short_text.filter(lambda t: "\\" not in t and t.isprintable())
identifier = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
offsets = st.sampled_from([UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-3.5))])
times = st.datetimes(
    min_value=(NOW - timedelta(days=28)).replace(tzinfo=None),
    max_value=(NOW - timedelta(days=1)).replace(tzinfo=None),
    timezones=offsets,
)


@st.composite
def results(draw: st.DrawFn) -> ResultBase:
    """A valid result of any kind, its numbers, texts, times and ids drawn widely."""
    kind = draw(st.sampled_from(sorted(EXAMPLES)))
    result_id = str(draw(st.uuids()))
    body: dict[str, Any] = dict(
        EXAMPLES[kind],
        result_id=result_id.upper() if draw(st.booleans()) else result_id,
        measured_at=draw(times).isoformat(),
        duration_ms=draw(finite),
        target=draw(tag_text),
    )
    if draw(st.booleans()):
        body.update(status="failed", failure_kind="timeout", error=draw(short_text))
    if kind == "bandwidth":
        body.update(
            download_mbps=draw(finite),
            download_bytes=draw(st.integers(0, 2**62)),
            upload_samples_mbps=draw(st.lists(finite, max_size=20)),
        )
    elif kind == "latency":
        rtts = draw(st.lists(finite, max_size=20))
        body.update(rtts_ms=rtts, sent=len(rtts), received=len(rtts), loss_pct=0.0)
    elif kind in {"ipv6", "heartbeat"}:
        texts = st.dictionaries(identifier, short_text.filter(lambda t: len(t) <= 256), max_size=5)
        body["reasons" if kind == "ipv6" else "last_errors"] = draw(texts)
    elif kind == "cellular":
        body["rsrp_dbm"] = -draw(st.floats(min_value=0, max_value=200))
    return parse_result(body, LIMITS)


@settings(max_examples=300, deadline=None)
@given(result=results(), indent=st.sampled_from([None, 2]), ascii_only=st.booleans())
def test_canonical_bytes_and_signature_survive_the_wire(
    result: ResultBase, indent: int | None, ascii_only: bool
) -> None:
    signed = sign(result, KEY)
    # What the server sees: whatever JSON the agent's library wrote, re-encoded by another
    # library, with the time in another offset, parsed back into the model.
    wire = json.loads(signed.model_dump_json())
    wire["measured_at"] = signed.measured_at.astimezone(timezone(timedelta(hours=7))).isoformat()
    text = json.dumps(wire, indent=indent, ensure_ascii=ascii_only)
    received = parse_result(json.loads(text), LIMITS)
    assert canonical_bytes(received) == canonical_bytes(signed)
    assert verify(received, PUBLIC) == FORM_VERSION


@settings(max_examples=300, deadline=None)
@given(result=results())
def test_the_canonical_body_is_rfc8785_json_of_the_canonical_object(result: ResultBase) -> None:
    canonical = canonical_bytes(result)
    assert canonical.startswith(DOMAIN)
    body = canonical.removeprefix(DOMAIN)
    # Numbers read as doubles, as JSON means them: a whole float (2.0**60) is written as digits.
    parsed = json.loads(body, parse_int=float)
    assert parsed == canonical_object(result)
    assert rfc8785.dumps(parsed) == body  # already canonical: JCS is idempotent
    assert "signature" not in parsed and None not in parsed.values()


@settings(max_examples=300, deadline=None)
@given(result=results())
def test_the_frozen_legacy_form_is_what_version_1_signed(result: ResultBase) -> None:
    # Version 1 was pydantic's JSON dump; the verifier keeps a copy in plain code so a pydantic
    # upgrade cannot break old signatures. With the pydantic installed here, both agree. (If a
    # later pydantic makes this fail, the frozen copy is the reference: fix this test only.)
    assert legacy_v1_bytes(result) == legacy_v1_bytes_as_released(result)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=1000, deadline=None)
@given(value=json_values)
def test_our_jcs_writer_matches_the_rfc8785_package(value: Any) -> None:
    # The package is the oracle; ours is the fast path the signer uses. Keys include characters
    # beyond the BMP, whose UTF-16 order differs from code-point order.
    assert jcs_text(value).encode("utf-8") == rfc8785.dumps(value)


@pytest.mark.parametrize(
    ("number", "text"),
    [(100.0, "100"), (9441.25, "9441.25"), (1e-7, "1e-7"), (1e21, "1e+21"),
     (1e20, "100000000000000000000"), (-0.0, "0"), (5e-324, "5e-324"),
     (0.1 + 0.2, "0.30000000000000004"), (1e16, "10000000000000000"),
     (123456789012345680.0, "123456789012345680"), (0.000001, "0.000001"), (-95.0, "-95")],
)  # fmt: skip
def test_numbers_are_written_as_ecmascript_writes_them(number: float, text: str) -> None:
    assert jcs_text(number) == text
    assert jcs_text({"\ue000": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ue000":1}'


def test_timestamps_are_utc_with_six_fractional_digits() -> None:
    hanoi = timezone(timedelta(hours=7))
    assert canonical_time(datetime(2026, 11, 25, 9, 57, tzinfo=hanoi)) == (
        "2026-11-25T02:57:00.000000Z"
    )
    assert canonical_time(datetime(1, 1, 1, 0, 0, 0, 5, tzinfo=UTC)) == (
        "0001-01-01T00:00:00.000005Z"
    )
    with pytest.raises(CanonicalFormError, match="has no time zone"):
        canonical_time(datetime(2026, 11, 25))
    result = parse_result(dict(EXAMPLES["dns"], measured_at="2026-11-25T09:57:00+07:00"), LIMITS)
    assert b'"measured_at":"2026-11-25T02:57:00.000000Z"' in canonical_bytes(result)


def test_integers_beyond_double_precision_are_strings() -> None:
    exact = parse_result(dict(EXAMPLES["bandwidth"], download_bytes=2**53 - 1), LIMITS)
    big = parse_result(dict(EXAMPLES["bandwidth"], download_bytes=2**53 + 1), LIMITS)
    assert b'"download_bytes":9007199254740991,' in canonical_bytes(exact)
    assert b'"download_bytes":"9007199254740993",' in canonical_bytes(big)


def test_numbers_enums_and_ids_follow_the_document() -> None:
    body = dict(EXAMPLES["bandwidth"], upload_mbps=100.0, download_mbps=1e-7,
                download_samples_mbps=[9441.25, 1e21, 0.1],
                result_id=str(uuid.UUID(int=10)).upper())  # fmt: skip
    text = canonical_bytes(parse_result(body, LIMITS)).decode("utf-8")
    assert '"upload_mbps":100}' in text and '"download_mbps":1e-7,' in text
    assert '"download_samples_mbps":[9441.25,1e+21,0.1],' in text
    assert '"result_id":"00000000-0000-0000-0000-00000000000a"' in text
    assert '"kind":"bandwidth"' in text and '"status":"ok"' in text and '"family":"ipv4"' in text


def test_a_value_without_a_canonical_rule_is_refused_by_name() -> None:
    odd = create_model("Odd", __base__=DnsResult, price=(Decimal | None, None))
    result = odd.model_validate(
        dict(EXAMPLES["dns"], price=Decimal("1.5")), context={"limits": LIMITS}
    )
    with pytest.raises(CanonicalFormError, match="field 'price' holds a Decimal"):
        canonical_bytes(result)


def test_nested_models_follow_the_same_rules() -> None:
    # None today, but a later schema may nest one: its None fields are left out too.
    inner = create_model("Inner", a=(int | None, None), b=(float, 2.0))
    outer = create_model("Outer", __base__=DnsResult, detail=(inner | None, None))
    result = outer.model_validate(
        dict(EXAMPLES["dns"], detail={"b": 3.5}), context={"limits": LIMITS}
    )
    assert canonical_object(result)["detail"] == {"b": 3.5}
    assert isinstance(result.detail, BaseModel)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("field", "value"),
    [("download_mbps", 941.3), ("measured_at", "2026-11-25T02:58:00+00:00"), ("engine", "x"),
     ("target", "elsewhere"), ("download_samples_mbps", [900.5, 950.0]), ("clock_synced", True),
     ("download_bytes", 10**9 + 1)],
)  # fmt: skip
def test_any_change_breaks_the_signature(field: str, value: Any) -> None:
    good = sign(parse_result(EXAMPLES["bandwidth"], LIMITS), KEY).model_dump(mode="json")
    verify(parse_result(good, LIMITS), PUBLIC)
    tampered = dict(good, **{field: value})
    with pytest.raises(SignatureError, match="altered after signing"):
        verify(parse_result(tampered, LIMITS), PUBLIC)


def _legacy_signed(result: ResultBase) -> ResultBase:
    signature = base64.b64encode(KEY.sign(legacy_v1_bytes_as_released(result))).decode("ascii")
    return result.model_copy(update={"signature": signature})


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_results_signed_with_version_1_still_verify_and_tampering_is_caught(kind: str) -> None:
    old = _legacy_signed(parse_result(EXAMPLES[kind], LIMITS))
    received = parse_result(json.loads(old.model_dump_json()), LIMITS)
    assert verify(received, PUBLIC) == 1
    assert verify(sign(received, KEY), PUBLIC) == FORM_VERSION
    tampered = received.model_copy(update={"engine": "forged"})
    with pytest.raises(SignatureError, match="altered after signing"):
        verify(tampered, PUBLIC)


def test_another_key_and_garbage_are_refused() -> None:
    result = sign(parse_result(EXAMPLES["latency"], LIMITS), new_private_key())
    with pytest.raises(SignatureError, match="not signed by this probe's key"):
        verify(result, PUBLIC)
    with pytest.raises(SignatureError, match="not valid base64"):
        verify(result.model_copy(update={"signature": "%%%"}), PUBLIC)
    with pytest.raises(SignatureError, match="not signed"):
        verify(result.model_copy(update={"signature": None}), PUBLIC)
    with pytest.raises(SignatureError, match="not a base64 Ed25519 public key"):
        load_public_key("AAAA")


def test_one_signature_has_one_spelling() -> None:
    result = sign(parse_result(EXAMPLES["dns"], LIMITS), KEY)
    text = str(result.signature)
    assert len(text) == 88 and text.endswith("==")
    verify(result, PUBLIC)
    # The last character before '==' carries 4 unused bits; setting one decodes to the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = text[:85] + alphabet[alphabet.index(text[85]) | 1] + "=="
    assert twin != text and base64.b64decode(twin) == base64.b64decode(text)
    for spelling in (twin, text.rstrip("="), text[:-4]):
        with pytest.raises(SignatureError, match="not valid base64"):
            verify(result.model_copy(update={"signature": spelling}), PUBLIC)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_kind_signs_and_verifies(kind: str) -> None:
    result = parse_result(EXAMPLES[kind], LIMITS)
    assert type(result) is MODEL_BY_KIND[Kind(kind)]
    assert verify(sign(result, KEY), PUBLIC) == FORM_VERSION
