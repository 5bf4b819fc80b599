"""Target addresses: a host name is resolved once per test, so lookups never enter an RTT."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

from probes.models import Family


async def resolve(host: str, family: Family | None) -> tuple[str, Family, float | None]:
    """``host``'s address and family, and the lookup time in ms (None for an address literal)."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        found = Family.IPV4 if literal.version == 4 else Family.IPV6
        if family is not None and family is not found:
            raise ValueError(f"target {host!r} is an {found.value} address, not {family.value}")
        return str(literal), found, None
    af = {None: socket.AF_UNSPEC, Family.IPV4: socket.AF_INET, Family.IPV6: socket.AF_INET6}
    started = time.perf_counter_ns()
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, None, family=af[family], type=socket.SOCK_DGRAM
    )
    elapsed = (time.perf_counter_ns() - started) / 1e6
    fam, _, _, _, sockaddr = infos[0]
    return str(sockaddr[0]), Family.IPV4 if fam == socket.AF_INET else Family.IPV6, elapsed


def split_host_port(target: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); ValueError names the target otherwise."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {target!r} must be HOST:PORT (or [IPv6]:PORT)")
    return host.strip("[]"), int(port)
