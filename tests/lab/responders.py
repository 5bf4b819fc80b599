"""Servers for the far end of a lab path, with a known added delay (netem is absent here), and a
packet capture for the near end.

    python -m tests.lab.responders icmp --delay-ms 5 --drop 3,7
    python -m tests.lab.responders http --port 8080 --delay-ms 3 [--tls CERT KEY]
    python -m tests.lab.responders capture --iface IFACE

``icmp`` answers ICMP and ICMPv6 echo requests itself (run it where the kernel's own replies are
off: ``net.ipv4.icmp_echo_ignore_all=1``, ``net.ipv6.icmp.echo_ignore_all=1``). Each reply leaves
``delay_ms`` after the request's kernel receive timestamp: a sleep to 1 ms before, then a spin on
the clock, so the added delay is exact to a few microseconds and the responder's own processing
time hides inside it. ``--drop`` lists sequence numbers never answered, for an exact loss.

``http`` answers every GET with a 2-byte body, ``delay_ms`` after it read the request (HTTP/1.1
keep-alive, one thread per connection), over TLS when given a certificate and key.
A loaded machine may hold a request a little longer than asked (the thread's wake-up, the write
itself): the lab tests hold the probe to ``capture``'s wire clock, not to ``delay_ms``.

``capture`` is the wire's own clock for HTTP exchanges (tcpdump is not installed here): a packet
socket on ``IFACE`` with kernel timestamps prints ``GET <ns>`` for each request leaving (the
stamp is taken where tcpdump's would be, as the frame is handed to the device) and ``HTTP <ns>``
for each answer arriving. Answer minus request is the RTT the network and the server gave,
whatever either end's scheduling did.
"""

from __future__ import annotations

import argparse
import heapq
import http.server
import select
import socket
import ssl
import struct
import sys
import time

from probes import kernel_timestamps
from probes.latency import icmp_packet
from probes.models import Family

SOL_RAW, ICMP_FILTER, ICMP6_FILTER = 255, 1, 1


def _spin_until(deadline_ns: int) -> None:
    remaining = (deadline_ns - time.time_ns()) / 1e9
    if remaining > 0.002:
        time.sleep(remaining - 0.002)
    while time.time_ns() < deadline_ns:
        pass


def serve_icmp(delay_ms: float, drop: set[int]) -> None:
    v4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    v4.setsockopt(SOL_RAW, ICMP_FILTER, _pass_only_v4(icmp_packet.ICMP_ECHO_REQUEST))
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    v6.setsockopt(
        socket.IPPROTO_ICMPV6,
        ICMP6_FILTER,
        icmp_packet.icmp6_filter(icmp_packet.ICMPV6_ECHO_REQUEST),
    )
    families = {v4: Family.IPV4, v6: Family.IPV6}
    for sock in families:
        kernel_timestamps.enable(sock)
    due: list[tuple[int, int, socket.socket, bytes, tuple[str, int]]] = []
    counter = 0
    print("ready", flush=True)
    while True:
        timeout = None
        if due:
            timeout = max(0.0, (due[0][0] - time.time_ns()) / 1e9 - 0.002)
        readable, _, _ = select.select(list(families), [], [], timeout)
        for sock in readable:
            data, ancdata, _, addr = sock.recvmsg(65535, kernel_timestamps.ANCILLARY_BYTES)
            family = families[sock]
            echo = icmp_packet.parse_echo(data, family, ip_header=family is Family.IPV4)
            if echo is None or icmp_packet.is_reply(echo) or echo.seq in drop:
                continue
            rx_ns = kernel_timestamps.timestamp_ns(ancdata) or time.time_ns()
            reply = icmp_packet.build_echo(family, echo.ident, echo.seq, echo.payload, reply=True)
            counter += 1
            heapq.heappush(due, (rx_ns + int(delay_ms * 1e6), counter, sock, reply, addr[0]))
        while due and due[0][0] - time.time_ns() < 2_000_000:
            deadline, _, sock, reply, host = heapq.heappop(due)
            _spin_until(deadline)
            sock.sendto(reply, (host, 0))


def _pass_only_v4(kind: int) -> bytes:
    return (~(1 << kind) & 0xFFFFFFFF).to_bytes(4, sys.byteorder)


def serve_http(port: int, delay_ms: float, tls: tuple[str, str] | None) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            _spin_until(time.time_ns() + int(delay_ms * 1e6))
            # One write, so head and body leave in one segment (no Nagle wait between them).
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

        def server_bind(self) -> None:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    server = Server(("::", port), Handler)
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
PACKET_OUTGOING, IPPROTO_TCP = 4, 6


def capture(iface: str) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    if not kernel_timestamps.enable(sock):
        raise SystemExit("no kernel timestamps on a packet socket: no wire clock")
    print("ready", flush=True)
    while True:
        frame, ancdata, _, addr = sock.recvmsg(65535, kernel_timestamps.ANCILLARY_BYTES)
        stamp = kernel_timestamps.timestamp_ns(ancdata)
        payload = _tcp_payload(frame)
        if stamp is None or payload is None:
            continue
        outgoing = addr[2] == PACKET_OUTGOING
        if outgoing and payload.startswith(b"GET "):
            print(f"GET {stamp}", flush=True)
        elif not outgoing and payload.startswith(b"HTTP/"):
            print(f"HTTP {stamp}", flush=True)


def _tcp_payload(frame: bytes) -> bytes | None:
    """The TCP payload of an Ethernet frame (IPv4, or IPv6 without extension headers)."""
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype == ETH_P_IPV6 and len(frame) >= 54 and frame[20] == IPPROTO_TCP:
        tcp = 54
    elif ethertype == ETH_P_IP and len(frame) >= 34 and frame[23] == IPPROTO_TCP:
        tcp = 14 + (frame[14] & 0x0F) * 4
    else:
        return None
    if len(frame) < tcp + 20:
        return None
    return frame[tcp + (frame[tcp + 12] >> 4) * 4 :]


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    icmp = sub.add_parser("icmp")
    icmp.add_argument("--delay-ms", type=float, default=0.0)
    icmp.add_argument("--drop", default="")
    http = sub.add_parser("http")
    http.add_argument("--port", type=int, default=8080)
    http.add_argument("--delay-ms", type=float, default=0.0)
    http.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    sub.add_parser("capture").add_argument("--iface", required=True)
    args = parser.parse_args()
    if args.what == "capture":
        capture(args.iface)
    elif args.what == "icmp":
        serve_icmp(args.delay_ms, {int(s) for s in args.drop.split(",") if s})
    else:
        serve_http(args.port, args.delay_ms, tuple(args.tls) if args.tls else None)


if __name__ == "__main__":
    main()
