"""iperf3 -J parsing on captured real output (iperf 3.12, Linux x86_64, loopback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from probes.bandwidth.iperf3_engine import Iperf3Failed, parse, split_target
from probes.models import Family

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return doc


def test_download_reverse_three_streams() -> None:
    # iperf3 -c 127.0.0.1 -P 3 -t 2 -O 1 -i 0.1 -J -R
    run = parse(load("iperf3-3.12-loopback-download.json"))
    assert run.reverse is True
    assert run.streams == 3
    assert run.family is Family.IPV4
    assert run.remote_host == "127.0.0.1"
    assert run.bytes == 7664631861
    assert run.seconds == pytest.approx(2.000339)
    assert run.mbps == pytest.approx(30653.331704276127)
    assert run.omit_s == 1.0
    assert len(run.samples_mbps) == 30  # 10 omitted + 20 measured, 100 ms each
    assert run.samples_mbps[0] == pytest.approx(29203.973102274654)
    assert run.samples_mbps[-1] == pytest.approx(38856.07393595243)
    assert run.cpu_percent == pytest.approx(54.7592817688571)
    assert run.mss_bytes == 32768  # start.tcp_mss_default on loopback (MTU 65536)
    # The client received: retransmissions and RTTs belong to the server's side.
    assert run.retransmits is None
    assert run.min_rtt_ms is None


def test_upload_over_ipv6_reports_the_senders_rtt_and_retransmits() -> None:
    # iperf3 -c ::1 -P 3 -t 2 -O 1 -i 0.1 -J
    run = parse(load("iperf3-3.12-loopback6-upload.json"))
    assert run.reverse is False
    assert run.family is Family.IPV6
    assert run.remote_host == "::1"
    assert run.bytes == 9216720896
    assert run.seconds == pytest.approx(2.000063)
    assert run.mbps == pytest.approx(36865.722313747116)
    assert run.retransmits == 7
    assert run.min_rtt_ms == pytest.approx(0.011)
    assert run.cpu_percent is not None and run.cpu_percent > 0
    assert len(run.samples_mbps) == 30


def test_an_iperf3_error_is_raised_with_its_words() -> None:
    with pytest.raises(Iperf3Failed, match="unable to connect to server: Connection refused"):
        parse(load("iperf3-3.12-refused.json"))


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("198.18.3.2", ("198.18.3.2", 5201)),
        ("198.18.3.2:5202", ("198.18.3.2", 5202)),
        ("iperf3://srv.example:5300", ("srv.example", 5300)),
        ("[2001:db8::2]:5202", ("2001:db8::2", 5202)),
        ("[2001:db8::2]", ("2001:db8::2", 5201)),
        ("2001:db8::2", ("2001:db8::2", 5201)),
    ],
)
def test_targets(target: str, expected: tuple[str, int]) -> None:
    assert split_target(target) == expected
