"""The golden vectors in tests/probes/vectors/: the exact canonical bytes and Ed25519 signatures
of fixed results by a fixed key, recomputed here byte for byte and checked by two other
implementations (OpenSSL's command line, and a JavaScript rebuild of docs/canonical-form.md)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from probes.models import parse_result, unbounded_limits
from probes.signing import canonical_bytes, legacy_v1_bytes, load_public_key, sign, verify
from tests.probes.vectors import make_vectors

VECTORS = Path(make_vectors.__file__).parent
INDEX: dict[str, Any] = json.loads((VECTORS / "vectors.json").read_text("utf-8"))
BY_NAME = {vector["name"]: vector for vector in INDEX["vectors"]}
# SubjectPublicKeyInfo of an Ed25519 key, before its 32 raw bytes (RFC 8410).
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def test_the_vectors_are_what_the_generator_makes() -> None:
    # Every stored file is the generator's output, so none is hand-edited or stale.
    built = make_vectors.build()
    on_disk = {p.name for p in VECTORS.iterdir() if p.suffix in {".bin", ".json"}}
    assert on_disk == set(built)
    for name, data in built.items():
        assert (VECTORS / name).read_bytes() == data, f"{name} differs: run make_vectors"


def test_the_vectors_cover_what_the_issue_names() -> None:
    kinds = {v["result"]["kind"] for v in INDEX["vectors"] if v["form"] == 2}
    assert kinds == {"bandwidth", "latency", "dns", "ipv6", "heartbeat", "cellular"}
    assert any(v["result"]["status"] == "failed" for v in INDEX["vectors"])
    text = (VECTORS / "dns-failed.canonical.bin").read_bytes().decode("utf-8")
    assert "không kết nối được" in text
    assert INDEX["key"]["public_base64"] == base64.b64encode(
        bytes.fromhex(make_vectors.PUBLIC_HEX)
    ).decode("ascii")


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_each_vector_recomputes_byte_for_byte(name: str) -> None:
    vector = BY_NAME[name]
    expected = bytes.fromhex(vector["canonical_hex"])
    assert (VECTORS / vector["canonical_file"]).read_bytes() == expected
    received = parse_result(vector["result"], unbounded_limits())
    public = load_public_key(INDEX["key"]["public_base64"])
    assert verify(received, public) == vector["form"]
    if vector["form"] == 2:
        assert canonical_bytes(received) == expected
        unsigned = received.model_copy(update={"signature": None})
        # Ed25519 is deterministic: the same key over the same bytes gives the same signature.
        assert sign(unsigned, make_vectors.private_key()).signature == vector["signature_base64"]
    else:
        assert legacy_v1_bytes(received) == expected


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_openssl_verifies_each_vector(name: str, tmp_path: Path) -> None:
    vector = BY_NAME[name]
    der = SPKI_PREFIX + bytes.fromhex(INDEX["key"]["public_hex"])
    pem = b"-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der) + b"\n-----END PUBLIC KEY-----\n"
    (tmp_path / "public.pem").write_bytes(pem)
    (tmp_path / "signature.bin").write_bytes(bytes.fromhex(vector["signature_hex"]))
    tampered = bytearray((VECTORS / vector["canonical_file"]).read_bytes())
    tampered[-2] ^= 1
    (tmp_path / "tampered.bin").write_bytes(bytes(tampered))

    def openssl_verify(data: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", tmp_path / "public.pem",
             "-rawin", "-in", data, "-sigfile", tmp_path / "signature.bin"],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip

    good = openssl_verify(VECTORS / vector["canonical_file"])
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Signature Verified Successfully" in good.stdout
    assert openssl_verify(tmp_path / "tampered.bin").returncode != 0


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (Debian's nodejs)")
def test_a_javascript_implementation_of_the_document_agrees(tmp_path: Path) -> None:
    script = VECTORS / "check_vectors.mjs"
    run = subprocess.run(
        ["node", script, VECTORS / "vectors.json"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("\nok ") + run.stdout.startswith("ok ") == len(BY_NAME)

    # And it can fail: one changed digit in a result, the stored bytes left as they were.
    altered = json.loads((VECTORS / "vectors.json").read_text("utf-8"))
    altered["vectors"][0]["result"]["download_mbps"] = 9441.5
    for vector in altered["vectors"]:
        shutil.copy(VECTORS / vector["canonical_file"], tmp_path)
    (tmp_path / "vectors.json").write_text(json.dumps(altered, ensure_ascii=False), "utf-8")
    run = subprocess.run(
        ["node", script, tmp_path / "vectors.json"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1
    assert "FAIL bandwidth-ok: canonical bytes differ" in run.stdout
