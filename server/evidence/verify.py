"""Offline verification of an export directory, with no server and no database: every file's
SHA-256 against the manifest, the manifest's minisign signature, the chain link to the previous
manifest, every probe's signature on every raw result in ``results.jsonl``, each PDF's own
signature (it names the manifest it belongs to), and the compliance summary recomputed from the
raw results and ``context.json`` with the compliance engine.

A quarterly report (``parameters.kind`` ``quarterly-report`` in the manifest) is sealed the same
way but holds the engine's figures, not raw results: it gets every check above except those of
``results.jsonl``, ``probe-keys.json`` and the recomputed summary. The kind is inside the signed
manifest, so an export cannot be relabelled a report (to drop its results) without breaking the
signature.

This module reads the format from ``docs/evidence.md`` with its own code: it shares nothing
with the export side (``manifest.py``) beyond hashlib, the ``minisign`` primitives,
``probes.signing`` and, for the recomputed summary, the compliance engine with its reading of
``context.json`` (``summary.py``), so a bug in writing an export cannot hide the same bug in
checking it. Every check runs even after one fails, and each failure names its file (and, in
``results.jsonl``, its line and result id).
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
from server.evidence.summary import (
    Context,
    ContextError,
    EvidenceCollector,
    compute_summary,
    context_from_json,
    first_difference,
    json_file_bytes,
)

# The format's names and constants, as docs/evidence.md gives them (deliberately not imported
# from manifest.py: see the module docstring).
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.minisig"
SERVER_KEY = "server.pub"
RESULTS = "results.jsonl"
PROBE_KEYS = "probe-keys.json"
SUMMARY = "summary.json"
CONTEXT = "context.json"
PDF_SUFFIX = ".pdf"
PDF_SIGNATURE_SUFFIX = ".pdf.minisig"
FORMAT = "hamletnet-evidence-manifest/1"
UNTRUSTED_COMMENT = "signature of manifest.json by hamletnet-server"
#: ``parameters.kind`` of what a manifest seals; an export's manifest has no ``kind``.
EXPORT_KIND = "evidence-export"
REPORT_KIND = "quarterly-report"
#: The PDF an export with the ``pdf`` format, and every quarterly report, holds.
REPORT_PDF = "report.pdf"
#: A quarterly report's figures (the engine's reports it was written from).
REPORT_DATA = "report.json"

#: Results are checked for their signatures, not their age: any ``measured_at`` is accepted.
_ANY_TIME = timedelta(days=366 * 100)
_RESULT_ID = re.compile(rb'"result_id":"([^"\\]{1,64})"')
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CHUNK_BYTES = 1 << 20


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
    #: What the manifest says it seals: ``EXPORT_KIND`` or ``REPORT_KIND`` (None: unreadable).
    kind: str | None = None
    files_checked: int = 0
    results_verified: int = 0
    #: Results whose signature matched the legacy canonical form 1 (docs/canonical-form.md).
    results_legacy_v1: int = 0
    previous_manifest_sha256: str | None = None
    pdfs_verified: int = 0
    summary_recomputed: bool = False

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
    files = manifest["files"]
    report.kind = _kind(manifest, report)
    _check_files(directory, files, report)
    _check_chain(manifest, previous_manifest, report)
    if key is not None and manifest_data is not None:
        _check_pdfs(directory, manifest_data, key, report)
    if report.kind == REPORT_KIND:
        _check_report_holds(directory, files, report)
        return report
    if report.kind != EXPORT_KIND:
        return report
    formats = manifest["parameters"].get("formats")
    if isinstance(formats, list) and "pdf" in formats and not (directory / REPORT_PDF).is_file():
        report.fail(REPORT_PDF, "is missing: the export's parameters list the pdf format")
    recompute = _recompute(directory, files, report)
    if RESULTS in files:
        _check_results(directory, report, recompute[1] if recompute else None)
    else:
        report.fail(MANIFEST, f"lists no {RESULTS}: an export holds the raw signed results")
    if recompute is not None:
        _check_summary(directory, *recompute, report)
    return report


def _kind(manifest: dict[str, Any], report: Report) -> str | None:
    parameters = manifest.get("parameters")
    if not isinstance(parameters, dict):
        report.fail(MANIFEST, "its 'parameters' is not an object")
        return None
    kind = parameters.get("kind", EXPORT_KIND)
    if kind not in (EXPORT_KIND, REPORT_KIND):
        report.fail(
            MANIFEST, f"its parameters.kind {kind!r} is neither an export nor a {REPORT_KIND}"
        )
        return None
    return str(kind)


def _check_report_holds(directory: Path, files: dict[str, Any], report: Report) -> None:
    """A quarterly report's figures are in ``report.json`` (hashed by the manifest) and its PDF
    (signed on its own, checked by ``_check_pdfs``): both must be there."""
    if REPORT_DATA not in files:
        report.fail(MANIFEST, f"lists no {REPORT_DATA}: a quarterly report holds its figures")
    if not (directory / REPORT_PDF).is_file():
        report.fail(REPORT_PDF, "is missing: a quarterly report holds it, signed")


def _read(directory: Path, name: str, report: Report) -> bytes | None:
    try:
        return (directory / name).read_bytes()
    except OSError as exc:
        report.fail(name, f"cannot be read: {exc.strerror or exc}")
        return None


def _hash(directory: Path, name: str, report: Report) -> tuple[str, int] | None:
    """SHA-256 (hex) and size of a file, read a chunk at a time."""
    digest, size = hashlib.sha256(), 0
    try:
        with (directory / name).open("rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        report.fail(name, f"cannot be read: {exc.strerror or exc}")
        return None
    return digest.hexdigest(), size


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
        hashed = _hash(directory, name, report)
        if hashed is None:
            continue
        report.files_checked += 1
        digest, size = hashed
        if digest != entry["sha256"] or size != entry["size_bytes"]:
            report.fail(
                name,
                f"SHA-256 {digest} ({size} bytes) is not the manifest's {entry['sha256']}"
                f" ({entry['size_bytes']} bytes): the file was altered",
            )
    for path in sorted(directory.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if name in files or name in (MANIFEST, SIGNATURE) or _is_pdf_file(name):
            continue
        report.fail(name, "is not in the manifest: it was added after the export")


def _is_pdf_file(name: str) -> bool:
    return name.endswith((PDF_SUFFIX, PDF_SIGNATURE_SUFFIX))


def _check_pdfs(
    directory: Path, manifest_data: bytes, key: minisign.PublicKey, report: Report
) -> None:
    """Each PDF prints the manifest's SHA-256, so the manifest cannot list it: each is signed on
    its own, and its signed comment must name this manifest (docs/evidence.md)."""
    names = sorted(
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if _is_pdf_file(p.name) and not p.is_dir()
    )
    digest = hashlib.sha256(manifest_data).hexdigest()
    for name in names:
        if name.endswith(PDF_SIGNATURE_SUFFIX):
            if name.removesuffix(".minisig") not in names:
                report.fail(name, "signs a PDF that is not in the export")
            continue
        _check_pdf(directory, name, digest, key, report)


def _check_pdf(
    directory: Path, name: str, digest: str, key: minisign.PublicKey, report: Report
) -> None:
    signature_name = name + ".minisig"
    pdf, text = _read(directory, name, report), _read(directory, signature_name, report)
    if pdf is None or text is None:
        return
    try:
        signature = minisign.verify(pdf, text.decode("utf-8"), key)
    except UnicodeDecodeError:
        report.fail(signature_name, "is not UTF-8 text")
        return
    except minisign.SignedFileAltered as exc:
        report.fail(name, f"does not match its signature {signature_name}: {exc}")
        return
    except minisign.MinisignError as exc:
        report.fail(signature_name, str(exc))
        return
    base = PurePosixPath(name).name
    if signature.untrusted_comment != f"signature of {base} by hamletnet-server":
        report.fail(signature_name, "its untrusted comment is not the one the server writes")
        return
    fields = dict(part.partition(":")[::2] for part in signature.trusted_comment.split("\t"))
    if fields.get("file") != base or not fields.get("timestamp", "").isdigit():
        report.fail(signature_name, f"its signed comment does not name the file {base}")
    elif fields.get("manifest_sha256") != digest:
        report.fail(
            name,
            f"belongs to the manifest with SHA-256 {fields.get('manifest_sha256')}, not to this"
            f" export's ({digest})",
        )
    else:
        report.pdfs_verified += 1


def _recompute(
    directory: Path, files: dict[str, Any], report: Report
) -> tuple[Context, EvidenceCollector] | None:
    """The context and the collector the results feed when the export holds a summary."""
    if SUMMARY not in files:
        return None
    if CONTEXT not in files:
        report.fail(MANIFEST, f"lists {SUMMARY} but no {CONTEXT} to recompute it from")
        return None
    data = _read(directory, CONTEXT, report)
    if data is None:
        return None
    try:
        context = context_from_json(json.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, ValueError) as exc:
        # ContextError is a ValueError: both name what could not be read.
        report.fail(CONTEXT, f"cannot be read: {exc}")
        return None
    return context, EvidenceCollector(context.access_by_probe())


def _check_summary(
    directory: Path, context: Context, collector: EvidenceCollector, report: Report
) -> None:
    """Recompute the summary from the raw results with the compliance engine and compare."""
    if any(f.file == RESULTS for f in report.failures):
        report.notes.append(
            f"{SUMMARY} not recomputed: {RESULTS} has failures, so its results are not evidence"
        )
        return
    data = _read(directory, SUMMARY, report)
    if data is None:
        return
    try:
        stated = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        report.fail(SUMMARY, f"is not JSON: {exc}")
        return
    try:
        recomputed = compute_summary(context, collector.evidence())
    except (ContextError, ValueError) as exc:
        report.fail(CONTEXT, f"the compliance engine cannot use it: {exc}")
        return
    report.summary_recomputed = True
    difference = first_difference(stated, json.loads(json_file_bytes(recomputed)))
    if difference is not None:
        report.fail(
            SUMMARY,
            f"differs from the summary recomputed from {RESULTS} and {CONTEXT}: {difference}",
        )


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


def _check_results(
    directory: Path, report: Report, collector: EvidenceCollector | None = None
) -> None:
    """Line by line, so a year of results is never in memory as one text."""
    keys = _probe_keys(directory, report)
    seen: dict[str, int] = {}
    try:
        with (directory / RESULTS).open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.endswith(b"\n"):  # only the last line can lack it
                    report.fail(RESULTS, "does not end with a line feed", line=number)
                _check_result_line(line.removesuffix(b"\n"), number, keys, seen, report, collector)
    except OSError as exc:
        report.fail(RESULTS, f"cannot be read: {exc.strerror or exc}")


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
    line: bytes,
    number: int,
    keys: dict[str, str],
    seen: dict[str, int],
    report: Report,
    collector: EvidenceCollector | None,
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
    if collector is not None:
        collector.add(result)
    if version == 1:
        report.results_legacy_v1 += 1


def _first_error(exc: ValueError) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"
    return str(exc)
