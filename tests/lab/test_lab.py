"""The lab itself: hosts reach each other over IPv4 and IPv6, tbf shapes to the asked rate
(checked with iperf3 as the reference), and nothing is left behind."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.lab.netns import Lab, lab_available, leftover_namespaces

pytestmark = [pytest.mark.lab]


@pytest.fixture(autouse=True)
def _needs_lab() -> None:
    why = lab_available()
    if why:
        pytest.fail(why) if shutil.which("ip") else pytest.skip(why)


def test_two_hosts_talk_and_the_lab_cleans_up() -> None:
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(
            a, b, "198.18.1.1/24", "198.18.1.2/24", v6=("2001:db8:1::1/64", "2001:db8:1::2/64")
        )
        assert lab.run(a, "ping", "-c1", "-W2", "198.18.1.2").returncode == 0
        assert lab.run(a, "ping", "-6", "-c1", "-W2", "2001:db8:1::2").returncode == 0
        names = [h.ns for h in lab.hosts]
    left = leftover_namespaces()
    assert not set(names) & set(left)


@pytest.mark.slow
def test_tbf_shapes_close_to_the_rate_by_iperf3() -> None:
    if shutil.which("iperf3") is None:
        pytest.fail("iperf3 is missing: run the test set-up (scripts/test.sh)")
    with Lab() as lab:
        cli, srv = lab.host("cli"), lab.host("srv")
        _, if_srv = lab.link(cli, srv, "198.18.2.1/24", "198.18.2.2/24")
        lab.shape(srv, if_srv, 100)
        lab.popen(srv, "iperf3", "-s", "-1")
        import time

        time.sleep(0.5)
        out = lab.run(cli, "iperf3", "-c", "198.18.2.2", "-R", "-t", "3", "-J", timeout=30)
        mbps = json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6
    # tbf at 100 Mbit/s carries about 95 Mb/s of TCP goodput (1448 of 1514 bytes per frame)
    assert 88 <= mbps <= 101, mbps
