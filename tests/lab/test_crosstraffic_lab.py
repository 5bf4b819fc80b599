"""The cross-traffic check in the lab, against real traffic through the probe's interface.

Three namespaces in a row, as a probe bridged between the router and the ONT sits:
``house`` (the household's devices) - ``probe`` (forwarding) - ``isp``. iperf3 in ``house``
sends to ``isp`` through the probe, and the check runs in the probe's namespace with its own
sysfs reader, watching the probe's ISP-side interface. Ground truth is what the stream is held
to: tbf's rate for a TCP stream (it counts whole frames, as the interface counters do) and
iperf3's bitrate for a UDP one.

The machine's CPU is shared with other work while the suite runs, so the traffic cases judge
traffic alone (``max_cpu_percent=100``); ``tests/collector/test_crosstraffic.py`` covers CPU.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab.netns import Host, Lab, lab_available

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parents[2]
HOUSE, PROBE_LAN = "198.18.160.1", "198.18.160.2"
_ports = itertools.count(5301)
PROBE_WAN, ISP = "198.18.161.1", "198.18.161.2"

#: Runs ``collector.crosstraffic.check_line`` in the namespace it is started in, with the
#: settings given as JSON, and prints the decision as JSON.
CHECK = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from collector.crosstraffic import CrossTrafficSettings, check_line
decision = asyncio.run(check_line(CrossTrafficSettings.model_validate_json(sys.argv[2])))
print(json.dumps({
    "verdict": decision.verdict.value, "bytes_per_s": decision.bytes_per_s,
    "cpu_percent": decision.cpu_percent, "windows": decision.windows,
    "fields": {k: v for k, v in decision.result_fields().items()},
}))
"""


@dataclass
class HouseLab:
    lab: Lab
    house: Host
    probe: Host
    isp: Host
    probe_wan_if: str

    def check(self, **settings: Any) -> dict[str, Any]:
        given = {"inline": True, "interface": self.probe_wan_if, "max_cpu_percent": 100}
        given.update(settings)
        out = self.lab.run(
            self.probe, PYTHON, "-c", CHECK, str(ROOT), json.dumps(given), timeout=120
        )
        decision: dict[str, Any] = json.loads(out.stdout)
        return decision

    def stream(self, *args: str) -> Any:
        """iperf3 from the house to the ISP side, through the probe; running when returned.

        A fresh one-test server on a port of its own each time: a server still closing the
        previous, killed test would refuse the next one as busy."""
        port = str(next(_ports))
        self.lab.popen(self.isp, "iperf3", "-s", "-1", "-p", port)
        deadline = time.monotonic() + 10
        while f":{port} " not in self.lab.run(self.isp, "ss", "-Hltn").stdout:
            assert time.monotonic() < deadline, f"iperf3 -s on port {port} did not start"
            time.sleep(0.1)
        proc = self.lab.popen(self.house, "iperf3", "-c", ISP, "-p", port, *args)
        time.sleep(2)  # past the connection set-up and tbf's initial burst
        assert proc.poll() is None, f"iperf3 -c ended early (exit {proc.returncode})"
        return proc


@pytest.fixture(scope="module")
def house_lab() -> Iterator[HouseLab]:
    why = lab_available()
    if why:
        pytest.fail(why) if shutil.which("ip") else pytest.skip(why)
    if shutil.which("iperf3") is None:
        pytest.fail("iperf3 is missing: run the test set-up (scripts/test.sh)")
    with Lab() as lab:
        house, probe, isp = lab.host("cthouse"), lab.host("ctprobe"), lab.host("ctisp")
        house_if, _ = lab.link(house, probe, f"{HOUSE}/24", f"{PROBE_LAN}/24")
        probe_wan_if, _ = lab.link(probe, isp, f"{PROBE_WAN}/24", f"{ISP}/24")
        lab.forward(probe)
        lab.route(house, "default", "via", PROBE_LAN)
        lab.route(isp, "198.18.160.0/24", "via", PROBE_WAN)
        # The household's uplink, as a slow line holds it: 1 Mbit/s = 125,000 B/s of frames.
        lab.shape(house, house_if, rate_mbit=1, burst_kb=16)
        assert lab.run(house, "ping", "-c1", "-W2", ISP).returncode == 0
        yield HouseLab(lab, house, probe, isp, probe_wan_if)


def test_a_quiet_line_runs_after_one_window(house_lab: HouseLab) -> None:
    decision = house_lab.check()
    assert decision["verdict"] == "run", decision
    assert decision["windows"] == 1
    assert decision["bytes_per_s"] < 1_000, decision  # nothing but stray neighbour discovery
    assert decision["fields"]["cross_traffic"] == "quiet"
    assert decision["fields"]["cross_traffic_interface"] == house_lab.probe_wan_if
    assert 0 <= decision["cpu_percent"] <= 100
    print(f"quiet line: {decision['bytes_per_s']:.0f} B/s, CPU {decision['cpu_percent']:.0f} %")


def test_a_light_stream_below_the_threshold_is_measured_and_lets_the_test_run(
    house_lab: HouseLab,
) -> None:
    # 80 kbit/s of UDP payload = 10,000 B/s, plus 42 bytes of headers per datagram.
    proc = house_lab.stream("-u", "-b", "80K", "-t", "60")
    try:
        decision = house_lab.check()
    finally:
        proc.kill()
        proc.wait()
    assert decision["verdict"] == "run", decision
    assert 9_500 <= decision["bytes_per_s"] <= 12_000, decision
    print(f"80 kbit/s UDP stream: {decision['bytes_per_s']:.0f} B/s")


def test_a_busy_line_defers_after_30_s_with_the_level_seen(house_lab: HouseLab) -> None:
    proc = house_lab.stream("-t", "90")  # TCP, as fast as the 1 Mbit/s tbf lets it
    try:
        started = time.monotonic()
        decision = house_lab.check()  # the defaults: 5 s windows, give up after 30 s
        waited = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    assert decision["verdict"] == "defer", decision
    assert decision["windows"] == 6
    # The tbf rate's frames forwarded out, and the ACKs coming back (about 2 % more).
    assert 110_000 <= decision["bytes_per_s"] <= 145_000, decision
    fields = decision["fields"]
    assert fields["cross_traffic"] == "busy" and fields["skip_reason"] == "cross_traffic"
    assert fields["cross_traffic_threshold_bytes_per_s"] == 25_000
    assert fields["cross_traffic_interface"] == house_lab.probe_wan_if
    print(f"busy line: {decision['bytes_per_s']:.0f} B/s, deferred after {waited:.1f} s")


def test_the_test_runs_once_the_household_stops(house_lab: HouseLab) -> None:
    proc = house_lab.stream("-t", "6")  # busy for the first windows, then quiet
    try:
        decision = house_lab.check(window_s=2, give_up_after_s=20)
    finally:
        proc.kill()
        proc.wait()
    assert decision["verdict"] == "run", decision
    assert 2 <= decision["windows"] <= 5, decision
    assert decision["bytes_per_s"] < 25_000
    print(f"stream ended: ran after {decision['windows']} windows of 2 s")
