"""Probe agent figures: how fast a large spool backlog drains, and the idle agent's memory.

    .venv/bin/python bench/agent.py [--results 20000] [--sqlite]

Starts a throw-away InfluxDB (unless --sqlite) and the real server as a process, registers a
probe, fills its spool with signed results as a long outage would, starts the real agent process
and times the drain. Reference in the same run: the same number of results posted by a bare
client loop (same batch size, one connection) to the same server, so the ratio shows what the
spool and the agent add. Memory: the agent's resident set once idle, against a bare Python and a
Python that has only imported the agent's libraries. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import yaml  # noqa: E402

from collector.identity import load_key  # noqa: E402
from collector.spool import Spool  # noqa: E402
from probes.models import LatencyResult, ResultBase  # noqa: E402
from probes.signing import new_private_key, public_key_text, sign  # noqa: E402
from tests.collector.processes import AgentProcess, ServerProcess, wait_until  # noqa: E402
from tests.influxd import Influxd  # noqa: E402

BATCH = 500


def results(probe_id: str, count: int) -> list[LatencyResult]:
    start = datetime.now(UTC) - timedelta(hours=6)
    return [
        LatencyResult(
            result_id=uuid.uuid4(), probe_id=probe_id, engine="icmp", target="203.162.4.191",
            measured_at=start + timedelta(seconds=i), sent=20, received=20, loss_pct=0.0,
            rtt_min_ms=11.2, rtt_median_ms=12.5, rtt_mean_ms=12.7, rtt_max_ms=15.1, jitter_ms=0.8,
            rtts_ms=[12.5 + (i % 7) * 0.1 for _ in range(20)],
        )
        for i in range(count)
    ]  # fmt: skip


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def python_rss(code: str) -> int:
    proc = subprocess.Popen([sys.executable, "-c", code + "\nimport time; time.sleep(30)"])
    try:
        time.sleep(2.5)
        return rss_kib(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def pending(state_dir: Path) -> int:
    with sqlite3.connect(f"file:{state_dir / 'spool.sqlite3'}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM items").fetchone()[0])


async def direct_post(url: str, token: str, signed: list[ResultBase]) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bodies = [
        b'{"results":['
        + b",".join(r.model_dump_json().encode() for r in signed[i : i + BATCH])
        + b"]}"
        for i in range(0, len(signed), BATCH)
    ]
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        for body in bodies:
            async with http.post(url + "/api/v1/results", data=body, headers=headers) as resp:
                reply = await resp.json()
                assert resp.status == 200 and reply["accepted"] == len(json.loads(body)["results"])
    return time.perf_counter() - started


async def register_key(url: str, token: str) -> object:
    key = new_private_key()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + "/api/v1/register",
            json={"public_key": public_key_text(key)},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=int, default=20_000)
    parser.add_argument("--sqlite", action="store_true", help="server on embedded SQLite")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hamletnet-bench-agent-") as tmp:
        work = Path(tmp)
        influxd = None if args.sqlite else Influxd()
        if influxd is not None:
            influxd.start()
        server = ServerProcess(work)
        if influxd is not None:
            config = yaml.safe_load(server.config.read_text())
            config["influxdb"] = {"url": influxd.url, "database": "bench_agent"}
            server.config.write_text(yaml.safe_dump(config))
        server.start()
        try:
            state = work / "probe-state"
            agent = AgentProcess(
                work,
                {
                    "state_dir": str(state),
                    "schedules": {"heartbeat": {"every_s": 3600}},
                    "upload": {"every_s": 1, "batch_size": BATCH, "backoff_min_s": 0.2,
                               "backoff_max_s": 1},
                    "log_level": "WARNING",
                },
            )  # fmt: skip
            token = server.add_probe()
            agent.cli("register", "--server", server.url, "--token", token)
            key = load_key(state / "probe.key")
            backlog = [sign(r, key) for r in results("thon-a-vnpt-fiber", args.results)]
            with Spool(state / "spool.sqlite3", max_bytes=1 << 30) as spool:
                for r in backlog:
                    spool.add(r)
            size_mib = (state / "spool.sqlite3").stat().st_size / 2**20

            agent.start()
            started = time.perf_counter()
            wait_until(lambda: pending(state) == 0, 600, "the backlog to drain", step=0.05)
            drain_s = time.perf_counter() - started
            time.sleep(5)  # idle now: nothing to upload, next test in an hour
            agent_rss = rss_kib(agent.proc.pid)  # type: ignore[union-attr]
            agent.stop()

            # Reference: the same results from a bare client as another probe, same server.
            token2 = server.add_probe()
            key2 = asyncio.run(register_key(server.url, token2))
            direct = [
                sign(r, key2)  # type: ignore[arg-type]
                for r in results("thon-a-vnpt-fiber-2", args.results)
            ]
            direct_s = asyncio.run(direct_post(server.url, token2, direct))
        finally:
            server.stop()
            if influxd is not None:
                influxd.stop()

    bare = python_rss("pass")
    libs = python_rss(
        "import aiohttp, apscheduler.schedulers.asyncio, cryptography.hazmat.primitives."
        "asymmetric.ed25519, pydantic, yaml, sqlite3"
    )
    store = "SQLite" if args.sqlite else "InfluxDB 1.6"
    print(f"backlog: {args.results} signed results, spool {size_mib:.1f} MiB; server on {store}")
    print(f"agent drain:   {drain_s:6.2f} s  {args.results / drain_s:8.0f} results/s")
    print(f"direct client: {direct_s:6.2f} s  {args.results / direct_s:8.0f} results/s (reference)")
    print(f"ratio agent/direct throughput: {direct_s / drain_s:.2f}")
    print(f"idle agent RSS: {agent_rss / 1024:.1f} MiB; bare python {bare / 1024:.1f} MiB;"
          f" python with the agent's imports {libs / 1024:.1f} MiB")  # fmt: skip
    print(f"ratio idle agent/imports-only: {agent_rss / libs:.2f}")


if __name__ == "__main__":
    main()
