"""The server's configuration: a YAML file, each setting overridable by ``HAMLETNET_*`` variables.

Environment variables take precedence over the file; nested keys use ``__``
(``HAMLETNET_INFLUXDB__URL``, ``HAMLETNET_LIMITS__MAX_BATCH_ITEMS``). Unknown keys are refused, and
every error names the key it is about (blackbox_exporter's config tests are the model).
"""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from probes.config_file import (
    ConfigFileError,
    explain_by_key,
    read_mapping,
    unknown_environment,
)
from probes.models import Access, Identifier, Kind
from server.errors import ConfigError

ENV_PREFIX = "HAMLETNET_"
#: The probe agent's own variables; they share the machine in the demo and are not ours to judge.
PROBE_ENV_PREFIX = "HAMLETNET_PROBE_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InfluxSettings(_Section):
    """InfluxDB through its v1 HTTP API (1.x natively; 2.x and 3.x through v1 compatibility)."""

    url: str = Field(description="Base URL, e.g. http://127.0.0.1:8086")
    database: str = "hamletnet"
    retention_policy: str | None = None
    username: str | None = Field(default=None, description="InfluxDB 1.x basic auth user.")
    password: SecretStr | None = None
    token: SecretStr | None = Field(default=None, description="InfluxDB 2.x/3.x API token.")
    measurements: dict[Kind, str] = Field(
        default_factory=dict, description="Measurement name per result kind (default: the kind)."
    )
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    create_database: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        return value.rstrip("/")


class LimitSettings(_Section):
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_batch_items: int = Field(default=1000, ge=1, le=100_000)
    requests_per_s: float = Field(
        default=10.0, gt=0, description="Sustained request rate allowed per probe."
    )
    burst: int = Field(default=40, ge=1, description="Requests a probe may send at once.")
    request_timeout_s: float = Field(default=30.0, gt=0, le=600)
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Time a connection has to send a request's headers before it is closed.",
    )
    auth_failure_burst: int = Field(
        default=20,
        ge=0,
        description="Failed authentications an address may make at once before it is answered"
        " 429; 0 turns the limit off (behind a reverse proxy every client has its address).",
    )
    auth_failures_per_min: float = Field(
        default=6.0, gt=0, description="Sustained rate of failed authentications per address."
    )
    min_free_disk_mb: float = Field(
        default=16.0,
        ge=0,
        description="/healthz reports 503 when data_dir has less free space than this.",
    )
    max_result_age_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Oldest measured_at accepted (probe spool retention).",
    )

    @property
    def max_result_age(self) -> timedelta:
        return timedelta(days=self.max_result_age_days)


#: An ISP's name as it appears in tags: what ``ProbeCreate.isp`` accepts.
IspName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f\\]+$")
]


#: The commune hamlets belong to when the configuration names none (a file from before communes).
class TargetSettings(_Section):
    """How many bandwidth tests the measurement target admits at once (``server/target``)."""

    max_concurrent_tests: int = Field(
        default=1, ge=1, le=64,
        description="Tests (slot leases) running at once; beyond them a probe is told 503 with"
        " Retry-After and waits or defers its test.",
    )  # fmt: skip
    max_aggregate_mbps: float | None = Field(
        default=None, gt=0,
        description="The rate the target can serve, Mb/s (its uplink's goodput): the expected"
        " rates of running tests must fit in it. Required when max_concurrent_tests > 1.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _budget_when_concurrent(self) -> TargetSettings:
        if self.max_concurrent_tests > 1 and self.max_aggregate_mbps is None:
            raise ValueError(
                f"target.max_concurrent_tests: {self.max_concurrent_tests} concurrent tests need"
                " target.max_aggregate_mbps (the target's uplink goodput, Mb/s), or tests that"
                " together fill the target would hold each other back unseen"
            )
        return self


DEFAULT_COMMUNE_CODE = "commune"
DEFAULT_COMMUNE_NAME = "Xã (chưa đặt tên trong cấu hình)"


class CommuneSettings(_Section):
    """A commune (xã); a server may hold several, and every roll-up is per commune."""

    code: Identifier = Field(description="Short ASCII code, used in URLs (?commune=).")
    name: str = Field(
        min_length=1, max_length=128, description="Vietnamese name, e.g. 'Xã Hiệp Lực'."
    )
    province: str | None = Field(default=None, min_length=1, max_length=128)


class HamletSettings(_Section):
    code: Identifier = Field(description="Short ASCII code, used in tags and URLs.")
    name: str = Field(min_length=1, max_length=128, description="Display name, in Vietnamese.")
    commune: Identifier = Field(
        default="",
        validate_default=False,
        description="Code of the commune it belongs to; may be left out when exactly one commune"
        " is configured (filled in by Settings).",
    )
    population: int | None = Field(default=None, ge=0)
    adults: int | None = Field(default=None, ge=0, description="Residents aged 18 or over.")
    households: int | None = Field(default=None, ge=0)
    lat: float | None = Field(default=None, ge=-90, le=90, description="Latitude, WGS 84.")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Longitude, WGS 84.")
    isps: list[IspName] = Field(
        default_factory=list, description="Operators present in the hamlet."
    )

    @field_validator("isps")
    @classmethod
    def _unique_isps(cls, value: list[str]) -> list[str]:
        dupes = sorted({i for i in value if value.count(i) > 1})
        if dupes:
            raise ValueError(f"ISPs must be listed once; repeated: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _adults_within_population(self) -> HamletSettings:
        if (
            self.adults is not None
            and self.population is not None
            and self.adults > self.population
        ):
            raise ValueError(f"adults ({self.adults}) cannot exceed population ({self.population})")
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together: give both or neither")
        return self


class ExampleProbe(_Section):
    """A probe the demo registers (not used by ``run``)."""

    hamlet: Identifier
    isp: str = Field(min_length=1, max_length=64)
    access: Access


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = Field(default=None, description="URL probes use to reach the server.")
    data_dir: Path = Field(
        default=Path("var"), description="Registry and SQLite results live here."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token for /api/v1/admin; unset disables the admin API."
    )
    influxdb: InfluxSettings | None = Field(
        default=None, description="Store results in InfluxDB; unset means embedded SQLite."
    )
    limits: LimitSettings = Field(default_factory=LimitSettings)
    serve_target: bool = Field(
        default=False,
        description="Also serve the bandwidth measurement target at /target/. Like any speed-test"
        " server it is public (speedtest-cli and browsers carry no token), so it is off unless"
        " asked for; the usual place for it is 'hamletnet-server target' on its own machine.",
    )
    target: TargetSettings = Field(default_factory=TargetSettings)
    plan_file: Path | None = Field(
        default=None,
        description="The plan judged by /compliance (YAML, as config/plan.yaml); unset: the copy"
        " bundled with the server.",
    )
    alerts_file: Path | None = Field(
        default=None,
        description="Alert rules and routing (YAML, as config/alerts.example.yaml); unset: no"
        " alerts are evaluated or sent (docs/alerts.md).",
    )
    communes: list[CommuneSettings] = Field(default_factory=list)
    hamlets: list[HamletSettings] = Field(default_factory=list)
    example_probes: list[ExampleProbe] = Field(default_factory=list)
    demo: bool = Field(
        default=False,
        description="Set by 'hamletnet-server demo': the pages carry the banner 'Dữ liệu minh"
        " họa' (the data is illustrative, not measured).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (generate one: openssl rand -hex 24)")
        return value

    @field_validator("communes")
    @classmethod
    def _unique_communes(cls, value: list[CommuneSettings]) -> list[CommuneSettings]:
        codes = [c.code for c in value]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"commune codes must be unique; repeated: {', '.join(dupes)}")
        return value

    @field_validator("hamlets")
    @classmethod
    def _unique_hamlets_in_known_communes(
        cls, value: list[HamletSettings], info: ValidationInfo
    ) -> list[HamletSettings]:
        codes = [h.code for h in value]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"hamlet codes must be unique; repeated: {', '.join(dupes)}")
        communes = [c.code for c in info.data.get("communes", [])]
        filled = []
        for index, hamlet in enumerate(value):
            if not hamlet.commune:
                if len(communes) > 1:
                    raise ValueError(
                        f"hamlets.{index}.commune: missing; with several communes configured"
                        f" each hamlet names its own (one of {', '.join(communes)})"
                    )
                if communes:
                    hamlet = hamlet.model_copy(update={"commune": communes[0]})
            elif hamlet.commune not in communes:
                raise ValueError(
                    f"hamlets.{index}.commune: {hamlet.commune!r} is not a configured commune;"
                    f" known: {', '.join(communes) or 'none (add a communes: section)'}"
                )
            filled.append(hamlet)
        return filled

    @model_validator(mode="after")
    def _default_commune(self) -> Settings:
        """A configuration from before communes: its hamlets go to one unnamed commune."""
        if self.communes or not self.hamlets:
            return self
        self.communes = [CommuneSettings(code=DEFAULT_COMMUNE_CODE, name=DEFAULT_COMMUNE_NAME)]
        self.hamlets = [
            h.model_copy(update={"commune": DEFAULT_COMMUNE_CODE}) for h in self.hamlets
        ]
        return self

    @property
    def plan_path(self) -> Path:
        """The plan file to judge against: ``plan_file``, or the copy bundled with the server."""
        return self.plan_file if self.plan_file is not None else bundled_plan_path()

    def commune(self, code: str) -> CommuneSettings:
        for commune in self.communes:
            if commune.code == code:
                return commune
        raise KeyError(code)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment over file: the file arrives as init arguments, so env goes first.
        return (env_settings, init_settings)


def bundled_plan_path() -> Path:
    """``plan.yaml`` shipped inside the ``server.compliance`` package (package data; in a source
    checkout a link to ``config/plan.yaml``)."""
    return Path(str(resources.files("server.compliance").joinpath("plan.yaml")))


class _FileOnlySettings(Settings):
    """Settings from the file and the caller's arguments alone, with no ``HAMLETNET_*`` variable:
    what the demo runs on, so an office server's environment (its admin token, database, port)
    never leaks into a demo started on the same machine."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load_settings(
    path: Path | None = None, *, environment: bool = True, **overrides: Any
) -> Settings:
    """Read ``path`` (YAML) if given, apply ``HAMLETNET_*`` variables (unless ``environment`` is
    false), validate; ``ConfigError`` names every bad key."""
    try:
        paths = ["data_dir", "plan_file", "alerts_file"]
        data = read_mapping(path, path_keys=paths) if path is not None else {}
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from exc
    data.update(overrides)
    if environment:
        unknown = unknown_environment(ENV_PREFIX, Settings.model_fields, ignore=[PROBE_ENV_PREFIX])
        if unknown:
            raise ConfigError(unknown)
    try:
        if not environment:
            return _FileOnlySettings(**data)
        return Settings(**data)
    except ValidationError as exc:
        explained = explain_by_key(
            exc, "invalid configuration", path, "the configuration reference", ENV_PREFIX
        )
        raise ConfigError(explained) from exc
