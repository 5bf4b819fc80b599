"""Bandwidth tests: one entry point, ``run``, and one engine module per way of measuring.

Engines (``ProbeSpec.engine``): ``http`` (default; hamletnet's multi-stream engine against a
hamletnet target, which gives the gigabit verdict), ``speedtest`` (speedtest-cli, secondary) and
``iperf3`` (the reference tool, against an iperf3 server). ``measure_one`` is the one place where
failures of any engine become a failed measurement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from probes.bandwidth.errors import BandwidthError
from probes.bandwidth.slot import TargetBusy
from probes.envelope import stamp
from probes.models import BandwidthResult, FailureKind
from probes.spec import Failure, Measurement, ProbeSpec, Stopwatch

DEFAULT_ENGINE = "http"

Engine = Callable[[str, dict[str, Any]], Awaitable[Measurement]]


async def _http(target: str, options: dict[str, Any]) -> Measurement:
    from probes.bandwidth import http_engine

    engine = http_engine.HttpEngine(
        http_engine.Target.parse(target), http_engine.parse_options(options)
    )
    return await engine.measure()


async def _speedtest(target: str, options: dict[str, Any]) -> Measurement:
    from probes.bandwidth import speedtest_engine

    return await speedtest_engine.measure(target, options)


async def _iperf3(target: str, options: dict[str, Any]) -> Measurement:
    from probes.bandwidth import iperf3_engine

    return await iperf3_engine.measure(target, options)


ENGINES: dict[str, Engine] = {"http": _http, "speedtest": _speedtest, "iperf3": _iperf3}


async def run(spec: ProbeSpec) -> list[Measurement]:
    """Registry entry point: one test per target, one after another (tests of one probe never
    overlap)."""
    return [await measure_one(target, spec.engine, dict(spec.options)) for target in spec.targets]


async def measure(
    probe_id: str, target: str, engine: str | None = None, options: dict[str, Any] | None = None
) -> BandwidthResult:
    """``measure_one`` as a result (for the demo, benches and tests; the agent runs ``run``
    through the registry and stamps the results itself)."""
    watch = Stopwatch()
    measurement = await measure_one(target, engine, options)
    return stamp(BandwidthResult, probe_id, measurement, watch.span())


async def measure_one(
    target: str, engine: str | None = None, options: dict[str, Any] | None = None
) -> Measurement:
    """One bandwidth test; a failure is a measurement with a ``Failure``, not an exception."""
    name = engine or DEFAULT_ENGINE
    watch = Stopwatch()
    try:
        measure_with = ENGINES.get(name)
        if measure_with is None:
            raise BandwidthError(
                FailureKind.INTERNAL,
                f"bandwidth engine {name!r} does not exist; use one of {', '.join(ENGINES)}",
            )
        return await measure_with(target, dict(options or {}))
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
    return Measurement(
        engine=name if name in ENGINES else "unknown",
        target=target,
        failure=Failure(kind, message),
        span=watch.span(),
    )
