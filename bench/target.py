"""The measurement target under N concurrent probes, beside ``iperf3 -s`` in the same run.

    sudo .venv/bin/python bench/target.py [--probes 1,2,4] [--rate 1000] [--duration 5]

One veth link between a client namespace and a target namespace, shaped with tbf at ``--rate``
Mb/s both ways. For each N and direction, N http-engine probes (3 streams each, slot leases on:
the target admits up to max(N) tests at once) run at the same time against one target process;
then N ``iperf3 -c -P 3`` clients against N ``iperf3 -s`` servers (one server serves one test).
Printed per row: the aggregate goodput (the sum of the clients' own figures), its ratio to the
tbf ceiling (rate × 1448/1514, tbf counts frames without preamble and gap) and to iperf3's, and
the server side's CPU-seconds per Gb moved: ``/proc/PID/stat`` utime + stime of the target
process (or of the N iperf3 servers) over the round, ÷ the bits the target's interface moved
in that round (``/sys/class/net`` counters, warm-up and start-up included for both tools).

The machine is shared (2 cores, other work running): the probes, the target and iperf3 compete
for the same cores, so the figures are a floor for the target, not its capacity. Prints figures;
asserts nothing. Needs root (network namespaces, tc).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lab.netns import Host, Lab, lab_available  # noqa: E402

PYTHON = sys.executable
SERVER, CLIENT = "198.18.6.2", "198.18.6.1"
TARGET_PORT, IPERF_BASE_PORT = 8081, 5301
STREAMS = 3
#: Goodput of a tbf-shaped link per Mb/s of its rate: TCP payload ÷ frame as tbf counts it.
TBF_GOODPUT = 1448 / 1514
#: The target as the bench runs it: admits up to max(--probes) tests; a budget far above the link,
#: so the bench measures the data path, not the admission rule.
TARGET_LAUNCHER = """
import sys
from aiohttp import web
from server.target.app import create_target_app
app = create_target_app(max_tests=int(sys.argv[1]), max_aggregate_mbps=100_000.0)
web.run_app(app, host=sys.argv[2], port=int(sys.argv[3]), access_log=None, print=None)
"""


@dataclass
class Round:
    mbps: float | None  # aggregate goodput; None when any client failed
    cpu_s_per_gbit: float | None
    notes: str


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds (proc(5): fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def moved_bytes(lab: Lab, host: Host, ifname: str) -> int:
    out = lab.run(host, "cat", f"/sys/class/net/{ifname}/statistics/tx_bytes",
                  f"/sys/class/net/{ifname}/statistics/rx_bytes").stdout.split()  # fmt: skip
    return int(out[0]) + int(out[1])


def run_round(lab: Lab, client: Host, server: Host, ifname: str, pids: list[int],
              argvs: list[list[str]], timeout: float) -> tuple[list[str], float, int]:  # fmt: skip
    """Start every client at once; returns their outputs, the servers' CPU-seconds and the bytes
    the target's interface moved meanwhile."""
    cpu_before = sum(proc_cpu_s(pid) for pid in pids)
    bytes_before = moved_bytes(lab, server, ifname)
    procs = [subprocess.Popen(lab.cmd(client, *argv), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for argv in argvs]  # fmt: skip
    outputs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    cpu = sum(proc_cpu_s(pid) for pid in pids) - cpu_before
    return outputs, cpu, moved_bytes(lab, server, ifname) - bytes_before


def per_gbit(cpu_s: float, moved: int) -> float | None:
    return cpu_s / (moved * 8 / 1e9) if moved else None


def http_round(lab: Lab, client: Host, server: Host, ifname: str, target_pid: int, n: int,
               direction: str, duration: int) -> Round:  # fmt: skip
    argv = [PYTHON, "-m", "collector.cli", "measure", "bandwidth", "--engine", "http",
            "--target", f"http://{SERVER}:{TARGET_PORT}", "--option", f"direction={direction}",
            "--option", f"duration_s={duration}", "--json"]  # fmt: skip
    outputs, cpu, moved = run_round(lab, client, server, ifname, [target_pid], [argv] * n,
                                    timeout=duration * 6 + 120)  # fmt: skip
    total, alone, failures = 0.0, 0, []
    for out in outputs:
        try:
            result: dict[str, Any] = json.loads(out)
        except ValueError:
            failures.append("no JSON")
            continue
        if result.get("status") != "ok":
            failures.append(str(result.get("error")))
            continue
        total += result[f"{direction}_mbps"]
        alone += result.get("ran_alone") is True
    notes = f"ran_alone {alone}/{n}" + (f"; failed: {'; '.join(failures)}" if failures else "")
    return Round(None if failures else total, per_gbit(cpu, moved), notes)


def iperf3_round(lab: Lab, client: Host, server: Host, ifname: str, server_pids: list[int],
                 n: int, direction: str, duration: int) -> Round:  # fmt: skip
    argvs = [["iperf3", "-c", SERVER, "-p", str(IPERF_BASE_PORT + i), "-P", str(STREAMS),
              "-t", str(duration), "-O", "1", "-J", *(["-R"] if direction == "download" else [])]
             for i in range(n)]  # fmt: skip
    outputs, cpu, moved = run_round(lab, client, server, ifname, server_pids[:n], argvs,
                                    timeout=duration * 4 + 60)  # fmt: skip
    total, failures = 0.0, []
    for out in outputs:
        try:
            doc = json.loads(out)
            total += doc["end"]["sum_received"]["bits_per_second"] / 1e6
        except (ValueError, KeyError):
            failures.append("iperf3 gave no result")
    return Round(None if failures else total, per_gbit(cpu, moved), "; ".join(failures))


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", default="1,2,4", help="concurrent probes per round")
    parser.add_argument("--rate", type=float, default=1000.0, help="tbf rate, Mb/s")
    parser.add_argument("--duration", type=int, default=5, help="measured seconds per test")
    args = parser.parse_args()
    why = lab_available()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    counts = [int(n) for n in args.probes.split(",")]
    ceiling = args.rate * TBF_GOODPUT
    with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        client, server = lab.host("tgc"), lab.host("tgs")
        if_c, if_s = lab.link(client, server, f"{CLIENT}/24", f"{SERVER}/24")
        lab.shape(client, if_c, rate_mbit=args.rate)
        lab.shape(server, if_s, rate_mbit=args.rate)
        log = Path(tmp) / "servers.log"
        target = lab.popen(server, PYTHON, "-c", TARGET_LAUNCHER, str(max(counts)), SERVER,
                           str(TARGET_PORT), log=log)  # fmt: skip
        iperfs = [lab.popen(server, "iperf3", "-s", "-p", str(IPERF_BASE_PORT + i), log=log)
                  for i in range(max(counts))]  # fmt: skip
        time.sleep(3)
        print(f"tbf {args.rate:g} Mbit/s both ways, ceiling {ceiling:.0f} Mb/s;"
              f" {STREAMS} streams per client, {args.duration} s; machine: {os.cpu_count()}"
              " cores, shared with other work")  # fmt: skip
        print(f"{'N':>2} {'dir':<8} {'target':>7} {'iperf3':>7} {'t/ceil':>6} {'t/iperf3':>8}"
              f" {'CPU s/Gb target':>15} {'iperf3':>7}  notes")  # fmt: skip
        for n in counts:
            for direction in ("download", "upload"):
                ours = http_round(lab, client, server, if_s, target.pid, n, direction,
                                  args.duration)  # fmt: skip
                ref = iperf3_round(lab, client, server, if_s, [p.pid for p in iperfs], n,
                                   direction, args.duration)  # fmt: skip
                vs_ceiling = ours.mbps / ceiling if ours.mbps else None
                vs_iperf = ours.mbps / ref.mbps if ours.mbps and ref.mbps else None
                print(f"{n:>2} {direction:<8} {fmt(ours.mbps, '7.0f')} {fmt(ref.mbps, '7.0f')}"
                      f" {fmt(vs_ceiling, '6.3f')} {fmt(vs_iperf, '8.3f')}"
                      f" {fmt(ours.cpu_s_per_gbit, '15.3f')} {fmt(ref.cpu_s_per_gbit, '7.3f')}"
                      f"  {ours.notes} {ref.notes}".rstrip(), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
