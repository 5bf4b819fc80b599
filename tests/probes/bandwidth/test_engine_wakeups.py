"""The http engine's CPU at low rates: during a transfer its event loop sleeps.

Sampling TCP_INFO every 100 ms and pinging the target every 200 ms are the engine's fixed costs,
whatever the rate; through the event loop each of them meant a loop wake-up (several for a ping:
the timer, the connect, the timeout), which is most of a 10 Mb/s test's CPU (``bench/agent.py
--lab``). Both run in plain threads that sleep between ticks instead, so the loop's wake-ups
during a test do not grow with its length. Counted with a selector that counts its ``select``
calls, so nothing here depends on how fast the machine is. The target is a real
``hamletnet-server target`` process, so its own I/O is not counted as the engine's.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes import bandwidth
from probes.bandwidth import params
from probes.models import Status
from tests.influxd import free_port

ROOT = Path(__file__).resolve().parents[3]


class CountingSelector(selectors.EpollSelector):
    """The event loop's selector, counting how often the loop waits (once per iteration)."""

    def __init__(self) -> None:
        super().__init__()
        self.selects = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.selects += 1
        return super().select(timeout)


@pytest.fixture(scope="module")
def target_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "target", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the target did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def loop_wakeups(url: str, duration_s: float) -> int:
    """Event-loop iterations of one download test of ``duration_s`` after a 0.5 s warm-up."""
    selector = CountingSelector()
    options = {"direction": "download", "duration_s": duration_s, "warmup_max_s": 0.5,
               "slot": False}  # fmt: skip
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        result = runner.run(bandwidth.measure("p1", url, "http", options))
    assert result.status is Status.OK, result.error
    assert result.sample_interval_ms == params.SAMPLE_INTERVAL_MS
    return selector.selects


def test_the_event_loop_sleeps_through_a_transfer(target_url: str) -> None:
    short, long = loop_wakeups(target_url, 1), loop_wakeups(target_url, 4)
    # 3 s more of transfer is 30 more samples and 15 more loaded-latency pings at the default
    # intervals: none of them may wake the loop.
    extra_ticks = 3 / (params.SAMPLE_INTERVAL_MS / 1000) + 3 / params.LOADED_LATENCY_INTERVAL_S
    assert long - short < extra_ticks / 5, (short, long)
