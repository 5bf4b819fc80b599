"""``hamletnet-server`` as an installer and the office would run it: real processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def server_cli(
    *args: str, cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAMLETNET_")}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "server.yaml"
    path.write_text(
        "data_dir: data\nhamlets:\n  - {code: thon-a, name: Thôn Đồng Tâm}\n", encoding="utf-8"
    )
    return path


def test_probe_add_prints_the_token_once_then_list_and_disable(config: Path) -> None:
    added = server_cli(
        "probe", "--config", str(config), "add", "--hamlet", "thon-a", "--isp", "Viettel",
        "--access", "5g",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    token = re.search(r"token:\s+(hn_\S+)", added.stdout)
    assert token is not None
    assert "probe:  thon-a-viettel-5g" in added.stdout
    listed = server_cli("probe", "--config", str(config), "list")
    assert "thon-a-viettel-5g\tthon-a\tViettel\t5g\tenabled\tnever" in listed.stdout
    assert token.group(1) not in listed.stdout
    disabled = server_cli("probe", "--config", str(config), "disable", "thon-a-viettel-5g")
    assert disabled.returncode == 0 and "disabled" in disabled.stdout


def test_probe_add_to_unknown_hamlet_is_a_clear_error(config: Path) -> None:
    result = server_cli(
        "probe", "--config", str(config), "add", "--hamlet", "nowhere", "--isp", "VNPT",
        "--access", "fiber",
    )  # fmt: skip
    assert result.returncode == 1
    assert "hamlet 'nowhere' is not configured; known: thon-a" in result.stderr


def test_bad_config_key_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("limits:\n  max_batch_itmes: 5\n", encoding="utf-8")
    result = server_cli("run", "--config", str(path))
    assert result.returncode == 2
    assert "limits.max_batch_itmes: unknown key" in result.stderr


@pytest.mark.slow
def test_demo_once_registers_probes_and_posts_real_results(tmp_path: Path) -> None:
    result = server_cli("demo", "--once", "--port", "0", "--data-dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "registered 4 example probes in 4 hamlets" in result.stdout
    assert "8 accepted, 0 rejected" in result.stdout
    assert re.search(r"open http://127\.0\.0\.1:\d+/", result.stdout)
    assert "page: 200" in result.stdout
