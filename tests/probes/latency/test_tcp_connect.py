"""TCP-connect RTT: the kernel's handshake sample, and failures over loopback."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.latency.options import LatencyOptions
from probes.latency.tcp_connect import TCP_INFO_BYTES, handshake_rtt_ms, measure
from probes.models import LatencyResult
from tests.probes.stamping import as_results


def _tcp_info(rtt_us: int, total_retrans: int) -> bytes:
    info = bytearray(TCP_INFO_BYTES)
    struct.pack_into("=I", info, 68, rtt_us)
    struct.pack_into("=I", info, 100, total_retrans)
    return bytes(info)


@given(st.integers(1, 2**32 - 1), st.integers(0, 10**10))
def test_kernel_sample_wins_when_clean(rtt_us: int, user_ns: int) -> None:
    assert handshake_rtt_ms(_tcp_info(rtt_us, 0), user_ns) == rtt_us / 1000


@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(0, 10**10))
def test_retransmitted_syn_falls_back_to_user_time(rtt_us: int, retrans: int, user_ns: int) -> None:
    # Karn: a retransmitted SYN gives no RTT sample; the user waited the whole connect.
    assert handshake_rtt_ms(_tcp_info(rtt_us, retrans), user_ns) == user_ns / 1e6
    assert handshake_rtt_ms(_tcp_info(0, 0), user_ns) == user_ns / 1e6
    assert handshake_rtt_ms(b"short", user_ns) == user_ns / 1e6


async def test_closed_port_is_refused_and_a_live_one_measured() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        options = LatencyOptions(count=3, interval_s=0.01, wait_s=1)
        measured = await measure([f"127.0.0.1:{port}", f"127.0.0.1:{closed}"], options)
    ok, refused = as_results(LatencyResult, measured)
    assert ok.status == "ok" and ok.received == 3 and ok.rtt_median_ms is not None
    assert refused.status == "failed" and refused.failure_kind == "refused"
    assert (refused.sent, refused.received, refused.loss_pct) == (3, 0, 100.0)


async def test_bad_target_is_refused_before_measuring() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        await measure(["127.0.0.1"], LatencyOptions())
