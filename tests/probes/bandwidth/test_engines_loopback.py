"""The http and speedtest engines against the real target on loopback (no lab, no shaping):
what a result carries, and how each failure is classified. Nothing here depends on how fast the
machine is: durations are checked only against the engine's own stopping rules, which a slow or
busy machine cannot break; ``tests/lab/test_bandwidth_timing.py`` checks how close to the
configured times the engine keeps."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from probes import bandwidth
from probes.bandwidth import params
from probes.models import FailureKind, Family, Status
from server.target.app import create_target_app

Server = Callable[..., Awaitable[TestServer]]
SHORT = {"duration_s": 1, "warmup_max_s": 0.5}
INTERVAL_S = 0.1  # the default sample interval


@pytest.fixture
async def target_url(aiohttp_server: Server) -> str:
    server = await aiohttp_server(create_target_app())
    return f"http://127.0.0.1:{server.port}"


async def test_http_engine_result_carries_the_evidence(target_url: str) -> None:
    result = await bandwidth.measure("p1", target_url, None, {**SHORT, "streams": 2,
                                                              "line_rate_mbps": 1000})  # fmt: skip
    assert result.status is Status.OK, result.error
    assert (result.engine, result.target, result.family) == ("http", target_url, Family.IPV4)
    assert result.streams == 2
    for direction in ("download", "upload"):
        mbps = getattr(result, f"{direction}_mbps")
        moved = getattr(result, f"{direction}_bytes")
        seconds = getattr(result, f"{direction}_duration_ms") / 1000
        samples = getattr(result, f"{direction}_samples_mbps")
        warmup_s = getattr(result, f"{direction}_warmup_ms") / 1000
        assert mbps > 0 and moved > 0
        assert moved * 8 / seconds / 1e6 == pytest.approx(mbps)
        # The engine stops once duration_s (less half an interval) has been measured after the
        # warm-up, never before, however late its timer wakes up.
        assert seconds >= 1 - INTERVAL_S / 2
        # The stable-rate rule cannot end a warm-up before WARMUP_MIN_S, here later than
        # warmup_max_s, so the warm-up is cut at the first reading at or after warmup_max_s.
        assert params.WARMUP_MIN_S > SHORT["warmup_max_s"]
        assert warmup_s >= SHORT["warmup_max_s"]
        # One reading per interval tick, none before its tick: every interval is kept, warm-up
        # first, and a late timer can only mean fewer of them.
        assert 2 <= len(samples) <= (warmup_s + seconds) / INTERVAL_S + 0.01
        assert all(rate >= 0 for rate in samples)
    assert result.sample_interval_ms == INTERVAL_S * 1000
    assert result.idle_latency_ms is not None
    assert result.loaded_latency_down_ms is not None and result.loaded_latency_up_ms is not None
    assert result.cpu_percent is not None and result.cpu_limited is not None
    assert result.ran_alone is True
    assert result.line_rate_mbps == 1000
    assert result.link_speed_mbps is None  # loopback has no negotiated speed
    assert result.mss_bytes and result.retrans_bytes is not None and result.min_rtt_ms


async def test_one_direction_only(target_url: str) -> None:
    result = await bandwidth.measure("p1", target_url, "http", {**SHORT, "direction": "upload"})
    assert result.status is Status.OK
    assert result.download_mbps is None and result.upload_mbps


async def test_a_busy_target_defers_the_test(target_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{target_url}/slot", json={"duration_s": 30}) as reply:
            assert reply.status == 200
        result = await bandwidth.measure("p1", target_url, None, {**SHORT, "slot_wait_s": 0})
    assert result.status is Status.FAILED
    assert result.failure_kind is FailureKind.DEFERRED
    assert result.error and "busy" in result.error


async def test_a_server_that_is_not_a_target_is_a_protocol_failure(aiohttp_server: Server) -> None:
    server = await aiohttp_server(web.Application())
    result = await bandwidth.measure("p1", f"http://127.0.0.1:{server.port}", None, SHORT)
    assert result.failure_kind is FailureKind.PROTOCOL
    assert result.error and "404" in result.error


async def test_nothing_listening_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        result = await bandwidth.measure("p1", f"http://127.0.0.1:{port}", None, SHORT)
    assert result.failure_kind is FailureKind.REFUSED


@pytest.mark.parametrize(
    ("engine", "target", "options", "kind", "words"),
    [
        ("http", "http://127.0.0.1:9", {"streams": 0}, FailureKind.INTERNAL, "streams"),
        ("http", "http://127.0.0.1:9", {"stream": 3}, FailureKind.INTERNAL, "stream"),
        ("http", "https://127.0.0.1:9", {}, FailureKind.PROTOCOL, "http://"),
        ("ookla-app", "http://127.0.0.1:9", {}, FailureKind.INTERNAL, "'ookla-app'"),
    ],
)
async def test_configuration_mistakes_are_named(
    engine: str, target: str, options: dict[str, Any], kind: FailureKind, words: str
) -> None:
    result = await bandwidth.measure("p1", target, engine, options)
    assert result.failure_kind is kind
    assert result.error and words in result.error


async def test_speedtest_cli_runs_offline_against_the_target(target_url: str) -> None:
    result = await bandwidth.measure("p1", target_url, "speedtest", {"duration_s": 1})
    assert result.status is Status.OK, result.error
    assert result.engine == "speedtest" and result.family is Family.IPV4
    assert result.download_mbps and result.upload_mbps
    assert result.download_bytes and result.upload_bytes
    assert result.streams == 8  # speedtest.net's threadcount 4, doubled by speedtest-cli
    assert result.idle_latency_ms is not None


async def test_speedtest_engine_without_a_mini_server_is_unreachable() -> None:
    result = await bandwidth.measure("p1", "http://127.0.0.1:9", "speedtest", {})
    assert result.status is Status.FAILED
    assert result.failure_kind is FailureKind.UNREACHABLE
