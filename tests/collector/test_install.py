"""The Raspberry Pi install script, staged into a directory (no systemd runs here)."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What a copy of the repository on the Pi needs for the install (pip builds from it, so a copy
#: keeps the build's leftovers out of this checkout).
SOURCE = ["pyproject.toml", "README.md", "probes", "collector", "server", "config", "scripts"]


def copy_source(dest: Path) -> Path:
    dest.mkdir()
    for name in SOURCE:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(ROOT / name, dest / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """install-probe.sh staged under a directory: the agent's venv has the [probe] extra only."""
    base = tmp_path_factory.mktemp("install")
    source = copy_source(base / "src")
    stage = base / "root"
    result = subprocess.run(
        ["bash", str(source / "scripts" / "install-probe.sh"), "--root", str(stage),
         "--server", "https://hamletnet.example.vn:8443"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return stage


@pytest.mark.slow
def test_install_stages_venv_config_and_a_least_privilege_unit(stage: Path) -> None:

    agent = stage / "opt/hamletnet-probe/bin/hamletnet-probe"
    version = subprocess.run([str(agent), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("hamletnet-probe ")
    # The [probe] extra only: the server's database client is not on the Pi.
    freeze = subprocess.run(
        [str(stage / "opt/hamletnet-probe/bin/python"), "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "apscheduler" in freeze and "influxdb-client" not in freeze
    assert "prometheus" not in freeze

    config = (stage / "etc/hamletnet/probe.yaml").read_text()
    assert "state_dir: /var/lib/hamletnet-probe" in config
    assert "hamletnet.example.vn:8443" in config
    assert (stage / "var/lib/hamletnet-probe").stat().st_mode & 0o777 == 0o700

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(stage / "etc/systemd/system/hamletnet-probe.service")
    service = unit["Service"]
    assert service["User"] == "hamletnet" and service["User"] != "root"
    assert set(service["AmbientCapabilities"].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    assert set(service["CapabilityBoundingSet"].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["ExecStart"].endswith("--config /etc/hamletnet/probe.yaml run")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.slow
def test_the_agent_is_on_path_for_everyone(stage: Path) -> None:
    link = stage / "usr/local/bin/hamletnet-probe"
    assert link.is_symlink()
    # Absolute, as it will be on the Pi (under the staging root it points outside of it).
    assert os.readlink(link) == "/opt/hamletnet-probe/bin/hamletnet-probe"
    assert (stage / "opt/hamletnet-probe/bin/hamletnet-probe").is_file()


@pytest.mark.slow
def test_the_readme_latency_example_runs_in_the_probe_extra_alone(stage: Path) -> None:
    """``hamletnet-probe measure latency --target HOST:PORT --json`` as the README writes it,
    in the venv install-probe.sh made (the [probe] extra and nothing else)."""
    agent = stage / "opt/hamletnet-probe/bin/hamletnet-probe"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        result = subprocess.run(
            [str(agent), "measure", "latency", "--target", f"127.0.0.1:{port}", "--json",
             "--option", "count=3", "--option", "interval_s=0.05"],
            cwd=stage, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert (measured["engine"], measured["status"], measured["received"]) == ("tcp", "ok", 3)
