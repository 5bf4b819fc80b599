"""Probe agent figures: how fast a large spool backlog drains, the idle agent's memory, and (with
``--lab``, as root) a bandwidth test's peak memory and CPU against iperf3's.

    .venv/bin/python bench/agent.py [--results 20000] [--sqlite] [--lab] [--duration 10]

Starts a throw-away InfluxDB (unless --sqlite) and the real server as a process, registers a
probe, fills its spool with signed results as a long outage would, starts the real agent process
and times the drain. Reference in the same run: the same number of results posted by a bare
client loop (same batch size, one connection) to the same server, so the ratio shows what the
spool and the agent add.

Memory (issue 16 item 5, goal: idle RSS under 40 MB): the agent's resident set once idle, against
a bare Python and, as the reference, a Python that has imported exactly the modules the idle
agent has (listed by running the agent's idle path in a fresh interpreter:
``tests/collector/test_imports.py``), so the ratio is what the agent's own state adds.

``--lab`` (network namespaces, veth + tbf both ways, as ``bench/bandwidth.py``): the peak RSS
of one 1 Gb/s http test, download and upload (``hamletnet-probe measure bandwidth``: the same
engine in a process of its own, start-up included), and at 10 and 100 Mb/s the whole process's
CPU-seconds per test against ``iperf3 -c`` (same streams and duration) in the same run; goal:
within 2x iperf3's. The machine may be shared: RSS figures are reliable, CPU ratios less so.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
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
from tests.collector.test_imports import idle_modules  # noqa: E402
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


def reference_code(modules: list[str]) -> str:
    """A bare interpreter's code importing ``modules`` (those that import on their own)."""
    wanted = [m for m in modules if m not in ("__main__", "__mp_main__")]
    return (
        "import importlib, contextlib\n"
        f"for name in {wanted!r}:\n"
        "    with contextlib.suppress(Exception):\n"
        "        importlib.import_module(name)"
    )


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


def waited(argv: list[str], timeout: float) -> tuple[str, float, int]:
    """Run ``argv``; its stdout, CPU-seconds (user + system, the kernel's accounting of that one
    process: wait4) and peak RSS in KiB (its ``VmHWM``, read every 0.1 s while it runs: wait4's
    ``ru_maxrss`` would also count this bench's own size, inherited at fork)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = [0]

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                return
            hwm = [int(line.split()[1]) for line in status.splitlines() if "VmHWM" in line]
            if not hwm:  # a zombie: ended, not yet reaped
                return
            peak[0] = max(peak[0], hwm[0])
            time.sleep(0.1)
        proc.kill()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert proc.stdout is not None
    out = proc.stdout.read().decode()  # until the process closes it, i.e. ends
    watcher.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return out, usage.ru_utime + usage.ru_stime, peak[0]


def lab_figures(duration: int) -> None:
    from tests.lab.netns import Lab, lab_available

    why = lab_available()
    if why:
        print(f"lab figures skipped: {why}")
        return
    server_ip, port, iperf_port = "198.18.7.2", 8081, 5201
    with Lab() as lab:
        client, server = lab.host("bac"), lab.host("bas")
        if_client, if_server = lab.link(client, server, "198.18.7.1/24", f"{server_ip}/24")
        log = Path(tempfile.gettempdir()) / f"hamletnet-bench-agent-{lab.tag}.log"
        lab.popen(server, sys.executable, "-m", "server.cli", "target", "--listen",
                  f"{server_ip}:{port}", log=log)  # fmt: skip
        lab.popen(server, "iperf3", "-s", "-p", str(iperf_port), log=log)
        time.sleep(2)

        def ours(direction: str) -> tuple[float | None, float, int]:
            argv = lab.cmd(
                client, sys.executable, "-m", "collector.cli", "measure", "bandwidth",
                "--target", f"http://{server_ip}:{port}", "--option", f"direction={direction}",
                "--option", f"duration_s={duration}", "--option", "slot=false", "--json",
            )  # fmt: skip
            out, cpu_s, peak = waited(argv, duration * 4 + 60)
            result = json.loads(out)
            return result.get(f"{direction}_mbps"), cpu_s, peak

        def iperf3(direction: str) -> tuple[float | None, float, int]:
            argv = lab.cmd(
                client, "iperf3", "-c", server_ip, "-p", str(iperf_port), "-P", "3",
                "-t", str(duration), "-O", "1", "-J", *(["-R"] if direction == "download" else []),
            )  # fmt: skip
            out, cpu_s, peak = waited(argv, duration + 30)
            end = json.loads(out).get("end", {})
            bps = end.get("sum_received", {}).get("bits_per_second")
            return (bps / 1e6 if bps else None), cpu_s, peak

        print(f"lab: veth + tbf both ways, {duration} s per test, 3 streams; whole process")
        print(f"{'Mb/s':>5} {'dir':<8} {'ours Mb/s':>9} {'iperf3':>8} {'CPU-s ours':>10}"
              f" {'iperf3':>7} {'ratio':>6} {'peak RSS ours':>14} {'iperf3':>8}")  # fmt: skip
        for rate in (10, 100, 1000):
            lab.shape(server, if_server, rate)
            lab.shape(client, if_client, rate)
            for direction in ("download", "upload"):
                o_mbps, o_cpu, o_rss = ours(direction)
                i_mbps, i_cpu, i_rss = iperf3(direction)
                print(
                    f"{rate:>5} {direction:<8} {o_mbps or 0:9.1f} {i_mbps or 0:8.1f}"
                    f" {o_cpu:10.2f} {i_cpu:7.2f} {o_cpu / i_cpu if i_cpu else 0:6.1f}"
                    f" {o_rss / 1024:10.1f} MiB {i_rss / 1024:4.1f} MiB",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=int, default=20_000)
    parser.add_argument("--sqlite", action="store_true", help="server on embedded SQLite")
    parser.add_argument("--lab", action="store_true", help="bandwidth tests in namespaces (root)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per lab test")
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
            modules = idle_modules(agent.config)

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
    libs = python_rss(reference_code(modules))
    store = "SQLite" if args.sqlite else "InfluxDB 1.6"
    print(f"backlog: {args.results} signed results, spool {size_mib:.1f} MiB; server on {store}")
    print(f"agent drain:   {drain_s:6.2f} s  {args.results / drain_s:8.0f} results/s")
    print(f"direct client: {direct_s:6.2f} s  {args.results / direct_s:8.0f} results/s (reference)")
    print(f"ratio agent/direct throughput: {direct_s / drain_s:.2f}")
    print(f"idle agent RSS: {agent_rss / 1024:.1f} MiB ({agent_rss / 1000:.1f} MB; goal < 40 MB);"
          f" bare python {bare / 1024:.1f} MiB; python with the idle agent's"
          f" {len(modules)} modules {libs / 1024:.1f} MiB (reference)")  # fmt: skip
    print(f"ratio idle agent/reference: {agent_rss / libs:.2f}")
    if args.lab:
        lab_figures(args.duration)


if __name__ == "__main__":
    main()
