"""A bandwidth test runs alone: the agent's gate, with real asyncio tasks."""

from __future__ import annotations

import asyncio

from collector.agent import MeasurementGate


async def test_no_ordinary_test_runs_during_a_bandwidth_test() -> None:
    gate = MeasurementGate()
    log: list[str] = []

    async def ordinary(name: str, hold: float) -> None:
        async with gate.shared():
            assert not gate.exclusive_held
            log.append(f"{name} start")
            await asyncio.sleep(hold)
            log.append(f"{name} end")

    async def bandwidth() -> None:
        async with gate.exclusive():
            log.append("bw start")
            await asyncio.sleep(0.05)
            log.append("bw end")

    first = asyncio.create_task(ordinary("a", 0.05))
    await asyncio.sleep(0.01)
    bw = asyncio.create_task(bandwidth())
    await asyncio.sleep(0.01)
    late = asyncio.create_task(ordinary("b", 0.01))  # arrives while bandwidth waits
    await asyncio.gather(first, bw, late)
    assert log == ["a start", "a end", "bw start", "bw end", "b start", "b end"]


async def test_ordinary_tests_share_the_gate() -> None:
    gate = MeasurementGate()
    running = 0
    peak = 0

    async def ordinary() -> None:
        nonlocal running, peak
        async with gate.shared():
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1

    await asyncio.gather(*(ordinary() for _ in range(4)))
    assert peak == 4
