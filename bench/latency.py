"""ICMP engine against iputils ping on the same lab path: RTT agreement and CPU per packet.

    .venv/bin/python bench/latency.py [--packets 200] [--rounds 5] [--interval 0.01] [--delay-ms 0]

Builds a two-namespace lab (veth, no shaping), then per round runs iputils ``ping`` and the
probe's ICMP engine one after the other from the client namespace to the same address: the
kernel's own echo replies, or with ``--delay-ms`` the lab responder answering that much later.
Both drop their first reply (the engine's warm-up). RTT: each tool's median and spread (p25-p75,
p5-p95) over all rounds, and the per-round difference of medians. CPU: user+system seconds per
packet, from getrusage: ping as a whole process (it is a small C program), the engine both inside
the measurement alone and as a whole ``python`` process (interpreter start and imports included).
Must run as root. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lab.netns import Lab  # noqa: E402
from tests.lab.probe_runs import ENV, ping_rtts_ms, start_responder, stop  # noqa: E402

TARGET = "198.18.7.2"

# Runs inside the client namespace: times the engine alone with getrusage(RUSAGE_SELF).
ENGINE = """
import asyncio, json, resource, sys
from probes.latency import icmp
from probes.latency.options import LatencyOptions
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
options = LatencyOptions(count=int(sys.argv[2]), interval_s=float(sys.argv[3]))
before = cpu()
(found,) = asyncio.run(icmp.measure([sys.argv[1]], options))
rtts_ms, sent = found.fields["rtts_ms"], found.fields["sent"]
print(json.dumps({"cpu_s": cpu() - before, "rtts_ms": rtts_ms, "sent": sent}))
"""


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()

    ours_all: list[float] = []
    ping_all: list[float] = []
    diffs: list[float] = []
    cpu = {"ping": 0.0, "engine": 0.0, "python": 0.0}
    packets = {"ping": 0, "ours": 0}
    with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        cli, srv = lab.host("cli"), lab.host("srv")
        lab.link(cli, srv, "198.18.7.1/24", f"{TARGET}/24")
        responder = None
        if args.delay_ms:
            lab.run(srv, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
            responder = start_responder(lab, srv, Path(tmp) / "icmp.log", "icmp",
                                        "--delay-ms", str(args.delay_ms))  # fmt: skip
        for _ in range(args.rounds):
            before = children_cpu_s()
            ping = ping_rtts_ms(lab, cli, TARGET, args.packets, args.interval)
            cpu["ping"] += children_cpu_s() - before
            packets["ping"] += args.packets + 1

            before = children_cpu_s()
            out = subprocess.run(
                lab.cmd(cli, sys.executable, "-c", ENGINE, TARGET, str(args.packets),
                        str(args.interval)),
                capture_output=True, text=True, check=True, env=ENV, cwd=ROOT,
            ).stdout  # fmt: skip
            cpu["python"] += children_cpu_s() - before
            ours = json.loads(out)
            cpu["engine"] += ours["cpu_s"]
            packets["ours"] += ours["sent"] + 1

            ours_all += ours["rtts_ms"]
            ping_all += ping
            diffs.append(statistics.median(ours["rtts_ms"]) - statistics.median(ping))
        if responder is not None:
            stop(responder)

    path = "kernel echo replies" if not args.delay_ms else f"responder, +{args.delay_ms} ms"
    print(f"lab path: veth between two namespaces, {path}; {args.rounds} rounds x"
          f" {args.packets} packets at {args.interval * 1000:g} ms intervals per tool")  # fmt: skip
    print(f"{'':24} {'median':>9} {'p25-p75':>17} {'p5-p95':>17} {'replies':>8}")
    for name, rtts in (("hamletnet icmp (ms)", ours_all), ("iputils ping (ms)", ping_all)):
        iqr = f"{pct(rtts, 25):8.4f}-{pct(rtts, 75):<8.4f}"
        p5_95 = f"{pct(rtts, 5):8.4f}-{pct(rtts, 95):<8.4f}"
        print(f"{name:24} {statistics.median(rtts):9.4f} {iqr} {p5_95} {len(rtts):8d}")
    print(
        f"median difference, ours - ping, per round (ms): "
        f"{', '.join(f'{d:+.4f}' for d in diffs)}; median {statistics.median(diffs):+.4f}"
    )
    print("CPU per packet sent (microseconds, user+system):")
    print(f"  iputils ping, whole process        {cpu['ping'] / packets['ping'] * 1e6:8.1f}")
    print(f"  hamletnet icmp, engine only        {cpu['engine'] / packets['ours'] * 1e6:8.1f}")
    print(f"  hamletnet icmp, whole python run   {cpu['python'] / packets['ours'] * 1e6:8.1f}"
          f"  (interpreter start and imports: {cpu['python'] - cpu['engine']:.2f} s"
          f" over {args.rounds} runs)")  # fmt: skip


if __name__ == "__main__":
    main()
