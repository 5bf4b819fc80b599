"""Our minisign signatures against the real thing: Debian's ``minisign`` binary verifies what we
sign and rejects any altered byte, and our verifier accepts what ``minisign -S`` signs."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.evidence import minisign

MINISIGN = shutil.which("minisign")
needs_minisign = pytest.mark.skipif(
    MINISIGN is None, reason="install Debian's minisign (scripts/test.sh does)"
)
DATA = "Thôn Đồng Tâm: 94.41 Mbit/s\n".encode()
TRUSTED = "timestamp:1796112000\tfile:manifest.json\tsha256:" + "ab" * 32
KEY = minisign.new_signing_key()


def run_minisign(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert MINISIGN is not None
    return subprocess.run(
        [MINISIGN, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


def write_signed(tmp_path: Path, data: bytes = DATA) -> tuple[Path, Path]:
    path = tmp_path / "manifest.json"
    path.write_bytes(data)
    signature = minisign.sign(data, KEY, TRUSTED, "signature by the test")
    (tmp_path / "manifest.json.minisig").write_text(signature)
    (tmp_path / "server.pub").write_text(KEY.public.file_text())
    return path, tmp_path / "manifest.json.minisig"


def test_our_verifier_accepts_our_signature_and_reads_its_trusted_comment() -> None:
    signature = minisign.sign(DATA, KEY, TRUSTED, "anything")
    parsed = minisign.verify(DATA, signature, KEY.public)
    assert parsed.algorithm == b"ED"
    assert parsed.trusted_comment == TRUSTED
    assert parsed.key_id == KEY.public.key_id


def test_the_key_formats_read_back() -> None:
    public = KEY.public
    assert len(public.base64_text()) == 56 and public.base64_text().startswith("RW")
    for text in (public.base64_text(), public.file_text()):
        assert minisign.parse_public_key(text).base64_text() == public.base64_text()
    assert public.file_text().startswith(
        f"untrusted comment: minisign public key {minisign.key_id_hex(public.key_id)}\n"
    )


@needs_minisign
@pytest.mark.parametrize("key_option", ["-P", "-p"])
def test_real_minisign_verifies_our_signature(tmp_path: Path, key_option: str) -> None:
    path, _ = write_signed(tmp_path)
    key = KEY.public.base64_text() if key_option == "-P" else "server.pub"
    done = run_minisign("-Vm", path.name, key_option, key, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"Trusted comment: {TRUSTED}" in done.stdout


@needs_minisign
def test_real_minisign_rejects_a_flipped_byte_in_the_file(tmp_path: Path) -> None:
    path, _ = write_signed(tmp_path)
    path.write_bytes(flip(DATA, 7))
    done = run_minisign("-Vm", path.name, "-P", KEY.public.base64_text(), cwd=tmp_path)
    assert done.returncode != 0
    assert "Signature verification failed" in done.stderr


@needs_minisign
@pytest.mark.parametrize(
    ("line", "column"),
    [(1, 20), (1, 3), (2, len("trusted comment: ")), (3, 3)],
    ids=["signature", "key-id", "trusted-comment", "global-signature"],
)
def test_real_minisign_rejects_a_changed_byte_in_the_signature_file(
    tmp_path: Path, line: int, column: int
) -> None:
    path, sig_path = write_signed(tmp_path)
    original = sig_path.read_bytes()
    offset = sum(len(x) + 1 for x in original.split(b"\n")[:line]) + column
    # Another base64 character (or comment character), so the file still parses.
    replacement = b"B" if original[offset : offset + 1] != b"B" else b"C"
    altered = original[:offset] + replacement + original[offset + 1 :]
    sig_path.write_bytes(altered)
    done = run_minisign("-Vm", path.name, "-P", KEY.public.base64_text(), cwd=tmp_path)
    assert done.returncode != 0, done.stdout
    with pytest.raises(minisign.SignatureFileAltered):
        minisign.verify(DATA, altered.decode(), KEY.public)


@needs_minisign
@pytest.mark.parametrize("legacy", [False, True], ids=["prehashed", "legacy"])
def test_our_verifier_accepts_what_real_minisign_signs(tmp_path: Path, legacy: bool) -> None:
    made = run_minisign("-G", "-W", "-p", "k.pub", "-s", "k.sec", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    (tmp_path / "f").write_bytes(DATA)
    signed = run_minisign(
        "-S", *(["-l"] if legacy else []), "-s", "k.sec", "-m", "f", "-t", "ours", cwd=tmp_path
    )
    assert signed.returncode == 0, signed.stderr
    public = minisign.parse_public_key((tmp_path / "k.pub").read_text())
    # The key id we read is the one minisign names in its public key file's comment (which it
    # prints as %PRIX64, without leading zeros: compare the numbers).
    comment = (tmp_path / "k.pub").read_text().splitlines()[0]
    assert int(minisign.key_id_hex(public.key_id), 16) == int(comment.rsplit(" ", 1)[1], 16)
    signature = (tmp_path / "f.minisig").read_text()
    parsed = minisign.verify(DATA, signature, public)
    assert parsed.algorithm == (b"Ed" if legacy else b"ED")
    assert parsed.trusted_comment == "ours"
    with pytest.raises(minisign.SignedFileAltered):
        minisign.verify(DATA + b"x", signature, public)
    with pytest.raises(minisign.SignatureFileAltered, match="key id"):
        minisign.verify(DATA, signature, KEY.public)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_flipped_byte_of_file_or_signature_is_refused(data: st.DataObject) -> None:
    signature = minisign.sign(DATA, KEY, TRUSTED, "signature by the test").encode()
    mask = data.draw(st.integers(1, 255), label="mask")
    if data.draw(st.booleans(), label="in the signature file"):
        index = data.draw(st.integers(0, len(signature) - 1), label="index")
        altered = flip(signature, index, mask)
        try:
            minisign.verify(DATA, altered.decode("utf-8"), KEY.public)
        except (UnicodeDecodeError, minisign.SignatureFileAltered):
            return
        # minisign ignores the untrusted comment's text: only there may a byte change and pass
        # (export verify checks that text itself, see test_verify.py).
        assert len("untrusted comment: ") <= index < signature.index(b"\n")
    else:
        altered = flip(DATA, data.draw(st.integers(0, len(DATA) - 1)), mask)
        with pytest.raises(minisign.SignedFileAltered):
            minisign.verify(altered, signature.decode(), KEY.public)


def test_the_key_is_created_once_mode_0600_and_read_back(tmp_path: Path) -> None:
    key = minisign.load_or_create_key(tmp_path)
    path = tmp_path / minisign.KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = minisign.load_or_create_key(tmp_path)
    assert again.public.base64_text() == key.public.base64_text()


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    minisign.load_or_create_key(tmp_path)
    path = tmp_path / minisign.KEY_FILE_NAME
    os.chmod(path, 0o644)
    with pytest.raises(minisign.KeyFileError, match="chmod 600"):
        minisign.load_or_create_key(tmp_path)


def test_a_key_file_that_is_not_ed25519_is_refused(tmp_path: Path) -> None:
    path = tmp_path / minisign.KEY_FILE_NAME
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(minisign.KeyFileError, match="not an unencrypted PEM"):
        minisign.load_key(path)


@pytest.mark.parametrize("comment", ["two\nlines", "x" * 8193])
def test_a_trusted_comment_minisign_would_refuse_is_refused(comment: str) -> None:
    with pytest.raises(minisign.MinisignError, match="trusted comment"):
        minisign.sign(DATA, KEY, comment, "u")


@pytest.mark.parametrize("line", [1, 3], ids=["signature", "global-signature"])
def test_a_signature_spelt_with_other_unused_base64_bits_is_refused(line: int) -> None:
    # The last base64 character before the padding carries bits no byte uses; changing only
    # them decodes to the same bytes, so it must be refused for every byte of the file to count.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    lines = minisign.sign(DATA, KEY, TRUSTED, "u").split("\n")
    text = lines[line].rstrip("=")
    respelt = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1] + lines[line][len(text) :]
    assert base64.b64decode(respelt) == base64.b64decode(lines[line])
    lines[line] = respelt
    with pytest.raises(minisign.SignatureFileAltered, match="canonical base64"):
        minisign.verify(DATA, "\n".join(lines), KEY.public)
