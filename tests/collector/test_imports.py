"""The idle agent imports only what its idle path uses (issue 16 item 5): a test's engine, and
the packages it needs, are imported when that test first runs.

A fresh interpreter builds the real agent from a configuration (every test kind scheduled, so
the configuration's validation of targets and engines runs), runs its idle path (the first
heartbeat signed into the spool, an upload attempt to a closed loopback port) and reports
``sys.modules``; nothing is faked.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Builds the agent from the configuration at argv[1] (state directory registered: credentials
#: and key present), runs its idle path (the first heartbeat, one upload, whether the server
#: takes it or cannot be reached) and prints the sorted names in ``sys.modules``.
IDLE_SCRIPT = """
import asyncio, json, sys
from pathlib import Path

from collector import cli

async def idle(config):
    import aiohttp
    from collector.agent import Agent
    from collector.identity import load_credentials, load_key
    from collector.spool import AsyncSpool
    from collector.tls import client_ssl

    spool = AsyncSpool(config.spool_path, max_bytes=config.spool.max_bytes,
                       max_age=config.spool.max_age)
    await spool.open()
    try:
        async with aiohttp.ClientSession() as http:
            agent = Agent(config, load_credentials(config.credentials_path),
                          load_key(config.key_path), spool, http,
                          ssl_context=client_ssl(config.tls.verify, config.tls.ca_bundle))
            stop = asyncio.Event()
            running = asyncio.create_task(agent.run(stop))
            report = agent.uploader.report
            while not (agent.state.tests_run and (report.sent or report.last_error)):
                if running.done():
                    running.result()
                await asyncio.sleep(0.05)
            stop.set()
            await running
    finally:
        await spool.close()

asyncio.run(idle(cli.load_config(Path(sys.argv[1]))))
print(json.dumps(sorted(sys.modules)))
"""

#: Imported only when a test of their kind runs: the engines, their parsers and their packages.
TEST_ONLY = (
    "dns",
    "scapy",
    "speedtest",
    "probes.bandwidth",
    "probes.cellular",
    "probes.dns",
    "probes.ipv6",
    "probes.kernel_timestamps",
    "probes.latency.http_rtt",
    "probes.latency.icmp",
    "probes.latency.icmp_packet",
    "probes.latency.summary",
    "probes.latency.tcp_connect",
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registered_state(state_dir: Path, server_url: str) -> None:
    """A state directory as ``hamletnet-probe register`` leaves it (credentials, key)."""
    from collector.identity import load_or_create_key, write_private

    load_or_create_key(state_dir / "probe.key")
    credentials = {
        "server_url": server_url, "probe_id": "thon-a-vnpt-fiber", "token": "t" * 32,
        "hamlet": "thon-a", "isp": "VNPT", "access": "fiber",
    }  # fmt: skip
    write_private(state_dir / "credentials.json", json.dumps(credentials).encode())


def idle_modules(config: Path) -> list[str]:
    """What the real agent built from ``config`` has imported once idle (a fresh interpreter)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAMLETNET_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", IDLE_SCRIPT, str(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    modules: list[str] = json.loads(out.stdout.splitlines()[-1])
    return modules


def every_kind_config(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    registered_state(state, f"http://127.0.0.1:{closed_port()}")
    hourly = {"every_s": 3600}
    schedules = {
        "heartbeat": hourly,
        "latency": {**hourly, "engine": "tcp", "targets": ["127.0.0.1:9"]},
        "bandwidth": {**hourly, "targets": ["http://127.0.0.1:9"]},
        "dns": {**hourly, "targets": ["example.vn"]},
        "ipv6": {**hourly, "targets": ["example.vn"]},
        "cellular": hourly,
    }
    config = tmp_path / "probe.yaml"
    config.write_text(
        json.dumps(
            {
                "state_dir": str(state),
                "schedules": schedules,
                "upload": {"every_s": 3600, "backoff_min_s": 0.1, "backoff_max_s": 1},
                "log_level": "ERROR",
            }
        )
    )
    return config


def test_the_idle_agent_has_imported_no_test_engine(tmp_path: Path) -> None:
    modules = idle_modules(every_kind_config(tmp_path))
    assert "collector.agent" in modules and "probes.signing" in modules  # it did run
    loaded = [
        m for m in modules if m in TEST_ONLY or m.startswith(tuple(f"{t}." for t in TEST_ONLY))
    ]
    assert loaded == []


def test_the_registry_names_each_kinds_engine_as_its_module_does() -> None:
    from probes import bandwidth, cellular
    from probes.models import Kind
    from probes.registry import (
        BANDWIDTH_ENGINE,
        CELLULAR_ENGINE,
        LATENCY_ENGINES,
        PROBES,
    )

    assert (BANDWIDTH_ENGINE, CELLULAR_ENGINE) == (bandwidth.DEFAULT_ENGINE, cellular.ENGINE)
    assert PROBES[Kind.BANDWIDTH].engine == bandwidth.DEFAULT_ENGINE
    assert PROBES[Kind.CELLULAR].engine == cellular.ENGINE
    for module in LATENCY_ENGINES.values():
        assert callable(importlib.import_module(module).measure), module
