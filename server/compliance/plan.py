"""The commune's plan as data: ``config/plan.yaml`` read and checked, every error naming its key.

Each indicator of the plan's appendix says what is counted (its basis), the target, the deadline
quarter and how it is judged: by a rule of ``server.compliance.rules`` over probe results, or by a
figure the office reports by hand.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from probes.config_file import ConfigFileError, explain_file_errors, read_mapping
from probes.models import Identifier
from server.compliance.rules import RULES, Basis, Target
from server.compliance.stats import VIETNAM, Deadline, parse_deadline
from server.errors import ConfigError

BASES: tuple[str, ...] = get_args(Basis)
UNITS = ("%", "Gb/s", "Mb/s")
Text = Annotated[str, Field(min_length=1, max_length=500)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Threshold(_Strict):
    """``op value unit``: ``> 95 %``, ``>= 100 %``, ``> 1 Gb/s``."""

    op: Literal[">", ">="]
    value: float = Field(ge=0)
    unit: str

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, value: str) -> str:
        if value not in UNITS:
            raise ValueError(f"unknown unit {value!r}; use one of {', '.join(UNITS)}")
        return value

    def as_target(self) -> Target:
        return Target(self.op, self.value, self.unit)


class ByRule(_Strict):
    """Judged by a rule over probe results (or, for ``ipv6-usage``, shown as not measurable)."""

    method: Literal["rule"]
    rule: str

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        if value not in RULES:
            raise ValueError(f"unknown rule {value!r}; rules: {', '.join(sorted(RULES))}")
        return value


class ByHand(_Strict):
    """Reported by the office, with who, when and the source document (rule ``hand-reported``)."""

    method: Literal["hand"]
    figure_vi: Text
    figure_en: Text


class Indicator(_Strict):
    id: Identifier
    appendix_row: Annotated[str, Field(pattern=r"^I{1,2}\.[12]\.\d+$")]
    year: int = Field(ge=2026, le=2030)
    name_vi: Text
    name_en: Text
    target: Threshold | None = Field(
        description="The share of the basis to reach; null for a qualitative task."
    )
    condition: Threshold | None = Field(
        default=None, description="What each counted unit must have, e.g. speed > 1 Gb/s."
    )
    basis: str
    deadline: str
    judged_by: Annotated[ByRule | ByHand, Field(discriminator="method")]
    also_show: list[str] = Field(default_factory=list, description="Rule ids shown beside it.")
    note_en: Text | None = None

    @field_validator("basis")
    @classmethod
    def _known_basis(cls, value: str) -> str:
        if value not in BASES:
            raise ValueError(f"unknown basis {value!r}; use one of {', '.join(BASES)}")
        return value

    @field_validator("deadline")
    @classmethod
    def _deadline_parses(cls, value: str) -> str:
        parse_deadline(value)  # ValueError names the value
        return value

    @field_validator("also_show")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in RULES]
        if unknown:
            raise ValueError(f"unknown rule(s) {', '.join(map(repr, unknown))}")
        return value

    @model_validator(mode="after")
    def _rules_need_a_target(self) -> Indicator:
        if self.judged_by.method == "rule" and self.target is None:
            raise ValueError(f"{self.id}: an indicator judged by a rule needs a 'target'")
        return self

    @property
    def due(self) -> Deadline:
        return parse_deadline(self.deadline)


class PlanInfo(_Strict):
    id: Identifier
    title_vi: Text
    title_en: Text
    commune: Text
    document: Text
    starts: date = Field(description="First day the plan applies (Vietnam time).")

    @property
    def starts_at(self) -> datetime:
        """Midnight of ``starts`` in Vietnam, as UTC."""
        day = self.starts
        return datetime(day.year, day.month, day.day, tzinfo=VIETNAM).astimezone(UTC)


class Plan(_Strict):
    plan: PlanInfo
    indicators: list[Indicator] = Field(min_length=1)

    @field_validator("indicators")
    @classmethod
    def _unique_ids(cls, value: list[Indicator]) -> list[Indicator]:
        ids = [i.id for i in value]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"indicator ids must be unique; repeated: {', '.join(dupes)}")
        return value

    def indicator(self, indicator_id: str) -> Indicator:
        for item in self.indicators:
            if item.id == indicator_id:
                return item
        raise KeyError(indicator_id)


def _explain(exc: ValidationError, origin: str) -> str:
    """One line per error, led by the dotted key (``indicators.3.basis: unknown basis ...``).
    The plan has no environment overrides, so unlike the settings files only the file is blamed."""
    return explain_file_errors(
        exc, "invalid plan", origin, "docs/methodology.md, 'The plan as data'"
    )


def parse_plan(data: dict[str, Any], origin: str = "plan") -> Plan:
    """Validate a plan mapping; ``ConfigError`` names every bad key and value."""
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origin)) from exc


def load_plan(path: Path) -> Plan:
    """Read and validate a plan file such as ``config/plan.yaml``."""
    try:
        data = read_mapping(path)
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from exc
    return parse_plan(data, str(path))
