"""A small export directory built the way the export command will build one (that command comes
later): results signed with real probe keys by ``probes.signing.sign``, each probe's public key,
the server's minisign public key, a CSV standing for the other formats, and a sealed manifest."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from probes.models import BandwidthResult, FailureKind, LatencyResult, ResultBase, Status
from probes.signing import new_private_key, public_key_text, sign
from server.evidence import minisign
from server.evidence.manifest import seal

CREATED_AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
PROBES = ("thon-a-vnpt-fiber", "thon-b-viettel-4g")
PARAMETERS = {"hamlet": "thon-a", "isp": "VNPT", "from": "2026-11-01", "to": "2026-11-30"}


@dataclass(frozen=True)
class Export:
    directory: Path
    server_key: minisign.SigningKey
    manifest: bytes
    results: tuple[ResultBase, ...]


def result_line(result: ResultBase) -> str:
    """A result in the line form of docs/evidence.md."""
    payload = result.model_dump(mode="json", exclude_none=True)
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def signed_results() -> tuple[dict[str, str], tuple[ResultBase, ...]]:
    keys = {probe: new_private_key() for probe in PROBES}
    # Recent: a model checks measured_at against the clock when it is built.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    results: list[ResultBase] = []
    for i in range(3):
        results.append(
            LatencyResult(
                result_id=uuid.UUID(int=0x6F1D2C3B_4A59_4687_9A0B_C1D2E3F40000 + i),
                probe_id=PROBES[i % 2],
                measured_at=start + timedelta(minutes=5 * i, microseconds=123456),
                engine="icmp",
                target="1.1.1.1",
                sent=5,
                received=4,
                loss_pct=20.0,
                rtts_ms=[1.5, 1.25, 2.0, 1e-07],
                rtt_median_ms=1.375,
            )
        )
    results.append(
        BandwidthResult(
            result_id=uuid.UUID(int=0xB0),
            probe_id=PROBES[0],
            measured_at=start + timedelta(hours=1),
            engine="http",
            target="Thôn Đồng Tâm",  # non-ASCII text kept as sent
            download_mbps=94.41,
            download_samples_mbps=[90.5, 95.25, 97.0],
            download_bytes=2**60,  # beyond 2**53: a string in the canonical form
        )
    )
    results.append(
        BandwidthResult(
            result_id=uuid.UUID(int=0xB1),
            probe_id=PROBES[1],
            measured_at=start + timedelta(hours=2),
            engine="http",
            status=Status.FAILED,
            failure_kind=FailureKind.TIMEOUT,
            error="no answer in 30 s",
        )
    )
    signed = tuple(sign(r, keys[r.probe_id]) for r in results)
    return {probe: public_key_text(key) for probe, key in keys.items()}, signed


def build_export(
    directory: Path,
    server_key: minisign.SigningKey,
    previous_manifest: bytes | None = None,
) -> Export:
    directory.mkdir(parents=True)
    probe_keys, results = signed_results()
    (directory / "results.jsonl").write_text(
        "".join(result_line(r) + "\n" for r in results), encoding="utf-8"
    )
    (directory / "probe-keys.json").write_text(json.dumps(probe_keys, indent=2, sort_keys=True))
    (directory / "server.pub").write_text(server_key.public.file_text())
    (directory / "results.csv").write_text(
        "result_id,probe_id\n" + "".join(f"{r.result_id},{r.probe_id}\n" for r in results)
    )
    manifest = seal(directory, server_key, PARAMETERS, "0.1.0", CREATED_AT, previous_manifest)
    return Export(directory, server_key, manifest, results)
