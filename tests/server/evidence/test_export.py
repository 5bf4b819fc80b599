"""``build_export``/``run_export`` on a real SQLite store and registry holding real signed results:
the export verifies (with ``verify_export`` and the real ``minisign``), its summary is the
compliance engine's report and is recomputed offline, the same data gives the same bytes, and a
byte flipped in any file is caught naming that file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.compliance import engine
from server.compliance.plan import load_plan
from server.compliance.report_json import report_to_json
from server.evidence import manifest, minisign
from server.evidence.export import ExportOutcome, export_window, run_export
from server.evidence.summary import json_file_bytes
from server.evidence.verify import Report, verify_export
from tests.server.evidence.export_builder import FIRST_DAY, LAST_DAY, NOW, Seeded, seed

FILES = [
    "charts/download.png",
    "charts/latency.png",
    "charts/upload.png",
    "context.json",
    "manifest.json",
    "manifest.json.minisig",
    "methodology.json",
    "methodology.md",
    "probe-keys.json",
    "report.pdf",
    "report.pdf.minisig",
    "results.csv",
    "results.jsonl",
    "results.xlsx",
    "server.pub",
    "summary.json",
]
MINISIGN = shutil.which("minisign")


@dataclass(frozen=True)
class Built:
    data_dir: Path
    outcome: ExportOutcome
    trusted: str
    written: int
    probes: dict[tuple[str, str], str]
    summary_from_engine: dict


async def _build(data_dir: Path, out: Path) -> Built:
    seeded: Seeded = await seed(data_dir)
    try:
        plan = load_plan(seeded.settings.plan_path)
        outcome = await run_export(
            seeded.store, seeded.registry, seeded.settings, plan, out_dir=out, now=NOW,
            hamlet="thon-a", start=FIRST_DAY, end=LAST_DAY, formats=("csv", "xlsx", "pdf"),
        )  # fmt: skip
        # What the compliance API shows for the same hamlet, window and clock.
        report = await engine.evaluate(
            seeded.store, seeded.registry, seeded.settings, plan,
            export_window(FIRST_DAY, LAST_DAY), now=NOW, hamlet="thon-a",
        )  # fmt: skip
    finally:
        await seeded.close()
    trusted = minisign.load_or_create_key(data_dir).public.base64_text()
    from_engine = json.loads(json_file_bytes(report_to_json(report)))
    return Built(data_dir, outcome, trusted, seeded.written, seeded.probes, from_engine)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("export")
    return asyncio.run(_build(root / "data", root / "out"))


@pytest.fixture(scope="module")
def directory(built: Built) -> Path:
    return built.outcome.directory


def named(report: Report, file: str) -> list[str]:
    return [str(f) for f in report.failures if f.file == file]


@contextmanager
def flipped(path: Path, index: int) -> Iterator[None]:
    original = path.read_bytes()
    altered = bytearray(original)
    altered[index] ^= 0x01
    path.write_bytes(bytes(altered))
    try:
        yield
    finally:
        path.write_bytes(original)


def test_the_export_holds_every_file_and_verifies(built: Built, directory: Path) -> None:
    assert list(built.outcome.files) == FILES
    report = verify_export(directory, built.trusted)
    assert report.ok, [str(f) for f in report.failures]
    assert report.results_verified == built.outcome.results == built.written
    assert report.summary_recomputed and report.pdfs_verified == 1
    assert report.notes == []


def test_the_summary_is_the_compliance_engines_report(built: Built, directory: Path) -> None:
    summary = json.loads((directory / "summary.json").read_bytes())
    assert summary == built.summary_from_engine
    (commune,) = summary["communes"]
    (hamlet,) = commune["hamlets"]
    assert hamlet["code"] == "thon-a"
    assert {line["probe_id"] for line in hamlet["lines"]} == {
        built.probes[("thon-a", "VNPT")],
        built.probes[("thon-a", "Viettel")],
    }
    fiber = next(x for x in hamlet["lines"] if x["access"] == "fiber")
    gigabit = next(r for r in fiber["rules"] if r["rule_id"] == "fixed-gigabit")
    mean = gigabit["months"][0]["download"]["mean"]
    assert mean["n"] > 0 and mean["aggregation"] == "mean" and "QCVN" in mean["source"]


def test_results_are_the_windows_raw_results_in_line_form(built: Built, directory: Path) -> None:
    lines = (directory / "results.jsonl").read_text(encoding="utf-8").splitlines()
    results = [json.loads(line) for line in lines]
    assert len(results) == built.written
    assert built.probes[("thon-b", "VNPT")] not in {r["probe_id"] for r in results}
    times = [r["measured_at"] for r in results]
    assert times == sorted(times)
    assert times[0] >= "2026-09-30T17:00:00" and times[-1] < "2026-10-10T17:00:00"
    assert all(
        line == json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        for line, r in zip(lines, results, strict=True)
    )
    assert any("đích-đo" in line for line in lines)  # non-ASCII kept as itself
    keys = json.loads((directory / "probe-keys.json").read_bytes())
    assert sorted(keys) == sorted({r["probe_id"] for r in results})
    csv_rows = (directory / "results.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(csv_rows) == len(results) + 1 and csv_rows[0].startswith("result_id,probe_id,")


def test_the_same_data_gives_the_same_bytes(tmp_path: Path, built: Built) -> None:
    """Two exports of the same store with the same clock and chain link are identical byte for
    byte, every file (XLSX, PNG and PDF included)."""
    data_dir = built.data_dir

    async def again(out: Path) -> ExportOutcome:
        from server.compliance.plan import load_plan as load
        from server.evidence.export import build_export
        from server.registry import Registry
        from server.storage.sqlite import SqliteStore
        from tests.server.evidence.export_builder import seed_settings

        settings = seed_settings(data_dir)
        registry, store = (
            Registry(data_dir / "registry.sqlite3"),
            SqliteStore(data_dir / "results.sqlite3"),
        )
        await registry.open()
        await store.start()
        try:
            return await build_export(
                store, registry, settings, load(settings.plan_path), hamlet="thon-a",
                start=FIRST_DAY, end=LAST_DAY, formats="csv,xlsx,pdf", out_dir=out,
                key=minisign.load_or_create_key(data_dir), previous_manifest=None, now=NOW,
            )  # fmt: skip
        finally:
            await store.close()
            await registry.close()

    first = asyncio.run(again(tmp_path / "one"))
    second = asyncio.run(again(tmp_path / "two"))
    assert first.files == second.files == tuple(FILES)
    for name in FILES:
        a, b = (first.directory / name).read_bytes(), (second.directory / name).read_bytes()
        assert a == b, name


@pytest.mark.parametrize("file", FILES)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_flipped_byte_in_any_file_fails_naming_it(
    built: Built, directory: Path, file: str, where: str
) -> None:
    path = directory / file
    size = path.stat().st_size
    index = {"first": 0, "middle": size // 2, "last": size - 1}[where]
    with flipped(path, index):
        report = verify_export(directory, built.trusted)
    assert named(report, file), [str(f) for f in report.failures]


@pytest.mark.skipif(MINISIGN is None, reason="install Debian's minisign")
def test_real_minisign_verifies_the_manifest_and_the_pdf(built: Built, directory: Path) -> None:
    digest = hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()
    for name, expected in (
        ("manifest.json", f"file:manifest.json\tsha256:{digest}"),
        ("report.pdf", f"file:report.pdf\tmanifest_sha256:{digest}"),
    ):
        done = subprocess.run(
            ["minisign", "-Vm", name, "-P", built.trusted],
            cwd=directory, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout


@pytest.fixture
def copy(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(directory, target)
    return target


def test_an_altered_summary_resealed_is_caught_on_its_first_differing_figure(
    built: Built, copy: Path
) -> None:
    path = copy / "summary.json"
    summary = json.loads(path.read_bytes())
    line = summary["communes"][0]["hamlets"][0]["lines"][0]
    line["rules"][0]["months"][0]["n"] += 1
    path.write_bytes(json_file_bytes(summary))
    key = minisign.load_or_create_key(built.data_dir)
    old = json.loads((copy / "manifest.json").read_bytes())
    manifest.seal(copy, key, old["parameters"], "0.1.0", NOW, None)  # even with the server's key
    report = verify_export(copy, built.trusted)
    failures = named(report, "summary.json")
    assert failures == [
        "summary.json: differs from the summary recomputed from results.jsonl and context.json:"
        f" communes[0].hamlets[0].lines[0].rules[0].months[0].n:"
        f" {line['rules'][0]['months'][0]['n']} in the file,"
        f" {line['rules'][0]['months'][0]['n'] - 1} recomputed"
    ]
    # The PDF still names the manifest it was made with.
    assert "belongs to the manifest" in named(report, "report.pdf")[0]


def test_a_pdf_from_another_export_or_without_its_signature_is_named(copy: Path) -> None:
    (copy / "report.pdf.minisig").unlink()
    (copy / "other.pdf.minisig").write_text("untrusted comment: x\n")
    report = verify_export(copy)
    assert {f.file for f in report.failures} == {"report.pdf.minisig", "other.pdf.minisig"}


def test_the_chain_head_follows_the_exports(tmp_path: Path, built: Built) -> None:
    head = manifest.read_chain_head(built.data_dir)
    assert head == built.outcome.manifest
    second = asyncio.run(_export_again(built.data_dir, tmp_path / "next"))
    report = verify_export(second.directory, built.trusted, previous_manifest=head)
    assert report.ok, [str(f) for f in report.failures]
    assert manifest.read_chain_head(built.data_dir) == second.manifest
    link = json.loads(second.manifest)["previous_manifest_sha256"]
    assert link == hashlib.sha256(built.outcome.manifest).hexdigest()


async def _export_again(data_dir: Path, out: Path) -> ExportOutcome:
    from server.registry import Registry
    from server.storage.sqlite import SqliteStore
    from tests.server.evidence.export_builder import seed_settings

    settings = seed_settings(data_dir)
    registry, store = (
        Registry(data_dir / "registry.sqlite3"),
        SqliteStore(data_dir / "results.sqlite3"),
    )
    await registry.open()
    await store.start()
    try:
        return await run_export(
            store, registry, settings, load_plan(settings.plan_path), out_dir=out, now=NOW,
            hamlet="thon-a", isp="Viettel", start=FIRST_DAY, end=LAST_DAY, formats=("csv",),
        )  # fmt: skip
    finally:
        await store.close()
        await registry.close()
