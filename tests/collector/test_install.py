"""The Raspberry Pi install script, staged into a directory (no systemd runs here)."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_install_stages_venv_config_and_a_least_privilege_unit(tmp_path: Path) -> None:
    stage = tmp_path / "root"
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-probe.sh"), "--root", str(stage),
         "--server", "https://hamletnet.example.vn:8443"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

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
