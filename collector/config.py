"""The probe agent's configuration: a YAML file, each key overridable by ``HAMLETNET_PROBE_*``.

Validated with pydantic, unknown keys refused, and every error names its key
(``schedules.latency.every_s: Input should be greater than 0``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from collector.budget import DataBudgetSettings
from collector.crosstraffic import CrossTrafficSettings
from collector.errors import ConfigError
from collector.schedule import PeakWindow, gap_plan
from probes.config_file import (
    ConfigFileError,
    explain_by_key,
    read_mapping,
    unknown_environment,
)
from probes.models import Kind

ENV_PREFIX = "HAMLETNET_PROBE_"
DEFAULT_STATE_DIR = Path("/var/lib/hamletnet-probe")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Schedule(_Section):
    """When one test kind runs: after random gaps of mean ``mean_gap_s`` (exponential, clamped
    to [``min_gap_s``, ``max_gap_s``], optionally with a ``peak`` window of extra tests:
    ``collector.schedule``), or every ``every_s`` seconds or on a ``cron`` line, plus jitter.

    Random gaps are the unbiased choice (RFC 2330 §11.1.1: periodic sampling can fall into step
    with periodic network behaviour). ``every_s`` and ``cron`` keep their fixed times, as older
    configurations meant them; their jitter spreads a commune's probes so they do not all test
    in the same second (SamKnows randomises each agent's test times within its window).
    """

    enabled: bool = True
    mean_gap_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    min_gap_s: float | None = Field(default=None, ge=0, le=7 * 86400)
    max_gap_s: float | None = Field(default=None, gt=0, le=30 * 86400)
    peak: PeakWindow | None = None
    every_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    cron: str | None = Field(default=None, description="crontab line, e.g. '*/30 19-22 * * *'")
    jitter_s: float = Field(default=0.0, ge=0, le=86400)
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    targets: list[str] = Field(default_factory=list, max_length=32)
    engine: str | None = Field(default=None, description="Engine of the kind; None: its default.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Engine settings, e.g. {streams: 3, duration_s: 10}."
    )

    @model_validator(mode="after")
    def _one_trigger(self) -> Schedule:
        given = [k for k in ("mean_gap_s", "every_s", "cron") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'every_s' or 'cron' (fixed times) or 'mean_gap_s' (random"
                f" gaps); given: {', '.join(given) or 'none'}"
            )
        if self.mean_gap_s is not None:
            if self.jitter_s:
                raise ValueError(
                    "jitter_s is for every_s and cron: gaps of mean_gap_s are random already"
                )
            gap_plan(self.mean_gap_s, self.min_gap_s, self.max_gap_s, self.peak)
        else:
            extras = [k for k in ("min_gap_s", "max_gap_s", "peak") if getattr(self, k) is not None]
            if extras:
                raise ValueError(
                    f"{', '.join(extras)} need mean_gap_s (random gaps); every_s and cron take"
                    " jitter_s instead"
                )
        if self.cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.cron)
            except ValueError as exc:
                raise ValueError(f"cron {self.cron!r} is not a crontab line: {exc}") from exc
        return self


def _default_schedules() -> dict[Kind, Schedule]:
    return {
        Kind.HEARTBEAT: Schedule(every_s=300, jitter_s=30, timeout_s=30),
    }


class SpoolSettings(_Section):
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    max_age_days: int = Field(default=30, ge=1, le=3650)

    @property
    def max_age(self) -> timedelta:
        return timedelta(days=self.max_age_days)


class UploadSettings(_Section):
    every_s: float = Field(default=30.0, gt=0, le=86400, description="Upload attempt interval.")
    batch_size: int = Field(default=500, ge=1, le=1000)
    max_batch_bytes: int = Field(default=900_000, ge=4096, le=1024 * 1024)
    backoff_min_s: float = Field(default=5.0, gt=0)
    backoff_max_s: float = Field(default=900.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _ordered(self) -> UploadSettings:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("backoff_max_s must be at least backoff_min_s")
        return self


class ClockSettings(_Section):
    max_hold_s: float = Field(
        default=1800.0,
        ge=0,
        le=86400,
        description="Results measured this soon after boot while the kernel says the clock is"
        " not synchronised wait for NTP, then are re-stamped; 0 sends them at once, marked"
        " clock_synced: false (probes/clock.py).",
    )


class TlsSettings(_Section):
    verify: bool = Field(default=True, description="Verify the server's certificate.")
    ca_bundle: Path | None = Field(default=None, description="PEM file of trusted CAs.")

    @field_validator("ca_bundle")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value


class ProbeConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    server_url: str | None = Field(
        default=None, description="Ingest server base URL (register also stores it)."
    )
    state_dir: Path = Field(
        default=DEFAULT_STATE_DIR,
        description="credentials.json, probe.key, spool.sqlite3 and status.json live here.",
    )
    schedules: dict[Kind, Schedule] = Field(default_factory=_default_schedules)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    upload: UploadSettings = Field(default_factory=UploadSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    clock: ClockSettings = Field(default_factory=ClockSettings)
    #: Before a bandwidth test: is the household's line quiet (collector/crosstraffic.py)?
    cross_traffic: CrossTrafficSettings = Field(default_factory=CrossTrafficSettings)
    #: A metered line's monthly budget for bandwidth tests (collector/budget.py).
    data_budget: DataBudgetSettings = Field(default_factory=DataBudgetSettings)
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("schedules")
    @classmethod
    def _kinds_we_can_run(cls, value: dict[Kind, Schedule]) -> dict[Kind, Schedule]:
        from probes.registry import PROBES, engine_for, split_host_port

        for kind, schedule in value.items():
            if kind is Kind.HEARTBEAT or not schedule.enabled:
                continue
            entry = PROBES.get(kind)
            if entry is None:
                runnable = ", ".join(sorted([Kind.HEARTBEAT.value, *(k.value for k in PROBES)]))
                raise ValueError(f"{kind.value}: this agent cannot run it yet (it can: {runnable})")
            if entry.needs_targets and not schedule.targets:
                raise ValueError(f"{kind.value}.targets: give at least one target")
            if engine_for(kind, schedule.engine, schedule.targets) == "tcp":
                for target in schedule.targets:
                    split_host_port(target)
        return value

    @field_validator("server_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with https:// (or http:// on a lab network)")
        return value.rstrip("/") if value else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # environment over file

    @property
    def credentials_path(self) -> Path:
        return self.state_dir / "credentials.json"

    @property
    def key_path(self) -> Path:
        return self.state_dir / "probe.key"

    @property
    def spool_path(self) -> Path:
        return self.state_dir / "spool.sqlite3"

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def data_budget_path(self) -> Path:
        return self.state_dir / "data_budget.json"


def load_config(path: Path | None = None, **overrides: Any) -> ProbeConfig:
    """Read ``path`` if given, apply ``HAMLETNET_PROBE_*`` variables, validate."""
    try:
        data = read_mapping(path, path_keys=["state_dir"]) if path is not None else {}
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from exc
    data.update(overrides)
    unknown = unknown_environment(ENV_PREFIX, ProbeConfig.model_fields)
    if unknown:
        raise ConfigError(unknown)
    try:
        return ProbeConfig(**data)
    except ValidationError as exc:
        explained = explain_by_key(
            exc, "invalid probe configuration", path, "config/probe.example.yaml", ENV_PREFIX
        )
        raise ConfigError(explained) from exc
