"""``verify_export`` on a real export directory: it passes as built, and any byte changed in any
file makes it fail naming that file (and in ``results.jsonl`` the line and the result id)."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes.signing import legacy_v1_bytes, new_private_key, public_key_text
from server.evidence import minisign
from server.evidence.manifest import seal
from server.evidence.verify import Report, verify_export
from tests.server.evidence.export_builder import (
    CREATED_AT,
    PARAMETERS,
    Export,
    build_export,
    result_line,
)

SERVER_KEY = minisign.new_signing_key()
TRUSTED = SERVER_KEY.public.base64_text()
FILES = [
    "manifest.json",
    "manifest.json.minisig",
    "probe-keys.json",
    "results.csv",
    "results.jsonl",
    "server.pub",
]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    return build_export(tmp_path_factory.mktemp("evidence") / "export", SERVER_KEY)


@pytest.fixture
def fresh(tmp_path: Path) -> Export:
    """An export of its own, for tests that change it."""
    return build_export(tmp_path / "export", SERVER_KEY)


@contextmanager
def flip(path: Path, index: int, mask: int = 0x01) -> Iterator[None]:
    original = path.read_bytes()
    altered = bytearray(original)
    altered[index] ^= mask
    path.write_bytes(bytes(altered))
    try:
        yield
    finally:
        path.write_bytes(original)


def named(report: Report, file: str) -> list[str]:
    return [str(f) for f in report.failures if f.file == file]


def reseal(export: Export) -> None:
    seal(export.directory, SERVER_KEY, PARAMETERS, "0.1.0", CREATED_AT, None)


def test_the_export_verifies(export: Export) -> None:
    report = verify_export(export.directory, TRUSTED)
    assert report.ok, report.failures
    assert report.files_checked == 4
    assert report.results_verified == len(export.results) == 5
    assert report.notes == []


def test_the_export_verifies_against_its_own_key_and_says_so(export: Export) -> None:
    report = verify_export(export.directory)
    assert report.ok, report.failures
    assert "key inside the export" in report.notes[0]


def test_every_file_of_the_export_is_listed(export: Export) -> None:
    assert sorted(p.name for p in export.directory.iterdir()) == FILES


@pytest.mark.skipif(shutil.which("minisign") is None, reason="install Debian's minisign")
def test_real_minisign_verifies_the_manifest(export: Export) -> None:
    done = subprocess.run(
        ["minisign", "-Vm", "manifest.json", "-p", "server.pub"],
        cwd=export.directory,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "file:manifest.json\tsha256:" in done.stdout


@pytest.mark.parametrize("file", FILES)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_flipped_byte_in_any_file_fails_naming_it(export: Export, file: str, where: str) -> None:
    path = export.directory / file
    size = path.stat().st_size
    index = {"first": 0, "middle": size // 2, "last": size - 1}[where]
    with flip(path, index):
        report = verify_export(export.directory, TRUSTED)
        assert named(report, file), report.failures


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_byte_flipped_anywhere_is_caught_naming_its_file(
    export: Export, data: st.DataObject
) -> None:
    file = data.draw(st.sampled_from(FILES), label="file")
    path = export.directory / file
    original = path.read_bytes()
    index = data.draw(st.integers(0, len(original) - 1), label="index")
    mask = data.draw(st.integers(1, 255), label="mask")
    trusted = data.draw(st.sampled_from([TRUSTED, None]), label="trusted key")
    with flip(path, index, mask):
        report = verify_export(export.directory, trusted)
    assert named(report, file), report.failures
    if file != "results.jsonl":
        return
    # The line holding the byte is named, with its result id unless the flip hit that id.
    number = original[:index].count(b"\n") + 1
    on_line = [f for f in report.failures if f.file == file and f.line == number]
    assert on_line, report.failures
    line = original.split(b"\n")[number - 1]
    start = sum(len(x) + 1 for x in original.split(b"\n")[: number - 1])
    id_at = line.index(b'"result_id":"')
    id_span = range(start + id_at, start + id_at + len('"result_id":"') + 37)
    if index not in id_span and original[index] ^ mask != ord("\n"):
        expected = str(export.results[number - 1].result_id)
        assert any(f.result_id == expected for f in on_line), on_line


def test_an_altered_result_resealed_fails_on_its_probe_signature(fresh: Export) -> None:
    path = fresh.directory / "results.jsonl"
    lines = path.read_text().splitlines()
    altered = json.loads(lines[1])
    altered["rtt_median_ms"] = 0.5  # a better number than the probe measured
    lines[1] = json.dumps(altered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    path.write_text("\n".join(lines) + "\n")
    reseal(fresh)  # even with the server's own key
    report = verify_export(fresh.directory, TRUSTED)
    assert [str(f) for f in report.failures] == [
        f"results.jsonl line 2 (result {fresh.results[1].result_id}): probe"
        f" '{fresh.results[1].probe_id}': the signature does not match: the result was altered"
        " after signing, or was not signed by this probe's key"
    ]


def test_a_result_respelt_with_the_same_values_is_caught(fresh: Export) -> None:
    path = fresh.directory / "results.jsonl"
    text = path.read_text()
    assert "1e-07" in text
    path.write_text(text.replace("1e-07", "1E-07", 1))  # the same float, another spelling
    reseal(fresh)
    report = verify_export(fresh.directory, TRUSTED)
    assert [(f.file, f.line, f.result_id) for f in report.failures] == [
        ("results.jsonl", 1, str(fresh.results[0].result_id))
    ]
    assert "line form" in report.failures[0].reason


def test_a_probe_without_a_key_and_a_repeated_result_are_named(fresh: Export) -> None:
    keys = json.loads((fresh.directory / "probe-keys.json").read_text())
    del keys[fresh.results[1].probe_id]
    (fresh.directory / "probe-keys.json").write_text(json.dumps(keys))
    path = fresh.directory / "results.jsonl"
    path.write_text(path.read_text() + result_line(fresh.results[0]) + "\n")
    reseal(fresh)
    failures = [str(f) for f in verify_export(fresh.directory, TRUSTED).failures]
    missing = [r for r in fresh.results if r.probe_id == fresh.results[1].probe_id]
    assert len(failures) == len(missing) + 1
    assert (
        f"results.jsonl line 6 (result {fresh.results[0].result_id}): the same result id"
        in (failures[-1])
    )
    assert all("has no public key in probe-keys.json" in f for f in failures[:-1])


def test_a_result_signed_in_the_legacy_form_still_verifies(fresh: Export) -> None:
    probe_key = new_private_key()
    result = fresh.results[0].model_copy(update={"probe_id": "old-probe", "signature": None})
    signature = base64.b64encode(probe_key.sign(legacy_v1_bytes(result))).decode()
    keys = json.loads((fresh.directory / "probe-keys.json").read_text())
    keys["old-probe"] = public_key_text(probe_key)
    (fresh.directory / "probe-keys.json").write_text(json.dumps(keys))
    legacy = result.model_copy(update={"signature": signature})
    path = fresh.directory / "results.jsonl"
    lines = path.read_text().splitlines()
    lines[0] = result_line(legacy)
    path.write_text("\n".join(lines) + "\n")
    reseal(fresh)
    report = verify_export(fresh.directory, TRUSTED)
    assert report.ok, report.failures
    assert report.results_legacy_v1 == 1


def test_an_added_or_a_missing_file_is_named(fresh: Export) -> None:
    (fresh.directory / "extra.txt").write_text("added later")
    (fresh.directory / "results.csv").unlink()
    report = verify_export(fresh.directory, TRUSTED)
    assert {f.file for f in report.failures} == {"extra.txt", "results.csv"}


def test_another_servers_key_is_refused(export: Export) -> None:
    other = minisign.new_signing_key().public.base64_text()
    report = verify_export(export.directory, other)
    assert {f.file for f in report.failures} == {"manifest.json.minisig", "server.pub"}
    assert "key id" in named(report, "manifest.json.minisig")[0]


def test_a_resealed_export_fails_on_its_untrusted_comment(fresh: Export) -> None:
    path = fresh.directory / "manifest.json.minisig"
    text = path.read_text()
    path.write_text(text.replace("by hamletnet-server", "by someone else", 1))
    report = verify_export(fresh.directory, TRUSTED)
    assert [f.file for f in report.failures] == ["manifest.json.minisig"]
    assert "untrusted comment" in report.failures[0].reason


class TestChain:
    @pytest.fixture
    def series(self, tmp_path: Path) -> list[Export]:
        first = build_export(tmp_path / "1", SERVER_KEY)
        second = build_export(tmp_path / "2", SERVER_KEY, previous_manifest=first.manifest)
        third = build_export(tmp_path / "3", SERVER_KEY, previous_manifest=second.manifest)
        return [first, second, third]

    def test_each_export_links_to_the_one_before(self, series: list[Export]) -> None:
        for before, after in itertools.pairwise(series):
            report = verify_export(after.directory, TRUSTED, previous_manifest=before.manifest)
            assert report.ok, report.failures

    def test_without_the_previous_manifest_the_link_is_reported_unchecked(
        self, series: list[Export]
    ) -> None:
        report = verify_export(series[1].directory, TRUSTED)
        assert report.ok
        assert report.previous_manifest_sha256 is not None
        assert any("chain not checked" in note for note in report.notes)

    def test_a_deleted_export_breaks_the_chain(self, series: list[Export]) -> None:
        report = verify_export(series[2].directory, TRUSTED, previous_manifest=series[0].manifest)
        assert [f.file for f in report.failures] == ["manifest.json"]
        assert "chain broken" in report.failures[0].reason

    def test_an_altered_previous_manifest_breaks_the_chain(self, series: list[Export]) -> None:
        altered = series[0].manifest.replace(b"thon-a", b"thon-b", 1)
        report = verify_export(series[1].directory, TRUSTED, previous_manifest=altered)
        assert "chain broken" in str(report.failures)

    def test_the_first_export_has_no_link_to_give(self, series: list[Export]) -> None:
        report = verify_export(series[0].directory, TRUSTED, previous_manifest=series[1].manifest)
        assert [str(f) for f in report.failures] == [
            "manifest.json: names no previous export, but a previous manifest was given"
        ]

    def test_a_removed_link_fails_the_signature(self, series: list[Export]) -> None:
        path = series[1].directory / "manifest.json"
        manifest = json.loads(path.read_bytes())
        manifest["previous_manifest_sha256"] = None
        path.write_text(json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n")
        report = verify_export(series[1].directory, TRUSTED, previous_manifest=series[0].manifest)
        assert [f.file for f in report.failures] == ["manifest.json", "manifest.json"]
        assert "does not match its signature" in report.failures[0].reason


# -- A quarterly report: sealed like an export, with no raw results ----------------------------

REPORT_PARAMETERS = {"kind": "quarterly-report", "quarter": "2026-Q3", "commune": None}


@pytest.fixture
def quarterly(tmp_path: Path) -> Path:
    """A quarterly report directory as ``hamletnet-server report`` seals it (report.json, the
    server's key, the manifest, a real PDF signed on its own); its content is beside the point."""
    from server.evidence import pdf
    from server.evidence.manifest import seal_pdf

    directory = tmp_path / "report"
    directory.mkdir()
    (directory / "report.json").write_text('{"quarterly": {}}\n', encoding="utf-8")
    (directory / "server.pub").write_text(SERVER_KEY.public.file_text(), encoding="utf-8")
    sealed = seal(directory, SERVER_KEY, REPORT_PARAMETERS, "0.1.0", CREATED_AT, None)
    pdf.render_pdf(
        title="Báo cáo quý",
        subtitle=("Quý III/2026",),
        sections=[pdf.Section("Tóm tắt", paragraphs=("Đạt",))],
        footer="manifest.json SHA-256: …",
        created_at=CREATED_AT,
        path=directory / "report.pdf",
    )
    seal_pdf(directory / "report.pdf", SERVER_KEY, sealed, CREATED_AT)
    return directory


def test_a_quarterly_report_verifies_without_raw_results(quarterly: Path) -> None:
    report = verify_export(quarterly, TRUSTED)
    assert report.ok, [str(f) for f in report.failures]
    assert (report.kind, report.files_checked, report.pdfs_verified) == ("quarterly-report", 2, 1)
    assert (report.results_verified, report.summary_recomputed) == (0, False)


def test_a_quarterly_report_without_its_pdf_or_its_data_is_named(quarterly: Path) -> None:
    (quarterly / "report.pdf").unlink()
    (quarterly / "report.pdf.minisig").unlink()
    (quarterly / "report.json").unlink()
    seal(quarterly, SERVER_KEY, REPORT_PARAMETERS, "0.1.0", CREATED_AT, None)
    report = verify_export(quarterly, TRUSTED)
    assert [str(f) for f in report.failures] == [
        "manifest.json: lists no report.json: a quarterly report holds its figures",
        "report.pdf: is missing: a quarterly report holds it, signed",
    ]


def test_an_unknown_kind_is_named(fresh: Export) -> None:
    manifest = json.loads((fresh.directory / "manifest.json").read_text(encoding="utf-8"))
    seal(fresh.directory, SERVER_KEY, {**PARAMETERS, "kind": "mixtape"}, "0.1.0", CREATED_AT, None)
    assert manifest["parameters"] == PARAMETERS
    report = verify_export(fresh.directory, TRUSTED)
    assert [str(f) for f in report.failures] == [
        "manifest.json: its parameters.kind 'mixtape' is neither an export nor a quarterly-report"
    ]


def test_an_export_relabelled_as_a_report_breaks_its_signature(fresh: Export) -> None:
    """Delete the raw results and call the rest a report: the kind is inside the signed manifest,
    so only the server's key could make that pass."""
    from server.evidence.manifest import manifest_bytes

    path = fresh.directory / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["parameters"]["kind"] = "quarterly-report"
    for name in ("results.jsonl", "probe-keys.json"):
        del manifest["files"][name]
        (fresh.directory / name).unlink()
    path.write_bytes(manifest_bytes(manifest))
    report = verify_export(fresh.directory, TRUSTED)
    failures = [str(f) for f in report.failures]
    assert report.kind == "quarterly-report" and not report.ok
    assert failures[0].startswith("manifest.json: does not match its signature"), failures


def test_an_export_whose_parameters_name_a_pdf_must_hold_it(fresh: Export) -> None:
    seal(fresh.directory, SERVER_KEY, {**PARAMETERS, "formats": ["csv", "pdf"]}, "0.1.0",
         CREATED_AT, None)  # fmt: skip
    report = verify_export(fresh.directory, TRUSTED)
    assert [str(f) for f in report.failures] == [
        "report.pdf: is missing: the export's parameters list the pdf format"
    ]


def test_export_verify_says_which_kind_it_verified(
    quarterly: Path, export: Export, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli import main

    assert main(["export", "verify", str(quarterly), "--key", TRUSTED]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line == f"{quarterly}: OK: quarterly report: 2 files, 1 PDF(s)"
    assert main(["export", "verify", str(export.directory), "--key", TRUSTED]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"{export.directory}: OK: evidence export: 4 files, 5 results"), line


def test_a_last_line_without_its_line_feed_is_named_and_still_checked(fresh: Export) -> None:
    path = fresh.directory / "results.jsonl"
    path.write_bytes(path.read_bytes()[:-1])
    reseal(fresh)
    report = verify_export(fresh.directory, TRUSTED)
    assert [str(f) for f in report.failures] == [
        "results.jsonl line 5: does not end with a line feed"
    ]
    assert report.results_verified == 5


def test_a_blank_line_is_named_by_its_number(fresh: Export) -> None:
    path = fresh.directory / "results.jsonl"
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([*lines[:2], b"", *lines[2:]]))
    reseal(fresh)
    report = verify_export(fresh.directory, TRUSTED)
    failures = [str(f) for f in report.failures]
    assert len(failures) == 1 and failures[0].startswith("results.jsonl line 3: is not a JSON line")
    assert report.results_verified == 5
