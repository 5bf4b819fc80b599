"""How closely the http bandwidth engine keeps its configured times, on loopback.

Wall-clock bounds, so they live in the lab set (marked ``lab``), not among the unit tests: a
busy machine can stretch them. ``tests/probes/bandwidth/test_engines_loopback.py`` checks the
same result against the engine's own rules only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from probes import bandwidth
from probes.models import Status
from server.target.app import create_target_app

pytestmark = [pytest.mark.lab]

Server = Callable[..., Awaitable[TestServer]]


async def test_http_engine_keeps_its_duration_warmup_and_sample_interval(
    aiohttp_server: Server,
) -> None:
    server = await aiohttp_server(create_target_app())
    options = {"duration_s": 1, "warmup_max_s": 0.5, "streams": 2}
    result = await bandwidth.measure("p1", f"http://127.0.0.1:{server.port}", None, options)
    assert result.status is Status.OK, result.error
    for direction in ("download", "upload"):
        mbps = getattr(result, f"{direction}_mbps")
        seconds = getattr(result, f"{direction}_duration_ms") / 1000
        warmup_s = getattr(result, f"{direction}_warmup_ms") / 1000
        samples = getattr(result, f"{direction}_samples_mbps")
        assert mbps > 100  # loopback moves gigabits; anything slower is broken
        assert 0.95 <= seconds <= 1.1
        assert warmup_s == pytest.approx(0.5, abs=0.06)  # cut at warmup_max_s
        # Every 100 ms interval is kept, warm-up first.
        assert len(samples) == pytest.approx((warmup_s + seconds) * 10, abs=1)
    assert result.idle_latency_ms is not None and result.idle_latency_ms < 50
