"""Offline verification of an export directory, with no server and no database: every file's
SHA-256 against the manifest, the manifest's minisign signature, the chain link to the previous
manifest, and every probe's signature on every raw result in ``results.jsonl``.

This module reads the format from ``docs/evidence.md`` with its own code: it shares nothing
with the export side (``manifest.py``) beyond hashlib, the ``minisign`` primitives and
``probes.signing``, so a bug in writing an export cannot hide the same bug in checking it. Every
check runs even after one fails, and each failure names its file (and, in ``results.jsonl``, its
line and result id).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from probes.models import ValidationLimits, parse_result
from probes.signing import SignatureError, load_public_key
from probes.signing import verify as verify_result
from server.evidence import minisign

# The format's names and constants, as docs/evidence.md gives them (deliberately not imported
# from manifest.py: see the module docstring).
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.minisig"
SERVER_KEY = "server.pub"
RESULTS = "results.jsonl"
PROBE_KEYS = "probe-keys.json"
FORMAT = "hamletnet-evidence-manifest/1"
UNTRUSTED_COMMENT = "signature of manifest.json by hamletnet-server"

#: Results are checked for their signatures, not their age: any ``measured_at`` is accepted.
_ANY_TIME = timedelta(days=366 * 100)
_RESULT_ID = re.compile(rb'"result_id":"([^"\\]{1,64})"')
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Failure:
    file: str
    reason: str
    line: int | None = None
    result_id: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f" line {self.line}"
        if self.result_id is not None:
            where += f" (result {self.result_id})"
        return f"{where}: {self.reason}"


@dataclass(slots=True)
class Report:
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files_checked: int = 0
    results_verified: int = 0
    #: Results whose signature matched the legacy canonical form 1 (docs/canonical-form.md).
    results_legacy_v1: int = 0
    previous_manifest_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(
        self, file: str, reason: str, line: int | None = None, result_id: str | None = None
    ) -> None:
        self.failures.append(Failure(file, reason, line, result_id))


def verify_export(
    directory: Path,
    trusted_key: str | None = None,
    previous_manifest: bytes | None = None,
) -> Report:
    """Check the export in ``directory``.

    ``trusted_key``: the server's minisign public key as the operator got it apart from the
    export (office page, README); without it the export's own ``server.pub`` is used, which only
    shows the export is self-consistent, and the report says so. ``previous_manifest``: the
    previous export's ``manifest.json``, to check the chain link.
    """
    report = Report()
    manifest_data = _read(directory, MANIFEST, report)
    key = _server_key(directory, trusted_key, report)
    if manifest_data is not None and key is not None:
        _check_signature(directory, manifest_data, key, report)
    manifest = _parse_manifest(manifest_data, report) if manifest_data is not None else None
    if manifest is None:
        return report
    _check_files(directory, manifest["files"], report)
    _check_chain(manifest, previous_manifest, report)
    if RESULTS in manifest["files"]:
        _check_results(directory, report)
    else:
        report.fail(MANIFEST, f"lists no {RESULTS}: an export holds the raw signed results")
    return report


def _read(directory: Path, name: str, report: Report) -> bytes | None:
    try:
        return (directory / name).read_bytes()
    except OSError as exc:
        report.fail(name, f"cannot be read: {exc.strerror or exc}")
        return None


def _server_key(
    directory: Path, trusted_key: str | None, report: Report
) -> minisign.PublicKey | None:
    exported: minisign.PublicKey | None = None
    data = _read(directory, SERVER_KEY, report)
    if data is not None:
        try:
            exported = minisign.parse_public_key(data.decode("utf-8"))
        except (UnicodeDecodeError, minisign.MinisignError) as exc:
            report.fail(SERVER_KEY, f"not a minisign public key: {exc}")
    if trusted_key is None:
        report.notes.append(
            f"the manifest was checked with the key inside the export ({SERVER_KEY}); compare it"
            " with the server's key on the office page, or pass that key"
        )
        return exported
    key = minisign.parse_public_key(trusted_key)
    if exported is not None and exported.base64_text() != key.base64_text():
        report.fail(SERVER_KEY, "is not the trusted server key that was given")
    return key


def _check_signature(
    directory: Path, manifest_data: bytes, key: minisign.PublicKey, report: Report
) -> None:
    data = _read(directory, SIGNATURE, report)
    if data is None:
        return
    try:
        text = data.decode("utf-8")
        signature = minisign.verify(manifest_data, text, key)
    except UnicodeDecodeError:
        report.fail(SIGNATURE, "is not UTF-8 text")
    except minisign.SignedFileAltered as exc:
        report.fail(MANIFEST, f"does not match its signature: {exc}")
    except minisign.MinisignError as exc:
        report.fail(SIGNATURE, str(exc))
    else:
        if signature.untrusted_comment != UNTRUSTED_COMMENT:
            report.fail(SIGNATURE, f"its untrusted comment is not {UNTRUSTED_COMMENT!r}")


def _parse_manifest(data: bytes, report: Report) -> dict[str, Any] | None:
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        report.fail(MANIFEST, f"is not JSON: {exc}")
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        report.fail(MANIFEST, f"is not a {FORMAT} manifest")
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(e, dict)
        and isinstance(e.get("sha256"), str)
        and isinstance(e.get("size_bytes"), int)
        for e in files.values()
    ):
        report.fail(MANIFEST, "its 'files' is not an object of {sha256, size_bytes} entries")
        return None
    return manifest


def _check_files(directory: Path, files: dict[str, Any], report: Report) -> None:
    for name, entry in sorted(files.items()):
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or name in (MANIFEST, SIGNATURE):
            report.fail(MANIFEST, f"lists the path {name!r}, which an export cannot hold")
            continue
        data = _read(directory, name, report)
        if data is None:
            continue
        report.files_checked += 1
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"] or len(data) != entry["size_bytes"]:
            report.fail(
                name,
                f"SHA-256 {digest} ({len(data)} bytes) is not the manifest's {entry['sha256']}"
                f" ({entry['size_bytes']} bytes): the file was altered",
            )
    for path in sorted(directory.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if name not in files and name not in (MANIFEST, SIGNATURE):
            report.fail(name, "is not in the manifest: it was added after the export")


def _check_chain(manifest: dict[str, Any], previous: bytes | None, report: Report) -> None:
    link = manifest.get("previous_manifest_sha256")
    if link is not None and not (isinstance(link, str) and _SHA256_HEX.fullmatch(link)):
        report.fail(MANIFEST, f"previous_manifest_sha256 {link!r} is not a SHA-256 in hex")
        return
    report.previous_manifest_sha256 = link
    if previous is None:
        if link is not None:
            report.notes.append(
                f"chain not checked: give the previous export's manifest (SHA-256 {link})"
            )
        return
    actual = hashlib.sha256(previous).hexdigest()
    if link is None:
        report.fail(MANIFEST, "names no previous export, but a previous manifest was given")
    elif link != actual:
        report.fail(
            MANIFEST,
            f"chain broken: it follows a manifest with SHA-256 {link}, but the previous"
            f" manifest given has {actual} (an export between them is missing, or it was altered)",
        )


def _check_results(directory: Path, report: Report) -> None:
    keys = _probe_keys(directory, report)
    data = _read(directory, RESULTS, report)
    if data is None:
        return
    lines = data.split(b"\n")
    if lines[-1] != b"":
        report.fail(RESULTS, "does not end with a line feed", line=len(lines))
    seen: dict[str, int] = {}
    for number, line in enumerate(lines[:-1] if lines[-1] == b"" else lines, start=1):
        _check_result_line(line, number, keys, seen, report)


def _probe_keys(directory: Path, report: Report) -> dict[str, str]:
    data = _read(directory, PROBE_KEYS, report)
    if data is None:
        return {}
    try:
        keys = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        report.fail(PROBE_KEYS, f"is not JSON: {exc}")
        return {}
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        report.fail(PROBE_KEYS, "is not an object of probe id to base64 public key")
        return {}
    return keys


def _check_result_line(
    line: bytes, number: int, keys: dict[str, str], seen: dict[str, int], report: Report
) -> None:
    found = _RESULT_ID.search(line)
    result_id = found.group(1).decode("utf-8", "replace") if found else None

    def fail(reason: str) -> None:
        report.fail(RESULTS, reason, line=number, result_id=result_id)

    try:
        text = line.decode("utf-8")
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        fail(f"is not a JSON line: {exc}")
        return
    if not isinstance(payload, dict):
        fail("is not a JSON object")
        return
    if isinstance(payload.get("result_id"), str):
        result_id = payload["result_id"]
    # One text per result: keys sorted, no spaces, as Python's json writes it. The signature
    # covers the values, not their spelling; this covers the spelling (1e-07 vs 1E-07).
    if json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False) != text:
        fail("is not in the line form of docs/evidence.md (sorted keys, no spaces): altered")
        return
    limits = ValidationLimits(now=datetime.now(UTC), max_age=_ANY_TIME, max_skew=_ANY_TIME)
    try:
        result = parse_result(payload, limits)
    except ValueError as exc:
        fail(f"is not a valid result: {_first_error(exc)}")
        return
    result_id = str(result.result_id)
    if result_id in seen:
        fail(f"the same result id is on line {seen[result_id]}")
        return
    seen[result_id] = number
    key_text = keys.get(result.probe_id)
    if key_text is None:
        fail(f"probe {result.probe_id!r} has no public key in {PROBE_KEYS}")
        return
    try:
        version = verify_result(result, load_public_key(key_text))
    except SignatureError as exc:
        fail(f"probe {result.probe_id!r}: {exc}")
        return
    report.results_verified += 1
    if version == 1:
        report.results_legacy_v1 += 1


def _first_error(exc: ValueError) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"
    return str(exc)
