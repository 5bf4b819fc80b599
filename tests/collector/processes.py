"""Real processes for the agent's end-to-end tests: the ingest server and the probe agent, each
started with its own command line, stopped by signal, restarted on the same files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from tests.influxd import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAMLETNET_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


class ServerProcess:
    """``hamletnet-server run`` on a loopback port, embedded SQLite in ``data_dir``."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / "server-data"
        self.config = workdir / "server.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "listen_port": self.port,
                    "data_dir": str(self.data_dir),
                    "hamlets": [{"code": "thon-a", "name": "Thôn Đồng Tâm"}],
                    "limits": {"requests_per_s": 1000, "burst": 1000},
                    "log_level": "WARNING",
                }
            ),
            encoding="utf-8",
        )
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        """The argv and environment of this server, also for starting it in a lab namespace."""
        argv = [sys.executable, "-m", "server.cli", "run", "--config", str(self.config)]
        return argv, _env() | {"HAMLETNET_ADMIN_TOKEN": ADMIN_TOKEN}

    def start(self) -> None:
        argv, env = self.command()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with _OPENER.open(self.url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def add_probe(self) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "server.cli", "probe", "--config", str(self.config), "add",
             "--hamlet", "thon-a", "--isp", "VNPT", "--access", "fiber"],
            cwd=ROOT, env=_env(), capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        for line in out.stdout.splitlines():
            if line.startswith("token:"):
                return line.split()[1]
        raise AssertionError(out.stdout)

    def stored(self) -> list[dict[str, Any]]:
        """Every stored result in the order the server stored them."""
        db = self.data_dir / "results.sqlite3"
        if not db.exists():
            return []
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT payload FROM results ORDER BY rowid").fetchall()
        return [json.loads(r[0]) for r in rows]


class AgentProcess:
    """``hamletnet-probe run`` with a configuration written for the test; ``prefix`` runs its
    commands through a wrapper that execs them, e.g. ``ip netns exec NS`` for the lab."""

    #: Every agent started, so a fixture can make sure none outlives its test.
    started: ClassVar[list[AgentProcess]] = []

    def __init__(self, workdir: Path, config: dict[str, Any], prefix: Sequence[str] = ()) -> None:
        self.prefix = list(prefix)
        self.state_dir = Path(config["state_dir"])
        self.config = workdir / "probe.yaml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log = workdir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, sys.executable, "-m", "collector.cli", "--config", str(self.config),
             *args],
            cwd=ROOT, env=_env(), capture_output=True, text=True, check=check, timeout=60,
        )  # fmt: skip

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "collector.cli", "--config",
                 str(self.config), "run"],
                cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        AgentProcess.started.append(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state_dir / "status.json").read_text())
        return data

    def spool_counts(self) -> tuple[int, int]:
        """(pending, rejected) rows in the agent's spool."""
        with sqlite3.connect(self.state_dir / "spool.sqlite3") as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            pending = conn.execute("SELECT count(*) FROM items").fetchone()[0]
            rejected = (
                conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
                if "rejected" in tables
                else 0
            )
        return int(pending), int(rejected)


T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, step: float = 0.1
) -> T:
    """What ``condition`` returns once it is truthy, polled every ``step`` s for ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
