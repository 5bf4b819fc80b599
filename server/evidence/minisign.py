"""The server's Ed25519 signing key and minisign's file formats, so Debian's ``minisign -V``
checks an export's manifest with no hamletnet code at all.

Formats as minisign 0.8 and later write them (https://jedisct1.github.io/minisign/, "Signature
format" and "Public key format"):

- public key: ``untrusted comment: ...`` then base64 of ``"Ed"`` + 8-byte key id + 32-byte key;
- signature: ``untrusted comment: ...``, base64 of ``"ED"`` + key id + Ed25519 signature over the
  BLAKE2b-512 of the file (``"Ed"``, the legacy form, signs the file itself), ``trusted comment:
  ...``, and base64 of the *global* signature, Ed25519 over the 64-byte signature followed by the
  trusted comment's text, so the trusted comment cannot be changed either.

Only the Ed25519 and BLAKE2b primitives come from libraries (``cryptography``, ``hashlib``);
this module only lays out bytes. The secret key is kept as a PKCS#8 PEM file (mode 0600), not in
minisign's scrypt-encrypted secret-key format: the server signs unattended, with no password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: Signature algorithm of a public key (and of a legacy signature over the whole file).
ALG_ED25519 = b"Ed"
#: Signature algorithm of a prehashed signature: Ed25519 over BLAKE2b-512 of the file.
ALG_PREHASHED = b"ED"
KEY_ID_BYTES = 8
UNTRUSTED_PREFIX = "untrusted comment: "
TRUSTED_PREFIX = "trusted comment: "
#: minisign refuses longer comments (``COMMENTMAXBYTES`` and ``TRUSTEDCOMMENTMAXBYTES``).
MAX_UNTRUSTED_COMMENT_BYTES = 1024
MAX_TRUSTED_COMMENT_BYTES = 8192
#: File name of the server's secret key in ``data_dir``.
KEY_FILE_NAME = "evidence-signing-key.pem"
#: Domain tag of the key id derivation (see ``SigningKey``).
_KEY_ID_DOMAIN = b"hamletnet-minisign-key-id\n"


class MinisignError(ValueError):
    """A key or signature that cannot be used: malformed, or not matching."""


class SignatureFileAltered(MinisignError):
    """The signature file does not hold together: malformed, another key's, or altered."""


class SignedFileAltered(MinisignError):
    """The signature is the key holder's own, but the signed file is not what was signed."""


class KeyFileError(MinisignError):
    """The secret key file is unreadable, not an Ed25519 key, or readable by others."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    key_id: bytes
    key: Ed25519PublicKey

    def raw(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def base64_text(self) -> str:
        """The one-line form ``minisign -V -P`` takes (56 characters, starting ``RW``)."""
        return base64.b64encode(ALG_ED25519 + self.key_id + self.raw()).decode("ascii")

    def file_text(self) -> str:
        """The two-line ``minisign.pub`` file ``minisign -V -p`` reads."""
        return f"{UNTRUSTED_PREFIX}minisign public key {key_id_hex(self.key_id)}\n" + (
            self.base64_text() + "\n"
        )


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The server's Ed25519 key, with the minisign key id derived from its public half.

    minisign draws key ids at random and stores them in its key files; ours are the first 8 bytes
    of BLAKE2b-512 over a domain tag and the public key, so the PEM file alone is the whole key.
    """

    key: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        public = self.key.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        key_id = hashlib.blake2b(_KEY_ID_DOMAIN + raw).digest()[:KEY_ID_BYTES]
        return PublicKey(key_id=key_id, key=public)


def key_id_hex(key_id: bytes) -> str:
    # minisign prints the key id as the little-endian 64-bit number it loads it as.
    return f"{int.from_bytes(key_id, 'little'):016X}"


def new_signing_key() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


def load_or_create_key(data_dir: Path) -> SigningKey:
    """The server's key from ``data_dir/evidence-signing-key.pem``, created (mode 0600) on first
    use. A key file that group or others may read is refused: anyone who reads it can sign."""
    path = data_dir / KEY_FILE_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_key(path)
    key = new_signing_key()
    pem = key.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    return key


def load_key(path: Path) -> SigningKey:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the evidence signing key {path}: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"the evidence signing key {path} has mode {stat.S_IMODE(mode):04o}: others may read"
            f" it; run chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return SigningKey(key)


def sign(data: bytes, key: SigningKey, trusted_comment: str, untrusted_comment: str) -> str:
    """A minisign signature file of ``data``: prehashed, with its trusted comment signed."""
    _check_comment(trusted_comment, MAX_TRUSTED_COMMENT_BYTES, "trusted")
    _check_comment(untrusted_comment, MAX_UNTRUSTED_COMMENT_BYTES, "untrusted")
    signature = key.key.sign(hashlib.blake2b(data).digest())
    global_signature = key.key.sign(signature + trusted_comment.encode("utf-8"))
    return (
        f"{UNTRUSTED_PREFIX}{untrusted_comment}\n"
        f"{_b64(ALG_PREHASHED + key.public.key_id + signature)}\n"
        f"{TRUSTED_PREFIX}{trusted_comment}\n"
        f"{_b64(global_signature)}\n"
    )


# --- verification: reads the formats back with no use of the signing code above ---


@dataclass(frozen=True, slots=True)
class Signature:
    untrusted_comment: str
    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes


def parse_public_key(text: str) -> PublicKey:
    """A public key from its base64 line (``-P``) or a whole ``minisign.pub`` file (``-p``)."""
    lines = text.splitlines()
    if len(lines) == 2 and lines[0].startswith(UNTRUSTED_PREFIX):
        line = lines[1]
    elif len(lines) == 1:
        line = lines[0]
    else:
        raise MinisignError("a minisign public key is one base64 line, after an optional comment")
    raw = _unb64(line.strip(), "public key")
    if len(raw) != 2 + KEY_ID_BYTES + 32 or raw[:2] != ALG_ED25519:
        raise MinisignError(
            f"not a minisign Ed25519 public key: {len(raw)} bytes starting {raw[:2]!r},"
            " expected 42 bytes starting b'Ed'"
        )
    return PublicKey(raw[2:10], Ed25519PublicKey.from_public_bytes(raw[10:]))


def parse_signature(text: str) -> Signature:
    """The four lines of a ``.minisig`` file, each ending in a line feed, nothing else (raises
    ``SignatureFileAltered``)."""
    if not text.endswith("\n"):
        raise SignatureFileAltered("a minisign signature ends with a line feed")
    lines = text[:-1].split("\n")
    if len(lines) != 4:
        raise SignatureFileAltered(f"a minisign signature has 4 lines, this one {len(lines)}")
    untrusted, sig_line, trusted, global_line = lines
    if not untrusted.startswith(UNTRUSTED_PREFIX):
        raise SignatureFileAltered(f"line 1 does not start with {UNTRUSTED_PREFIX!r}")
    if not trusted.startswith(TRUSTED_PREFIX):
        raise SignatureFileAltered(f"line 3 does not start with {TRUSTED_PREFIX!r}")
    raw = _unb64(sig_line, "signature (line 2)", SignatureFileAltered)
    if len(raw) != 2 + KEY_ID_BYTES + 64 or raw[:2] not in (ALG_PREHASHED, ALG_ED25519):
        raise SignatureFileAltered(
            f"line 2 is not a minisign Ed25519 signature: {len(raw)} bytes starting {raw[:2]!r}"
        )
    global_signature = _unb64(global_line, "global signature (line 4)", SignatureFileAltered)
    if len(global_signature) != 64:
        raise SignatureFileAltered(
            f"line 4 holds {len(global_signature)} bytes, not a 64-byte signature"
        )
    return Signature(
        untrusted_comment=untrusted[len(UNTRUSTED_PREFIX) :],
        algorithm=raw[:2],
        key_id=raw[2:10],
        signature=raw[10:],
        trusted_comment=trusted[len(TRUSTED_PREFIX) :],
        global_signature=global_signature,
    )


def verify(data: bytes, signature_text: str, public_key: PublicKey) -> Signature:
    """The parsed signature when it signs ``data`` and its trusted comment with ``public_key``,
    as ``minisign -V`` checks; ``MinisignError`` naming the first check that fails."""
    sig = parse_signature(signature_text)
    if sig.key_id != public_key.key_id:
        raise SignatureFileAltered(
            f"the signature's key id {key_id_hex(sig.key_id)} is not the public key's"
            f" {key_id_hex(public_key.key_id)}: signed by another key"
        )
    # The global signature first: when it holds, the signature line is the signer's own, so a
    # mismatch after it is the file's fault, not the signature file's.
    try:
        public_key.key.verify(sig.global_signature, sig.signature + sig.trusted_comment.encode())
    except InvalidSignature:
        raise SignatureFileAltered(
            "the global signature does not match: the signature or its trusted comment was"
            " altered, or it was made by another key"
        ) from None
    message = hashlib.blake2b(data).digest() if sig.algorithm == ALG_PREHASHED else data
    try:
        public_key.key.verify(sig.signature, message)
    except InvalidSignature:
        raise SignedFileAltered(
            "the signature does not match the file: the file was altered"
        ) from None
    return sig


def _check_comment(comment: str, max_bytes: int, which: str) -> None:
    if "\n" in comment or "\r" in comment:
        raise MinisignError(f"the {which} comment must be one line, not {comment!r}")
    if len(comment.encode("utf-8")) > max_bytes:
        raise MinisignError(f"the {which} comment is longer than minisign's {max_bytes} bytes")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, what: str, error: type[MinisignError] = MinisignError) -> bytes:
    # One spelling per value: strict alphabet and padding, and the unused bits of the last
    # character must be zero, so no byte of a signature file can change without failing.
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise error(f"the {what} is not valid base64: {exc}") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise error(f"the {what} is not in canonical base64")
    return raw
