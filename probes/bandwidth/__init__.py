"""Bandwidth tests: one entry point, ``measure``, and one engine module per way of measuring.

Engines (``ProbeSpec.engine``): ``http`` (default; hamletnet's multi-stream engine against a
hamletnet target, which gives the gigabit verdict), ``speedtest`` (speedtest-cli, secondary) and
``iperf3`` (the reference tool, against an iperf3 server). This is the one place where failures
of any engine become a failed result.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from probes.bandwidth.errors import BandwidthError
from probes.bandwidth.slot import TargetBusy
from probes.models import BandwidthResult, FailureKind, Status

DEFAULT_ENGINE = "http"

Engine = Callable[[str, str, dict[str, Any]], Awaitable[BandwidthResult]]


async def _http(probe_id: str, target: str, options: dict[str, Any]) -> BandwidthResult:
    from probes.bandwidth import http_engine

    engine = http_engine.HttpEngine(
        http_engine.Target.parse(target), http_engine.parse_options(options)
    )
    return await engine.measure(probe_id)


async def _speedtest(probe_id: str, target: str, options: dict[str, Any]) -> BandwidthResult:
    from probes.bandwidth import speedtest_engine

    return await speedtest_engine.measure(probe_id, target, options)


async def _iperf3(probe_id: str, target: str, options: dict[str, Any]) -> BandwidthResult:
    from probes.bandwidth import iperf3_engine

    return await iperf3_engine.measure(probe_id, target, options)


ENGINES: dict[str, Engine] = {"http": _http, "speedtest": _speedtest, "iperf3": _iperf3}


async def measure(
    probe_id: str, target: str, engine: str | None = None, options: dict[str, Any] | None = None
) -> BandwidthResult:
    """One bandwidth test; a failure is a result with ``status="failed"``, not an exception."""
    name = engine or DEFAULT_ENGINE
    measured_at = datetime.now(UTC)
    started = time.perf_counter()
    try:
        run = ENGINES.get(name)
        if run is None:
            raise BandwidthError(
                FailureKind.INTERNAL,
                f"bandwidth engine {name!r} does not exist; use one of {', '.join(ENGINES)}",
            )
        return await run(probe_id, target, dict(options or {}))
    except BandwidthError as exc:
        kind, message = exc.failure_kind, str(exc)
    except TargetBusy as exc:
        kind, message = FailureKind.DEFERRED, str(exc)
    except ConnectionRefusedError as exc:
        kind, message = FailureKind.REFUSED, f"{target} refused the connection: {exc}"
    except TimeoutError:
        kind, message = FailureKind.TIMEOUT, f"{target} did not answer in time"
    except aiohttp.ClientConnectorError as exc:
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        kind = FailureKind.REFUSED if refused else FailureKind.UNREACHABLE
        message = f"no connection to {target}: {exc.os_error}"
    except aiohttp.ClientResponseError as exc:
        kind, message = FailureKind.PROTOCOL, f"{target} answered {exc.status} {exc.message}"
    except (aiohttp.ClientError, OSError) as exc:
        kind, message = FailureKind.UNREACHABLE, f"{target}: {type(exc).__name__}: {exc}"
    return BandwidthResult(
        result_id=uuid.uuid4(),
        probe_id=probe_id,
        measured_at=measured_at,
        duration_ms=(time.perf_counter() - started) * 1000,
        status=Status.FAILED,
        failure_kind=kind,
        error=message[:2048],
        engine=name if name in ENGINES else "unknown",
        target=target[:256] or None,
    )
