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

``--lab`` (network namespaces, veth + tbf both ways, as ``bench/bandwidth.py``), at 10 and 100
Mb/s, download and upload: the CPU-seconds per test of the real agent (``hamletnet-probe run``,
in the client namespace, with an ingest server there) running a bandwidth schedule against the
lab target: ``/proc/PID/stat`` read around each scheduled test (from 1 s before the scheduler
fires it until its result is uploaded, found from ``status.json``), less the agent's idle CPU
over the same wall time; the first test of each agent includes importing the engine. Goal
(issue 16 item 5): within 2x ``iperf3 -c``'s (same streams and duration, whole process, same
run). Then the old figure, start-up included: a fresh ``hamletnet-probe measure bandwidth``
process per test, with its peak RSS, at 10, 100 and 1000 Mb/s. The machine may be shared: RSS
figures are reliable, CPU ratios less so (iperf3's own CPU varies from run to run). Prints
figures; asserts nothing.
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import yaml  # noqa: E402

from collector.identity import load_key  # noqa: E402
from collector.spool import Spool  # noqa: E402
from probes.models import LatencyResult, ResultBase  # noqa: E402
from probes.signing import new_private_key, public_key_text, sign  # noqa: E402
from tests.collector.processes import (  # noqa: E402
    AgentProcess,
    ServerProcess,
    wait_until,
)
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


def agent_cpu_s(pid: int) -> float:
    """CPU-seconds the process has used so far: user + system of all its threads, and of any
    children it has waited for (``/proc/PID/stat`` fields 14-17, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@dataclass
class AgentTest:
    """One scheduled test inside the running agent: its figure and what it cost the process."""

    mbps: float | None
    cpu_s: float  # over the test's wall time, the idle rate of that wall time subtracted
    wall_s: float


def _status(state: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((state / "status.json").read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return {}
    return data


def _next_bandwidth(state: Path, after: datetime) -> datetime | None:
    when = _status(state).get("next_runs", {}).get("bandwidth")
    at = datetime.fromisoformat(when) if when else None
    return at if at is not None and at > after else None


def _sleep_until(at: datetime) -> None:
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))


def agent_tests(
    lab: Any, client: Any, work: Path, target: str, direction: str, duration: int, tests: int
) -> tuple[float, list[AgentTest]]:
    """The real agent (``hamletnet-probe run``) in the client namespace, a bandwidth schedule
    against ``target``; its idle CPU rate (CPU-s per s) and each scheduled test's CPU.

    Test boundaries come from what the agent writes anyway: ``status.json``'s ``next_runs``
    says when the scheduler fires the test (its window starts 1 s before), and the test is over
    once ``last_runs`` shows it and the upload of its result is acknowledged (so signing, the
    spool and the upload count too). The idle rate is measured over the same wall time with no
    test, just before the first one, and subtracted.
    """
    state = work / f"state-{direction}"
    gap_s = duration + 25  # one test (warm-up <= 4 s, the 5 s quiet-line window) and the idle
    work.mkdir(parents=True)
    ingest = ServerProcess(work)  # its files; started below in the client namespace
    argv, env = ingest.command()
    server = lab.popen(client, *argv, log=work / "ingest.log", env=env)
    agent = AgentProcess(
        work,
        {
            "state_dir": str(state),
            "schedules": {
                "heartbeat": {"every_s": 3600},
                "bandwidth": {"every_s": gap_s, "timeout_s": 60, "targets": [target],
                              "options": {"direction": direction, "duration_s": duration}},
            },
            "upload": {"every_s": 60},
            # This machine is shared: its CPU is not the line's cross-traffic (the check still
            # runs its 5 s window, as on a Pi).
            "cross_traffic": {"max_cpu_percent": 100, "give_up_after_s": 0},
            "log_level": "WARNING",
        },
        prefix=lab.cmd(client),
    )  # fmt: skip
    try:
        token = ingest.add_probe()
        register = ("register", "--server", ingest.url, "--token", token)
        wait_until(
            lambda: agent.cli(*register, check=False).returncode == 0, 30, "the server", step=0.05
        )
        agent.start()
        assert agent.proc is not None
        pid = agent.proc.pid  # `ip netns exec` execs the agent: the same process
        first = wait_until(
            lambda: _next_bandwidth(state, datetime.now(UTC)), 30, "next_runs", step=0.05
        )
        idle_s = min(duration + 8.0, (first - datetime.now(UTC)).total_seconds() - 4)
        time.sleep(2)  # the start-up heartbeat's upload is over
        cpu0, wall0 = agent_cpu_s(pid), time.perf_counter()
        time.sleep(idle_s)
        idle_rate = (agent_cpu_s(pid) - cpu0) / (time.perf_counter() - wall0)
        measured: list[AgentTest] = []
        fires = first
        for _ in range(tests):
            _sleep_until(fires - timedelta(seconds=1))
            acked = _status(state).get("upload", {}).get("acknowledged", 0)
            cpu0, wall0 = agent_cpu_s(pid), time.perf_counter()

            def done(acked: int = acked, fires: datetime = fires) -> bool:
                status = _status(state)
                ran = status.get("last_runs", {}).get("bandwidth")
                uploaded = status.get("upload", {}).get("acknowledged", 0) > acked
                return bool(ran and datetime.fromisoformat(ran) > fires and uploaded)

            wait_until(done, gap_s, "the test and its upload", step=0.05)
            wall = time.perf_counter() - wall0
            cpu = agent_cpu_s(pid) - cpu0 - idle_rate * wall
            payload = _last_result(ingest)
            measured.append(AgentTest(payload.get(f"{direction}_mbps"), cpu, wall))
            fires = wait_until(
                lambda f=fires: _next_bandwidth(state, f), 30, "next_runs", step=0.05
            )
        return idle_rate, measured
    finally:
        if agent.alive():
            agent.stop()
        server.terminate()
        server.wait(timeout=20)


def _last_result(ingest: ServerProcess) -> dict[str, Any]:
    rows = [r for r in ingest.stored() if r.get("engine") == "http"]
    return rows[-1] if rows else {}


def lab_figures(duration: int, tests: int) -> None:
    from tests.lab.netns import Lab, lab_available

    why = lab_available()
    if why:
        print(f"lab figures skipped: {why}")
        return
    server_ip, port, iperf_port = "198.18.7.2", 8081, 5201
    target = f"http://{server_ip}:{port}"
    with Lab() as lab, tempfile.TemporaryDirectory(prefix="hamletnet-bench-lab-") as tmp:
        client, server = lab.host("bac"), lab.host("bas")
        if_client, if_server = lab.link(client, server, "198.18.7.1/24", f"{server_ip}/24")
        log = Path(tempfile.gettempdir()) / f"hamletnet-bench-agent-{lab.tag}.log"
        lab.popen(server, sys.executable, "-m", "server.cli", "target", "--listen",
                  f"{server_ip}:{port}", log=log)  # fmt: skip
        lab.popen(server, "iperf3", "-s", "-p", str(iperf_port), log=log)
        time.sleep(2)

        def fresh(direction: str) -> tuple[float | None, float, int]:
            argv = lab.cmd(
                client, sys.executable, "-m", "collector.cli", "measure", "bandwidth",
                "--target", target, "--option", f"direction={direction}",
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

        print(f"lab: veth + tbf both ways, {duration} s per test, 3 streams; CPU-seconds of the"
              f" whole process per test; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        print("in the agent: the running agent's scheduled tests (its idle rate subtracted)")
        print(f"{'Mb/s':>5} {'dir':<8} {'test':>4} {'agent Mb/s':>10} {'CPU-s':>6}"
              f" {'iperf3 Mb/s':>11} {'CPU-s':>6} {'ratio':>6}  (agent idle CPU-s/s)")  # fmt: skip
        for rate in (10, 100):
            lab.shape(server, if_server, rate)
            lab.shape(client, if_client, rate)
            for direction in ("download", "upload"):
                idle_rate, runs = agent_tests(
                    lab, client, Path(tmp) / f"{rate}-{direction}", target, direction,
                    duration, tests,
                )  # fmt: skip
                i_mbps, i_cpu, _ = iperf3(direction)
                for n, run in enumerate(runs, 1):
                    print(
                        f"{rate:>5} {direction:<8} {n:>4} {run.mbps or 0:10.1f} {run.cpu_s:6.2f}"
                        f" {i_mbps or 0:11.1f} {i_cpu:6.2f} {run.cpu_s / i_cpu:6.1f}"
                        f"  ({idle_rate:.4f}; test wall {run.wall_s:.1f} s)",
                        flush=True,
                    )
        print("start-up included: a fresh `hamletnet-probe measure bandwidth` process per test")
        print(f"{'Mb/s':>5} {'dir':<8} {'ours Mb/s':>9} {'iperf3':>8} {'CPU-s ours':>10}"
              f" {'iperf3':>7} {'ratio':>6} {'peak RSS ours':>14} {'iperf3':>8}")  # fmt: skip
        for rate in (10, 100, 1000):
            lab.shape(server, if_server, rate)
            lab.shape(client, if_client, rate)
            for direction in ("download", "upload"):
                o_mbps, o_cpu, o_rss = fresh(direction)
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
    parser.add_argument("--tests", type=int, default=2, help="scheduled tests per agent (lab)")
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
        lab_figures(args.duration, args.tests)


if __name__ == "__main__":
    main()
