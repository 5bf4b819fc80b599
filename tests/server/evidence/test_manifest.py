"""The manifest's one byte form and what it describes (docs/evidence.md, "manifest.json")."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.evidence.manifest import (
    FORMAT,
    FileEntry,
    ManifestError,
    build_manifest,
    hash_directory,
    manifest_bytes,
)

CREATED_AT = datetime(2026, 12, 1, 15, 0, tzinfo=timezone(timedelta(hours=7)))


def test_the_manifest_holds_hashes_parameters_version_and_the_chain_link() -> None:
    previous = b'{"format": "earlier"}\n'
    files = {"results.jsonl": FileEntry(sha256="a" * 64, size_bytes=12)}
    manifest = build_manifest(files, {"hamlet": "thon-a"}, "0.1.0", CREATED_AT, previous)
    assert manifest == {
        "format": FORMAT,
        "software": {"name": "hamletnet", "version": "0.1.0"},
        "created_at": "2026-12-01T08:00:00.000000Z",
        "parameters": {"hamlet": "thon-a"},
        "files": {"results.jsonl": {"sha256": "a" * 64, "size_bytes": 12}},
        "previous_manifest_sha256": hashlib.sha256(previous).hexdigest(),
    }
    first = build_manifest(files, {}, "0.1.0", CREATED_AT, None)
    assert first["previous_manifest_sha256"] is None


def test_the_byte_form_sorts_keys_normalises_to_nfc_and_ends_with_a_line_feed() -> None:
    decomposed = unicodedata.normalize("NFD", "Thôn Đồng Tâm")
    data = manifest_bytes({"z": 1, "a": {"y": decomposed, "b": [True, None]}})
    assert (
        data
        == (
            '{\n  "a": {\n    "b": [\n      true,\n      null\n    ],\n    "y": "Thôn Đồng Tâm"\n'
            '  },\n  "z": 1\n}\n'
        ).encode()
    )
    assert unicodedata.is_normalized("NFC", data.decode())


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers(), max_size=6))
def test_the_byte_form_depends_on_the_content_only(members: dict[str, object]) -> None:
    nfc = {unicodedata.normalize("NFC", k) for k in members}
    if len(nfc) != len(members):  # two keys the same once normalised: refused, see below
        with pytest.raises(ManifestError, match="two keys"):
            manifest_bytes(members)
        return
    reordered = dict(reversed(list(members.items())))
    assert manifest_bytes(members) == manifest_bytes(reordered)
    assert json.loads(manifest_bytes(members)) == {
        unicodedata.normalize("NFC", k): (
            unicodedata.normalize("NFC", v) if isinstance(v, str) else v
        )
        for k, v in members.items()
    }


@pytest.mark.parametrize("value", [1.5, b"bytes", datetime(2026, 1, 1, tzinfo=UTC)])
def test_a_value_without_one_text_is_refused(value: object) -> None:
    with pytest.raises(ManifestError, match=r"parameters\.x holds a"):
        manifest_bytes({"parameters": {"x": value}})


def test_a_naive_creation_time_is_refused() -> None:
    with pytest.raises(ManifestError, match="no time zone"):
        build_manifest({}, {}, "0.1.0", datetime(2026, 12, 1), None)


def test_every_file_is_hashed_but_the_manifest_and_its_signature(tmp_path: Path) -> None:
    (tmp_path / "charts").mkdir()
    (tmp_path / "charts" / "download.png").write_bytes(b"\x89PNG")
    (tmp_path / "results.jsonl").write_bytes(b"{}\n")
    (tmp_path / "manifest.json").write_bytes(b"old")
    (tmp_path / "manifest.json.minisig").write_bytes(b"old")
    assert hash_directory(tmp_path) == {
        "charts/download.png": FileEntry(hashlib.sha256(b"\x89PNG").hexdigest(), 4),
        "results.jsonl": FileEntry(hashlib.sha256(b"{}\n").hexdigest(), 3),
    }


@pytest.mark.parametrize("target", ["file", "directory"])
def test_a_symbolic_link_is_refused(tmp_path: Path, target: str) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a").write_bytes(b"a")
    (tmp_path / "link").symlink_to(tmp_path / "real" / ("a" if target == "file" else ""))
    with pytest.raises(ManifestError, match="link is not a regular file"):
        hash_directory(tmp_path)
