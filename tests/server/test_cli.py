"""``hamletnet-server`` as an installer and the office would run it: real processes."""

from __future__ import annotations

import os
import re
import socket
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


def test_probe_set_records_the_declared_line_with_who(config: Path) -> None:
    added = server_cli(
        "probe", "add", "--config", str(config), "--hamlet", "thon-a", "--isp", "VNPT",
        "--access", "fiber",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    result = server_cli(
        "probe", "set", "thon-a-vnpt-fiber", "--config", str(config), "--declared-down", "1000",
        "--declared-up", "1000", "--declared-min-down", "300", "--plan", "Home Giga",
        "--actor", "Nguyễn Văn A",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "declared_down_mbps: 1000" in result.stdout
    assert "declared_min_down_mbps: 300" in result.stdout
    assert "plan_name: Home Giga" in result.stdout
    assert "declared_by: Nguyễn Văn A" in result.stdout
    bad = server_cli(
        "probe", "set", "thon-a-vnpt-fiber", "--config", str(config), "--declared-min-down",
        "2000", "--actor", "B",
    )  # fmt: skip
    assert bad.returncode == 1
    assert "declared_min_down_mbps: 2000 is above declared_down_mbps 1000" in bad.stderr
    missing = server_cli("probe", "set", "thon-a-vnpt-fiber", "--declared-up", "5")
    assert missing.returncode == 2 and "--actor" in missing.stderr
    nothing = server_cli(
        "probe", "set", "thon-a-vnpt-fiber", "--config", str(config), "--actor", "B"
    )
    assert nothing.returncode == 2 and "nothing to set" in nothing.stderr


def test_probe_set_data_budget_is_recorded_and_cleared(config: Path) -> None:
    added = server_cli(
        "probe", "add", "--config", str(config), "--hamlet", "thon-a", "--isp", "Viettel",
        "--access", "4g",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    args = ("probe", "set", "thon-a-viettel-4g", "--config", str(config), "--actor", "A")
    result = server_cli(*args, "--data-budget", "10000000000")
    assert result.returncode == 0, result.stderr
    assert "data_budget_bytes: 10000000000" in result.stdout
    cleared = server_cli(*args, "--data-budget", "none")
    assert cleared.returncode == 0 and "data_budget_bytes: -" in cleared.stdout
    bad = server_cli(*args, "--data-budget", "10GB")
    assert bad.returncode == 2 and "'10GB' is not a number of bytes" in bad.stderr
    zero = server_cli(*args, "--data-budget", "0")
    assert zero.returncode == 1 and "data_budget_bytes: 0 must be" in zero.stderr


def test_hand_entry_import_reports_each_row(config: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "chu-ky-so.csv"
    csv_file.write_bytes(
        "\ufeffindicator_id,hamlet,value,as_of,source_document\r\n"
        "digital-signature-2026,thon-a,38.5,2026-10-31,Báo cáo số 12/BC-UBND\r\n"
        "digital-signature-2026,thon-a,lots,2026-10-31,Báo cáo số 12/BC-UBND\r\n".encode()
    )
    result = server_cli(
        "hand-entry", "import", str(csv_file), "--config", str(config), "--actor", "Cán bộ A"
    )
    assert result.returncode == 1, result.stderr  # one row was refused
    assert "1 accepted, 1 rejected" in result.stdout
    assert f"{csv_file}:3: rejected: value: Input should be a valid number" in result.stdout
    unreadable = server_cli(
        "hand-entry", "import", str(tmp_path / "none.csv"), "--config", str(config),
        "--actor", "A",
    )  # fmt: skip
    assert unreadable.returncode == 2 and "cannot read" in unreadable.stderr


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


# The demo (`demo --once`, run twice on one data directory) is tested in test_demo.py.


# --- what a new user hits, following the README literally (issue 15 §6) ---


def server_cli_env(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HAMLETNET_")}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "where",
    ["after the command (as the README writes it)", "before the command", "after probe"],
)
def test_probe_commands_accept_config_wherever_the_readme_puts_it(config: Path, where: str) -> None:
    add = ["add", "--hamlet", "thon-a", "--isp", "VNPT", "--access", "fiber"]
    if where.startswith("after the command"):
        args = ["probe", *add[:1], "--config", str(config), *add[1:]]
        listing = ["probe", "list", "--config", str(config)]
    elif where == "before the command":
        args = ["--config", str(config), "probe", *add]
        listing = ["--config", str(config), "probe", "list"]
    else:
        args = ["probe", "--config", str(config), *add]
        listing = ["probe", "--config", str(config), "list"]
    added = server_cli(*args)
    assert added.returncode == 0, added.stderr
    assert "probe:  thon-a-vnpt-fiber" in added.stdout
    listed = server_cli(*listing)
    assert listed.returncode == 0, listed.stderr
    assert "thon-a-vnpt-fiber\tthon-a\tVNPT\tfiber\tenabled" in listed.stdout


def test_an_environment_variable_error_names_the_variable_not_the_file(config: Path) -> None:
    result = server_cli_env("run", "--config", str(config), env={"HAMLETNET_LISTEN_PORT": "abc"})
    assert result.returncode == 2
    assert "listen_port (from HAMLETNET_LISTEN_PORT): Input should be a valid integer" in (
        result.stderr
    )
    nested = server_cli_env("run", "--config", str(config), env={"HAMLETNET_LIMITS__BURST": "0"})
    assert nested.returncode == 2
    assert "limits.burst (from HAMLETNET_LIMITS__BURST):" in nested.stderr


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n"])
def test_an_empty_config_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(text, encoding="utf-8")
    result = server_cli("run", "--config", str(path))
    assert result.returncode == 2
    assert f"{path} holds no settings" in result.stderr
    assert "{}" in result.stderr  # how to say "defaults, on purpose"
    assert "Traceback" not in result.stderr


def test_an_explicitly_empty_mapping_runs_on_defaults(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("{}  # defaults, on purpose\n", encoding="utf-8")
    result = server_cli("probe", "list", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["run", "target"])
def test_a_port_in_use_is_one_clear_line(tmp_path: Path, command: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        if command == "run":
            path = tmp_path / "server.yaml"
            path.write_text(f"listen_port: {port}\ndata_dir: data\n", encoding="utf-8")
            result = server_cli("run", "--config", str(path))
        else:
            result = server_cli("target", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 2, result.stderr
    assert f"127.0.0.1 port {port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr
