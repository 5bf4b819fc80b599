"""Direct DNS questions (dnspython): the AAAA records a name has, as the resolver answers them,
before any address sorting or synthesis by the host. Used for "DNS returns AAAA" and for RFC
7050 NAT64 discovery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address

import dns.asyncresolver
import dns.exception
import dns.resolver


@dataclass(frozen=True, slots=True)
class Lookup:
    name: str
    addresses: tuple[IPv6Address, ...] = ()
    error: str | None = None  # why there is no answer; None for an answer, even an empty one


async def aaaa(name: str, nameservers: Sequence[str] | None, timeout_s: float) -> Lookup:
    """The AAAA records of ``name`` from ``nameservers``, or from the system's resolvers
    (``/etc/resolv.conf``) when None."""
    resolver = dns.asyncresolver.Resolver(configure=nameservers is None)
    if nameservers is not None:
        resolver.nameservers = list(nameservers)
    resolver.lifetime = timeout_s
    try:
        answer = await resolver.resolve(name, "AAAA", search=False)
    except dns.resolver.NoAnswer:
        return Lookup(name)
    except dns.resolver.NXDOMAIN:
        return Lookup(name, error=f"{name} does not exist (NXDOMAIN)")
    except dns.resolver.NoNameservers as exc:
        return Lookup(name, error=f"no resolver answered for {name}: {exc.msg or 'SERVFAIL'}")
    except dns.exception.Timeout:
        return Lookup(name, error=f"no DNS answer for {name} within {timeout_s:g} s")
    except dns.resolver.NoResolverConfiguration:
        return Lookup(name, error="no resolver configured (/etc/resolv.conf is empty)")
    addresses = tuple(IPv6Address(rr.address) for rr in answer)
    return Lookup(name, addresses)
