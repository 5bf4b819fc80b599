"""The probe installs on a Raspberry Pi without compiling: every dependency of the ``[probe]``
extra comes as a wheel (or pure Python) for linux aarch64 and armv7l.

aarch64 (Raspberry Pi OS 64-bit) is checked whole from PyPI. On armv7l (32-bit) PyPI has no
wheels for cffi (needed by cryptography) and PyYAML; Raspberry Pi OS's /etc/pip.conf adds
piwheels, which builds both for armv7l. This machine can reach PyPI only, so the test pins the
list of packages that need piwheels: a new dependency without armv7l wheels fails it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLATFORMS = {
    "aarch64": ["manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64",
                "manylinux_2_31_aarch64", "manylinux_2_36_aarch64", "linux_aarch64"],
    "armv7l": ["manylinux2014_armv7l", "manylinux_2_17_armv7l", "manylinux_2_28_armv7l",
               "manylinux_2_31_armv7l", "manylinux_2_36_armv7l", "linux_armv7l"],
}  # fmt: skip
#: armv7l packages PyPI has no wheel for, served to Raspberry Pi OS by piwheels.
PIWHEELS_ONLY_ARMV7L = {"cffi", "pyyaml"}

pytestmark = pytest.mark.slow


def probe_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["probe"]]


def download(dest: Path, platform: str, requirements: list[str], *, deps: bool = True) -> str:
    flags = [f"--platform={p}" for p in PLATFORMS[platform]]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
         "--python-version=3.11", "--implementation=cp", "--abi=cp311", "--abi=abi3",
         *flags, *([] if deps else ["--no-deps"]), "--dest", str(dest), *requirements],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    return "" if result.returncode == 0 else result.stderr


def _pinned(dest: Path) -> list[str]:
    """name==version of every wheel in ``dest``."""
    pins = []
    for wheel in sorted(dest.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        pins.append(f"{name}=={version}")
    return pins


def test_probe_dependencies_have_wheels_for_the_pi(tmp_path: Path) -> None:
    arm64 = tmp_path / "aarch64"
    error = download(arm64, "aarch64", probe_requirements())
    if "No matching distribution" not in error and re.search(r"(?i)network|connection", error):
        pytest.fail(f"PyPI could not be reached: {error[-500:]}")
    assert not error, f"a [probe] dependency has no aarch64 wheel:\n{error[-2000:]}"
    pins = _pinned(arm64)
    assert any(p.startswith("cryptography==") for p in pins) and len(pins) > 5

    missing = set()
    for pin in pins:
        if download(tmp_path / "armv7l", "armv7l", [pin], deps=False):
            missing.add(pin.split("==")[0].lower().replace("_", "-"))
    assert missing <= PIWHEELS_ONLY_ARMV7L, (
        f"no armv7l wheel on PyPI for {sorted(missing - PIWHEELS_ONLY_ARMV7L)}"
    )
