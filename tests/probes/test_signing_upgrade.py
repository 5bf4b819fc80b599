"""Upgrades cannot break stored signatures: a later schema's optional field, or a pydantic
release that serialises differently, leaves the canonical bytes of an old result unchanged."""

from __future__ import annotations

import copy
import json
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel, create_model

from probes import models
from probes.models import (
    MODEL_BY_KIND,
    SCHEMA_VERSION,
    Kind,
    ResultBase,
    parse_result,
    unbounded_limits,
    upgrade_payload,
)
from probes.signing import FORM_VERSION, SignatureError, canonical_bytes, sign, verify
from tests.probes.test_models import EXAMPLES, LIMITS
from tests.probes.test_signing import KEY, PUBLIC
from tests.probes.test_signing_vectors import BY_NAME, INDEX
from tests.probes.vectors.make_vectors import private_key

PUBLIC_OF_VECTORS = private_key().public_key()
REQUIRED = "required"
_BASE: dict[str, Any] = {
    "schema_version": 1, "result_id": REQUIRED, "probe_id": REQUIRED, "measured_at": REQUIRED,
    "status": "ok", "engine": REQUIRED,
}  # fmt: skip

#: Per canonical-form version, every field that is required or has a default other than None.
#: Such a field is in the canonical bytes of every result, so adding one (or changing one's
#: default) changes the bytes of results signed before: frozen here, it cannot happen unnoticed.
FIELDS_NOT_NONE_BY_DEFAULT: dict[int, dict[str, dict[str, Any]]] = {
    2: {
        "BandwidthResult": {**_BASE, "kind": "bandwidth"},
        "LatencyResult": {**_BASE, "kind": "latency", "method": "icmp", "sent": 0, "received": 0},
        "DnsResult": {**_BASE, "kind": "dns", "qtype": "A"},
        "Ipv6Result": {**_BASE, "kind": "ipv6"},
        "CellularResult": {**_BASE, "kind": "cellular"},
        "HeartbeatResult": {**_BASE, "kind": "heartbeat"},
    },
}


def _fields_not_none_by_default(model: type[BaseModel]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.is_required():
            found[name] = REQUIRED
            continue
        default = field.get_default(call_default_factory=True)
        if default is not None:
            found[name] = default.value if isinstance(default, Enum) else default
    return found


@pytest.mark.parametrize("kind", list(Kind))
def test_no_field_joins_every_result_without_a_new_canonical_form(kind: Kind) -> None:
    model = MODEL_BY_KIND[kind]
    frozen = FIELDS_NOT_NONE_BY_DEFAULT[FORM_VERSION][model.__name__]
    found = _fields_not_none_by_default(model)
    added = {name: found[name] for name in found.keys() - frozen.keys()}
    changed = {
        n: (frozen[n], found[n]) for n in found.keys() & frozen.keys() if found[n] != frozen[n]
    }
    assert not added and not changed, (
        f"{model.__name__}: new required/non-None-default fields {added}, changed defaults"
        f" {changed}. A stored result re-read by the server would gain them and its signature"
        " would break: give a new field the default None (missing is None). Otherwise write a"
        " new canonical form (FORM_VERSION, docs/canonical-form.md) that keeps the old one for"
        " verification, and freeze its list here."
    )


@pytest.mark.parametrize("name", [n for n, v in BY_NAME.items() if v["form"] == FORM_VERSION])
def test_a_field_added_later_with_default_none_leaves_old_bytes_unchanged(name: str) -> None:
    vector = BY_NAME[name]
    model = MODEL_BY_KIND[Kind(vector["result"]["kind"])]
    later = create_model(
        model.__name__,
        __base__=model,
        added_later=(bool | None, None),
        also_later=(str | None, None),
    )
    text = json.dumps(vector["result"])
    old = model.model_validate_json(text, strict=True, context={"limits": unbounded_limits()})
    new = later.model_validate_json(text, strict=True, context={"limits": unbounded_limits()})
    assert canonical_bytes(new) == canonical_bytes(old) == bytes.fromhex(vector["canonical_hex"])
    assert verify(new, PUBLIC_OF_VECTORS) == FORM_VERSION
    # Once set, the new field is signed like any other.
    assert verify(sign(new.model_copy(update={"added_later": True}), private_key()),
                  PUBLIC_OF_VECTORS) == FORM_VERSION  # fmt: skip
    with pytest.raises(SignatureError, match="altered after signing"):
        verify(new.model_copy(update={"added_later": False}), PUBLIC_OF_VECTORS)


def test_why_a_new_field_must_default_to_none() -> None:
    # The counter-example the frozen list guards against: a default of False enters the bytes.
    signed = sign(parse_result(EXAMPLES["dns"], LIMITS), KEY)
    later = create_model("DnsResult", __base__=type(signed), added_later=(bool, False))
    reread = later.model_validate_json(
        signed.model_dump_json(), strict=True, context={"limits": LIMITS}
    )
    with pytest.raises(SignatureError, match="altered after signing"):
        verify(reread, PUBLIC)


def test_a_pydantic_release_that_serialises_differently_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signed = {kind: sign(parse_result(body, LIMITS), KEY) for kind, body in EXAMPLES.items()}
    before = {kind: canonical_bytes(result) for kind, result in signed.items()}
    original = BaseModel.model_dump

    def new_release(self: BaseModel, **kwargs: Any) -> dict[str, Any]:
        # What a release with another time format would give: "+00:00" instead of "Z".
        dumped = original(self, **kwargs)
        if isinstance(dumped.get("measured_at"), str):
            dumped["measured_at"] = dumped["measured_at"].replace("Z", "+00:00")
        return dumped

    monkeypatch.setattr(BaseModel, "model_dump", new_release)
    for kind, result in signed.items():
        assert canonical_bytes(result) == before[kind]
        assert verify(result, PUBLIC) == FORM_VERSION


def test_results_spooled_by_version_1_probes_verify_after_a_pydantic_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    legacy = [v for v in INDEX["vectors"] if v["form"] == 1]
    assert legacy
    monkeypatch.setattr(BaseModel, "model_dump", _refuse)
    monkeypatch.setattr(BaseModel, "model_dump_json", _refuse)
    for vector in legacy:
        result: ResultBase = parse_result(vector["result"], unbounded_limits())
        assert verify(result, PUBLIC_OF_VECTORS) == 1


def _refuse(self: BaseModel, **kwargs: Any) -> Any:
    raise AssertionError("the canonical form must not depend on pydantic's serialisation")


# -- Schema upgrades on the server (docs/canonical-form.md, "Versions and upgrades") -----------


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_upgrade_payload_changes_no_signed_result_yet(kind: str) -> None:
    # The server verifies the result that ``parse_result`` returns, which ``upgrade_payload`` has
    # already brought up to SCHEMA_VERSION: sound only while upgrading changes nothing.
    sent = json.loads(sign(parse_result(EXAMPLES[kind], LIMITS), KEY).model_dump_json())
    for version in range(1, SCHEMA_VERSION + 1):
        older = {**sent, "schema_version": version}
        assert upgrade_payload(copy.deepcopy(older)) == older, (
            f"upgrade_payload now changes a version {version} result. The server verifies after"
            " upgrading, so every result signed at that version would fail verification: verify"
            " a result at its own schema_version first, then upgrade it (docs/canonical-form.md,"
            " 'Versions and upgrades')."
        )


def test_why_the_server_must_verify_before_upgrading(monkeypatch: pytest.MonkeyPatch) -> None:
    # The counter-example: a later upgrade step that converts a field (here loss_pct from a
    # percentage to a fraction) breaks the signature of every result sent before it.
    sent = json.loads(sign(parse_result(EXAMPLES["latency"], LIMITS), KEY).model_dump_json())

    def a_later_upgrade_step(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "loss_pct": payload["loss_pct"] / 100}

    monkeypatch.setattr(models, "upgrade_payload", a_later_upgrade_step)
    with pytest.raises(SignatureError, match="altered after signing"):
        verify(parse_result(sent, LIMITS), PUBLIC)
    monkeypatch.undo()
    assert verify(parse_result(sent, LIMITS), PUBLIC) == FORM_VERSION  # as sent, it verifies
