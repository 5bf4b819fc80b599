"""Ingest throughput: simulated probes post result batches to the real server, backed by a real
InfluxDB, over real HTTP on loopback; then the same results go straight to InfluxDB's ``/write``
as the reference.

    .venv/bin/python bench/ingest.py [--probes N] [--batch B] [--seconds S]

A throw-away ``influxd`` (``tests/influxd.py``) and ``hamletnet-server run`` each run as their own
process, so the load generator shares neither their CPU time slice nor their event loop. Prints
figures only; stops by itself after ``S`` seconds of load plus the reference run.

``BENCH_PROFILE_SERVER=FILE`` runs the server under cProfile and leaves its stats in ``FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from probes.models import Access, ValidationLimits, parse_result, unbounded_limits  # noqa: E402
from probes.signing import (  # noqa: E402
    canonical_bytes,
    canonical_time,
    new_private_key,
    public_key_text,
)
from server.storage.base import ProbeIdentity, StoredResult  # noqa: E402
from server.storage.lineprotocol import result_to_line  # noqa: E402
from tests.influxd import Influxd, free_port  # noqa: E402

HAMLET = "thon-bench"
ISP = "VNPT"
DATABASE = "hamletnet_bench"
DIRECT_DATABASE = "direct_bench"
KINDS = ("bandwidth", "latency")
SERVER_START_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 60.0
#: measured_at is spread over this window before the start of the load.
WINDOW = timedelta(hours=1)
#: Step between one probe's successive measured_at values, in microseconds: coprime with the
#: window (3.6e9 µs = 2¹⁰·3²·5⁸), so every result of a probe gets its own instant (two results of
#: one probe at the same instant would be one InfluxDB point, and the COUNT would come up short).
STEP_US = 7_919_729
#: Step between one probe's results in the default "backlog" order (oldest first): 1 ms keeps
#: 3.6 million results of one probe inside the window.
BACKLOG_STEP_US = 1000
#: "backlog" (each probe's results oldest first, as the agent uploads) or "random" (spread over
#: the window in a scrambled order: a stress case for the duplicate check).
ORDER = {"mode": "backlog"}
_WINDOW_US = int(WINDOW / timedelta(microseconds=1))
_MARK = "@@placeholder@@"
_SAMPLE_ID = "00000000-0000-4000-8000-000000000000"
_SAMPLE_AT = datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)

#: One result as sent: (variant index, result_id, measured_at, signature).
Sent = tuple[int, str, str, str]


def _json_time(value: datetime) -> str:
    """A time as the canonical form holds it (docs/canonical-form.md)."""
    return canonical_time(value)


@dataclass
class Figures:
    """What one load run measured."""

    results: int = 0
    batches: int = 0
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    not_accepted: int = 0
    failed_requests: int = 0
    first_problem: str | None = None  # the first failed request or item not accepted, for a hint

    def note(self, problem: str) -> None:
        if self.first_problem is None:
            self.first_problem = problem[:300]

    def rate(self) -> float:
        return self.results / self.elapsed_s if self.elapsed_s else 0.0


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation), of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


class ResultMaker:
    """Realistic signed results of one probe: alternately a bandwidth and a latency test, each
    with a fresh UUID and its own measured_at, spread over the past hour.

    The measurements come from a pool of variants whose wire JSON and canonical (signed) form are
    serialised once, so that making a result costs the load generator little more than its
    Ed25519 signature (two cores are shared by it, the server and InfluxDB). Each variant's
    template is checked once against ``probes.signing.canonical_bytes``.
    """

    def __init__(
        self,
        probe_id: str,
        key: Ed25519PrivateKey,
        start: datetime,
        rng: random.Random,
        variants: int = 64,
    ) -> None:
        self.probe_id = probe_id
        self._key = key
        self._start = start
        self._rng = rng
        self._count = 0
        self._variants = [
            self._bandwidth() if i % 2 == 0 else self._latency() for i in range(variants)
        ]
        self._wire: list[list[str]] = []
        self._canonical: list[list[bytes]] = []
        for index, variant in enumerate(self._variants):
            text = json.dumps(
                {"result_id": _MARK, "probe_id": probe_id, "measured_at": _MARK,
                 "signature": _MARK, **variant}
            )  # fmt: skip
            self._wire.append(text.split(_MARK))
            self._canonical.append(self._canonical_template(variant))
            self._check(index)

    def _canonical_template(self, variant: dict[str, Any]) -> list[bytes]:
        """The canonical bytes cut around measured_at and result_id (sorted keys: in that
        order)."""
        sample = {"result_id": _SAMPLE_ID, "probe_id": self.probe_id,
                  "measured_at": _SAMPLE_AT.isoformat(), **variant}  # fmt: skip
        canonical = canonical_bytes(parse_result(sample, unbounded_limits()))
        before, _, rest = canonical.partition(_json_time(_SAMPLE_AT).encode())
        middle, _, after = rest.partition(_SAMPLE_ID.encode())
        return [before, middle, after]

    def _check(self, index: int) -> None:
        record = self._make(index, self._start - timedelta(minutes=5, microseconds=7))
        (item,) = self.rebuild([record])
        result = parse_result({**item, "signature": None}, unbounded_limits())
        if self._canonical_bytes(index, record[1], record[2]) != canonical_bytes(result):
            raise RuntimeError("the bench's canonical template differs from probes.signing's")

    def _canonical_bytes(self, index: int, result_id: str, measured_at: str) -> bytes:
        before, middle, after = self._canonical[index]
        at = _json_time(datetime.fromisoformat(measured_at)).encode()
        return before + at + middle + result_id.encode() + after

    def batch(self, size: int) -> tuple[bytes, list[Sent]]:
        """The request body of ``size`` new results, and what it holds (``rebuild`` turns that
        back into the items)."""
        records = [self._next() for _ in range(size)]
        wire = self._wire
        texts = [
            f"{wire[i][0]}{rid}{wire[i][1]}{at}{wire[i][2]}{sig}{wire[i][3]}"
            for i, rid, at, sig in records
        ]
        return ('{"results":[' + ",".join(texts) + "]}").encode(), records

    def rebuild(self, records: list[Sent]) -> list[dict[str, Any]]:
        return [
            {"result_id": rid, "probe_id": self.probe_id, "measured_at": at, "signature": sig,
             **self._variants[i]}
            for i, rid, at, sig in records
        ]  # fmt: skip

    def _next(self) -> Sent:
        k = self._count
        self._count += 1
        if ORDER["mode"] == "backlog":
            # What an agent sends: its spool oldest first, so measured_at only grows.
            measured_at = self._start - WINDOW + timedelta(microseconds=1 + k * BACKLOG_STEP_US)
        else:
            offset_us = (k * STEP_US) % _WINDOW_US
            measured_at = self._start - timedelta(microseconds=1 + offset_us)
        return self._make(k % len(self._variants), measured_at)

    def _make(self, index: int, measured_at: datetime) -> Sent:
        result_id = str(uuid.uuid4())
        at = measured_at.isoformat()
        signature = self._key.sign(self._canonical_bytes(index, result_id, at))
        return (index, result_id, at, base64.b64encode(signature).decode("ascii"))

    def _bandwidth(self) -> dict[str, Any]:
        rng = self._rng
        down = rng.uniform(60.0, 95.0)
        up = rng.uniform(20.0, 40.0)
        samples_down = [round(rng.gauss(down, 3.0) % 100, 2) for _ in range(40)]
        samples_up = [round(rng.gauss(up, 2.0) % 50, 2) for _ in range(40)]
        return {
            "kind": "bandwidth",
            "engine": "http",
            "target": "http://speedtest.vnpt.vn:8080/",
            "family": "ipv4",
            "streams": 4,
            "duration_ms": round(rng.uniform(20_500, 21_500), 1),
            "download_mbps": round(down, 2),
            "upload_mbps": round(up, 2),
            "download_bytes": int(down * 1.25e6 * 10),
            "upload_bytes": int(up * 1.25e6 * 10),
            "download_duration_ms": 10_000.0,
            "upload_duration_ms": 10_000.0,
            "download_samples_mbps": samples_down,
            "upload_samples_mbps": samples_up,
            "sample_interval_ms": 250.0,
            "idle_latency_ms": round(rng.uniform(3.0, 8.0), 2),
            "loaded_latency_down_ms": round(rng.uniform(20.0, 60.0), 2),
            "loaded_latency_up_ms": round(rng.uniform(20.0, 80.0), 2),
            "cpu_percent": round(rng.uniform(10.0, 40.0), 1),
            "cpu_limited": False,
            "host_limited": False,
            "ran_alone": True,
            "link_speed_mbps": 1000.0,
            "line_rate_mbps": 100.0,
            "mss_bytes": 1448,
            "retrans_bytes": rng.randrange(0, 200_000),
            "min_rtt_ms": round(rng.uniform(3.0, 6.0), 2),
        }

    def _latency(self) -> dict[str, Any]:
        rng = self._rng
        rtts = [round(rng.uniform(20.0, 35.0), 2) for _ in range(20)]
        received = rng.choice((20, 20, 20, 19))
        rtts = rtts[:received]
        ordered = sorted(rtts)
        jitter = sum(abs(b - a) for a, b in itertools.pairwise(rtts)) / (received - 1)
        return {
            "kind": "latency",
            "engine": "icmp",
            "target": "8.8.8.8",
            "method": "icmp",
            "family": "ipv4",
            "duration_ms": round(rng.uniform(19_000, 20_000), 1),
            "sent": 20,
            "received": received,
            "loss_pct": (20 - received) * 5.0,
            "rtt_min_ms": ordered[0],
            "rtt_median_ms": ordered[len(ordered) // 2],
            "rtt_mean_ms": round(sum(rtts) / len(rtts), 3),
            "rtt_max_ms": ordered[-1],
            "jitter_ms": round(jitter, 3),
            "rtts_ms": rtts,
        }


@contextmanager
def hamletnet_server(
    influx_url: str, workdir: Path, admin_token: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``hamletnet-server run`` as a subprocess on a free loopback port; yields its base URL and
    the process. Set ``BENCH_PROFILE_SERVER=FILE`` to run it under cProfile."""
    port = free_port()
    config = workdir / "server.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen_host": "127.0.0.1",
                "listen_port": port,
                "data_dir": str(workdir / "data"),
                "influxdb": {"url": influx_url, "database": DATABASE},
                "limits": {
                    "requests_per_s": 1_000_000,
                    "burst": 1_000_000,
                    "max_body_bytes": 64 * 1024 * 1024,
                    "max_batch_items": 100_000,
                },
                "hamlets": [{"code": HAMLET, "name": "Thôn Đo Thử"}],
                "log_level": "WARNING",  # no access log: it would be measured too
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    # Our own HAMLETNET_* only: the server refuses variables it does not know.
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("HAMLETNET_")}
    env["HAMLETNET_ADMIN_TOKEN"] = admin_token
    command = [
        str(Path(sys.executable).parent / "hamletnet-server"),
        "run",
        "--config",
        str(config),
    ]
    profile = os.environ.get("BENCH_PROFILE_SERVER")
    if profile:  # the stats are written when the server exits on SIGINT
        command = [sys.executable, "-m", "cProfile", "-o", profile, *command]
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(_wait_healthy(url, proc, log_path))
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # run_app shuts down cleanly
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


async def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                async with session.get(f"{url}/healthz") as reply:
                    if reply.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    tail = await asyncio.to_thread(log_path.read_text, encoding="utf-8", errors="replace")
    raise RuntimeError(f"hamletnet-server did not become healthy at {url}:\n{tail[-3000:]}")


class CpuMeter:
    """CPU seconds (user + system) used since it was made, per process, read from /proc."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self._pids = pids
        self._before = self._now()

    def _now(self) -> dict[str, float | None]:
        own = os.times()
        now: dict[str, float | None] = {"load generator": own.user + own.system}
        for name, pid in self._pids.items():
            now[name] = _process_cpu_s(pid)
        return now

    def used(self) -> dict[str, float | None]:
        used: dict[str, float | None] = {}
        for name, now in self._now().items():
            start = self._before[name]
            used[name] = None if now is None or start is None else now - start
        return used


def _process_cpu_s(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def register_probes(
    session: aiohttp.ClientSession, url: str, token: str, n: int
) -> list[dict[str, Any]]:
    """``n`` probes through the admin API, each with the signing key it then registers with its
    own token (as ``hamletnet-probe register`` does); ``key`` is added to each reply."""
    probes = []
    for i in range(n):
        body = {"hamlet": HAMLET, "isp": ISP, "access": "fiber", "probe_id": f"bench-{i:03d}"}
        async with session.post(
            f"{url}/api/v1/admin/probes", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as reply:
            if reply.status != 201:
                raise RuntimeError(f"adding probe {i}: HTTP {reply.status} {await reply.text()}")
            probe = await reply.json()
        probe["key"] = new_private_key()
        async with session.post(
            f"{url}/api/v1/register",
            json={"public_key": public_key_text(probe["key"])},
            headers={"Authorization": f"Bearer {probe['token']}"},
        ) as reply:
            if reply.status != 200:
                raise RuntimeError(
                    f"registering the key of probe {i}: HTTP {reply.status} {await reply.text()}"
                )
        probes.append(probe)
    return probes


async def load_server(
    url: str,
    probes: list[dict[str, Any]],
    makers: list[ResultMaker],
    batch: int,
    seconds: float,
) -> tuple[Figures, list[list[list[Sent]]]]:
    """Each probe posts batches back to back for ``seconds``; returns the figures and what each
    probe sent in each accepted batch (for the reference run)."""
    figures = Figures()
    sent: list[list[list[Sent]]] = [[] for _ in probes]
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=len(probes))

    async def one_probe(
        session: aiohttp.ClientSession, index: int, probe: dict[str, Any], deadline: float
    ) -> None:
        headers = {
            "Authorization": f"Bearer {probe['token']}",
            "Content-Type": "application/json",
        }
        while time.perf_counter() < deadline:
            body, items = makers[index].batch(batch)
            began = time.perf_counter()
            async with session.post(f"{url}/api/v1/results", data=body, headers=headers) as reply:
                payload = await reply.read()
                status = reply.status
            figures.latencies_s.append(time.perf_counter() - began)
            if status != 200:
                figures.failed_requests += 1
                figures.note(f"HTTP {status}: {payload.decode(errors='replace')}")
                continue
            replies = json.loads(payload)["items"]
            accepted = sum(1 for item in replies if item["outcome"] == "accepted")
            figures.not_accepted += len(items) - accepted
            for item in replies:
                if item["outcome"] != "accepted":
                    figures.note(f"item {item['outcome']}: {item.get('reason')}")
            figures.results += accepted
            figures.batches += 1
            if accepted == len(items):
                sent[index].append(items)

    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, trust_env=False
    ) as session:
        began = time.perf_counter()
        deadline = began + seconds
        async with asyncio.TaskGroup() as group:
            for index, probe in enumerate(probes):
                group.create_task(one_probe(session, index, probe, deadline))
        figures.elapsed_s = time.perf_counter() - began
    return figures, sent


def to_lines(
    probes: list[dict[str, Any]], makers: list[ResultMaker], sent: list[list[list[Sent]]]
) -> list[list[tuple[str, int]]]:
    """The same results as InfluxDB line-protocol bodies (and their sizes), built by the
    adapter's own ``result_to_line`` from the validated models, batch for batch."""
    limits = ValidationLimits.current(timedelta(days=30))
    per_probe = []
    for probe, maker, batches in zip(probes, makers, sent, strict=True):
        identity = ProbeIdentity(
            probe_id=probe["probe_id"], hamlet=HAMLET, isp=ISP, access=Access.FIBER
        )
        bodies = []
        for records in batches:
            items = maker.rebuild(records)
            lines = [
                result_to_line(StoredResult(identity, parse_result(item, limits)), item["kind"])
                for item in items
            ]
            bodies.append(("\n".join(lines), len(lines)))
        per_probe.append(bodies)
    return per_probe


async def load_direct(influx_url: str, per_probe: list[list[tuple[str, int]]]) -> Figures:
    """Post the prepared bodies to ``/write``, one task per probe, each its own batches."""
    figures = Figures()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=len(per_probe))
    params = {"db": DIRECT_DATABASE, "precision": "ns"}

    async def one_probe(session: aiohttp.ClientSession, bodies: list[tuple[str, int]]) -> None:
        for body, count in bodies:
            data = body.encode()
            began = time.perf_counter()
            async with session.post(f"{influx_url}/write", params=params, data=data) as reply:
                payload = await reply.read()
                status = reply.status
            figures.latencies_s.append(time.perf_counter() - began)
            if status != 204:
                figures.failed_requests += 1
                figures.note(f"HTTP {status}: {payload.decode(errors='replace')}")
                continue
            figures.results += count
            figures.batches += 1

    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, trust_env=False
    ) as session:
        began = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for bodies in per_probe:
                group.create_task(one_probe(session, bodies))
        figures.elapsed_s = time.perf_counter() - began
    return figures


def count_points(influxd: Influxd, database: str) -> int:
    """Points stored in ``database``, counted by InfluxDB (``COUNT`` of the result_id field)."""
    total = 0
    for kind in KINDS:
        statement = f'SELECT COUNT("result_id") FROM "{kind}"'  # noqa: S608 (our constants)
        answer = influxd.query(statement, database=database)
        for result in answer["results"]:
            for series in result.get("series", ()):
                total += int(series["values"][0][1])
    return total


def report(title: str, figures: Figures, cpu: dict[str, float | None]) -> None:
    lat_ms = [s * 1000 for s in figures.latencies_s] or [math.nan]
    print(title)
    print(f"  results/s sustained   {figures.rate():10.0f}")
    print(f"  request p50 latency   {percentile(lat_ms, 50):10.1f} ms")
    print(f"  request p99 latency   {percentile(lat_ms, 99):10.1f} ms")
    print(f"  batches               {figures.batches:10d}")
    print(f"  results accepted      {figures.results:10d}   in {figures.elapsed_s:.1f} s")
    print(f"  failed requests       {figures.failed_requests:10d}")
    used = ", ".join(f"{name} {s:.1f}" for name, s in cpu.items() if s is not None)
    print(f"  CPU seconds used      {used}")
    if figures.first_problem is not None:
        print(f"  first problem         {figures.first_problem}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=8, help="concurrent simulated probes")
    parser.add_argument("--batch", type=int, default=200, help="results per batch")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the load")
    parser.add_argument(
        "--order", choices=["backlog", "random"], default="backlog",
        help="measured_at order within a probe: as the agent sends (default) or scrambled",
    )  # fmt: skip
    args = parser.parse_args()
    ORDER["mode"] = args.order
    # A plain SIGTERM would end the process without unwinding: the context managers that stop
    # influxd and the server must run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if args.probes < 1 or args.batch < 1 or args.seconds <= 0:
        parser.error("--probes and --batch must be at least 1, --seconds positive")

    print(
        f"hamletnet ingest benchmark: {args.probes} probes, batches of {args.batch},"
        f" {args.seconds:g} s, {os.cpu_count()} CPUs"
    )
    admin_token = secrets.token_hex(24)
    with Influxd() as influxd, tempfile.TemporaryDirectory(prefix="hamletnet-bench-") as tmp:
        proc = getattr(influxd, "_proc", None)
        influx_pid = proc.pid if proc is not None else None
        with hamletnet_server(influxd.url, Path(tmp), admin_token) as (url, server):
            probes = asyncio.run(_register(url, admin_token, args.probes))
            start = datetime.now(UTC)
            makers = [
                ResultMaker(p["probe_id"], p["key"], start, random.Random(i))
                for i, p in enumerate(probes)
            ]
            meter = CpuMeter({"server": server.pid, "influxd": influx_pid})
            ours, sent = asyncio.run(load_server(url, probes, makers, args.batch, args.seconds))
            ours_cpu = meter.used()
        report("hamletnet server (POST /api/v1/results, InfluxDB behind it)", ours, ours_cpu)
        server_cpu_s = ours_cpu.get("server")
        if ours.results and server_cpu_s:
            per_result_us = server_cpu_s / ours.results * 1e6  # all its threads
            print(f"  server CPU per result {per_result_us:10.0f} µs")
        print(f"  items not accepted    {ours.not_accepted:10d}")
        stored = count_points(influxd, DATABASE)
        print(f"  points in InfluxDB    {stored:10d}   (COUNT query)")

        began = time.perf_counter()
        per_probe = to_lines(probes, makers, sent)
        build_us = (time.perf_counter() - began) / max(1, ours.results) * 1e6
        influxd.query(f'CREATE DATABASE "{DIRECT_DATABASE}"')
        meter = CpuMeter({"influxd": influx_pid})
        direct = asyncio.run(load_direct(influxd.url, per_probe))
        direct_cpu = meter.used()
        print()
        report("reference: the same line protocol straight to InfluxDB /write", direct, direct_cpu)
        print(f"  points in InfluxDB    {count_points(influxd, DIRECT_DATABASE):10d}")
        print(f"  (parse_result + result_to_line beforehand: {build_us:.0f} µs/result)")
    print()
    ratio = ours.rate() / direct.rate() if direct.rate() else math.nan
    print(f"ours/direct results/s   {ratio:10.2f}")
    return 0


async def _register(url: str, admin_token: str, n: int) -> list[dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        return await register_probes(session, url, admin_token, n)


if __name__ == "__main__":
    sys.exit(main())
