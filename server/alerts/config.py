"""Alert rules and routing as data: ``alerts.yaml`` read and checked, every error naming its key.

A rule says what is bad (its ``kind`` and threshold), how sure we must be before telling anyone
(M bad of the last N observations), how sure before saying it is over (K good in a row), and how
often to remind. Routing says who hears: each operator (ISP) only about its own network, the
office about everything. Channel URLs are Apprise URLs and hold secrets (SMTP passwords, bot
tokens): they are ``SecretStr`` and never appear in a repr, a log line or an error message.
docs/alerts.md describes every key.
"""

from __future__ import annotations

import re
import string
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from probes.config_file import ConfigFileError, explain_file_errors, read_mapping
from probes.models import Identifier
from server.compliance.rules import GIGABIT_MEAN_MBPS
from server.errors import ConfigError
from server.settings import IspName

Severity = Literal["info", "warning", "critical"]
Direction = Literal["download", "upload"]
Text = Annotated[str, Field(min_length=1, max_length=500)]

#: ``scheme://...``: the shape of every Apprise URL (mailtos://, tgram://, json://, ...).
_APPRISE_URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
#: What the evidence link template may name (filled in by ``server.alerts.message``).
EVIDENCE_FIELDS = frozenset({"hamlet", "isp", "probe", "from", "to"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- Rules --------------------------------------------------------------------------------------


class _Rule(_Strict):
    """What every rule has: identity, words, and the hysteresis that keeps it from crying wolf."""

    id: Identifier
    severity: Severity = "warning"
    title_vi: Text = Field(description="Short Vietnamese title, e.g. 'Tốc độ tải xuống thấp'.")
    text_vi: Text = Field(description="One Vietnamese sentence: what the rule checks and why.")
    enabled: bool = True
    m: int = Field(default=1, ge=1, le=1000, description="Bad observations needed to fire...")
    n: int = Field(default=1, ge=1, le=1000, description="...among the last n observations.")
    resolve_after: int = Field(
        default=1, ge=1, le=1000, description="Good observations in a row that resolve it (K)."
    )
    remind_every_h: float | None = Field(
        default=None,
        gt=0,
        le=24 * 365,
        description="Hours between reminders while firing and not acknowledged; null: never.",
    )

    @model_validator(mode="after")
    def _m_within_n(self) -> _Rule:
        if self.m > self.n:
            raise ValueError(f"m ({self.m}) cannot exceed n ({self.n}): fire on m bad of last n")
        return self

    @property
    def remind_every(self) -> timedelta | None:
        return None if self.remind_every_h is None else timedelta(hours=self.remind_every_h)


class BelowDeclared(_Rule):
    """Download (or upload) below ``fraction`` × the operator's declared speed for the line."""

    kind: Literal["below_declared"]
    direction: Direction = "download"
    fraction: float = Field(gt=0, le=1, description="0.8: below 80 % of the declared speed.")


class BelowPlanTarget(_Rule):
    """Download (or upload) below ``fraction`` × the plan's target speed."""

    kind: Literal["below_plan_target"]
    direction: Direction = "download"
    fraction: float = Field(gt=0, le=1)
    target_mbps: float = Field(
        default=GIGABIT_MEAN_MBPS,
        gt=0,
        description="The plan's speed; default 941 Mb/s, the goodput of 1 Gb/s"
        " (server.compliance.rules.GIGABIT_MEAN_MBPS).",
    )


class BelowOwnMedian(_Rule):
    """Download (or upload) more than ``percent_below`` % below the line's own recent median."""

    kind: Literal["below_own_median"]
    direction: Direction = "download"
    percent_below: float = Field(gt=0, lt=100)
    baseline_days: int = Field(default=7, ge=1, le=90)
    min_baseline_samples: int = Field(
        default=10, ge=1, le=10_000, description="Fewer valid samples in the baseline: no verdict."
    )


class LoadedLatencyAbove(_Rule):
    """Latency under load (during the download or the upload phase) above ``bound_ms``."""

    kind: Literal["loaded_latency_above"]
    direction: Direction = "download"
    bound_ms: float = Field(gt=0, le=60_000)


class Ipv6ReadinessLost(_Rule):
    """A line that was IPv6-ready is not any more."""

    kind: Literal["ipv6_readiness_lost"]


class ProbeSilent(_Rule):
    """A probe not heard from (results or heartbeats) for more than ``factor`` × its interval."""

    kind: Literal["probe_silent"]
    factor: float = Field(gt=1, le=1000, description="k: silent after k × the upload interval.")
    assumed_interval_s: float = Field(
        default=300,
        gt=0,
        le=86_400,
        description="The interval used when the probe reports none: the agent's heartbeat"
        " period (collector/config.py).",
    )


class SamplePaceBehind(_Rule):
    """The month's valid-sample count is heading below VNNIC's minimum of 300."""

    kind: Literal["sample_pace_behind"]
    grace_days: float = Field(
        default=3, ge=0, le=27, description="No verdict in the month's first days (no pace yet)."
    )


class TargetUnreachable(_Rule):
    """The measurement target unreachable from several probes at once: one alert per target."""

    kind: Literal["target_unreachable"]
    min_probes: int = Field(default=2, ge=2, le=1000, description="Probes failing at once.")
    window_min: float = Field(
        default=30, gt=0, le=1440, description="Each probe's latest attempt in this window counts."
    )


AlertRule = Annotated[
    BelowDeclared
    | BelowPlanTarget
    | BelowOwnMedian
    | LoadedLatencyAbove
    | Ipv6ReadinessLost
    | ProbeSilent
    | SamplePaceBehind
    | TargetUnreachable,
    Field(discriminator="kind"),
]


# -- Routing ------------------------------------------------------------------------------------


class Contact(_Strict):
    """Where one party's alerts go: one or more Apprise URLs (secrets inside: never shown)."""

    name: Text
    urls: list[SecretStr] = Field(min_length=1)

    @field_validator("urls")
    @classmethod
    def _apprise_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        for index, url in enumerate(value):
            if not _APPRISE_URL.match(url.get_secret_value()):
                # Never echo the value: it may hold a password or a bot token.
                raise ValueError(
                    f"item {index} is not an Apprise URL (scheme://...; e.g. mailtos://,"
                    " tgram://, json://); the value is not shown because it may hold a secret"
                )
        return value


class Routing(_Strict):
    office: Contact = Field(description="Receives every alert, whatever the operator.")
    isps: dict[IspName, Contact] = Field(
        default_factory=dict, description="Each operator's contact: only its own network's alerts."
    )

    def contacts_for(self, isp: str | None) -> tuple[Contact, ...]:
        """The office, and the operator's contact when the alert is about its network. An alert
        about no operator (the measurement target, a commune-wide problem) goes to the office only.
        """
        own = self.isps.get(isp) if isp is not None else None
        return (self.office,) if own is None else (self.office, own)


class Links(_Strict):
    """Base URLs for the links in messages."""

    grafana_url: str = Field(description="Grafana as operators reach it, e.g. https://grafana.x")
    server_url: str = Field(description="The hamletnet server as operators reach it.")
    evidence_path: str = Field(
        default="/api/v1/admin/evidence?hamlet={hamlet}&isp={isp}&from={from}&to={to}",
        description="Path of the evidence export for a hamlet and window; may name {hamlet},"
        " {isp}, {probe}, {from}, {to} (RFC 3339 UTC). The default is the admin evidence route"
        " (the office downloads the export with its token and forwards it).",
    )

    @field_validator("grafana_url", "server_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("evidence_path")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with /")
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid template: {exc}") from None
        unknown = sorted(names - EVIDENCE_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}; use {', '.join(sorted(EVIDENCE_FIELDS))}"
            )
        return value


class AlertsConfig(_Strict):
    links: Links
    routing: Routing
    rules: list[AlertRule] = Field(min_length=1)
    evaluate_every_s: float = Field(
        default=300,
        ge=1,
        le=86_400,
        description="Seconds between scheduled evaluations (probe silence, reminders, mutes"
        " ending); results are also judged as they arrive.",
    )

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, value: list[AlertRule]) -> list[AlertRule]:
        ids = [r.id for r in value]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(dupes)}")
        return value

    def rule(self, rule_id: str) -> AlertRule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


def _explain(exc: ValidationError, origin: str) -> str:
    """One line per error, led by the dotted key (``rules.2.below_declared.fraction: ...``).
    Only the message and the key: pydantic's own text would echo the input, which may be a
    channel URL with a password in it."""
    return explain_file_errors(exc, "invalid alerts configuration", origin, "docs/alerts.md")


def parse_alerts(data: dict[str, Any], origin: str = "alerts") -> AlertsConfig:
    """Validate an alerts mapping; ``ConfigError`` names every bad key (never a secret)."""
    try:
        return AlertsConfig.model_validate(data)
    except ValidationError as exc:
        # ``from None``: the ValidationError's own text holds the input values (channel URLs).
        raise ConfigError(_explain(exc, origin)) from None


def load_alerts(path: Path) -> AlertsConfig:
    """Read and validate an alerts file such as ``config/alerts.example.yaml``."""
    try:
        data = read_mapping(path)
    except ConfigFileError as exc:
        raise ConfigError(_without_snippet(exc, path)) from None
    return parse_alerts(data, str(path))


def _without_snippet(exc: ConfigFileError, path: Path) -> str:
    """PyYAML quotes the offending line, which may be a channel URL with its password: say
    where the error is, not what the line holds."""
    cause = exc.__cause__
    if isinstance(cause, yaml.MarkedYAMLError) and cause.problem_mark is not None:
        mark = cause.problem_mark
        return (
            f"{path} is not valid YAML: {cause.problem} at line {mark.line + 1},"
            f" column {mark.column + 1}"
        )
    return str(exc)
