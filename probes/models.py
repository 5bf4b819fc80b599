"""Result models shared by the probe agent and the server: the wire schema of every measurement.

Units are in the field names (``download_mbps`` is decimal megabits per second, ``rtt_ms`` is
milliseconds). Missing is ``None``, never 0: a lost packet has no RTT, a failed test has no speed.
A failed test is still a result: ``status="failed"`` with a ``failure_kind`` and an ``error`` text
(ripe-atlas-sagan's distinction between a failed measurement and a malformed payload).

Validation is strict: unknown keys, NaN/infinity, negative speeds or times, oversized strings and
timestamps too far in the future or older than the spool retention are all refused. The clock
bounds come from the validation context (``ValidationLimits``) so the server can apply its own
settings; without a context the defaults below apply.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

#: Version of the wire schema these models describe. The server upgrades older versions in
#: ``upgrade_payload`` and refuses newer ones (flent's ``resultset.py`` does the same).
SCHEMA_VERSION = 1

#: How far ahead of the receiver's clock ``measured_at`` may be (a probe's clock may drift
#: a little between NTP syncs; more than this is a wrong clock, not drift).
MAX_CLOCK_SKEW = timedelta(minutes=5)

#: Default spool retention of a probe: a result older than this cannot come from a healthy spool.
DEFAULT_MAX_RESULT_AGE = timedelta(days=30)

# Bounded strings. Identifiers are plain ASCII so they are safe as tags, file names and URL parts.
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
#: Free text that becomes an InfluxDB tag: no control characters and no backslash, which line
#: protocol cannot carry intact in a tag value (InfluxDB 1.x alters them on the way in).
TagText = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f\\]+$")
]

NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
NonNegInt = Annotated[int, Field(ge=0, le=2**62)]
#: Where a test's receive times came from: the kernel's ``SO_TIMESTAMPNS`` stamp of every sample,
#: or user space (the monotonic clock right after the read) for at least one sample, because the
#: kernel refused or gave no stamp, or the wall clock stepped (``probes.kernel_timestamps``).
TimestampSource = Literal["kernel", "user"]


class Kind(StrEnum):
    """One value per test kind; also the default InfluxDB measurement and SQLite ``kind``."""

    BANDWIDTH = "bandwidth"
    LATENCY = "latency"
    DNS = "dns"
    IPV6 = "ipv6"
    CELLULAR = "cellular"
    HEARTBEAT = "heartbeat"


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    #: Not run: the line (cross-traffic) or the probe's CPU stayed busy through the whole wait
    #: (SamKnows' test triggers; methodology.md §4). Carries ``skip_reason``.
    DEFERRED = "deferred"
    #: Not run by the probe's own rule (the line's monthly data budget). Carries ``skip_reason``.
    SKIPPED = "skipped"


class SkipReason(StrEnum):
    """Why a test was deferred or skipped: a decision, not a failure."""

    CROSS_TRAFFIC = "cross_traffic"
    CPU_BUSY = "cpu_busy"
    DATA_BUDGET = "data_budget"


#: The reasons each not-run status may give.
_REASONS_BY_STATUS = {
    Status.DEFERRED: frozenset({SkipReason.CROSS_TRAFFIC, SkipReason.CPU_BUSY}),
    Status.SKIPPED: frozenset({SkipReason.DATA_BUDGET}),
}


class CrossTraffic(StrEnum):
    """What the probe saw of the household's traffic before a bandwidth test."""

    QUIET = "quiet"  # below the threshold: the test ran alone on the line
    BUSY = "busy"  # at or above it (only on a deferred result)
    UNKNOWN = "unknown"  # the probe is not inline, or could not read the interface


class FailureKind(StrEnum):
    """Why a test failed; classified by the probe from exception types, never from message text."""

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"
    DNS = "dns"
    TLS = "tls"
    PROTOCOL = "protocol"
    PERMISSION = "permission"
    TOOL_MISSING = "tool_missing"
    NO_DEVICE = "no_device"
    DEFERRED = "deferred"
    INTERNAL = "internal"


class Family(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"


class Access(StrEnum):
    """Access technology of the line a probe measures (set in the server's registry)."""

    FIBER = "fiber"
    LTE = "4g"
    NR = "5g"


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Clock bounds for ``measured_at``, passed as ``context={"limits": ValidationLimits(...)}``."""

    now: datetime
    max_age: timedelta = DEFAULT_MAX_RESULT_AGE
    max_skew: timedelta = MAX_CLOCK_SKEW

    @classmethod
    def current(cls, max_age: timedelta = DEFAULT_MAX_RESULT_AGE) -> ValidationLimits:
        return cls(now=datetime.now(UTC), max_age=max_age)


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=False
    )


class ResultBase(_Model):
    """Fields every result carries, whatever its kind."""

    schema_version: Literal[1] = 1
    result_id: uuid.UUID = Field(description="Made by the probe; the same id is stored once.")
    probe_id: Identifier
    measured_at: AwareDatetime = Field(description="Start of the test, UTC.")
    duration_ms: NonNegFloat | None = None
    status: Status = Status.OK
    failure_kind: FailureKind | None = None
    error: LongText | None = Field(default=None, description="Why the test failed, in words.")
    skip_reason: SkipReason | None = Field(
        default=None, description="Why a deferred or skipped test did not run."
    )
    engine: Identifier = Field(description="What measured: 'http', 'iperf3', 'icmp', 'mmcli'...")
    target: TagText | None = Field(default=None, description="What was measured against.")
    # The probe's wall clock (a Raspberry Pi has no RTC: wrong after a power cut until NTP
    # syncs). None: not known (an older agent, or no adjtimex to ask); see probes/clock.py.
    clock_synced: bool | None = Field(
        default=None, description="The kernel said the clock was NTP-synchronised (adjtimex)."
    )
    clock_restamped: bool | None = Field(
        default=None,
        description="measured_at was recomputed from the monotonic clock after the first sync.",
    )
    signature: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="Probe's Ed25519 signature over the canonical result."
    )

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_is_an_integer(cls, value: Any) -> Any:
        # JSON ``true`` and ``1.0`` equal 1 to Python, so the Literal alone would take them;
        # ``upgrade_payload`` refuses them, and ``parse_batch`` validates without it.
        if type(value) is not int:
            raise ValueError(f"schema_version {value!r} is not a positive integer")
        return value

    @field_validator("measured_at")
    @classmethod
    def _measured_at_in_window(cls, value: datetime, info: ValidationInfo) -> datetime:
        value = value.astimezone(UTC)
        limits = (info.context or {}).get("limits") or ValidationLimits.current()
        if value > limits.now + limits.max_skew:
            raise ValueError(
                f"is {value.isoformat()}, more than {limits.max_skew} ahead of the server clock"
                f" ({limits.now.isoformat()}): fix the probe's clock (NTP)"
            )
        if value < limits.now - limits.max_age:
            raise ValueError(
                f"is {value.isoformat()}, older than the retention of {limits.max_age.days} days"
            )
        return value

    @model_validator(mode="after")
    def _status_matches_error(self) -> ResultBase:
        if self.status is Status.FAILED and (self.error is None or self.failure_kind is None):
            raise ValueError("a failed result needs both 'failure_kind' and 'error'")
        if self.status is Status.OK and (self.error is not None or self.failure_kind is not None):
            raise ValueError("an ok result must not carry 'failure_kind' or 'error'")
        reasons = _REASONS_BY_STATUS.get(self.status)
        if reasons is None and self.skip_reason is not None:
            raise ValueError(f"a result of status {self.status.value} must not carry 'skip_reason'")
        if reasons is not None:
            if self.skip_reason not in reasons:
                allowed = ", ".join(sorted(reasons))
                raise ValueError(
                    f"a {self.status.value} result needs 'skip_reason' {allowed},"
                    f" not {self.skip_reason}"
                )
            if self.error is not None or self.failure_kind is not None:
                raise ValueError(
                    f"a {self.status.value} result must not carry 'failure_kind' or 'error'"
                )
        return self


class BandwidthResult(ResultBase):
    """One throughput sample: bytes over a fixed time, warm-up excluded (methodology.md §2)."""

    kind: Literal[Kind.BANDWIDTH] = Kind.BANDWIDTH
    family: Family | None = None
    streams: Annotated[int, Field(ge=1, le=64)] | None = None
    download_mbps: NonNegFloat | None = None
    upload_mbps: NonNegFloat | None = None
    download_bytes: NonNegInt | None = None
    upload_bytes: NonNegInt | None = None
    download_duration_ms: NonNegFloat | None = None
    upload_duration_ms: NonNegFloat | None = None
    download_samples_mbps: list[NonNegFloat] | None = Field(default=None, max_length=2000)
    upload_samples_mbps: list[NonNegFloat] | None = Field(default=None, max_length=2000)
    sample_interval_ms: NonNegFloat | None = None
    download_warmup_ms: NonNegFloat | None = Field(
        default=None, description="Warm-up before the measured window; its samples come first."
    )
    upload_warmup_ms: NonNegFloat | None = None
    idle_latency_ms: NonNegFloat | None = None
    loaded_latency_down_ms: NonNegFloat | None = None
    loaded_latency_up_ms: NonNegFloat | None = None
    cpu_percent: Annotated[float, Field(ge=0, le=100 * 64, allow_inf_nan=False)] | None = None
    cpu_limited: bool | None = None
    host_limited: bool | None = None
    ran_alone: bool | None = None
    link_speed_mbps: NonNegFloat | None = Field(default=None, description="Negotiated NIC rate.")
    line_rate_mbps: NonNegFloat | None = Field(default=None, description="Nominal line rate.")
    mss_bytes: Annotated[int, Field(ge=0, le=65535)] | None = None
    retrans_bytes: NonNegInt | None = None
    min_rtt_ms: NonNegFloat | None = None
    # Before the test (collector/crosstraffic.py): the interface's bytes in + out over the last
    # window, the threshold it was judged against, and the whole probe's CPU use then.
    cross_traffic: CrossTraffic | None = None
    cross_traffic_bytes_per_s: NonNegFloat | None = None
    cross_traffic_threshold_bytes_per_s: NonNegFloat | None = None
    cross_traffic_interface: Identifier | None = None
    pretest_cpu_percent: Percent | None = None
    # The line's monthly data budget (collector/budget.py), month in Vietnam time: the budget,
    # what tests used this month before this one, and what this one was expected to use.
    data_budget_bytes: NonNegInt | None = None
    data_used_bytes: NonNegInt | None = None
    data_expected_bytes: NonNegInt | None = None


class LatencyResult(ResultBase):
    """Round trips to one target; statistics are derived from ``rtts_ms`` (lost packets absent)."""

    kind: Literal[Kind.LATENCY] = Kind.LATENCY
    method: Literal["icmp", "tcp", "http"] = "icmp"
    family: Family | None = None
    sent: Annotated[int, Field(ge=0, le=100_000)] = 0
    received: Annotated[int, Field(ge=0, le=100_000)] = 0
    loss_pct: Percent | None = None
    rtt_min_ms: NonNegFloat | None = None
    rtt_median_ms: NonNegFloat | None = None
    rtt_mean_ms: NonNegFloat | None = None
    rtt_max_ms: NonNegFloat | None = None
    jitter_ms: NonNegFloat | None = None
    rtts_ms: list[NonNegFloat] | None = Field(default=None, max_length=10_000)
    # Set-up phases, once per test (None when the engine has no such phase): name resolution,
    # TCP connect, TLS handshake, and the first request's time to first byte (http; excluded from
    # ``rtts_ms`` as the warm-up).
    resolve_ms: NonNegFloat | None = None
    connect_ms: NonNegFloat | None = None
    tls_ms: NonNegFloat | None = None
    first_byte_ms: NonNegFloat | None = None
    #: Of the samples in ``rtts_ms`` (icmp, http); None when none was timed, and for tcp, whose
    #: RTT is the kernel's ``TCP_INFO`` estimate, not a receive stamp.
    timestamp_source: TimestampSource | None = None

    @model_validator(mode="after")
    def _received_not_above_sent(self) -> LatencyResult:
        if self.received > self.sent:
            raise ValueError(f"received ({self.received}) exceeds sent ({self.sent})")
        return self


class DnsResult(ResultBase):
    """One name lookup against one resolver."""

    kind: Literal[Kind.DNS] = Kind.DNS
    resolver: ShortText | None = None
    qname: ShortText | None = None
    qtype: Literal["A", "AAAA"] = "A"
    rcode: Annotated[str, StringConstraints(max_length=16)] | None = None
    resolve_ms: NonNegFloat | None = None
    answers: Annotated[int, Field(ge=0, le=1000)] | None = None
    #: Of ``resolve_ms``; "user" also for an answer repeated over TCP. None: no answer timed.
    timestamp_source: TimestampSource | None = None


class Ipv6Result(ResultBase):
    """IPv6 readiness of the probe's line; each check is ``None`` when it was not run."""

    kind: Literal[Kind.IPV6] = Kind.IPV6
    global_address: bool | None = None
    default_route: bool | None = None
    ra_seen: bool | None = None
    aaaa_resolves: bool | None = None
    icmpv6_echo: bool | None = None
    http_over_ipv6: bool | None = None
    dual_stack_family: Family | None = None
    large_packets_ok: bool | None = None
    resolver_reaches_ipv6_only: bool | None = None
    nat64_detected: bool | None = None
    score_transition: Annotated[int, Field(ge=0, le=10)] | None = None
    score_strict: Annotated[int, Field(ge=0, le=10)] | None = None
    ipv6_ready: bool | None = None
    ipv6_only_ready: bool | None = None
    reasons: dict[Identifier, ShortText] | None = Field(default=None, max_length=32)
    # Details of the readiness checks (probes/ipv6/); all optional.
    ipv4_site_loads: bool | None = Field(default=None, description="The IPv4-only name loaded.")
    ipv6_capable: bool | None = Field(
        default=None, description="The IPv6-only name loaded (APNIC's 'IPv6-capable')."
    )
    ipv6_preferred: bool | None = Field(
        default=None, description="The dual-stack name was reached over IPv6 (APNIC's 'preferred')."
    )
    ipv4_only_reachable_via_nat64: bool | None = Field(
        default=None, description="The IPv4-only name loaded over IPv6, i.e. through a NAT64."
    )
    nat64_prefix: ShortText | None = Field(
        default=None, description="Pref64::/n, e.g. 64:ff9b::/96."
    )
    nat64_prefix_source: Literal["ra_pref64", "dns64"] | None = Field(
        default=None, description="RA PREF64 option (RFC 8781) or ipv4only.arpa (RFC 7050)."
    )
    ra_prefixes: list[ShortText] | None = Field(default=None, max_length=16)
    ra_managed: bool | None = Field(default=None, description="RA M flag (DHCPv6 addresses).")
    ra_other_config: bool | None = Field(default=None, description="RA O flag (DHCPv6 options).")
    ra_router_lifetime_s: Annotated[int, Field(ge=0, le=65535)] | None = None
    symptoms: list[Identifier] | None = Field(
        default=None, max_length=32, description="test-ipv6.com-style symptoms behind the scores."
    )
    probe_tests_over_ipv6_pct: Percent | None = Field(
        default=None,
        description="Share of this run's own HTTP fetches (family left to the OS) that used IPv6;"
        " not a user-traffic share, not VNNIC's or APNIC's 'tỷ lệ sử dụng IPv6'.",
    )


class CellularResult(ResultBase):
    """A ModemManager snapshot; signal levels are negative by nature, so no sign bound there."""

    kind: Literal[Kind.CELLULAR] = Kind.CELLULAR
    technology: Annotated[str, StringConstraints(max_length=32)] | None = None
    operator: ShortText | None = None
    registration_state: Annotated[str, StringConstraints(max_length=32)] | None = None
    rsrp_dbm: Annotated[float, Field(ge=-200, le=0, allow_inf_nan=False)] | None = None
    rsrq_db: Annotated[float, Field(ge=-50, le=10, allow_inf_nan=False)] | None = None
    snr_db: Annotated[float, Field(ge=-50, le=60, allow_inf_nan=False)] | None = None
    signal_quality_pct: Percent | None = None
    signal_quality_recent: bool | None = Field(
        default=None,
        description="ModemManager's 'recent' flag; false: its last reading is over 60 s old, so"
        " signal_quality_pct is withheld (None).",
    )
    #: Which radio the RSRP/RSRQ/SNR were read from ("lte" or "5g"; both exist on 5G NSA).
    signal_technology: Annotated[str, StringConstraints(max_length=16)] | None = None


class HeartbeatResult(ResultBase):
    """The agent's own health, sent every few minutes."""

    kind: Literal[Kind.HEARTBEAT] = Kind.HEARTBEAT
    agent_version: Annotated[str, StringConstraints(max_length=64)] | None = None
    uptime_s: NonNegFloat | None = None
    load1: NonNegFloat | None = None
    cpu_temp_c: Annotated[float, Field(ge=-60, le=150, allow_inf_nan=False)] | None = None
    disk_free_bytes: NonNegInt | None = None
    spool_depth: NonNegInt | None = None
    spool_oldest_age_s: NonNegFloat | None = None
    evicted_count: NonNegInt | None = None
    last_errors: dict[Identifier, LongText] | None = Field(default=None, max_length=16)
    #: The line's monthly data budget (None: unmetered) and what bandwidth tests used this month
    #: (Vietnam time), budget or not (collector/budget.py).
    data_budget_bytes: NonNegInt | None = None
    data_used_bytes: NonNegInt | None = None


Result = Annotated[
    BandwidthResult | LatencyResult | DnsResult | Ipv6Result | CellularResult | HeartbeatResult,
    Field(discriminator="kind"),
]

RESULT_ADAPTER: TypeAdapter[Result] = TypeAdapter(Result)

MODEL_BY_KIND: dict[Kind, type[ResultBase]] = {
    Kind.BANDWIDTH: BandwidthResult,
    Kind.LATENCY: LatencyResult,
    Kind.DNS: DnsResult,
    Kind.IPV6: Ipv6Result,
    Kind.CELLULAR: CellularResult,
    Kind.HEARTBEAT: HeartbeatResult,
}


class SchemaVersionError(ValueError):
    """A payload written by a newer agent than this code understands."""


def upgrade_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Bring an older wire version up to ``SCHEMA_VERSION``; refuse newer ones by name.

    Version 1 is the first, so there is nothing to upgrade yet; this is the one place that will.
    An upgrade must never change what a probe signed: with the first step that changes a result,
    the server must verify it at its own version and only then upgrade it (docs/canonical-form.md,
    "Versions and upgrades"); ``test_upgrade_payload_changes_no_signed_result_yet`` says so.
    """
    version = payload.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SchemaVersionError(f"schema_version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"schema_version {version} is newer than this server understands ({SCHEMA_VERSION});"
            " upgrade the server"
        )
    return payload


def parse_result(payload: Any, limits: ValidationLimits | None = None) -> Result:
    """Validate one decoded JSON object into its result model (raises ``ValueError`` subclasses).

    Validation runs in pydantic's strict JSON mode, so ``"12"`` is not a number and ``true`` is
    not 1; UUIDs, timestamps and enum values are read from their JSON strings as usual.
    """
    if not isinstance(payload, dict):
        raise SchemaVersionError(f"a result must be a JSON object, not {type(payload).__name__}")
    payload = upgrade_payload(payload)
    return RESULT_ADAPTER.validate_json(
        json.dumps(payload, allow_nan=True),
        strict=True,
        context={"limits": limits or ValidationLimits.current()},
    )


def parse_batch(
    body: bytes | str, limits: ValidationLimits | None = None, max_items: int | None = None
) -> list[Result] | None:
    """Every result of an upload body ``{"results": [...]}`` in one strict JSON validation, or
    ``None`` when the body, any item or the item count (over ``max_items``) is not right.

    The fast path for a healthy probe: one pass over the raw bytes instead of decoding the body,
    re-encoding each item and validating it alone. Whatever it accepts, ``parse_result`` accepts
    item by item with the same result, so on ``None`` the caller judges each item with
    ``parse_result`` to give its reason.
    """
    try:
        upload = _upload_adapter(max_items).validate_json(
            body, strict=True, context={"limits": limits or ValidationLimits.current()}
        )
    except ValueError:
        return None
    results: list[Result] = upload.results
    return results


@functools.lru_cache(maxsize=8)
def _upload_adapter(max_items: int | None) -> TypeAdapter[Any]:
    # The length limit makes an oversized batch fail before its items are validated.
    upload = create_model(
        "Upload",
        __config__=ConfigDict(extra="forbid"),
        results=(Annotated[list[Result], Field(max_length=max_items)], ...),
    )
    return TypeAdapter(upload)


def unbounded_limits() -> ValidationLimits:
    """Limits for re-reading stored results, which may be any age: only the schema is checked."""
    now = datetime.now(UTC)
    # The widest window datetime can represent (``now - timedelta.max / 2`` would overflow).
    return ValidationLimits(
        now=now,
        max_age=now - datetime.min.replace(tzinfo=UTC),
        max_skew=datetime.max.replace(tzinfo=UTC) - now,
    )


def explain(exc: ValueError) -> str:
    """One line naming each offending field and what was wrong, for humans and API replies."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for err in exc.errors(include_url=False):
        # Drop the union tag ("bandwidth") from the location: the field path is what matters.
        loc = [str(p) for p in err["loc"]][1:] or [str(p) for p in err["loc"]]
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc) or 'result'}: {msg}")
    return "; ".join(parts)
