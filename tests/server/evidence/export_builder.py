"""Test data for evidence exports.

``build_export``: a small export directory of the manifest's core (results signed with real probe
keys by ``probes.signing.sign``, each probe's public key, the server's minisign public key, a CSV
standing for the other formats, a sealed manifest), for the verifier's own tests.
``seed``: a real SQLite store and registry holding real signed results, for the export command.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from probes.models import (
    Access,
    BandwidthResult,
    FailureKind,
    LatencyResult,
    ResultBase,
    Status,
    parse_result,
    unbounded_limits,
)
from probes.signing import new_private_key, public_key_text, sign
from server.evidence import minisign
from server.evidence.manifest import seal
from server.registry import Registry
from server.settings import Settings, load_settings
from server.storage.base import StoredResult, WriteOutcome
from server.storage.sqlite import SqliteStore

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


# -- A seeded server for the export command -----------------------------------------------------
# Real SQLite store and registry in a data directory; results built from the fields probes send,
# signed with each probe's real key, written through the store as ingest writes them.

COMMUNE = {"code": "hiep-luc", "name": "Xã Hiệp Lực", "province": "Thái Nguyên"}
SEED_HAMLETS = [
    {"code": "thon-a", "name": "Thôn Đồng Tâm", "commune": "hiep-luc", "population": 400,
     "adults": 300, "isps": ["VNPT", "Viettel"]},
    {"code": "thon-b", "name": "Thôn Nà Mò", "commune": "hiep-luc", "population": 300,
     "adults": 200, "isps": ["VNPT"]},
]  # fmt: skip
#: The export's window (Vietnam days, inclusive) and its clock.
FIRST_DAY, LAST_DAY = date(2026, 10, 1), date(2026, 10, 10)
NOW = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
_VIETNAM = timezone(timedelta(hours=7))


@dataclass(frozen=True)
class SeedProbe:
    hamlet: str
    isp: str
    access: Access
    every: timedelta
    download_mbps: tuple[float, ...]
    upload_mbps: float
    declared_down_mbps: float | None = None


SEED_PROBES = (
    SeedProbe("thon-a", "VNPT", Access.FIBER, timedelta(hours=2), (950.0, 912.5, 300.25), 480.0,
              declared_down_mbps=1000.0),
    SeedProbe("thon-a", "Viettel", Access.LTE, timedelta(hours=4), (45.5, 38.0), 12.0),
    SeedProbe("thon-b", "VNPT", Access.FIBER, timedelta(hours=6), (990.0,), 500.0),
)  # fmt: skip


@dataclass
class Seeded:
    settings: Settings
    store: SqliteStore
    registry: Registry
    probes: dict[tuple[str, str], str]  # (hamlet, isp) -> probe id
    written: int  # results written for thon-a

    async def close(self) -> None:
        await self.store.close()
        await self.registry.close()


def seed_settings(data_dir: Path) -> Settings:
    return load_settings(
        None, environment=False, data_dir=str(data_dir), communes=[COMMUNE], hamlets=SEED_HAMLETS
    )


def _payloads(probe_id: str, spec: SeedProbe) -> list[dict[str, Any]]:
    start = datetime.combine(FIRST_DAY, datetime.min.time(), _VIETNAM).astimezone(UTC)
    end = datetime.combine(LAST_DAY + timedelta(days=1), datetime.min.time(), _VIETNAM)
    items: list[dict[str, Any]] = []
    at, i = start - spec.every, -1  # one result before the window, which must stay out
    while at < end + spec.every:  # and one after it
        common = {"result_id": str(uuid.uuid4()), "probe_id": probe_id,
                  "measured_at": (at + timedelta(microseconds=1234)).isoformat()}  # fmt: skip
        if i % 25 == 7:
            items.append({**common, "kind": "bandwidth", "engine": "http", "status": "failed",
                          "failure_kind": "timeout", "error": "no answer in 30 s"})  # fmt: skip
        else:
            items.append({**common, "kind": "bandwidth", "engine": "http",
                          "target": "http://đích-đo.example:8081", "family": "ipv4",
                          "streams": 3,
                          "download_mbps": spec.download_mbps[i % len(spec.download_mbps)],
                          "upload_mbps": spec.upload_mbps,
                          "download_samples_mbps": [900.5, 1e-07, 960.0],
                          "link_speed_mbps": 2500.0})  # fmt: skip
        items.append({"result_id": str(uuid.uuid4()), "probe_id": probe_id, "kind": "latency",
                      "measured_at": (at + timedelta(minutes=30)).isoformat(), "engine": "icmp",
                      "target": "1.1.1.1", "sent": 5, "received": 5, "loss_pct": 0.0,
                      "rtts_ms": [12.5, 13.0, 12.75, 14.0, 12.5],
                      "rtt_median_ms": 12.75 + (i % 3)})  # fmt: skip
        at, i = at + spec.every, i + 1
    return items


async def seed(data_dir: Path) -> Seeded:
    settings = seed_settings(data_dir)
    registry = Registry(data_dir / "registry.sqlite3")
    await registry.open()
    await registry.sync_hamlets(settings.hamlets, settings.communes)
    store = SqliteStore(data_dir / "results.sqlite3")
    await store.start()
    probes: dict[tuple[str, str], str] = {}
    written = 0
    for spec in SEED_PROBES:
        key = new_private_key()
        record, _token = await registry.add_probe(
            hamlet=spec.hamlet, isp=spec.isp, access=spec.access, public_key=public_key_text(key)
        )
        if spec.declared_down_mbps is not None:
            record = await registry.set_line(
                record.probe_id, declared_down_mbps=spec.declared_down_mbps, actor="can-bo-vhxh"
            )
        probes[(spec.hamlet, spec.isp)] = record.probe_id
        results = [
            sign(parse_result(p, unbounded_limits()), key) for p in _payloads(record.probe_id, spec)
        ]
        outcomes = await store.write([StoredResult(record.identity, r) for r in results])
        assert all(o is WriteOutcome.ACCEPTED for o in outcomes), outcomes
        if spec.hamlet == "thon-a":
            written += len(results) - 4  # one of each kind before and after the window
    return Seeded(settings, store, registry, probes, written)
