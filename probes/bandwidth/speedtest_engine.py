"""The ``speedtest`` engine: speedtest-cli (sivel's ``speedtest`` module) as a second opinion.

Secondary by design; the gigabit verdict comes from the ``http`` engine. speedtest-cli downloads
a fixed set of files (≈ 409 MB) over fresh connections and divides by the whole elapsed time,
slow start and gaps between requests included, and spends far more CPU per byte than iperf3, so
on a gigabit line with an ARM probe it reads low (280–445 Mb/s reported). Its figures are kept so
they can be compared with what Ookla's public numbers would show.

Targets:
- ``http://HOST:PORT[/base]``: a Speedtest Mini server such as the hamletnet target. speedtest-cli
  always fetches its configuration from www.speedtest.net first, even with ``--mini``; here that
  one request is redirected to the target's ``speedtest-config.php`` (served with speedtest.net's
  values; ``server/target/compat.py``) and parsed by speedtest-cli's own code, so the engine runs
  with no Internet at all.
- ``ookla`` (the nearest by latency) or ``ookla:ID``: Ookla's public servers (needs the Internet).

speedtest-cli runs in a child process (``python -m probes.bandwidth.speedtest_engine``), not in
a thread: its transfer threads cannot be stopped from outside, so a test cut by its caller's
timeout would go on moving bytes into the next test ("a bandwidth test runs alone"). Killing
the child ends every transfer at once, and the kernel closes its sockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import itertools
import json
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import speedtest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from probes.bandwidth import cpu
from probes.bandwidth.errors import BandwidthError
from probes.bandwidth.link import link_speed_mbps
from probes.models import FailureKind, Family
from probes.spec import Measurement, Span

#: How long a single speedtest-cli HTTP request may take, seconds (its default is 10).
REQUEST_TIMEOUT_S = 10
#: The child process that runs speedtest-cli: this module.
WORKER_MODULE = "probes.bandwidth.speedtest_engine"
#: The directory that holds the ``probes`` package, put on the child's import path.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class SpeedtestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Per-direction time limit; None keeps what the configuration says (10 s at speedtest.net).
    duration_s: float | None = Field(default=None, ge=1, le=60)
    direction: str = Field(default="both", pattern="^(both|download|upload)$")
    line_rate_mbps: float | None = Field(default=None, gt=0)


class _ConfigFromTarget(urllib.request.BaseHandler):
    """Answers speedtest-cli's request for www.speedtest.net's configuration from the target."""

    handler_order = 100  # before urllib's own processors

    def __init__(self, config_url: str) -> None:
        self.config_url = config_url

    def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
        if request.host == "www.speedtest.net" and request.selector.startswith(
            "/speedtest-config.php"
        ):
            request.full_url = self.config_url
        return request

    https_request = http_request


class _OfflineSpeedtest(speedtest.Speedtest):
    """speedtest-cli's client, configured by a Speedtest Mini target instead of speedtest.net."""

    def __init__(self, config_url: str, **kwargs: Any) -> None:
        self._config_url = config_url
        super().__init__(**kwargs)

    def get_config(self) -> Any:
        self._opener.add_handler(_ConfigFromTarget(self._config_url))
        return super().get_config()


@dataclass(frozen=True, slots=True)
class SpeedtestFigures:
    download_bps: float | None
    upload_bps: float | None
    download_bytes: int | None
    upload_bytes: int | None
    download_s: float | None
    upload_s: float | None
    ping_ms: float | None
    threads: int | None
    cpu_percent: float | None
    server_url: str


def _run_blocking(target: str, options: SpeedtestOptions) -> SpeedtestFigures:
    config: dict[str, Any] | None = None
    if options.duration_s is not None:
        seconds = options.duration_s
        config = {"length": {"download": seconds, "upload": seconds}}
    if target.startswith(("http://", "https://")):
        base = target.rstrip("/")
        client = _OfflineSpeedtest(
            base + "/speedtest-config.php", config=config, timeout=REQUEST_TIMEOUT_S,
            secure=target.startswith("https://"),
        )  # fmt: skip
        client.set_mini_server(base + "/")
        client.get_best_server(client.servers)
    else:
        client = speedtest.Speedtest(config=config, timeout=REQUEST_TIMEOUT_S, secure=True)
        _, _, server_id = target.partition(":")
        client.get_servers([int(server_id)] if server_id else None)
        client.get_best_server()
    threads = int(client.config["threads"]["download"])
    down_s = up_s = None
    cpu_marks = [cpu.mark()]
    if options.direction in ("both", "download"):
        started = time.perf_counter()
        client.download()
        down_s = time.perf_counter() - started
        cpu_marks.append(cpu.mark())
    if options.direction in ("both", "upload"):
        started = time.perf_counter()
        # Without pre-allocation: speedtest-cli would otherwise hold every upload body (≈ 145 MB)
        # in memory at once, too much for a small Pi.
        client.upload(pre_allocate=False)
        up_s = time.perf_counter() - started
        cpu_marks.append(cpu.mark())
    percents = [
        p for a, b in itertools.pairwise(cpu_marks)
        if (p := cpu.cpu_percent(a, b)) is not None
    ]  # fmt: skip
    results = client.results
    return SpeedtestFigures(
        download_bps=results.download if down_s is not None else None,
        upload_bps=results.upload if up_s is not None else None,
        download_bytes=int(results.bytes_received) if down_s is not None else None,
        upload_bytes=int(results.bytes_sent) if up_s is not None else None,
        download_s=down_s,
        upload_s=up_s,
        ping_ms=float(results.ping) if results.ping else None,
        threads=threads,
        cpu_percent=max(percents) if percents else None,
        server_url=str(client.best.get("url", target)),
    )


def _worker_reply(target: str, options: SpeedtestOptions) -> dict[str, Any]:
    """What the child prints: its figures, or the failure kind and words of what went wrong."""
    try:
        return {"figures": dataclasses.asdict(_run_blocking(target, options))}
    except speedtest.ConfigRetrievalError as exc:
        failure, message = (
            FailureKind.UNREACHABLE,
            (f"speedtest-cli could not get its configuration: {exc}"),
        )
    except speedtest.SpeedtestMiniConnectFailure:
        failure, message = FailureKind.UNREACHABLE, f"no Speedtest Mini at {target}"
    except speedtest.SpeedtestException as exc:
        failure = FailureKind.PROTOCOL
        message = f"speedtest-cli against {target}: {type(exc).__name__}: {exc}"
    except OSError as exc:
        failure, message = FailureKind.UNREACHABLE, f"{target}: {type(exc).__name__}: {exc}"
    return {"failure_kind": failure.value, "error": message}


def parse_worker_output(returncode: int, stdout: bytes, stderr: bytes) -> SpeedtestFigures:
    """The child's figures, or ``BandwidthError`` with its failure (the child's last words when
    it died without a reply)."""
    try:
        reply = json.loads(stdout)
        if "figures" in reply:
            return SpeedtestFigures(**reply["figures"])
        raise BandwidthError(FailureKind(reply["failure_kind"]), str(reply["error"]))
    except (ValueError, TypeError, KeyError):
        last = stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise BandwidthError(
            FailureKind.INTERNAL, f"the speedtest-cli process ended ({returncode}): {last[0]}"
        ) from None


async def _run_in_child(target: str, options: SpeedtestOptions) -> SpeedtestFigures:
    """Run speedtest-cli in a child process, killed if this coroutine is cancelled."""
    path = os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", WORKER_MODULE, target, options.model_dump_json(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=os.environ | {"PYTHONPATH": path},
    )  # fmt: skip
    try:
        stdout, stderr = await child.communicate()
    finally:
        if child.returncode is None:  # cancelled (the caller's timeout): end every transfer now
            child.kill()
            await child.wait()
    return parse_worker_output(child.returncode or 0, stdout, stderr)


async def measure(target: str, options: dict[str, Any]) -> Measurement:
    try:
        opts = SpeedtestOptions.model_validate(options)
    except ValidationError as exc:
        raise BandwidthError(FailureKind.INTERNAL, f"speedtest engine options: {exc}") from None
    measured_at = datetime.now(UTC)
    started = time.perf_counter()
    host = urlsplit(target).hostname if "://" in target else None
    figures = await _run_in_child(target, opts)
    link = await asyncio.to_thread(link_speed_mbps, host) if host else None
    return Measurement(
        engine="speedtest",
        target=target,
        span=Span(measured_at, (time.perf_counter() - started) * 1000),
        fields=dict(
            family=_family(host),
            streams=figures.threads,
            download_mbps=figures.download_bps / 1e6 if figures.download_bps is not None else None,
            upload_mbps=figures.upload_bps / 1e6 if figures.upload_bps is not None else None,
            download_bytes=figures.download_bytes,
            upload_bytes=figures.upload_bytes,
            download_duration_ms=figures.download_s * 1000 if figures.download_s else None,
            upload_duration_ms=figures.upload_s * 1000 if figures.upload_s else None,
            idle_latency_ms=figures.ping_ms,
            cpu_percent=figures.cpu_percent,
            cpu_limited=cpu.cpu_limited(figures.cpu_percent),
            link_speed_mbps=link,
            line_rate_mbps=opts.line_rate_mbps,
        ),
    )


def _family(host: str | None) -> Family | None:
    """The family of an address literal; None for a name (speedtest-cli resolves it itself)."""
    try:
        version = ipaddress.ip_address(host or "").version
    except ValueError:
        return None
    return Family.IPV6 if version == 6 else Family.IPV4


def _worker_main(argv: list[str]) -> int:
    target, options = argv
    reply = _worker_reply(target, SpeedtestOptions.model_validate_json(options))
    sys.stdout.write(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
