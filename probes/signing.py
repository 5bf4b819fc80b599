"""Ed25519 signatures over a canonical serialisation of a result, made by the probe and checked
by the server, so a stored measurement can be shown unaltered to an operator who disputes it.

The canonical form is the result's JSON-mode dump without ``signature`` and without fields that
are ``None``, serialised with sorted keys, no whitespace, UTF-8, and prefixed with a domain tag
(so a signature over a result can never be replayed as a signature over something else). Both
sides build it from the same pydantic model, so JSON formatting in transit does not matter:
Python's float ``repr`` round-trips exactly, and timestamps are normalised to UTC on validation.
"""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from probes.models import ResultBase

DOMAIN = b"hamletnet-result-v1\n"


class SignatureError(ValueError):
    """A signature or key that cannot be used (malformed, wrong length, or not matching)."""


def canonical_bytes(result: ResultBase) -> bytes:
    body = result.model_dump(mode="json", exclude_none=True, exclude={"signature"})
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)  # fmt: skip
    return DOMAIN + text.encode("utf-8")


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
    """A copy of ``result`` carrying its signature (base64 of the 64-byte Ed25519 signature)."""
    signature = base64.b64encode(key.sign(canonical_bytes(result))).decode("ascii")
    return result.model_copy(update={"signature": signature})


def verify(result: ResultBase, public_key: Ed25519PublicKey) -> None:
    """Raise ``SignatureError`` unless ``result.signature`` is the key's signature over it."""
    if result.signature is None:
        raise SignatureError("the result is not signed; this probe must sign every result")
    try:
        raw = base64.b64decode(result.signature, validate=True)
    except binascii.Error as exc:
        raise SignatureError("the signature is not valid base64") from exc
    try:
        public_key.verify(raw, canonical_bytes(result))
    except InvalidSignature as exc:
        raise SignatureError(
            "the signature does not match: the result was altered after signing, or was not"
            " signed by this probe's key"
        ) from exc
