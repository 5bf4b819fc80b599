"""DNS: how long a resolver takes to answer an A or AAAA query, and what it answered.

One measurement per (resolver, name, type), each timed on its own. Targets are the names;
``options.resolvers`` lists the resolvers ("system" = the first nameserver of /etc/resolv.conf, what
every program on the probe uses; or an address, ``IP``, ``IP:PORT``, ``[IPv6]:PORT``),
``options.qtypes`` the types (default A and AAAA). Queries go over UDP, recursion desired, like a
stub resolver's; a truncated answer is repeated over TCP (RFC 7766). ``resolve_ms`` runs from the
first try's send to the kernel's receive stamp of the answer (``probes.kernel_timestamps``; the
monotonic clock right after the read where the kernel refuses stamps, and ``timestamp_source`` says
which), so a retry after a lost datagram is in it, as a user would have waited it. Successive
queries may be answered from the resolver's cache: that is what users get, and the first query of a
name shows the cold case.

What counts as failed (documented in the README): the test fails when there is no usable answer
(timeout: ``timeout``; ICMP port unreachable: ``refused``) or when the rcode is not NOERROR
(NXDOMAIN, SERVFAIL, REFUSED...: ``dns``, with ``rcode`` and ``resolve_ms`` kept, since the
resolver did answer). Targets are names that should exist, so NXDOMAIN is a failure. NOERROR with
no record of the type asked (a name without AAAA) is an ok result with ``answers`` 0.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
from pydantic import BaseModel, ConfigDict, Field, field_validator

from probes import kernel_timestamps
from probes.latency.address import split_host_port
from probes.models import FailureKind, TimestampSource
from probes.options import validate_options
from probes.spec import Failure, Measurement, ProbeSpec, Span

ENGINE = "dnspython"
SYSTEM = "system"
DNS_PORT = 53
RESOLV_CONF = Path("/etc/resolv.conf")

QType = Literal["A", "AAAA"]
DEFAULT_QTYPES: tuple[QType, ...] = ("A", "AAAA")


class DnsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    resolvers: list[str] = Field(default_factory=lambda: [SYSTEM], min_length=1, max_length=8)
    qtypes: list[QType] = Field(default_factory=lambda: list(DEFAULT_QTYPES), min_length=1)
    #: glibc's default per-try timeout is 5 s; 2 s x 2 tries keeps a test short on a dead resolver.
    wait_s: float = Field(default=2.0, gt=0, le=30, description="Per try.")
    tries: int = Field(default=2, ge=1, le=5)

    @field_validator("resolvers", "qtypes", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("resolvers")
    @classmethod
    def _resolvers_parse(cls, value: list[str]) -> list[str]:
        for text in value:
            if text != SYSTEM:
                resolver_address(text)
        return value


def parse_options(options: Mapping[str, Any]) -> DnsOptions:
    return validate_options(DnsOptions, options, "dns")


def resolver_address(text: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` -> (address, port); ValueError otherwise."""
    try:
        return str(ipaddress.ip_address(text)), DNS_PORT
    except ValueError:
        pass
    host, port = split_host_port(text)
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        raise ValueError(
            f"resolver {text!r} must be 'system' or an IP address [with port]"
        ) from None


def system_resolver(resolv_conf: Path = RESOLV_CONF) -> str:
    """The first nameserver the system uses; ValueError when there is none."""
    try:
        nameservers = dns.resolver.Resolver(filename=str(resolv_conf)).nameservers
    except dns.resolver.NoResolverConfiguration:
        nameservers = []
    if not nameservers:
        raise ValueError(f"no nameserver in {resolv_conf}")
    return str(nameservers[0])


def judge(
    response: dns.message.Message, qtype: QType
) -> tuple[str, int, tuple[FailureKind, str] | None]:
    """rcode text, number of records of ``qtype`` in the answer, and the failure if any."""
    rcode = dns.rcode.to_text(response.rcode())
    rdtype = dns.rdatatype.from_text(qtype)
    answers = sum(len(rrset) for rrset in response.answer if rrset.rdtype == rdtype)
    if response.rcode() == dns.rcode.NOERROR:
        return rcode, answers, None
    name = response.question[0].name.to_text() if response.question else "?"
    what = "does not exist" if response.rcode() == dns.rcode.NXDOMAIN else "failed"
    return rcode, answers, (FailureKind.DNS, f"{name} {qtype} {what}: the resolver said {rcode}")


async def _exchange_udp(
    query: dns.message.Message, address: str, port: int, options: DnsOptions
) -> tuple[dns.message.Message, kernel_timestamps.Rtt]:
    """The answer to ``query`` and the time from the first send to its arrival."""
    wire = query.to_wire()
    af = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(af, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        kernel_timestamps.enable(sock)
        sock.connect((address, port))  # UDP: sets the peer, sends nothing; refusals come back
        first: tuple[int, int] | None = None
        for _ in range(options.tries):
            sent = time.time_ns(), time.perf_counter_ns()
            sock.send(wire)
            first = first or sent
            try:
                async with asyncio.timeout(options.wait_s):
                    while True:
                        data, rx_kernel, rx_mono = await kernel_timestamps.recv_stamped(sock)
                        try:
                            response = dns.message.from_wire(data)
                        except dns.exception.DNSException:
                            continue  # not a DNS message: keep waiting for the real answer
                        if query.is_response(response):
                            rtt = kernel_timestamps.rtt(first[0], rx_kernel, first[1], rx_mono)
                            return response, rtt
            except TimeoutError:
                continue
    raise TimeoutError(f"no answer from {address} port {port} in {options.tries} tries")


async def query(qname: str, qtype: QType, resolver: str, options: DnsOptions) -> Measurement:
    """One lookup; every failure becomes a failed measurement (see the module docstring)."""
    measured_at, started = datetime.now(UTC), time.perf_counter_ns()
    label = resolver
    rcode: str | None = None
    answers: int | None = None
    resolve_ms: float | None = None
    source: TimestampSource | None = None
    failure: tuple[FailureKind, str] | None = None
    try:
        if resolver == SYSTEM:
            address, port = system_resolver(), DNS_PORT
            label = f"{SYSTEM}:{address}"
        else:
            address, port = resolver_address(resolver)
        message = dns.message.make_query(qname, qtype)  # recursion desired, as a stub asks
        response, (resolve_ms, source) = await _exchange_udp(message, address, port, options)
        if response.flags & dns.flags.TC:  # truncated: ask again over TCP, time from the start
            response = await dns.asyncquery.tcp(message, address, options.wait_s, port=port)
            resolve_ms, source = (time.perf_counter_ns() - started) / 1e6, "user"
        rcode, answers, failure = judge(response, qtype)
    except TimeoutError as exc:
        failure = (FailureKind.TIMEOUT, str(exc) or f"no answer from {resolver}")
    except ConnectionRefusedError:
        failure = (FailureKind.REFUSED, f"{resolver} refused DNS (ICMP port unreachable)")
    except OSError as exc:
        failure = (FailureKind.UNREACHABLE, f"cannot reach {resolver}: {exc}")
    except (ValueError, dns.exception.DNSException) as exc:
        failure = (FailureKind.DNS, f"{qname} {qtype} via {resolver}: {exc}")
    return Measurement(
        engine=ENGINE,
        target=qname,
        span=Span(measured_at, (time.perf_counter_ns() - started) / 1e6),
        failure=Failure(*failure) if failure else None,
        fields={
            "resolver": label[:256],
            "qname": qname,
            "qtype": qtype,
            "rcode": rcode,
            "resolve_ms": None if resolve_ms is None else round(resolve_ms, 3),
            "answers": answers,
            "timestamp_source": source,
        },
    )


async def run(spec: ProbeSpec) -> list[Measurement]:
    """Registry entry point: the spec's targets are the names to look up."""
    return await measure(spec.targets, spec.options)


async def measure(qnames: Sequence[str], options: Mapping[str, Any]) -> list[Measurement]:
    """Every (resolver, name, type) in that order; resolvers in parallel, each one's queries
    one after another so they do not queue behind each other inside the resolver."""
    opts = parse_options(options)
    for qname in qnames:
        try:
            dns.name.from_text(qname)
        except dns.exception.DNSException as exc:
            raise ValueError(f"target {qname!r} is not a domain name: {exc}") from None

    async def _one_resolver(resolver: str) -> list[Measurement]:
        return [
            await query(qname, qtype, resolver, opts) for qname in qnames for qtype in opts.qtypes
        ]

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(_one_resolver(r)) for r in opts.resolvers]
    return [result for task in tasks for result in task.result()]
