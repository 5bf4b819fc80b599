"""The host's own IPv6 configuration from the kernel's text tables: global addresses from
``/proc/net/if_inet6`` and the default route from ``/proc/net/ipv6_route`` (both per network
namespace). Parsers are pure; ``read_*`` are the thin file readers."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from probes.ipv6.scoring import Tunnel

IF_INET6 = Path("/proc/net/if_inet6")
IPV6_ROUTE = Path("/proc/net/ipv6_route")

# include/net/ipv6.h: IPV6_ADDR_SCOPE_* as printed in if_inet6 (scope << 4); 0 is global.
_SCOPE_GLOBAL = 0x00
# include/uapi/linux/if_addr.h: the low byte of ifa_flags, as printed in if_inet6.
_IFA_F_DADFAILED = 0x08
_IFA_F_DEPRECATED = 0x20
_IFA_F_TENTATIVE = 0x40
# include/uapi/linux/ipv6_route.h
_RTF_UP = 0x0001
_RTF_GATEWAY = 0x0002
_RTF_REJECT = 0x0200

_ULA = IPv6Network("fc00::/7")  # RFC 4193: unique local, not globally routable
_6TO4 = IPv6Network("2002::/16")  # RFC 3056
_TEREDO = IPv6Network("2001::/32")  # RFC 4380


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    address: IPv6Address
    prefixlen: int
    ifname: str
    global_scope: bool
    usable: bool  # neither tentative, failed DAD nor deprecated


@dataclass(frozen=True, slots=True)
class DefaultRoute:
    gateway: IPv6Address | None
    ifname: str
    metric: int


def parse_if_inet6(text: str) -> list[InterfaceAddress]:
    """Rows of ``/proc/net/if_inet6``: address, ifindex, prefix length, scope, flags, name (hex)."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 6:
            continue
        raw, _, plen, scope, flags, ifname = fields
        flag_bits = int(flags, 16)
        rows.append(
            InterfaceAddress(
                address=IPv6Address(bytes.fromhex(raw)),
                prefixlen=int(plen, 16),
                ifname=ifname,
                global_scope=int(scope, 16) == _SCOPE_GLOBAL,
                usable=not flag_bits & (_IFA_F_DADFAILED | _IFA_F_DEPRECATED | _IFA_F_TENTATIVE),
            )
        )
    return rows


def global_addresses(rows: list[InterfaceAddress]) -> list[IPv6Address]:
    """Usable addresses of global scope, unique-local ones (fc00::/7) left out: the kernel gives
    ULAs global scope, but they reach nothing beyond the site (RFC 4193)."""
    return [
        row.address for row in rows if row.global_scope and row.usable and row.address not in _ULA
    ]


def parse_ipv6_route(text: str) -> list[DefaultRoute]:
    """The usable default routes (::/0, up, not reject) of ``/proc/net/ipv6_route``, lowest metric
    first. Without IPv6 routes the kernel still lists a reject route via ``lo``: not a default."""
    routes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 10:
            continue
        dest, dest_len, _, _, nexthop, metric, _, _, flags, ifname = fields
        bits = int(flags, 16)
        if int(dest, 16) or int(dest_len, 16) or not bits & _RTF_UP or bits & _RTF_REJECT:
            continue
        gateway = IPv6Address(bytes.fromhex(nexthop)) if bits & _RTF_GATEWAY else None
        routes.append(DefaultRoute(gateway=gateway, ifname=ifname, metric=int(metric, 16)))
    return sorted(routes, key=lambda r: r.metric)


def tunnel_kind(addresses: list[IPv6Address]) -> Tunnel | None:
    """ "6to4" or "teredo" when the host's only global addresses are of that kind (test-ipv6
    scores both 7/7)."""
    if not addresses:
        return None
    if all(a in _6TO4 for a in addresses):
        return "6to4"
    if all(a in _TEREDO for a in addresses):
        return "teredo"
    return None


def read_addresses(path: Path = IF_INET6) -> list[InterfaceAddress]:
    """The host's IPv6 addresses; none when IPv6 is disabled (the file is then missing)."""
    try:
        return parse_if_inet6(path.read_text(encoding="ascii"))
    except FileNotFoundError:
        return []


def read_default_routes(path: Path = IPV6_ROUTE) -> list[DefaultRoute]:
    try:
        return parse_ipv6_route(path.read_text(encoding="ascii"))
    except FileNotFoundError:
        return []
