"""Running the real probe CLI and the lab responders inside a lab namespace."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.lab.netns import Host, Lab

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def measure(lab: Lab, host: Host, kind: str, target: str, *args: str) -> tuple[int, dict[str, Any]]:
    """``hamletnet-probe measure KIND --target T ARGS --json`` in ``host``: exit code and result."""
    proc = subprocess.run(
        lab.cmd(host, sys.executable, "-m", "collector.cli", "measure", kind, "--target", target,
                *args, "--json"),
        capture_output=True, text=True, timeout=60, env=ENV, cwd=ROOT, check=False,
    )  # fmt: skip
    if not proc.stdout.strip():
        raise AssertionError(f"no result (exit {proc.returncode}): {proc.stderr}")
    return proc.returncode, json.loads(proc.stdout)


def start_responder(lab: Lab, host: Host, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``python -m tests.lab.responders ARGS`` in ``host``, once it printed "ready"."""
    proc = lab.popen(host, sys.executable, "-m", "tests.lab.responders", *args, log=log, env=ENV)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if log.exists() and "ready" in log.read_text():
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"responder exited: {log.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"responder not ready: {log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=10)


def ping_rtts_ms(lab: Lab, host: Host, target: str, count: int, interval_s: float) -> list[float]:
    """iputils ping's per-reply RTTs (the first dropped, as the probe drops its warm-up)."""
    out = lab.run(host, "ping", "-n", "-c", str(count + 1), "-i", str(interval_s), "-W", "2",
                  target, check=False).stdout  # fmt: skip
    rtts = [
        float(line.split("time=")[1].split()[0])
        for line in out.splitlines()
        if "time=" in line and "icmp_seq=1 " not in line
    ]
    return rtts


def median(values: list[float]) -> float:
    return float(statistics.median(values))
