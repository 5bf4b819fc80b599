"""``hamletnet-server export`` and ``export verify`` through ``server.cli.main``, on a data
directory seeded with a real SQLite store and registry and real signed results."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from server.cli import main
from server.evidence import minisign
from tests.server.evidence.export_builder import COMMUNE, SEED_HAMLETS, seed

WINDOW = ["--from", "2026-10-01", "--to", "2026-10-10"]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    data_dir = root / "data"

    async def seeded() -> None:
        await (await seed(data_dir)).close()

    asyncio.run(seeded())
    path = root / "server.yaml"
    path.write_text(
        yaml.safe_dump(
            {"data_dir": str(data_dir), "communes": [COMMUNE], "hamlets": SEED_HAMLETS},
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def exported(config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "thon-a"
    code = main(["export", "--config", str(config), "--hamlet", "thon-a", *WINDOW,
                 "--format", "csv,pdf", "--out", str(out)])  # fmt: skip
    assert code == 0
    return out


def key_text(config: Path) -> str:
    data_dir = Path(yaml.safe_load(config.read_text())["data_dir"])
    return minisign.load_or_create_key(data_dir).public.base64_text()


def test_export_then_verify_succeeds_with_a_summary_line(
    config: Path, exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["export", "verify", str(exported), "--key", key_text(config)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and ": OK: " in out[0] and "summary recomputed and equal" in out[0]
    assert (exported / "report.pdf").is_file() and not (exported / "results.xlsx").exists()


def test_verify_prints_every_failure_and_exits_1(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    (copy / "results.csv").write_text("altered\n")
    (copy / "extra.txt").write_text("added")
    capsys.readouterr()
    assert main(["export", "verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "FAIL results.csv: SHA-256" in out and "FAIL extra.txt: is not in the manifest" in out
    assert "2 failure(s)" in out


def test_verify_checks_the_chain_with_previous(
    config: Path, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    second = tmp_path / "second"
    args = ["export", "--config", str(config), "--hamlet", "thon-a", "--isp", "Viettel", *WINDOW,
            "--format", "csv", "--out", str(second)]  # fmt: skip
    assert main(args) == 0
    previous = exported / "manifest.json"
    assert main(["export", "verify", str(second), "--previous", str(previous)]) == 0
    capsys.readouterr()
    wrong = tmp_path / "wrong.json"
    wrong.write_text("{}\n")
    assert main(["export", "verify", str(second), "--previous", str(wrong)]) == 1
    assert "chain broken" in capsys.readouterr().out


def test_a_long_window_shows_progress_on_stderr(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "long"
    args = ["export", "--config", str(config), "--hamlet", "thon-a", "--from", "2026-09-01",
            "--to", "2026-10-31", "--format", "csv", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) >= 5 and all(x.startswith("export: ") for x in lines)
    assert lines[-1] == "export: 100% of the window, 368 results"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hamlet", "thon-x", *WINDOW], "unknown hamlet 'thon-x'; known: thon-a, thon-b"),
        (["--hamlet", "thon-a", "--isp", "FPT", *WINDOW], "unknown isp 'FPT'"),
        (["--hamlet", "thon-a", "--from", "2026-10-10", "--to", "2026-10-01"],
         "from 2026-10-10 is after to 2026-10-01"),
        (["--hamlet", "thon-a", "--from", "2025-01-01", "--to", "2025-01-31"],
         "no results for hamlet 'thon-a' from 2025-01-01 to 2025-01-31"),
        (["--hamlet", "thon-a", *WINDOW, "--format", "csv,docx"], "unknown format 'docx'"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error_and_leaves_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert main(["export", "--config", str(config), *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_non_empty_output_directory_is_refused(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", "--config", str(config), "--hamlet", "thon-a", *WINDOW,
                 "--out", str(out)]) == 2  # fmt: skip
    assert "is not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_empty_output_directory_is_used(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", "--config", str(config), "--hamlet", "thon-a", *WINDOW,
                 "--format", "csv", "--out", str(out)]) == 0  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert manifest["parameters"]["formats"] == ["csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_missing_options_and_a_bad_key_exit_2(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--hamlet", "thon-a"]) == 2
    assert "--from, --to, --out required" in capsys.readouterr().err
    assert main(["export", "verify", str(exported), "--key", "RWnot-a-key"]) == 2
    assert "--key" in capsys.readouterr().err
