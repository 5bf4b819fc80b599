"""The export side of evidence: ``manifest.json`` (the SHA-256 of every file of an export, its
parameters, the software version and the previous manifest's hash) and its minisign signature.

``build_manifest`` and ``manifest_bytes`` are pure; ``hash_directory`` and ``seal`` are the thin
I/O edge. ``server/evidence/verify.py`` reads these files back with its own code (only hashlib,
``minisign`` and ``probes.signing`` are shared), so a bug here cannot hide itself there. The
format is written down in ``docs/evidence.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.evidence import minisign

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.minisig"
#: Names the format and its version; a reader refuses any other.
FORMAT = "hamletnet-evidence-manifest/1"
#: The signature's untrusted comment. minisign ignores it; ``export verify`` requires exactly this
#: text, so no byte of the signature file can change unnoticed.
UNTRUSTED_COMMENT = "signature of manifest.json by hamletnet-server"
_CHUNK_BYTES = 1 << 20
#: Files the manifest does not list: a PDF prints the manifest's SHA-256, so the manifest cannot
#: hold the PDF's; each PDF is signed on its own instead (``seal_pdf``).
PDF_SUFFIXES = (".pdf", ".pdf.minisig")
#: The head of the export chain in the server's data directory: the last manifest's bytes.
CHAIN_FILE_NAME = "evidence-chain.json"


class ManifestError(ValueError):
    """An export directory or manifest value the manifest cannot describe."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    sha256: str
    size_bytes: int


def hash_directory(directory: Path) -> dict[str, FileEntry]:
    """SHA-256 and size of every regular file under ``directory``, by relative POSIX path, except
    the manifest, its signature and the PDFs with theirs (``seal_pdf``). Symbolic links and
    special files are refused: the manifest must describe exactly the bytes an operator
    receives."""
    entries: dict[str, FileEntry] = {}
    for root, dirs, files in os.walk(directory, followlinks=False):
        dirs.sort()
        # os.walk lists a link to a directory among ``dirs`` and does not enter it: refuse it too.
        for name in sorted(files) + [d for d in dirs if (Path(root) / d).is_symlink()]:
            path = Path(root) / name
            relative = path.relative_to(directory).as_posix()
            if relative in (MANIFEST_NAME, SIGNATURE_NAME) or relative.endswith(PDF_SUFFIXES):
                continue
            if path.is_symlink() or not path.is_file():
                raise ManifestError(f"{relative} is not a regular file; an export holds only files")
            if unicodedata.normalize("NFC", relative) != relative:
                raise ManifestError(f"the file name {relative!r} is not in Unicode NFC")
            entries[relative] = _hash_file(path)
    return entries


def build_manifest(
    files: Mapping[str, FileEntry],
    parameters: Mapping[str, Any],
    software_version: str,
    created_at: datetime,
    previous_manifest: bytes | None,
) -> dict[str, Any]:
    """The manifest as plain data. ``previous_manifest`` is the previous export's
    ``manifest.json`` exactly as written (``None`` for the first export): its SHA-256 chains this
    export to it, so an export deleted from the middle of the series shows."""
    if created_at.tzinfo is None or created_at.utcoffset() is None:
        raise ManifestError(f"created_at {created_at.isoformat()} has no time zone")
    return {
        "format": FORMAT,
        "software": {"name": "hamletnet", "version": software_version},
        "created_at": created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "parameters": dict(parameters),
        "files": {
            path: {"sha256": entry.sha256, "size_bytes": entry.size_bytes}
            for path, entry in files.items()
        },
        "previous_manifest_sha256": (
            hashlib.sha256(previous_manifest).hexdigest() if previous_manifest is not None else None
        ),
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The one byte form of a manifest: JSON with keys sorted (by code point) at every depth,
    every string in Unicode NFC, two-space indents, UTF-8, a final line feed. No floats: a figure
    belongs in the files, and float text is where two writers most often differ."""
    text = json.dumps(_nfc(manifest, "manifest"), sort_keys=True, ensure_ascii=False, indent=2)
    return (text + "\n").encode("utf-8")


def trusted_comment(manifest_data: bytes, created_at: datetime) -> str:
    """minisign's own form (``timestamp:...<TAB>file:...``) plus the manifest's SHA-256, which
    ``minisign -V`` prints, so an operator can match it with the hash printed in the report."""
    digest = hashlib.sha256(manifest_data).hexdigest()
    return f"timestamp:{int(created_at.timestamp())}\tfile:{MANIFEST_NAME}\tsha256:{digest}"


def seal(
    directory: Path,
    key: minisign.SigningKey,
    parameters: Mapping[str, Any],
    software_version: str,
    created_at: datetime,
    previous_manifest: bytes | None,
) -> bytes:
    """Write ``manifest.json`` over every file in ``directory`` and its signature
    ``manifest.json.minisig``; return the manifest's bytes (the next export's chain link)."""
    manifest = build_manifest(
        hash_directory(directory), parameters, software_version, created_at, previous_manifest
    )
    data = manifest_bytes(manifest)
    signature = minisign.sign(data, key, trusted_comment(data, created_at), UNTRUSTED_COMMENT)
    (directory / MANIFEST_NAME).write_bytes(data)
    (directory / SIGNATURE_NAME).write_text(signature, encoding="utf-8")
    return data


def pdf_trusted_comment(name: str, manifest_data: bytes, created_at: datetime) -> str:
    """The trusted comment of a PDF's signature: minisign's own form plus the SHA-256 of the
    manifest the PDF prints, so ``minisign -Vm report.pdf`` shows which export it belongs to."""
    digest = hashlib.sha256(manifest_data).hexdigest()
    return f"timestamp:{int(created_at.timestamp())}\tfile:{name}\tmanifest_sha256:{digest}"


def pdf_untrusted_comment(name: str) -> str:
    return f"signature of {name} by hamletnet-server"


def seal_pdf(
    path: Path, key: minisign.SigningKey, manifest_data: bytes, created_at: datetime
) -> None:
    """Sign the PDF at ``path`` on its own (``<name>.minisig`` beside it), naming in the signed
    comment the manifest whose SHA-256 it prints. Call it after ``seal``, with its bytes."""
    name = path.name
    signature = minisign.sign(
        path.read_bytes(),
        key,
        pdf_trusted_comment(name, manifest_data, created_at),
        pdf_untrusted_comment(name),
    )
    path.with_name(name + ".minisig").write_text(signature, encoding="utf-8")


def read_chain_head(data_dir: Path) -> bytes | None:
    """The last export's ``manifest.json`` bytes (None before the first export)."""
    path = data_dir / CHAIN_FILE_NAME
    try:
        head = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path} cannot be read as the export chain's head: {exc}") from None
    manifest = head.get("manifest") if isinstance(head, dict) else None
    if not isinstance(manifest, str):
        raise ManifestError(f"{path} holds no 'manifest' text; restore it from a backup")
    data = manifest.encode("utf-8")
    if hashlib.sha256(data).hexdigest() != head.get("sha256"):
        raise ManifestError(f"{path}: its manifest does not match its sha256; restore it")
    return data


def advance_chain(data_dir: Path, manifest_data: bytes, export: str) -> None:
    """Make ``manifest_data`` the chain's head, atomically (written beside, then renamed), once
    the export it belongs to is in place. ``export`` says where it went (for the operator)."""
    head = {
        "manifest": manifest_data.decode("utf-8"),
        "sha256": hashlib.sha256(manifest_data).hexdigest(),
        "export": export,
    }
    path = data_dir / CHAIN_FILE_NAME
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        json.dump(head, handle, ensure_ascii=False, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def _hash_file(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(sha256=digest.hexdigest(), size_bytes=size)


def _nfc(value: Any, where: str) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ManifestError(f"{where} has a non-string key {key!r}")
            name = unicodedata.normalize("NFC", key)
            if name in out:
                raise ManifestError(f"{where} has two keys {name!r} once normalised to NFC")
            out[name] = _nfc(item, f"{where}.{name}")
        return out
    if isinstance(value, list | tuple):
        return [_nfc(item, where) for item in value]
    raise ManifestError(
        f"{where} holds a {type(value).__name__}; a manifest holds only strings, integers,"
        " booleans, null, lists and objects"
    )
