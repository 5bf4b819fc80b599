"""Kernel timestamps: both timespec layouts, the fallback when the wall clock steps, and real
ICMP, HTTP and DNS measurements over loopback on a kernel that stamps and on one that refuses."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import dns.message
import dns.rrset
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from probes import dns as dns_probe
from probes import kernel_timestamps as kt
from probes.latency import http_rtt, icmp
from probes.latency.options import LatencyOptions
from probes.models import DnsResult, LatencyResult, Status
from tests.probes.stamping import as_result, as_results

ns = st.integers(0, 2**62)


@given(st.integers(0, 2**40), st.integers(0, 999_999_999))
def test_64_bit_timespec(sec: int, nsec: int) -> None:
    assert kt.timespec_ns(struct.pack("=qq", sec, nsec)) == sec * 1_000_000_000 + nsec


@given(st.integers(0, 2**31 - 1), st.integers(0, 999_999_999))
def test_32_bit_timespec_of_armv7l(sec: int, nsec: int) -> None:
    assert kt.timespec_ns(struct.pack("=ii", sec, nsec)) == sec * 1_000_000_000 + nsec


def test_not_a_timestamp() -> None:
    assert kt.timespec_ns(b"\0\0\0") is None
    assert kt.timespec_ns(struct.pack("=qq", 1, 2_000_000_000)) is None
    other = [(socket.SOL_SOCKET, 99, struct.pack("=qq", 1, 0))]
    assert kt.timestamp_ns(other) is None
    assert kt.timestamp_ns([(socket.SOL_SOCKET, kt.SO_TIMESTAMPNS_NEW, struct.pack("=qq", 2, 5))])


@given(ns, st.integers(0, 10**9), st.integers(0, 10**9), st.integers(-(10**12), 10**12))
def test_rtt_is_the_kernel_one_unless_the_clock_stepped(
    sent: int, kernel_rtt: int, wakeup: int, step: int
) -> None:
    # User space sees the packet ``wakeup`` ns after the kernel; the wall clock may step by
    # ``step`` ns between send and receive.
    mono_sent = 10**12
    rtt = kt.rtt(sent, sent + kernel_rtt + step, mono_sent, mono_sent + kernel_rtt + wakeup)
    if step == 0:
        assert rtt == (kernel_rtt / 1e6, "kernel")
    assert 0 <= rtt.ms <= (kernel_rtt + wakeup + kt.CLOCK_STEP_TOLERANCE_NS) / 1e6
    if kernel_rtt + step < 0 or step > wakeup + kt.CLOCK_STEP_TOLERANCE_NS:
        assert rtt == ((kernel_rtt + wakeup) / 1e6, "user")  # the monotonic interval


def test_no_kernel_stamp_falls_back_to_monotonic() -> None:
    assert kt.rtt(5, None, 1_000_000, 3_500_000) == (2.5, "user")


def test_a_series_is_kernel_stamped_only_if_every_sample_is() -> None:
    assert kt.series_source([]) is None
    assert kt.series_source(["kernel", "kernel"]) == "kernel"
    assert kt.series_source(["kernel", "user", "kernel"]) == "user"


# -- a kernel that refuses receive timestamps ---------------------------------------------------


class RefusingSocket(socket.socket):
    """A socket whose kernel answers ``SO_TIMESTAMPNS`` with ``ENOPROTOOPT``, as some kernels,
    containers and emulators do (qemu-user running the arm64 build)."""

    def setsockopt(self, level: int, optname: int, *args: Any) -> None:  # type: ignore[override]
        if level == socket.SOL_SOCKET and optname in (kt.SO_TIMESTAMPNS_OLD, kt.SO_TIMESTAMPNS_NEW):
            raise OSError(errno.ENOPROTOOPT, os.strerror(errno.ENOPROTOOPT))
        super().setsockopt(level, optname, *args)


@pytest.fixture(params=["kernel", "user"])
def stamps(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test on this kernel ("kernel") and on one that refuses receive timestamps
    ("user"): every socket made meanwhile, the probes' and the local servers', refuses them."""
    if request.param == "user":
        monkeypatch.setattr(socket, "socket", RefusingSocket)
        yield request.param
    else:
        with _stamping_switched_on():
            yield request.param


@contextmanager
def _stamping_switched_on() -> Iterator[None]:
    """Hold receive stamping on for the whole stack while the test runs.

    Linux stamps arriving packets only while some socket asks for it, and switches that on
    lazily: the first ``SO_TIMESTAMPNS`` defers the switch to a workqueue
    (``net_enable_timestamp``), so a TCP segment arriving just after (TCP, unlike UDP and ICMP,
    has no stamp-on-read fallback) carries none and that sample is rightly a "user" one. One
    stamping TCP connection, held open until a segment of it arrives stamped, takes the race out.
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as client:
            peer, _ = server.accept()
            with peer:
                assert kt.enable(peer)
                for _ in range(500):
                    client.sendall(b"x")
                    _, ancdata, _, _ = peer.recvmsg(16, kt.ANCILLARY_BYTES)
                    if kt.timestamp_ns(ancdata) is not None:
                        break
                    time.sleep(0.01)
                else:
                    pytest.fail("the kernel never stamped a received TCP segment")
                yield


def test_enable_reports_a_refusal_instead_of_raising() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert kt.enable(sock) is True
    with RefusingSocket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert kt.enable(sock) is False


FAST = LatencyOptions(count=3, interval_s=0.01, wait_s=2)


async def test_icmp_over_loopback(stamps: str) -> None:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    except PermissionError:
        pytest.skip("ICMP needs root or CAP_NET_RAW here (the lab tests run as root)")
    (result,) = as_results(LatencyResult, await icmp.measure(["127.0.0.1"], FAST))
    assert (result.status, result.error) == (Status.OK, None)
    assert (result.sent, result.received) == (3, 3)
    assert result.timestamp_source == stamps


async def test_http_over_loopback(stamps: str, aiohttp_server: Any) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/"
    (result,) = as_results(LatencyResult, await http_rtt.measure([url], FAST))
    assert (result.status, result.error) == (Status.OK, None)
    assert (result.sent, result.received) == (3, 3) and result.first_byte_ms is not None
    assert result.timestamp_source == stamps


class _Responder(asyncio.DatagramProtocol):
    """A DNS server on loopback that answers every A query with 192.0.2.1."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        name = query.question[0].name
        response.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1"))
        self.transport.sendto(response.to_wire(), addr)


async def test_dns_over_loopback(stamps: str) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Responder, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        options = dns_probe.parse_options({"qtypes": "A", "wait_s": 2})
        found = await dns_probe.query("www.example.vn", "A", f"127.0.0.1:{port}", options)
        result = as_result(DnsResult, found)
    finally:
        transport.close()
    assert (result.status, result.error) == (Status.OK, None)
    assert (result.rcode, result.answers) == ("NOERROR", 1)
    assert result.timestamp_source == stamps
