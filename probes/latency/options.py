"""Settings of the latency engines, from ``ProbeSpec.options`` (a schedule's ``options:``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from probes.models import Family
from probes.options import validate_options

#: Idle RTT is the median of at least 20 pings (methodology.md, "What hamletnet should adopt" 8).
DEFAULT_COUNT = 20
#: iputils ping's interval for unprivileged users; far below any link's capacity.
DEFAULT_INTERVAL_S = 0.2
#: A reply later than this counts as lost (ping -W; a satellite or congested 3G hop stays inside).
DEFAULT_WAIT_S = 2.0
#: iputils ping's default payload: 56 bytes, a 64-byte ICMP message.
DEFAULT_PAYLOAD_BYTES = 56


class LatencyOptions(BaseModel):
    """One series of probes per target; every engine reads the fields that apply to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(default=DEFAULT_COUNT, ge=1, le=1000, description="Probes after warm-up.")
    interval_s: float = Field(default=DEFAULT_INTERVAL_S, ge=0.01, le=60)
    wait_s: float = Field(default=DEFAULT_WAIT_S, gt=0, le=30, description="Per-probe timeout.")
    family: Family | None = Field(default=None, description="Address family of a host name.")
    payload_bytes: int = Field(default=DEFAULT_PAYLOAD_BYTES, ge=8, le=1452, description="icmp")
    socket: Literal["auto", "dgram", "raw"] = Field(
        default="auto", description="icmp: unprivileged datagram socket, raw socket, or try both"
    )
    ca_file: str | None = Field(default=None, description="http: extra CA bundle (PEM)")


def parse_options(options: Mapping[str, Any]) -> LatencyOptions:
    """Validated options; ``ValueError`` names each offending option."""
    return validate_options(LatencyOptions, options, "latency")
