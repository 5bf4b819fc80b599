"""Router Advertisements for the lab, sent from the router namespace (radvd 2.19, Debian's, has no
PREF64 option). The RA is built with scapy, an implementation independent of the probe's parser
(``probes/ipv6/ra.py``), and sent from a raw ICMPv6 socket at hop limit 255: periodically to
all-nodes, and at once in answer to a Router Solicitation.

    python -m tests.lab.ra_sender --iface IF --prefix 2001:db8:1::/64 [--other] [--managed]
        [--pref64 2001:db8:64::/96] [--interval 1]
"""

from __future__ import annotations

import argparse
import ipaddress
import select
import socket
import time

from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6NDOptPREF64, ICMPv6NDOptPrefixInfo

_PLC = {96: 0, 64: 1, 56: 2, 48: 3, 40: 4, 32: 5}  # RFC 8781 §4


def build(args: argparse.Namespace) -> bytes:
    prefix = ipaddress.IPv6Network(args.prefix)
    ra = ICMPv6ND_RA(
        M=int(args.managed),
        O=int(args.other),
        routerlifetime=args.lifetime,
        chlim=64,
        prf=0,
        cksum=0,  # the kernel computes ICMPv6 checksums on raw sockets
    ) / ICMPv6NDOptPrefixInfo(
        prefix=str(prefix.network_address),
        prefixlen=prefix.prefixlen,
        L=1,
        A=1,
        validlifetime=86400,
        preferredlifetime=14400,
    )
    if args.pref64:
        pref64 = ipaddress.IPv6Network(args.pref64)
        ra = ra / ICMPv6NDOptPREF64(
            prefix=str(pref64.network_address),
            plc=_PLC[pref64.prefixlen],
            scaledlifetime=args.lifetime // 8,
        )
    return bytes(ra)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--managed", action="store_true")
    parser.add_argument("--other", action="store_true")
    parser.add_argument("--lifetime", type=int, default=600)
    parser.add_argument("--pref64")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    payload = build(args)
    index = socket.if_nametoindex(args.iface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.iface.encode())
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    next_at = 0.0
    while True:
        now = time.monotonic()
        if now >= next_at:
            sock.sendto(payload, ("ff02::1", 0, 0, index))
            next_at = now + args.interval
        if select.select([sock], [], [], max(0.0, next_at - time.monotonic()))[0]:
            data = sock.recv(2048)
            if data[:1] == bytes([133]):  # a Router Solicitation: answer it now
                sock.sendto(payload, ("ff02::1", 0, 0, index))
                next_at = time.monotonic() + args.interval


if __name__ == "__main__":
    main()
