"""ICMPv6 on the wire: echo (ping) and router solicitation. Message builders and parsers are
pure; the socket functions are thin. Echo uses an unprivileged ping socket where the system
allows it (net.ipv4.ping_group_range) and a raw socket (CAP_NET_RAW) otherwise; router discovery
needs the raw socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from probes.ipv6.params import (
    ALL_ROUTERS,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_ROUTER_ADVERTISEMENT,
    ICMPV6_ROUTER_SOLICITATION,
    ND_HOP_LIMIT,
)
from probes.ipv6.ra import RaParseError, RouterAdvert, acceptance_problem, parse_router_advert

_ECHO = struct.Struct("!BBHHH")  # type, code, checksum (the kernel fills it in), id, sequence
_ICMP6_FILTER = 1  # <netinet/icmp6.h>: socket option at level IPPROTO_ICMPV6


def echo_request(ident: int, seq: int, payload: bytes = b"hamletnet") -> bytes:
    return _ECHO.pack(ICMPV6_ECHO_REQUEST, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + payload


def parse_echo_reply(data: bytes) -> tuple[int, int] | None:
    """(identifier, sequence) of an echo reply; None for any other ICMPv6 message."""
    if len(data) < _ECHO.size:
        return None
    icmp_type, code, _, ident, seq = _ECHO.unpack_from(data)
    return (ident, seq) if icmp_type == ICMPV6_ECHO_REPLY and code == 0 else None


def router_solicitation() -> bytes:
    """RS without a source link-layer option (allowed, RFC 4861 §4.1)."""
    return struct.pack("!BBHI", ICMPV6_ROUTER_SOLICITATION, 0, 0, 0)


def _icmp6_filter_pass_only(icmp_type: int) -> bytes:
    # Linux: a set bit blocks the type (net/ipv6/raw.c, icmpv6_filter).
    words = [0xFFFFFFFF] * 8
    words[icmp_type >> 5] &= ~(1 << (icmp_type & 31))
    return struct.pack(f"{'<' if sys.byteorder == 'little' else '>'}8I", *words)


@dataclass(frozen=True, slots=True)
class EchoResult:
    address: str
    sent: int
    received: int
    rtts_ms: tuple[float, ...] = ()
    error: str | None = None


def _echo_socket() -> tuple[socket.socket, bool]:
    """(socket, is_raw): a ping socket if allowed, else raw; PermissionError if neither is."""
    try:
        return socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6), False
    except PermissionError:
        return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6), True


async def echo(
    address: str, *, count: int, timeout_s: float, interval_s: float = 0.2
) -> EchoResult:
    """``count`` echo requests to ``address``, one at a time, each waiting ``timeout_s``."""
    loop = asyncio.get_running_loop()
    try:
        sock, raw = _echo_socket()
    except PermissionError:
        return EchoResult(
            address,
            0,
            0,
            error="no ICMPv6 socket: grant CAP_NET_RAW or widen net.ipv4.ping_group_range",
        )
    ident = os.getpid() & 0xFFFF
    rtts: list[float] = []
    error: str | None = None
    sent = 0
    with sock:
        sock.setblocking(False)
        for seq in range(1, count + 1):
            if seq > 1:
                await asyncio.sleep(interval_s)
            started = time.perf_counter_ns()
            try:
                await loop.sock_sendto(sock, echo_request(ident, seq), (address, 0, 0, 0))
            except OSError as exc:
                error = exc.strerror or str(exc)
                break
            sent += 1
            try:
                async with asyncio.timeout(timeout_s):
                    while True:
                        data, source = await loop.sock_recvfrom(sock, 2048)
                        reply = parse_echo_reply(data)
                        # A ping socket rewrites the identifier and filters replies itself.
                        if reply and reply[1] == seq and (not raw or reply[0] == ident):
                            if IPv6Address(source[0].split("%")[0]) == IPv6Address(address):
                                rtts.append((time.perf_counter_ns() - started) / 1e6)
                                break
            except TimeoutError:
                continue
            except OSError as exc:
                error = exc.strerror or str(exc)
    if not rtts and error is None:
        error = f"no echo reply in {sent} tries"
    return EchoResult(address, sent, len(rtts), tuple(rtts), None if rtts else error)


@dataclass(frozen=True, slots=True)
class Solicitation:
    """What router discovery heard: the first acceptable RA, and why others were ignored."""

    advert: RouterAdvert | None = None
    router: IPv6Address | None = None
    ifname: str | None = None
    ignored: list[str] = field(default_factory=list)
    sent_on: list[str] = field(default_factory=list)


def solicit_router(wait_s: float) -> Solicitation:
    """Send an RS on every interface but loopback and wait up to ``wait_s`` for an acceptable RA
    (hop limit 255, link-local source: RFC 4861 §6.1.2). Blocking: call it in a thread.
    PermissionError without CAP_NET_RAW."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    with sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(
            socket.IPPROTO_ICMPV6,
            _ICMP6_FILTER,
            _icmp6_filter_pass_only(ICMPV6_ROUTER_ADVERTISEMENT),
        )
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ND_HOP_LIMIT)
        names = dict(socket.if_nameindex())
        sent_on: list[str] = []
        for index, name in names.items():
            if name == "lo":
                continue
            with contextlib.suppress(OSError):  # down, or no link-local address yet
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
                sock.sendto(router_solicitation(), (ALL_ROUTERS, 0, 0, index))
                sent_on.append(name)
        ignored: list[str] = []
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data, ancillary, _, source = sock.recvmsg(65535, socket.CMSG_SPACE(4))
            hop_limit = None
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
                    hop_limit = int.from_bytes(value[:4], sys.byteorder)
            router = IPv6Address(source[0].split("%")[0])
            problem = acceptance_problem(hop_limit, router)
            if problem is None:
                try:
                    advert = parse_router_advert(data)
                except RaParseError as exc:
                    problem = f"malformed RA from {router}: {exc}"
                else:
                    ifname = names.get(source[3]) if len(source) > 3 else None
                    return Solicitation(advert, router, ifname, ignored, sent_on)
            ignored.append(problem)
        return Solicitation(ignored=ignored, sent_on=sent_on)
