"""Settings of the IPv6 readiness probe (``ProbeSpec.options``), with their defaults.

Every check needs a target. By default all of them live under the hamletnet target host ``T``
(the probe's ``--target``), named as test-ipv6.com names its own (falling-sky/source), so one
server can serve them all:

=====================  ===========================  ==========================================
option                 default                      what it must be
=====================  ===========================  ==========================================
dual_stack_url         ``http://ds.T/``             a name with both A and AAAA records
ipv4_only_url          ``http://ipv4.T/``           a name with an A record only
ipv6_only_url          ``http://ipv6.T/``           a name with an AAAA record only
large_response_url     ``http://ipv6.T/large``      over IPv6, a body of ≥ 1600 bytes
ipv6_only_dns_name     ``ds.v6ns.T``                a name whose DNS servers have IPv6 only
ipv4_literal_url       from ipv4_only_url's A       ``http://<IPv4 address>/`` (skips DNS)
ipv6_literal_url       from ipv6_only_url's AAAA    ``http://[<IPv6 address>]/`` (skips DNS)
resolver               the system's resolvers       DNS server address(es) for the AAAA and
                                                    ``ipv4only.arpa`` questions
icmpv6_targets         ipv6_only and dual-stack     host names or IPv6 addresses to ping
                       hosts
=====================  ===========================  ==========================================

Give the literal URLs where DNS itself may be the problem: derived from DNS, they are skipped
when the name does not resolve. test-ipv6.com's own main site no longer operates
(methodology §5), so nothing here defaults to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from probes.ipv6.http_check import split_url
from probes.ipv6.params import (
    CHECK_TIMEOUT_S,
    ECHO_COUNT,
    HAPPY_EYEBALLS_DELAY_S,
    LARGE_RESPONSE_MIN_BYTES,
    RA_WAIT_S,
    SLOW_S,
)

Seconds = Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)]


class Ipv6Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dual_stack_url: str | None = None
    ipv4_only_url: str | None = None
    ipv6_only_url: str | None = None
    large_response_url: str | None = None
    ipv6_only_dns_name: str | None = None
    ipv4_literal_url: str | None = None
    ipv6_literal_url: str | None = None
    resolver: list[str] | None = None
    icmpv6_targets: list[str] | None = None
    #: False: send no Router Solicitation (``ra_seen`` unknown), for a run that must keep to
    #: loopback (the demo); RA-dependent verdicts then cannot be "ready".
    router_discovery: bool = True
    check_timeout_s: Seconds = CHECK_TIMEOUT_S
    slow_s: Seconds = SLOW_S
    ra_wait_s: Seconds = RA_WAIT_S
    happy_eyeballs_delay_s: Annotated[float, Field(ge=0, le=10)] = HAPPY_EYEBALLS_DELAY_S
    echo_count: Annotated[int, Field(ge=1, le=20)] = ECHO_COUNT
    large_response_min_bytes: Annotated[int, Field(ge=1281, le=1_000_000)] = (
        LARGE_RESPONSE_MIN_BYTES
    )

    @field_validator("resolver", "icmpv6_targets", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator(
        "dual_stack_url",
        "ipv4_only_url",
        "ipv6_only_url",
        "large_response_url",
        "ipv4_literal_url",
        "ipv6_literal_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            split_url(value)
        return value


def _target_host(target: str) -> str:
    host = target.strip().strip(".")
    if not host or any(c in host for c in "/:@ ") or host.startswith("["):
        raise ValueError(
            f"ipv6 target {target!r} must be a host name (the hamletnet target host), e.g."
            " hamletnet.example.vn"
        )
    return host


def resolve_options(target: str, raw: Mapping[str, Any]) -> Ipv6Options:
    """The options with every default filled in from the target host; ValueError names the
    offending option and value."""
    try:
        given = Ipv6Options.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors(include_url=False)
        )
        raise ValueError(f"ipv6 options: {problems}") from None
    host = _target_host(target)
    defaults = {
        "dual_stack_url": f"http://ds.{host}/",
        "ipv4_only_url": f"http://ipv4.{host}/",
        "ipv6_only_url": f"http://ipv6.{host}/",
        "large_response_url": f"http://ipv6.{host}/large",
        "ipv6_only_dns_name": f"ds.v6ns.{host}",
    }
    missing = {k: v for k, v in defaults.items() if getattr(given, k) is None}
    return given.model_copy(update=missing)
