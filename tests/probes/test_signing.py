"""Signatures survive the wire and catch any change: canonical form as both sides build it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.models import parse_result
from probes.signing import (
    SignatureError,
    canonical_bytes,
    load_public_key,
    new_private_key,
    public_key_text,
    sign,
    verify,
)
from tests.probes.test_models import EXAMPLES, LIMITS

KEY = new_private_key()
PUBLIC = load_public_key(public_key_text(KEY))

finite = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(sorted(EXAMPLES)),
    number=finite,
    text=st.text(min_size=1, max_size=40).filter(lambda t: "\\" not in t and t.isprintable()),
    indent=st.sampled_from([None, 2]),
)
def test_signature_survives_any_json_formatting(
    kind: str, number: float, text: str, indent: int | None
) -> None:
    body = dict(EXAMPLES[kind], duration_ms=number, target=text)
    result = sign(parse_result(body, LIMITS), KEY)
    # The server sees whatever JSON the agent's library wrote, parsed back into the model.
    wire = json.dumps(json.loads(result.model_dump_json()), indent=indent, ensure_ascii=True)
    received = parse_result(json.loads(wire), LIMITS)
    verify(received, PUBLIC)
    assert canonical_bytes(received) == canonical_bytes(result)


@pytest.mark.parametrize(
    ("field", "value"),
    [("download_mbps", 941.3), ("measured_at", "2026-11-25T02:58:00+00:00"), ("engine", "x"),
     ("target", "elsewhere"), ("download_samples_mbps", [900.5, 950.0])],
)  # fmt: skip
def test_any_change_breaks_the_signature(field: str, value: Any) -> None:
    good = sign(parse_result(EXAMPLES["bandwidth"], LIMITS), KEY).model_dump(mode="json")
    verify(parse_result(good, LIMITS), PUBLIC)
    tampered = dict(good, **{field: value})
    with pytest.raises(SignatureError, match="altered after signing"):
        verify(parse_result(tampered, LIMITS), PUBLIC)


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
