"""Ed25519 signatures over a canonical serialisation of a result, made by the probe and checked
by the server, so a stored measurement can be shown unaltered to an operator who disputes it.

The canonical form is the project's own, written down step by step in ``docs/canonical-form.md``
so any other implementation can rebuild it: the result's fields walked here (not a library's
dump), ``signature`` and ``None`` fields left out, timestamps as RFC 3339 UTC with exactly six
fractional digits, then RFC 8785 (JSON Canonicalization Scheme) for numbers, strings and key
order, behind a domain tag naming the form's version. A pydantic release or a new optional field
cannot change the bytes of a result already signed; the golden vectors in
``tests/probes/vectors/`` pin them.

Results signed before version 2 (over pydantic's JSON dump) still verify: ``verify`` falls back
to ``legacy_v1_bytes``, that form frozen in plain code, so an upgrade cannot break them either.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from json.encoder import encode_basestring
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel

from probes.models import ResultBase

#: Version of the canonical form ``sign`` writes; part of the signed bytes through ``DOMAIN``.
FORM_VERSION = 2
#: Prefix of the signed bytes, so a result's signature can never pass for one over other data.
DOMAIN = b"hamletnet-result-v2\n"
#: The first form's tag: accepted by ``verify`` for results signed before version 2.
LEGACY_V1_DOMAIN = b"hamletnet-result-v1\n"

#: Largest integer an IEEE 754 double holds exactly; larger ones are written as strings
#: (RFC 8785 §3.2.2.3 and Appendix D: JSON numbers are doubles, big integers go in strings).
MAX_EXACT_INT = 2**53 - 1

#: Length of the base64 text of a 64-byte Ed25519 signature (RFC 4648 §4, padded).
SIGNATURE_TEXT_LENGTH = 88


class SignatureError(ValueError):
    """A signature or key that cannot be used (malformed, wrong length, or not matching)."""


class CanonicalFormError(SignatureError):
    """A value the canonical form has no rule for (a new field type, a naive time, NaN...)."""


def canonical_time(value: datetime) -> str:
    """RFC 3339 in UTC, ``Z``, exactly six fractional digits: ``2026-11-25T02:57:00.000000Z``.

    Fixed width, so the text never depends on a library's choice to drop zero microseconds.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise CanonicalFormError(f"time {value.isoformat()} has no time zone; results are UTC")
    t = value.astimezone(UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond:06d}Z"
    )


def canonical_object(result: ResultBase) -> dict[str, Any]:
    """The result as the plain JSON object version 2 signs (before RFC 8785 serialisation)."""
    return _model_members(result, exclude=frozenset({"signature"}))


def canonical_bytes(result: ResultBase) -> bytes:
    """``DOMAIN`` followed by the RFC 8785 serialisation of ``canonical_object(result)``."""
    try:
        return DOMAIN + jcs_text(canonical_object(result)).encode("utf-8")
    except (UnicodeEncodeError, rfc8785.CanonicalizationError) as exc:
        raise CanonicalFormError(f"result {result.result_id}: {exc}") from exc


def jcs_text(value: Any) -> str:
    """RFC 8785 (JSON Canonicalization Scheme) text of a plain JSON value.

    The same output as the ``rfc8785`` package's ``dumps`` (its test oracle, byte for byte), in a
    fraction of the time for the long float lists of a bandwidth result: a float whose Python
    ``repr`` has no exponent has the digits ECMAScript writes (both are the shortest that read
    back exactly), so only exponent forms, rare, go through ``rfc8785``.
    """
    kind = type(value)
    if kind is float:
        text = repr(value)
        if value == 0:
            return "0"  # ECMAScript writes -0 as 0
        if "e" in text or "n" in text:  # exponent form, or inf/nan (refused by rfc8785)
            return rfc8785.dumps(value).decode("ascii")
        return text.removesuffix(".0")
    if kind is str:
        # Python's non-ASCII-escaping string writer (``json.dumps(ensure_ascii=False)``) escapes
        # exactly RFC 8785 §3.2.2.2's set: '"', '\\' and U+0000-U+001F, short forms first.
        return encode_basestring(value)
    if kind is bool or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if kind is int:
        if abs(value) > MAX_EXACT_INT:
            raise CanonicalFormError(f"integer {value} is beyond 2**53 - 1: write it as a string")
        return str(value)
    if kind is list:
        return "[" + ",".join(map(jcs_text, value)) + "]"
    if kind is dict:
        # Members sorted by the UTF-16 code units of their names (RFC 8785 §3.2.3).
        members = sorted(value.items(), key=lambda item: item[0].encode("utf-16-be"))
        return "{" + ",".join(f"{jcs_text(k)}:{jcs_text(v)}" for k, v in members) + "}"
    raise CanonicalFormError(f"a {kind.__name__} is not a plain JSON value")


def legacy_v1_bytes(result: ResultBase) -> bytes:
    """The version 1 form, kept only to verify results signed before version 2.

    Version 1 was ``json.dumps(model_dump(mode="json", exclude_none=True), sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)`` behind ``LEGACY_V1_DOMAIN``. It is rebuilt here
    without pydantic, as pydantic 2.6 to 2.14 wrote it (times ``isoformat()`` with ``Z`` for
    UTC; floats as Python's ``repr``), so a pydantic upgrade cannot break old signatures.
    """
    body = _legacy_members(result, exclude=frozenset({"signature"}))
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)  # fmt: skip
    try:
        return LEGACY_V1_DOMAIN + text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalFormError(f"result {result.result_id}: text is not valid UTF-8") from exc


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key_pem(data: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError("the probe key is not an Ed25519 private key")
    return key


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64 (44 characters): what the server's registry keeps."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"not a base64 Ed25519 public key: {exc}") from exc


def sign(result: ResultBase, key: Ed25519PrivateKey) -> ResultBase:
    """A copy of ``result`` carrying its signature: base64 of the 64-byte Ed25519 signature
    (RFC 8032, pure Ed25519) over ``canonical_bytes``, the current form."""
    signature = base64.b64encode(key.sign(canonical_bytes(result))).decode("ascii")
    return result.model_copy(update={"signature": signature})


#: The forms ``verify`` accepts, newest first: a version 2 result matches on the first try.
_VERIFIED_FORMS: tuple[tuple[int, Callable[[ResultBase], bytes]], ...] = (
    (FORM_VERSION, canonical_bytes),
    (1, legacy_v1_bytes),
)


def verify(result: ResultBase, public_key: Ed25519PublicKey) -> int:
    """The version of the canonical form ``result.signature`` signs with the key's private half;
    raise ``SignatureError`` when it signs none of them."""
    if result.signature is None:
        raise SignatureError("the result is not signed; this probe must sign every result")
    raw = _signature_bytes(result.signature)
    for version, form in _VERIFIED_FORMS:
        try:
            public_key.verify(raw, form(result))
        except InvalidSignature:
            continue
        return version
    raise SignatureError(
        "the signature does not match: the result was altered after signing, or was not"
        " signed by this probe's key"
    )


def _signature_bytes(text: str) -> bytes:
    # One text per signature: anything but the padded standard base64 of 64 bytes is refused,
    # so two spellings of one signature cannot make two versions of one result.
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise SignatureError("the signature is not valid base64 (RFC 4648 §4)") from exc
    if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != text:
        raise SignatureError(
            f"the signature is not valid base64 of a 64-byte Ed25519 signature"
            f" ({SIGNATURE_TEXT_LENGTH} characters, padded), but {len(text)} characters"
        )
    return raw


def _model_members(model: BaseModel, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    # A field that is None is left out: that is what lets a later schema add optional fields
    # without changing the bytes of a result that does not set them.
    members: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name in exclude or value is None:
            continue
        members[name] = _canonical_value(value, name)
    return members


def _canonical_value(value: Any, where: str) -> Any:
    """A field value as a plain JSON value (the rules of docs/canonical-form.md, step 2)."""
    if type(value) is float:  # first: a bandwidth result holds thousands
        if not math.isfinite(value):
            raise CanonicalFormError(f"field {where!r} is {value!r}, not a finite number")
        return value
    if isinstance(value, Enum):
        return _canonical_value(value.value, where)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_EXACT_INT else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalFormError(f"field {where!r} is {value!r}, not a finite number")
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return canonical_time(value)
    if isinstance(value, BaseModel):
        return _model_members(value)
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalFormError(f"field {where!r} has a non-string key {key!r}")
        return {key: _canonical_value(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_value(item, where) for item in value]
    raise CanonicalFormError(
        f"field {where!r} holds a {type(value).__name__}, which the canonical form has no rule"
        " for: add one to docs/canonical-form.md and probes/signing.py, with a new FORM_VERSION"
    )


_PLAIN = frozenset({float, int, str, bool})


def _legacy_members(model: BaseModel, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    # Version 1 left out None fields of models, but kept None inside dicts and lists.
    return {
        name: _legacy_value(getattr(model, name))
        for name in type(model).model_fields
        if name not in exclude and getattr(model, name) is not None
    }


def _legacy_value(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        text = value.isoformat()
        return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text
    if isinstance(value, BaseModel):
        return _legacy_members(value)
    if isinstance(value, Mapping):
        return {key: _legacy_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_legacy_value(item) for item in value]
    return value
