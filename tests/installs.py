"""Fresh installs for the tests that run hamletnet as a user installs it: a copy of this checkout
with a ``.venv`` that ``scripts/venv.sh`` made with exactly the extras given, and the helpers to
run its entry points as real processes (loopback only)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What a checkout holds that the install scripts use (a copy: pip and the demo write into it).
SOURCE = ["pyproject.toml", "README.md", "probes", "collector", "server", "config", "scripts"]

# Loopback only, and never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``HAMLETNET_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAMLETNET_")}
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[str], attempts: int = 300) -> int:
    """The status of GET ``url`` once the process listens (it must stay alive meanwhile)."""
    for _ in range(attempts):
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}: {process.communicate()[0]}")
        try:
            with _OPENER.open(url, timeout=5) as reply:
                return int(reply.status)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def copy_checkout(dest: Path) -> Path:
    """The files of :data:`SOURCE` copied to ``dest`` (without caches and build leftovers)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in SOURCE:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(ROOT / name, dest / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, dest / name)
    return dest


def offline(command: list[str]) -> list[str]:
    """``command`` in a network namespace of its own with only loopback up: no registry at
    all (needs root); elsewhere pip is told not to use an index."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return command
    inner = "ip link set lo up && exec " + " ".join(f"'{part}'" for part in command)
    return ["unshare", "--net", "sh", "-c", inner]


def run_script(tree: Path, *args: str, network: bool = True) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    command = ["bash", *args]
    if not network:
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS="")
        command = offline(command)
    return subprocess.run(
        command, cwd=tree, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def checkout_with_venv(tmp_path_factory: pytest.TempPathFactory, extras: str) -> Path:
    """A copy of the checkout whose ``.venv`` was made by ``scripts/venv.sh EXTRAS``.

    One per extras and test session: a second module asking for the same extras gets the
    same tree (built once; its tests must not change what is installed)."""
    tree = tmp_path_factory.getbasetemp() / f"checkout-{extras.replace(',', '-')}"
    if (tree / ".venv" / ".hamletnet-installed").is_file():
        return tree
    shutil.rmtree(tree, ignore_errors=True)  # a build that failed half-way
    copy_checkout(tree)
    made = run_script(tree, "scripts/venv.sh", extras)
    assert made.returncode == 0, made.stderr[-3000:]
    return tree
