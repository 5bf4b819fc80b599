"""``hamletnet-probe``: the agent on the Raspberry Pi (scheduling and upload come with the agent
issue; today it can take one measurement and print it)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from probes import heartbeat
from probes.latency.tcp_connect import measure_tcp_connect
from probes.models import ResultBase

VERSION = "0.1.0"


async def _measure(args: argparse.Namespace) -> ResultBase:
    if args.kind == "heartbeat":
        return heartbeat.snapshot(args.probe_id, agent_version=VERSION)
    host, _, port = (args.target or "").rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit("hamletnet-probe: latency needs --target HOST:PORT (TCP connect)")
    return await measure_tcp_connect(args.probe_id, host.strip("[]"), int(port))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hamletnet-probe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hamletnet-probe {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    measure = sub.add_parser("measure", help="run one test now and print its result")
    measure.add_argument("kind", choices=["heartbeat", "latency"])
    measure.add_argument("--target", help="what to measure against (latency: HOST:PORT)")
    measure.add_argument("--probe-id", default="local", help="probe id to put in the result")
    measure.add_argument("--json", action="store_true", help="print one JSON object (default)")
    args = parser.parse_args(argv)
    result = asyncio.run(_measure(args))
    print(result.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
